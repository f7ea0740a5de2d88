"""The pipeline on a still photo (temporal=False): one entry per face."""

from __future__ import annotations

import numpy as np


def test_still_photo_box_inside_a_face_is_not_a_face():
    from ferlite.edge.algorithm.detector import HaarDetector
    from ferlite.edge.algorithm.pipeline import Pipeline, PipelineConfig

    class Detector(HaarDetector):  # a whole Detector (name, cost, ...) whose detect() answers these boxes
        def detect(self, gray, min_size=None, max_size=None, min_neighbors=None):
            return [(140, 150, 40, 40), (100, 100, 180, 180), (400, 100, 100, 100)]

    class Uniform:
        def classify(self, faces):
            return np.full((len(faces), 6), 1 / 6, np.float32)

    pipeline = Pipeline(Detector(), Uniform(), PipelineConfig(temporal=False))  # type: ignore[arg-type]
    result = pipeline.process(np.zeros((480, 640), np.uint8))
    assert sorted(f.box for f in result.faces) == [(100, 100, 180, 180), (400, 100, 100, 100)]
