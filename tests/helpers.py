"""Helpers the tests share (a plain module: tests import it; conftest.py holds only fixtures)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ferlite.train.backend import configured_backend, missing_module

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"
DEMO_DIR = ROOT / "src" / "ferlite" / "edge" / "demo"
TINY_MODEL = FIXTURES / "tiny_int8.tflite"
EDGE = [sys.executable, "-m", "ferlite.edge.apps.cli"]  # fer-edge, run from this checkout
NOBODY = 65534  # the non-root user the permission tests run as

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


def run_edge(args, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
    """fer-edge in a subprocess; output as text (bytes that are not UTF-8 shown escaped)."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    done = subprocess.run(EDGE + list(args), timeout=timeout, check=False, **kwargs)
    out = done.stdout.decode("utf-8", "backslashreplace") if isinstance(done.stdout, bytes) else ""
    err = done.stderr.decode("utf-8", "backslashreplace") if isinstance(done.stderr, bytes) else ""
    return subprocess.CompletedProcess(done.args, done.returncode, out, err)


def one_error_line(out) -> str:
    """Exit 2, nothing on stdout, no traceback, and the reason as the last line of stderr."""
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert out.stdout == ""
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("fer-edge: "), out.stderr[-2000:]
    return line


def gray_images(folder: Path, count: int, size: int = 48) -> Path:
    """`count` random gray PNGs, img_000.png on, in `folder` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), rng.integers(0, 255, (size, size), dtype=np.uint8))
    return folder


def write_config(folder: Path, text: str | bytes, name: str = "edge.toml") -> Path:
    """A config file (text, or raw bytes) named `name` in `folder`."""
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """call() in a thread: its result, or a failure if it has not returned in time (a spin or a
    hang before the fix must fail the test, not stall the test run)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the test below
            result["error"] = e

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    if "error" in result:
        raise result["error"]
    return result.get("value")


def as_nobody() -> list[str]:
    """A command prefix that runs as a non-root user (uid 65534 through setpriv when root), or skip."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is missing: cannot test as a non-root user")
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = subprocess.run(prefix + [sys.executable, "-c", "import ferlite.edge.apps.cli"],
                           capture_output=True, timeout=60, check=False)
    if probe.returncode != 0:
        pytest.skip(f"uid {NOBODY} cannot run this checkout: {probe.stderr[-200:]!r}")
    return prefix
