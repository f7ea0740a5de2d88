"""The detector seam: the registry, selection by config, a second detector, the spec's framing name."""

from __future__ import annotations

import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import place_face

from ferlite.edge.algorithm.detector import DETECTORS, NEAR_NEIGHBORS, DetectSettings, HaarDetector, make_detector
from ferlite.edge.algorithm.detector_alt2 import HaarAlt2Detector
from ferlite.edge.algorithm.pipeline import Pipeline, PipelineConfig
from ferlite.edge.algorithm.sweep import PyramidCost
from ferlite.edge.contract.errors import ModelSpecError
from ferlite.edge.contract.spec import ModelSpec, read_spec, write_spec
from ferlite.edge.runtime.api import load_parts, warn_framing
from ferlite.edge.runtime.config import ConfigError, EdgeConfig, make_config


class _Uniform:
    def classify(self, faces):
        return np.full((len(faces), 6), 1 / 6, dtype=np.float32)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_registered_detector_is_built_by_its_name_and_finds_a_real_face(name, astronaut):
    detector = make_detector(DetectSettings(detector=name))
    assert detector.name == name  # the name a spec's framing carries is the one config selects
    assert detector.smallest_face == detector.cost.smallest
    assert detector.cost.levels(detector.smallest_face, 200)[0] == detector.smallest_face
    faces = detector.detect(astronaut)
    assert any(abs(x - 177) < 25 and abs(y - 66) < 25 and 70 < w < 130 for x, y, w, _ in faces), faces


def test_alt2_is_its_own_cascade_with_its_own_window_and_cost():
    alt2, haar = make_detector(DetectSettings(detector="haar-alt2")), make_detector(DetectSettings())
    assert type(alt2) is HaarAlt2Detector and type(haar) is HaarDetector
    assert alt2.path.name == "haarcascade_frontalface_alt2.xml"
    assert (alt2.smallest_face, haar.smallest_face) == (20, 24)  # read from the cascade files
    assert alt2.cost == PyramidCost(20, 1.1) and haar.cost == PyramidCost(24, 1.1)


@pytest.mark.parametrize(("name", "smallest"), [("haar", 24), ("haar-alt2", 20)])
def test_pipeline_searches_down_to_the_detectors_smallest_face_with_its_cost_model(name, smallest):
    detector = make_detector(DetectSettings(detector=name))
    pipeline = Pipeline(detector, _Uniform(), PipelineConfig(detect=DetectSettings(min_size=1, detector=name)))
    pipeline.process(np.full((240, 320, 3), 100, np.uint8))
    assert pipeline.tracker.min_size == smallest
    assert pipeline.tracker.new_faces.cost is detector.cost  # the budget rests on this detector's levels
    assert pipeline.tracker.new_faces._slices[0].windows[0] == smallest


class _ScriptedFaces:
    """A detector that is no cascade at all: one face where it was put, any cost model."""

    name = "scripted"
    smallest_face = 16
    cost = PyramidCost(16, 1.3)

    def __init__(self, box):
        self.box = box
        self.near_calls = 0

    def _find(self, image, offset, min_size, max_size):
        x, y, w, h = self.box
        ox, oy = offset
        inside = ox <= x and oy <= y and x + w <= ox + image.shape[1] and y + h <= oy + image.shape[0]
        fits = w >= (min_size or 0) and (max_size is None or w <= max_size)
        return [(x - ox, y - oy, w, h)] if inside and fits else []

    def detect(self, image, min_size=None, max_size=None):
        return self._find(image, self._offset(image), min_size, max_size)

    def detect_near(self, gray, min_size, max_size):
        self.near_calls += 1
        return self._find(gray, self._offset(gray), min_size, max_size)

    def _offset(self, view):
        base = view.__array_interface__["data"][0] - self.frame.__array_interface__["data"][0]
        oy, ox = divmod(base, self.frame.strides[0])
        return ox, oy


def test_any_detector_with_the_protocol_runs_the_pipeline_and_follows_faces_through_detect_near():
    detector = _ScriptedFaces((100, 60, 80, 80))
    frame = np.full((240, 320, 3), 90, np.uint8)
    pipeline = Pipeline(detector, _Uniform(), PipelineConfig(detect=DetectSettings(min_size=16)))
    original = pipeline._small_gray

    def keep(gray):
        small = original(gray)
        detector.frame = small  # regions searched are views of it: their offset places the face
        return small

    pipeline._small_gray = keep
    tracks = {pipeline.process(frame).faces[0].track for _ in range(4)}
    assert tracks == {1}
    assert detector.near_calls == 3  # every frame after the first follows the face its own way
    assert pipeline.tracker.new_faces._slices[0].windows[0] == 16


