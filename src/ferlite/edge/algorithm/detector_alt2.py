"""OpenCV's tree-based Haar cascade `haarcascade_frontalface_alt2.xml` (Lienhart): a 20 px window,
so faces down to 20 px, and another trade of recall against false faces than the default cascade
(see tests/bench/bench_pipeline.json). Ships with every OpenCV: no new weights.

Selected with `detector = "haar-alt2"` (or --detector haar-alt2); registered in detector.DETECTORS.
Shares the default cascade's settings (DetectSettings' scale_factor, min_neighbors, min_size) and its search
around a followed face; its window and cost model come from the cascade file.
"""

from __future__ import annotations

from .detector import HaarDetector


class HaarAlt2Detector(HaarDetector):
    name = "haar-alt2"
    CASCADE = "haarcascade_frontalface_alt2.xml"
