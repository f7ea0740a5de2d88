"""OpenCV's Haar frontal-face detector, found wherever the installed OpenCV keeps it."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from .errors import DetectorError
from .preprocess import Box, to_gray
from .sources import opencv_path

log = logging.getLogger(__name__)

CASCADE_NAME = "haarcascade_frontalface_default.xml"
# The detector's defaults, written once: EdgeConfig and training's face decoder take them from here.
DEFAULT_SCALE_FACTOR = 1.1
DEFAULT_MIN_NEIGHBORS = 5
DEFAULT_MIN_SIZE = 48  # px of the frame given; smaller faces are too few pixels for the 48 px model input
# Debian's python3-opencv has no cv2.data; its cascades live here.
_SYSTEM_CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")


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
    """Detects frontal faces; boxes are (x, y, w, h) in the pixels of the image given."""

    def __init__(
        self,
        scale_factor: float = DEFAULT_SCALE_FACTOR,
        min_neighbors: int = DEFAULT_MIN_NEIGHBORS,
        min_size: int = DEFAULT_MIN_SIZE,
        path: str | Path | None = None,
    ) -> None:
        self.path = Path(path) if path else cascade_path()
        self._cascade = cv2.CascadeClassifier(opencv_path(self.path, DetectorError, "Haar cascade"))
        if self._cascade.empty():
            raise DetectorError(f"{self.path}: not a loadable Haar cascade")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size

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
