"""Shared test fixtures: the committed tiny int8 model, real face photos, the shared data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"
DEMO_DIR = ROOT / "edge" / "demo"
TINY_MODEL = FIXTURES / "tiny_int8.tflite"


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """A small int8 model with its spec, made by scripts/make_fixture_model.py and committed."""
    path = Path(os.environ.get("FERLITE_TEST_MODEL", TINY_MODEL))
    if not path.is_file():
        pytest.fail(f"{path} missing: run python scripts/make_fixture_model.py")
    return path


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model and its spec, safe to damage."""
    target = tmp_path / "model.tflite"
    shutil.copy(tiny_model, target)
    shutil.copy(tiny_model.with_name(tiny_model.stem + ".spec.json"), tmp_path / "model.spec.json")
    return target


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """NASA's public-domain astronaut portrait (as scikit-image ships it), BGR, 512x512: a real face."""
    image = cv2.imread(str(DEMO_DIR / "astronaut.jpg"))
    assert image is not None
    return image


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present (real data sets live beside the project)")
    return SHARED_DATA


def place_face(face: np.ndarray, x: int, y: int, size: tuple[int, int] = (640, 480), scale: float = 0.5) -> np.ndarray:
    """A camera-sized canvas with a (scaled) photo pasted at (x, y)."""
    canvas = np.full((size[1], size[0], 3), 100, dtype=np.uint8)
    small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h = min(small.shape[0], size[1] - y)
    w = min(small.shape[1], size[0] - x)
    canvas[y : y + h, x : x + w] = small[:h, :w]
    return canvas


def write_face_video(path: Path, face: np.ndarray, frames: int = 12, fps: float = 10.0) -> Path:
    """An MJPEG .avi, 640x480, of `face` (a photo) moving right: a clip for the video tests."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (640, 480))
    assert writer.isOpened(), "OpenCV cannot write MJPEG .avi here"
    for i in range(frames):
        writer.write(place_face(face, 30 + 6 * i, 20 + 2 * i, scale=0.6))
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video file, as OpenCV decodes it."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames
