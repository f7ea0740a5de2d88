from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ferlite.edge.algorithm.runner import ModelLoadError, ModelRunner, dequantize, quantize
from ferlite.edge.contract import LABELS
from ferlite.edge.contract.spec import ModelSpec, ModelSpecError, read_spec, spec_path_for, write_spec


def _edit_spec(model: Path, **changes) -> None:
    path = spec_path_for(model)
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_quantize_rounds_then_clips():
    values = np.array([-1000.0, -0.6, -0.4, 0.4, 0.6, 126.5, 1000.0], dtype=np.float32)
    q = quantize(values, scale=1.0, zero_point=0, dtype=np.int8)
    assert q.tolist() == [-128, -1, 0, 0, 1, 126, 127]  # numpy rounds half to even
    pixels = np.array([0, 255], dtype=np.float32)
    # A typical input: pixels 0..255 with scale 1 and zero point -128.
    assert quantize(pixels, 1.0, -128, np.int8).tolist() == [-128, 127]
    assert quantize(pixels, 2.0, 0, np.uint8).tolist() == [0, 128]
    np.testing.assert_allclose(dequantize(np.array([-128, 127], np.int8), 1 / 256, -128), [0.0, 255 / 256])


def test_runner_gives_probabilities(tiny_model):
    runner = ModelRunner(tiny_model, threads=1)
    assert runner.input_dtype == np.int8
    faces = np.random.default_rng(1).integers(0, 256, (3, 84, 84), dtype=np.uint8)
    probs = runner.classify(faces)
    assert probs.shape == (3, len(LABELS))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.03)
    # One at a time gives the same answers as the batch.
    singles = np.concatenate([runner.classify(faces[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(probs, singles, atol=1e-6)
    assert runner.classify(faces[:0]).shape == (0, len(LABELS))


def test_runner_uses_the_interpreters_own_quantisation(tiny_model, monkeypatch):
    runner = ModelRunner(tiny_model, threads=1)
    scale, zero_point = runner._input["quantization"]
    seen = {}
    import ferlite.edge.algorithm.runner as runner_module

    real = runner_module.quantize

    def spy(values, s, z, dtype):
        seen["args"] = (s, z)
        return real(values, s, z, dtype)

    monkeypatch.setattr(runner_module, "quantize", spy)
    runner.classify(np.zeros((1, 84, 84), np.uint8))
    assert seen["args"] == (scale, zero_point)


def test_missing_spec_refused(model_copy):
    spec_path_for(model_copy).unlink()
    with pytest.raises(ModelSpecError, match="spec .* is missing"):
        ModelRunner(model_copy)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": ["Happy", "Sad"]}, "labels"),
        ({"preprocess_version": 999}, "preprocessing version"),
        ({"surprise_key": 1}, "unknown keys"),
        ({"sha256": "0" * 64}, "other model bytes"),
        ({"format": 99}, "spec format"),
    ],
)
def test_mismatched_spec_refused(model_copy, changes, message):
    _edit_spec(model_copy, **changes)
    with pytest.raises(ModelSpecError, match=message):
        read_spec(model_copy)


def test_unreadable_spec_refused(model_copy):
    spec_path_for(model_copy).write_text("{not json")
    with pytest.raises(ModelSpecError, match="unreadable"):
        ModelRunner(model_copy)


def test_broken_model_refused(model_copy):
    model_copy.write_bytes(b"this is not a flatbuffer" * 10)
    write_spec(model_copy, ModelSpec())
    with pytest.raises(ModelLoadError, match="not a loadable TFLite model"):
        ModelRunner(model_copy)


def test_missing_model_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        ModelRunner(tmp_path / "nope.tflite")


def test_input_size_mismatch_refused(model_copy):
    _edit_spec(model_copy, input_size=[48, 48])
    with pytest.raises(ModelLoadError, match="does not match spec input"):
        ModelRunner(model_copy)


def test_spec_written_atomically_with_sha(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"abc")
    target = write_spec(model, ModelSpec(source={"run": "test"}))
    assert target.name == "m.spec.json"
    data = json.loads(target.read_text())
    assert data["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert data["labels"] == list(LABELS)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    # The mode a plain open() gives under the umask (mkstemp alone would leave 0600).
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
