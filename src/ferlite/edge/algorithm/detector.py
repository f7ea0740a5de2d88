"""The detector seam: what the pipeline asks of a face detector, the registry of detectors, and the
default one, OpenCV's Haar frontal-face cascade (found wherever the installed OpenCV keeps it).

A detector is one module: a class with what `Detector` lists and a `from_config(settings)` that builds
it from the DetectSettings below, registered in DETECTORS under the name `detector = "..."` selects. Its
own settings, if it has any, are DetectSettings fields. Nothing else names a detector: the pipeline, the
new-face search (sweep.py, through the detector's `cost`) and training's framing use this protocol.

DetectSettings (the [detect] table of fer-edge's config) are the detection settings, beside the code that
reads them; EdgeConfig derives from them, and the pipeline is handed `DetectSettings.of(config)`.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..contract import settings
from ..contract.errors import ConfigError, DetectorError
from ..contract.files import opencv_path
from ..contract.preprocess import Box, to_gray
from ..contract.settings import setting
from .sweep import (
    DEFAULT_BUDGET,
    DEFAULT_COOLDOWN,
    DEFAULT_REFRESH_EVERY,
    DEFAULT_SCALE_FACTOR,
    PyramidCost,
    SearchCost,
)

log = logging.getLogger(__name__)

# name -> "module:class", imported only when selected. The name is also what a model spec's
# `framing_detector` says its margin was measured with.
DETECTORS: dict[str, str] = {
    "haar": "ferlite.edge.algorithm.detector:HaarDetector",
    "haar-alt2": "ferlite.edge.algorithm.detector_alt2:HaarAlt2Detector",
}
DEFAULT_DETECTOR = "haar"

CASCADE_NAME = "haarcascade_frontalface_default.xml"
# The detector's defaults, written once: DetectSettings and training's face decoder take them from here.
DEFAULT_MIN_NEIGHBORS = 5
DEFAULT_MIN_SIZE = 48  # px of the frame given; smaller faces are too few pixels for the 48 px model input
# Debian's python3-opencv has no cv2.data; its cascades live here.
_SYSTEM_CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")

# A followed face's region is shrunk until its smallest candidate face is this many px (then, if
# nothing is found, this many): the cascade scans a few small images. It is searched with fewer
# neighbours than a new face: it is known to be there, and its region holds only the few scales
# near its size, so fewer windows can agree on it.
ROI_TARGETS = (32, 48)
NEAR_NEIGHBORS = 3


# Ranges are inclusive. Past them a setting is a typo or a hostile value that would crash or stall the
# daemon later (OpenCV takes C ints).
@dataclass(frozen=True)
class DetectSettings(settings.Settings):
    """How faces are found: which detector, its settings, and how the search for new faces in video is
    spread over frames (sweep.py)."""

    whole_frame: bool = setting(False, "no detection: the whole frame is one face", group="detect")
    detector: str = setting(DEFAULT_DETECTOR, "face detector (a model's spec names the one its framing was measured "
                            "with)", choices=tuple(DETECTORS), group="detect")
    scale_factor: float = setting(DEFAULT_SCALE_FACTOR, "Haar pyramid step (a factor of 1.0 never leaves the "
                                  "first scale)", low=1.0, above=True, high=3.0, group="detect")
    min_neighbors: int = setting(DEFAULT_MIN_NEIGHBORS, "Haar hits needed to call a face", low=1, high=100,
                                 group="detect")
    # Pixels of the frame the user gave (Haar sees 24 px at best on the detect frame).
    min_size: int = setting(DEFAULT_MIN_SIZE, "smallest face looked for, in pixels", low=1, high=16384,
                            group="detect")
    # Shrinking pays only when min_size >= ~96: below twice the cascade's 24 px window OpenCV steps 2 px at a
    # time, and small faces are lost.
    detect_width: int = setting(0, "detect on the frame scaled to this width (0: as given)", low=0, high=16384,
                                group="detect")
    # Known faces are followed every frame. The name is kept from when it spaced whole-frame searches.
    full_detect_every: int = setting(DEFAULT_COOLDOWN, "video: a region that keeps changing is searched for new "
                                     "faces at most every N frames", low=1, high=10_000, group="detect")
    search_budget: float = setting(DEFAULT_BUDGET, "at most this share of a whole-frame search per frame for new "
                                   "faces", low=0.005, high=1.0,  # 0: a frame could never search anything
                                   group="detect")
    refresh_every: int = setting(DEFAULT_REFRESH_EVERY, "video: every N frames all of the picture is searched "
                                 "again", low=1, high=1_000_000, group="detect")


class Detector(Protocol):
    """What the pipeline, the new-face search and training's framing need of a face detector.
    Boxes are (x, y, w, h) in the pixels of the image given."""

    @property
    def name(self) -> str:
        """Its DETECTORS name: the framing name a model spec carries."""
        ...

    @property
    def smallest_face(self) -> int:
        """px: no smaller face is ever found (the pipeline never asks for less)."""
        ...

    @property
    def cost(self) -> SearchCost:
        """Its levels and what each costs: the new-face search's budget is a share of its own
        whole-frame search."""
        ...

    def detect(self, image: np.ndarray, min_size: int | None = None, max_size: int | None = None) -> list[Box]:
        """Faces from min_size (default: the detector's) to max_size px (None: no limit) in the image
        (gray or BGR; a whole frame or a region of one)."""
        ...

    def detect_near(self, gray: np.ndarray, min_size: int, max_size: int) -> list[Box]:
        """A region around a face known to be there, at sizes near its own: a detector may search it
        more cheaply or less strictly than `detect`."""
        ...


def make_detector(detect: DetectSettings) -> Detector:
    """The detector `detect.detector` names, built from the detection settings.

    Raises:
        DetectorError: it cannot be loaded (a missing cascade).
        ConfigError: not a registered name (DetectSettings refuses it first).
    """
    target = DETECTORS.get(detect.detector)
    if target is None:
        raise ConfigError(f"detector must be one of {', '.join(DETECTORS)}, got {detect.detector!r}")
    module, _, attr = target.partition(":")
    detector: Detector = getattr(importlib.import_module(module), attr).from_config(detect)
    return detector


def scale_box(box: Box, factor: float) -> Box:
    return round(box[0] * factor), round(box[1] * factor), round(box[2] * factor), round(box[3] * factor)


def cascade_path(name: str = CASCADE_NAME) -> Path:
    candidates = []
    data = getattr(cv2, "data", None)
    if data is not None and getattr(data, "haarcascades", None):
        candidates.append(Path(data.haarcascades) / name)
    candidates += [Path(d) / name for d in _SYSTEM_CASCADE_DIRS]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DetectorError(f"{name} not found (looked in {', '.join(str(c.parent) for c in candidates)})")


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (a subclass names another cascade file in CASCADE)."""

    name = "haar"
    CASCADE = CASCADE_NAME

    def __init__(
        self,
        scale_factor: float = DEFAULT_SCALE_FACTOR,
        min_neighbors: int = DEFAULT_MIN_NEIGHBORS,
        min_size: int = DEFAULT_MIN_SIZE,
        path: str | Path | None = None,
    ) -> None:
        self.path = Path(path) if path else cascade_path(self.CASCADE)
        self._cascade = cv2.CascadeClassifier(opencv_path(self.path, DetectorError, "Haar cascade"))
        if self._cascade.empty():
            raise DetectorError(f"{self.path}: not a loadable Haar cascade")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.window = int(min(self._cascade.getOriginalWindowSize()))  # 24 px for the default cascade
        self._cost = PyramidCost(self.window, scale_factor)

    @classmethod
    def from_config(cls, detect: DetectSettings) -> HaarDetector:
        return cls(detect.scale_factor, detect.min_neighbors, detect.min_size)

    @property
    def smallest_face(self) -> int:
        return self.window

    @property
    def cost(self) -> SearchCost:
        return self._cost

    def detect(
        self,
        image: np.ndarray,
        min_size: int | None = None,
        max_size: int | None = None,
        min_neighbors: int | None = None,
    ) -> list[Box]:
        """Faces in an image, as (x, y, w, h) boxes in its pixels.

        Args:
            image: gray or BGR.
            min_size, max_size: face sizes searched (px); default the detector's min_size, no maximum.
            min_neighbors: default the detector's own; fewer finds a face known to be there at
                fewer scales (the search around a followed face).
        """
        gray = to_gray(image)
        side = self.min_size if min_size is None else min_size
        found = self._cascade.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors if min_neighbors is None else min_neighbors,
            minSize=(side, side),
            maxSize=(max_size, max_size) if max_size else (0, 0),
        )
        return [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]

    def detect_near(self, gray: np.ndarray, min_size: int, max_size: int) -> list[Box]:
        """A region around a followed face, shrunk first so that the smallest face searched is
        ROI_TARGETS[0] px: the cascade then scans a few small images. If that finds nothing, the
        region is searched again with more detail (the tracker's fallback costs far more)."""
        found: list[Box] = []
        for target in ROI_TARGETS:
            shrink = min_size / target
            if shrink <= 1.25:
                return self.detect(gray, min_size=min_size, max_size=max_size, min_neighbors=NEAR_NEIGHBORS)
            found = self._detect_shrunk(gray, shrink, target, max_size)
            if found:
                break
        return found

    def _detect_shrunk(self, gray: np.ndarray, shrink: float, min_size: int, max_size: int) -> list[Box]:
        size = (max(1, round(gray.shape[1] / shrink)), max(1, round(gray.shape[0] / shrink)))
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        high = max(min_size + 1, round(max_size / shrink))
        found = self.detect(small, min_size=min_size, max_size=high, min_neighbors=NEAR_NEIGHBORS)
        return [scale_box(box, shrink) for box in found]
