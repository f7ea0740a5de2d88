"""Framing: measured from training crops, carried by the spec, applied by the edge."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferlite.edge.algorithm.detector import HaarDetector
from ferlite.edge.contract import INPUT_SIZE
from ferlite.edge.contract.preprocess import expand_box, to_gray
from ferlite.edge.contract.spec import ModelSpec
from ferlite.edge.runtime.config import EdgeConfig

ASTRONAUT_FACE = (177, 66, 95, 95)  # a Haar box on the astronaut photo (checked below)


def _crop_like_a_data_set(image: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray:
    x, y, w, h = expand_box(box, margin, image.shape)
    return cv2.resize(to_gray(image[y : y + h, x : x + w]), (48, 48), interpolation=cv2.INTER_AREA)


# Haar on a crop as tight as its own box still reports a box ~82% of the crop (it needs some context
# around a face), so margins below ~0.1 all read as ~0.11: the measurement has a floor there.
@pytest.mark.parametrize("margin", [0.1, 0.2, 0.3])
def test_measured_margin_recovers_how_crops_were_framed(astronaut, margin):
    from ferlite.train.framing import measure_framing

    detector = HaarDetector()
    found = max(detector.detect(astronaut), key=lambda b: b[2] * b[3])
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(30):  # jitter the box a little, as a data set's aligner would
        dx, dy = rng.integers(-3, 4, 2)
        box = (found[0] + int(dx), found[1] + int(dy), found[2], found[3])
        crops.append(_crop_like_a_data_set(astronaut, box, margin))
    framing = measure_framing(np.stack(crops), detector)
    assert framing.found >= 20
    assert framing.margin == pytest.approx(margin, abs=0.04)


class _WidthByBrightness(HaarDetector):
    """A box of 50% of the image for dark crops, 75% for bright ones; counts the crops it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def detect(self, image, min_size=None, max_size=None, min_neighbors=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        side = image.shape[1]
        width = side // 2 if image[0, 0] < 128 else side * 3 // 4
        return [((side - width) // 2, (side - width) // 2, width, width)]


def test_framing_per_set_runs_haar_once_per_face_and_weighs_sets_by_size():
    from ferlite.train.framing import measure_framing, measure_framing_per_set

    faces = np.concatenate([np.full((900, 48, 48), 20, np.uint8), np.full((100, 48, 48), 230, np.uint8)])
    names = ["big"] * 900 + ["small"] * 100
    detector = _WidthByBrightness()
    overall, per_set = measure_framing_per_set(faces, names, detector, limit=60, seed=1)
    assert detector.calls == 120  # each set's 60 faces once; the overall sample is a part of them
    assert (per_set["big"].box_width, per_set["small"].box_width) == (0.5, 0.75)
    assert (per_set["big"].faces, per_set["small"].faces, overall.faces) == (60, 60, 60)
    # Overall, a set counts by its size (9 of 10 faces are "big"), as in a sample of all the faces.
    assert overall.box_width == 0.5 == measure_framing(faces, _WidthByBrightness(), limit=60, seed=1).box_width
    small = faces[850:950]  # everything fits in the limit: the figures are those of every face
    overall, per_set = measure_framing_per_set(small, names[850:950], detector, limit=600)
    assert overall == measure_framing(small, detector, limit=600)
    assert per_set["small"] == measure_framing(small[50:], detector, limit=600)


class _Capture:
    """A classifier that keeps the faces it was given."""

    def __init__(self) -> None:
        self.faces: list[np.ndarray] = []

    def classify(self, faces: np.ndarray) -> np.ndarray:
        self.faces.append(faces.copy())
        return np.tile(np.linspace(0.1, 0.2, 6, dtype=np.float32), (len(faces), 1))


class _FixedDetector(HaarDetector):
    def detect(self, image, min_size=None, max_size=None, min_neighbors=None):  # type: ignore[no-untyped-def]
        return [ASTRONAUT_FACE]


@pytest.mark.parametrize(("margin", "face_size"), [(0.1, 48), (0.25, 48), (0.0, 0)])
def test_edge_crops_the_face_the_way_the_spec_says(astronaut, margin, face_size):
    from ferlite.edge.algorithm.pipeline import Pipeline
    from ferlite.edge.runtime.api import pipeline_settings

    spec = ModelSpec(margin=margin, face_size=face_size)
    capture = _Capture()
    settings = pipeline_settings(EdgeConfig(), temporal=False, spec=spec)
    Pipeline(_FixedDetector(), capture, settings).process(astronaut)
    x, y, w, h = ASTRONAUT_FACE
    dx, dy = round(w * margin), round(h * margin)
    crop = cv2.cvtColor(astronaut[y - dy : y + h + dy, x - dx : x + w + dx], cv2.COLOR_BGR2GRAY)
    if face_size:
        crop = cv2.resize(crop, (face_size, face_size), interpolation=cv2.INTER_AREA)
        expected = cv2.resize(crop, INPUT_SIZE[::-1], interpolation=cv2.INTER_LINEAR)
    else:
        expected = cv2.resize(crop, INPUT_SIZE[::-1], interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(capture.faces[0][0], expected)


def test_config_margin_overrides_the_spec_and_says_so(caplog):
    from ferlite.edge.runtime.api import pipeline_settings

    spec = ModelSpec(margin=0.1)
    assert pipeline_settings(EdgeConfig(), temporal=True, spec=spec).margin == 0.1
    with caplog.at_level("INFO"):
        assert pipeline_settings(EdgeConfig(margin=0.3), temporal=True, spec=spec).margin == 0.3
    assert "overrides the model's" in caplog.text


def test_flip_averages_a_face_and_its_mirror():
    from ferlite.edge.algorithm.pipeline import classify

    class Asymmetric:
        def classify(self, faces: np.ndarray) -> np.ndarray:
            left = faces[:, :, :42].mean(axis=(1, 2)) / 255
            out = np.zeros((len(faces), 6), np.float32)
            out[:, 0], out[:, 1] = left, 1 - left
            return out

    faces = np.zeros((2, 84, 84), np.uint8)
    faces[:, :, :42] = 255  # bright left half: class 0 wins unflipped
    assert classify(Asymmetric(), faces, flip=False)[0, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(classify(Asymmetric(), faces, flip=True)[:, :2], 0.5)
