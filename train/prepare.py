"""Read every data source, decode faces (cached), split into sides and drop cross-side duplicates."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ferlite.edge.contract import LABELS

from .data import DataSource, Sample, read_source
from .faces import FaceDecoder, load_faces
from .labels import LabelMapper
from .splits import SIDES, assign_sides, drop_cross_duplicates, subject_leaks

log = logging.getLogger(__name__)

DUPLICATE = "duplicate"


@dataclass
class SplitOptions:
    mode: str = "subject"
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    test_subjects: set[str] | None = None
    seed: int = 0


@dataclass
class Prepared:
    """All samples read; `rows[i]` is the row of sample i in `faces`, -1 if it is not used."""

    samples: list[Sample]
    faces: np.ndarray
    rows: np.ndarray
    sides: list[str]
    statuses: list[str]
    dropped: Counter[str] = field(default_factory=Counter)

    def side(self, side: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(faces, labels, data set names) of the used samples on one side, in sample order."""
        index = [i for i, s in enumerate(self.sides) if s == side and self.rows[i] >= 0]
        faces = self.faces[self.rows[index]] if index else self.faces[:0]
        labels = np.array([self.samples[i].label for i in index], dtype=np.int64)
        return faces, labels, [self.samples[i].dataset for i in index]

    def counts(self) -> dict[str, Any]:
        used: dict[str, dict[str, dict[str, int]]] = {}
        for i, sample in enumerate(self.samples):
            if self.rows[i] >= 0:
                per_set = used.setdefault(self.sides[i], {}).setdefault(sample.dataset, {})
                label = LABELS[sample.label]
                per_set[label] = per_set.get(label, 0) + 1
        skipped = Counter(s for s in self.statuses if s != "ok")
        return {"used": used, "dropped_classes": dict(self.dropped), "skipped": dict(skipped)}


def prepare(
    sources: Sequence[DataSource], mapper: LabelMapper, split: SplitOptions,
    cache_dir: Path | None, workers: int | None = None,
) -> Prepared:
    samples: list[Sample] = []
    face_blocks: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    hashes: list[str | None] = []
    statuses: list[str] = []
    dropped: Counter[str] = Counter()
    offset = 0
    for source in sources:
        read = read_source(source, mapper)
        decoded = load_faces([s.path for s in read.samples], source.path,
                             FaceDecoder(source.whole), cache_dir, workers)
        log.info("%s: %d images, %d used; dropped %s; skipped %s", source.name, len(read.samples),
                 int((decoded.rows >= 0).sum()), dict(read.dropped) or "none",
                 dict(decoded.skipped) or "none")
        samples += read.samples
        face_blocks.append(decoded.faces)
        rows.append(np.where(decoded.rows >= 0, decoded.rows + offset, -1))
        offset += len(decoded.faces)
        hashes += decoded.hashes
        statuses += decoded.statuses
        dropped.update({f"{source.name}: {k}": v for k, v in read.dropped.items()})
    sides = assign_sides(samples, mode=split.mode, val_fraction=split.val_fraction,
                         test_fraction=split.test_fraction, test_subjects=split.test_subjects,
                         seed=split.seed)
    all_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    keep, removed = drop_cross_duplicates(hashes, sides)
    for i, kept in enumerate(keep):
        if not kept:
            all_rows[i] = -1
            statuses[i] = DUPLICATE
    if removed:
        log.info("exact duplicates of images on a later side removed: %s", dict(removed))
    leaks = subject_leaks([s for i, s in enumerate(samples) if all_rows[i] >= 0],
                          [s for i, s in enumerate(sides) if all_rows[i] >= 0])
    if leaks and split.mode == "subject":
        log.warning("%d subjects on several sides (their files carry their own split): %s",
                    len(leaks), ", ".join(sorted(leaks)[:10]))
    faces = np.concatenate(face_blocks) if face_blocks else np.zeros((0, 1, 1), np.uint8)
    return Prepared(samples, faces, all_rows, sides, statuses, dropped)


def side_sizes(prepared: Prepared) -> dict[str, int]:
    return {side: len(prepared.side(side)[1]) for side in SIDES}
