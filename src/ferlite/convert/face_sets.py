"""Calibration and verification faces from a folder: a class tree (labels) or flat images."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferlite.train.data import DataError, is_image, read_folder
from ferlite.train.faces import FaceDecoder, load_faces
from ferlite.train.labels import LabelMapper

log = logging.getLogger(__name__)


@dataclass
class FaceSet:
    faces: np.ndarray  # (n, h, w) uint8
    labels: np.ndarray | None  # (n,) label indices, None for a flat folder
    source: Path
    skipped: int = 0


def _list(folder: Path, mapper: LabelMapper) -> tuple[list[Path], list[int] | None]:
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    flat = sorted(p for p in folder.iterdir() if is_image(p))
    if flat:
        return flat, None
    samples = read_folder(folder, folder.name, mapper).samples
    return [s.path for s in samples], [s.label for s in samples]


def load_face_set(
    folder: Path, cropped: bool, limit: int | None, seed: int, mapper: LabelMapper | None = None,
) -> FaceSet:
    """Up to `limit` faces (a seeded random subset; None or 0 = all), in a stable order.

    cropped: every image is a face crop (only resized); otherwise the largest Haar face is
    cropped and images without a face are skipped.
    """
    paths, labels = _list(folder, mapper or LabelMapper())
    order = list(range(len(paths)))
    if limit and limit < len(order):
        order = sorted(random.Random(seed).sample(order, limit))
    decoded = load_faces([paths[i] for i in order], folder, FaceDecoder(whole=cropped), None)
    used = decoded.rows >= 0
    if not used.any():
        hint = "" if cropped else " (if the images are face crops, pass --cropped)"
        raise DataError(f"{folder}: no usable faces in {len(order)} images{hint}")
    faces = decoded.faces
    kept = np.array(order)[used]
    out_labels = np.array(labels, dtype=np.int64)[kept] if labels is not None else None
    log.info("%s: %d faces (%d skipped)", folder, len(faces), int((~used).sum()))
    return FaceSet(faces, out_labels, folder, int((~used).sum()))