def test_haar_follows_a_face_with_fewer_neighbours_in_a_shrunk_region(astronaut):
    detector = HaarDetector(1.1, 5, 48)
    calls = []
    detect = detector.detect

    def spy(gray, min_size=None, max_size=None, min_neighbors=None):
        calls.append((gray.shape[1], min_neighbors))
        return detect(gray, min_size, max_size, min_neighbors)

    detector.detect = spy  # type: ignore[method-assign]
    frame = place_face(astronaut[0:260, 100:360], 20, 10, scale=1.4)
    x, y, w, h = max(detect(frame, 48), key=lambda b: b[2])
    grown = frame[max(0, y - w // 2) : y + h + w // 2, max(0, x - w // 2) : x + w + w // 2]
    found = detector.detect_near(grown, round(w * 0.8), round(w * 1.25))
    assert len(found) == 1 and abs(found[0][2] - w) < w * 0.25
    assert calls and all(n == NEAR_NEIGHBORS and width < grown.shape[1] for width, n in calls)  # shrunk
    calls.clear()
    small = cv2.resize(grown, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)  # a ~40 px face: as it is
    found = detector.detect_near(small, round(w * 0.24), round(w * 0.375))
    assert len(found) == 1 and calls == [(small.shape[1], NEAR_NEIGHBORS)]


def test_an_unknown_detector_is_refused_naming_the_setting():
    with pytest.raises(ConfigError, match=r"^config: detector must be haar or haar-alt2, got 'lbp'$"):
        make_config({"detector": "lbp"})
    out = subprocess.run([sys.executable, "-m", "ferlite.edge.apps.cli", "--detector", "lbp", "--check-config"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == ["fer-edge: command line: detector must be haar or haar-alt2, got 'lbp'"]


def test_the_detector_is_selected_by_the_toml_config(tmp_path):
    from ferlite.edge.runtime.config import load_config

    path = tmp_path / "edge.toml"
    path.write_text('detector = "haar-alt2"\n')
    config = load_config(path, {})
    assert config.detector == "haar-alt2"
    assert isinstance(make_detector(config), HaarAlt2Detector)
    assert load_config(path, {"detector": "haar"}).detector == "haar"  # a flag overrides the file


def test_a_model_framed_with_another_detector_is_warned_about_not_refused(caplog):
    caplog.set_level(logging.WARNING, "ferlite.edge")
    runner, detector = load_parts(EdgeConfig(detector="haar-alt2"))  # the shipped model: framed with haar
    assert isinstance(detector, HaarAlt2Detector) and runner.spec.framing_detector == "haar"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "measured with detector haar" in warnings[0] and "haar-alt2" in warnings[0]
    spec = ModelSpec(framing_detector="haar")
    assert not warn_framing(EdgeConfig(), spec)  # the default detector: as measured
    assert not warn_framing(EdgeConfig(detector="haar-alt2", margin=0.1), spec)  # the user chose the framing
    assert warn_framing(EdgeConfig(), ModelSpec(framing_detector="yunet"))  # one this ferlite lacks: still runs


def test_the_spec_names_the_detector_its_framing_was_measured_with(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"model bytes")
    write_spec(model, ModelSpec(margin=0.12, framing_detector="haar-alt2"))
    assert read_spec(model).framing_detector == "haar-alt2"
    spec_file = tmp_path / "m.spec.json"
    text = spec_file.read_text()
    spec_file.write_text(text.replace('"framing_detector": "haar-alt2",', ""))  # a spec written before the field
    assert read_spec(model).framing_detector == "haar"
    for bad in ('5', '""', '"Haar Cascade"', '"' + "x" * 41 + '"'):
        spec_file.write_text(text.replace('"haar-alt2"', bad))
        with pytest.raises(ModelSpecError, match="framing_detector must be a detector's name"):
            read_spec(model)


def test_training_measures_framing_with_the_detector_given_and_names_it(astronaut):
    from ferlite.train.framing import measure_framing

    found = max(HaarDetector().detect(astronaut), key=lambda b: b[2] * b[3])
    x, y, w, h = found
    crop = cv2.resize(cv2.cvtColor(astronaut[y - 10 : y + h + 10, x - 10 : x + w + 10], cv2.COLOR_BGR2GRAY), (48, 48))
    crops = np.stack([crop] * 25)
    assert measure_framing(crops).detector == "haar"
    alt2 = measure_framing(crops, make_detector(EdgeConfig(detector="haar-alt2")))
    assert alt2.detector == "haar-alt2" and alt2.found >= 20
    assert alt2.to_dict()["detector"] == "haar-alt2"  # what run.json records and fer-convert puts in the spec
