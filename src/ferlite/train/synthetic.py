"""Synthetic 'faces' with one learnable pattern per label, for tests, fixtures and smoke runs.

They are not faces: they only let a narrow network learn something in seconds, so that
training, conversion and verification can be checked end to end without real data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from ferlite.edge.contract import INPUT_SIZE, LABELS
from ferlite.edge.contract.atomic import atomic_write

log = logging.getLogger(__name__)

# Class folder names of a written set (fer-train's aliases map them to LABELS, in LABELS order).
FOLDER_NAMES = ("anger", "disgust", "happiness", "neutral", "sadness", "surprise")
SET_VERSION = "synthetic-v1"


def pattern(label: int, rng: np.random.Generator, size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """(h, w) uint8 image of class `label`, with a random phase and noise."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(10, 14)
    phase = rng.uniform(0, 2 * np.pi)
    wave = {
        0: np.sin(2 * np.pi * y / period + phase),  # horizontal stripes
        1: np.sin(2 * np.pi * x / period + phase),  # vertical stripes
        2: np.cos(np.hypot(x - w / 2, y - h / 2) / (period / 6) + phase),  # rings
        3: (x + y) / (w + h) * 2 - 1,  # plain gradient
        4: np.sin(2 * np.pi * (x + y) / period + phase),  # diagonal stripes
        5: np.sign(np.sin(2 * np.pi * x / period + phase) * np.sin(2 * np.pi * y / period)),
    }[label % len(LABELS)]
    image = 128 + 90 * wave + rng.normal(0, 12, size)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_faces(per_class: int, seed: int = 0, size: tuple[int, int] = INPUT_SIZE
               ) -> tuple[np.ndarray, np.ndarray]:
    """(n, h, w) uint8 images and (n,) labels, classes interleaved."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(len(LABELS)), per_class)
    faces = np.stack([pattern(int(c), rng, size) for c in labels])
    return faces, labels


def write_set(root: Path, per_class: int, subjects: int, rng: np.random.Generator,
              size: tuple[int, int] = (48, 48)) -> Path:
    """A crops tree `<class>/S###_<label>_<n>.png` of patterns, `subjects` subjects (S010, S011, ...)
    spread over every class, so that fer-train's subject split has something to split."""
    for label, name in enumerate(FOLDER_NAMES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            ok, data = cv2.imencode(".png", pattern(label, rng, size))
            assert ok
            atomic_write(folder / f"S{10 + i % subjects:03d}_{label + 1:03d}_{i + 1:08d}.png", data.tobytes())
    return root


def quick_try_set(root: Path) -> Path:
    """The `--data synthetic` set (40 faces a class, 10 subjects, seeded), written once under `root`."""
    folder = root / SET_VERSION
    done = folder / ".complete"
    if not done.is_file():
        write_set(folder, per_class=40, subjects=10, rng=np.random.default_rng(0))
        done.write_text("written by ferlite.train.synthetic.quick_try_set\n")
    log.info("synthetic set (patterns, not faces): %s", folder)
    return folder
