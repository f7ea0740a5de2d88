"""How the training faces are framed, measured with the edge's own detector (Haar unless told another).

The edge crops a face around a Haar box; the data sets' crops were made by their own aligners
and hold more forehead and chin. Running the edge's Haar detector over training crops (enlarged,
so that the face is well above the cascade's window) shows where a Haar box sits inside a
training crop. The median box width as a fraction of the crop gives the margin the edge must add
on each side of its Haar box to crop faces the way the model saw them. fer-train records it in
run.json and fer-convert writes it into the model's spec, with the name of the detector it was
measured with (the spec's `framing_detector`: the edge warns when it runs another).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from ferlite.edge.algorithm.detector import Detector, HaarDetector
from ferlite.edge.contract import DEFAULT_MARGIN

log = logging.getLogger(__name__)

ENLARGE = 4  # 48 px crops -> ~190 px: the face is far above Haar's 24 px window
MIN_FOUND = 20  # fewer Haar hits than this: keep the default margin


@dataclass(frozen=True)
class Framing:
    """Median Haar box inside the training crops, as fractions of the crop."""

    margin: float  # grow a Haar box by this much of its size on each side to get a training crop
    box_width: float  # Haar box width / crop width
    center_x: float  # Haar box centre / crop size (0.5: centred)
    center_y: float
    faces: int  # crops searched
    found: int  # crops where Haar found a face
    detector: str = HaarDetector.name  # the detector measured with (edge.algorithm.detector.DETECTORS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def margin_for(box_width: float) -> float:
    """A box of relative width w, grown by m of its size on each side, spans w * (1 + 2m) = 1."""
    return round(max(0.0, (1.0 / box_width - 1.0) / 2.0), 3)


def measure_framing(faces: np.ndarray, detector: Detector | None = None, limit: int = 600,
                    seed: int = 0) -> Framing:
    """Framing of (n, h, w) uint8 face crops, from at most `limit` of them (a seeded sample).

    Returns the default margin (and says so in the log) when Haar finds too few faces.
    """
    picked = _sample(np.arange(len(faces)), limit, np.random.default_rng(seed))
    detector = detector or HaarDetector()
    return framing_of(haar_boxes(faces[picked], detector), detector.name)


def measure_framing_per_set(faces: np.ndarray, datasets: Sequence[str], detector: Detector | None = None,
                            limit: int = 600, seed: int = 0) -> tuple[Framing, dict[str, Framing]]:
    """(framing over all faces, framing of each data set), with Haar run once per face.

    The overall figure is what measure_framing gives: a sample of at most `limit` of all the faces, so a
    set counts by its size. Each set's sample holds that sample's faces of the set, topped up with
    others of the set to at most `limit`; the overall figure reuses those boxes.
    """
    rng = np.random.default_rng(seed)
    pooled = _sample(np.arange(len(faces)), limit, rng)
    names = np.asarray(datasets)
    per_set = {}
    for name in sorted(set(datasets)):
        members = np.flatnonzero(names == name)
        shared = np.intersect1d(members, pooled)
        rest = np.setdiff1d(members, shared)
        per_set[name] = np.concatenate([shared, _sample(rest, limit - len(shared), rng)])
    measured = np.unique(np.concatenate([pooled, *per_set.values()]))
    detector = detector or HaarDetector()
    boxes = haar_boxes(faces[measured], detector)
    row = {int(index): i for i, index in enumerate(measured)}

    def framing(indices: np.ndarray) -> Framing:
        return framing_of(boxes[[row[int(index)] for index in indices]], detector.name)

    return framing(pooled), {name: framing(indices) for name, indices in per_set.items()}


def _sample(indices: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most `limit` of `indices`, a seeded pick (all of them, in order, when they fit)."""
    return indices if len(indices) <= limit else rng.choice(indices, limit, replace=False)


def haar_boxes(faces: np.ndarray, detector: Detector | None = None) -> np.ndarray:
    """(n, 3): the largest Haar box in each crop (enlarged) as (width, centre x, centre y), fractions of
    the crop; NaN where Haar found no face."""
    detector = detector or HaarDetector()
    boxes = np.full((len(faces), 3), np.nan)
    for i, face in enumerate(faces):
        height, width = face.shape[:2]
        big = cv2.resize(face, (width * ENLARGE, height * ENLARGE), interpolation=cv2.INTER_CUBIC)
        found = detector.detect(big, min_size=min(height, width) * ENLARGE // 3)
        if found:
            x, y, w, h = max(found, key=lambda b: b[2] * b[3])
            boxes[i] = (w / big.shape[1], (x + w / 2) / big.shape[1], (y + h / 2) / big.shape[0])
    return boxes


def framing_of(boxes: np.ndarray, detector: str = HaarDetector.name) -> Framing:
    """The median of haar_boxes' rows where a face was found; the default margin (logged) when fewer
    than MIN_FOUND were."""
    found = boxes[~np.isnan(boxes[:, 0])]
    if len(found) < MIN_FOUND:
        log.warning("framing: Haar found faces in %d of %d crops; keeping the default margin %.2f",
                    len(found), len(boxes), DEFAULT_MARGIN)
        return Framing(DEFAULT_MARGIN, 0.0, 0.5, 0.5, len(boxes), len(found), detector)
    width, cx, cy = (float(v) for v in np.median(found, axis=0))
    return Framing(margin_for(width), round(width, 4), round(cx, 4), round(cy, 4), len(boxes), len(found), detector)
