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

from .config import DEFAULTS
from .data import DataSource, Sample, read_source
from .faces import NO_FACE, FaceDecoder, load_faces
from .labels import LabelMapper
from .splits import SIDES, assign_sides, drop_cross_duplicates, subject_leaks

log = logging.getLogger(__name__)

DUPLICATE = "duplicate"


@dataclass(frozen=True)
class SplitConfig:
    """How fer-train splits the faces (its --split, --val-fraction, --test-fraction, --test-subjects, --seed)."""

    mode: str = DEFAULTS["split"]
    val_fraction: float = DEFAULTS["val_fraction"]
    test_fraction: float = DEFAULTS["test_fraction"]
    test_subjects: set[str] | None = None
    seed: int = DEFAULTS["seed"]


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

    def targets(self, side: str, votes: bool) -> np.ndarray:
        """(n, len(LABELS)) float32 training targets of `side`, in the order of `side()`: the vote
        distribution where a sample has one and `votes` is set, else the one-hot label."""
        index = [i for i, s in enumerate(self.sides) if s == side and self.rows[i] >= 0]
        out = np.zeros((len(index), len(LABELS)), np.float32)
        for row, i in enumerate(index):
            sample = self.samples[i]
            if votes and sample.votes is not None:
                out[row] = sample.votes
            else:
                out[row, sample.label] = 1.0
        return out

    def counts(self) -> dict[str, Any]:
        used: dict[str, dict[str, dict[str, int]]] = {}
        for i, sample in enumerate(self.samples):
            if self.rows[i] >= 0:
                per_set = used.setdefault(self.sides[i], {}).setdefault(sample.dataset, {})
                label = LABELS[sample.label]
                per_set[label] = per_set.get(label, 0) + 1
        skipped = Counter(s for s in self.statuses if s != "ok")
        return {"used": used, "dropped_classes": dict(self.dropped), "skipped": dict(skipped)}


def cap_per_class(samples: list[Sample], limit: int | None, seed: int = 0) -> list[Sample]:
    """At most `limit` samples per (label, split) of one data set, a seeded pick in listing order."""
    if not limit:
        return samples
    groups: dict[tuple[int, str | None], list[int]] = {}
    for i, sample in enumerate(samples):
        groups.setdefault((sample.label, sample.split), []).append(i)
    rng = np.random.default_rng(seed)
    keep = sorted(i for members in groups.values()
                  for i in (members if len(members) <= limit else rng.choice(members, limit, replace=False)))
    return [samples[i] for i in keep]


def prepare(
    sources: Sequence[DataSource], mapper: LabelMapper, split: SplitConfig,
    cache_dir: Path | None, workers: int | None = None, limit: int | None = None, seed: int = 0,
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
        total = len(read.samples) + sum(read.dropped.values())
        read.samples = cap_per_class(read.samples, limit, seed)
        decoded = load_faces([s.path for s in read.samples], source.path,
                             FaceDecoder(source.whole), cache_dir, workers)
        used = int((decoded.rows >= 0).sum())
        log.info("%s: %d images, %d used%s; dropped %s; skipped %s", source.name, total, used,
                 f" (--limit {limit} per class)" if limit else "", dict(read.dropped) or "none",
                 dict(decoded.skipped) or "none")
        _warn_if_faces_missing(source, decoded.skipped.get(NO_FACE, 0), len(read.samples))
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


def _warn_if_faces_missing(source: DataSource, no_face: int, images: int) -> None:
    """Haar finds no face in small crops (below min_size): say so, and what to use instead."""
    if images and no_face > images / 2:
        hint = (f"; if these images are already face crops, use --data crops:{source.name}=..."
                if not source.whole else "")
        log.warning("%s: no face found in %d of %d images%s", source.name, no_face, images, hint)


def side_sizes(prepared: Prepared) -> dict[str, int]:
    return {side: len(prepared.side(side)[1]) for side in SIDES}
