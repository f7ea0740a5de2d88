"""Synthetic 'faces' with one learnable pattern per label, for tests, fixtures and smoke runs.

They are not faces: they only let a narrow network learn something in seconds, so that
training, conversion and verification can be checked end to end without real data.
"""

from __future__ import annotations

import numpy as np

from ferlite.edge.contract import INPUT_SIZE, LABELS


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
