"""Helpers the tests share (a plain module: tests import it; conftest.py holds only fixtures)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferlite.train.backend import configured_backend, missing_module

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"
DEMO_DIR = ROOT / "src" / "ferlite" / "edge" / "demo"
TINY_MODEL = FIXTURES / "tiny_int8.tflite"

# An install without the training extra (pip install '.[edge,dev]') runs the suite too: the tests that train or
# convert skip, saying what is missing (decided from what is installed, without importing Keras or TensorFlow).
MISSING_FOR_TRAINING = missing_module(configured_backend())
needs_training = pytest.mark.skipif(
    MISSING_FOR_TRAINING is not None,
    reason=f"fer-train needs {MISSING_FOR_TRAINING} for Keras backend {configured_backend()!r} "
           "(pip install -e '.[train]')")
needs_tensorflow = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="fer-convert needs TensorFlow (pip install -e '.[train]')")


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


class ScriptedDetector:
    """A detect(gray, min_size, max_size) double for the tracker: answers from `faces` (boxes in `frame`'s
    pixels), honouring the region searched (the tracker hands in views of the frame) and the size limits."""

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.faces: list[tuple[int, int, int, int]] = []
        self.calls: list[tuple[int, int]] = []  # (width, height) searched

    def __call__(self, gray: np.ndarray, min_size: int, max_size: int | None) -> list[tuple[int, int, int, int]]:
        self.calls.append((gray.shape[1], gray.shape[0]))
        base = gray.__array_interface__["data"][0] - self.frame.__array_interface__["data"][0]
        oy, ox = divmod(base, self.frame.strides[0])
        out = []
        for x, y, w, h in self.faces:
            inside = x >= ox and y >= oy and x + w <= ox + gray.shape[1] and y + h <= oy + gray.shape[0]
            if inside and w >= min_size and (max_size is None or w <= max_size):
                out.append((x - ox, y - oy, w, h))
        return out
