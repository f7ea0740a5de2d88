"""The model's spec (model.spec.json): sha256, values, quantization and input size checked; never waited on."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import gray_images, one_error_line, run_edge

from ferlite.edge.contract.spec import ModelSpec, ModelSpecError, read_spec, spec_path_for


def test_model_named_in_invalid_utf8_is_refused_in_one_line(tmp_path, tiny_model):
    base = os.fsencode(tmp_path)
    shutil.copy(tiny_model, os.path.join(base, b"m\xff.tflite"))
    shutil.copy(spec_path_for(tiny_model), os.path.join(base, b"m\xff.spec.json"))
    model = os.fsdecode(os.path.join(base, b"m\xff.tflite"))
    line = one_error_line(run_edge(["--model", model, "--check-config"]))
    assert "UTF-8" in line


def _edit_spec(model: Path, **changes) -> None:
    path = spec_path_for(model)
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is KeyError:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sha256": ""}, "sha256"),
        ({"sha256": KeyError}, "sha256"),
        ({"sha256": "xyz"}, "sha256"),
        ({"margin": float("nan")}, "margin"),
        ({"margin": -5}, "margin"),
        ({"margin": "wide"}, "margin"),
        ({"margin": True}, "margin"),
        ({"quantization": "int4"}, "quantization"),
        ({"input_size": [100000, 100000]}, "input_size"),
        ({"face_size": 10**9}, "face_size"),
    ],
)
def test_spec_without_a_valid_sha256_or_with_bad_values_is_refused(model_copy, changes, message):
    _edit_spec(model_copy, **changes)
    with pytest.raises(ModelSpecError, match=message):
        read_spec(model_copy)


def test_tampered_model_with_a_spec_lacking_sha256_is_refused_by_check_config(model_copy, capsys):
    from ferlite.edge.apps.cli import main

    _edit_spec(model_copy, sha256="")
    data = bytearray(model_copy.read_bytes())
    data[-1] ^= 1  # tampered
    model_copy.write_bytes(bytes(data))
    assert main(["--model", str(model_copy), "--check-config"]) == 2
    assert "sha256" in capsys.readouterr().err.strip().splitlines()[-1]


def test_spec_quantization_must_match_the_models_input(model_copy, capsys):
    from ferlite.edge.apps.cli import main

    _edit_spec(model_copy, quantization="float32")  # the model takes int8
    assert main(["--model", str(model_copy), "--check-config"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "quantization" in line and "int8" in line and "model.spec.json" in line


def test_model_of_another_input_size_gets_faces_of_that_size(tmp_path, monkeypatch, restore_signals, capfd):
    import ferlite.edge.runtime.api as api
    from ferlite.edge.apps.cli import main

    shapes: list[tuple[int, ...]] = []

    class Runner86:
        """An 86x86 model with its matching spec."""

        def __init__(self, path, threads=None):
            self.path = Path(path)
            self.spec = ModelSpec(input_size=(86, 86), sha256="0" * 64)
            self.backend = "fake"
            self.input_dtype = np.dtype(np.int8)

        def classify(self, faces):
            shapes.append(faces.shape[1:])
            if faces.shape[1:] != (86, 86):
                raise ValueError(f"model takes 86x86, got {faces.shape[1:]}")
            return np.full((len(faces), 6), 1 / 6, np.float32)

    monkeypatch.setattr(api, "ModelRunner", Runner86)  # fer-edge loads its model through the API
    folder = gray_images(tmp_path / "f", 2)
    assert main(["--source", str(folder), "--model", str(tmp_path / "m86.tflite"), "--whole-frame",
                     "--no-stdout", "--threads", "1"]) == 0
    assert shapes == [(86, 86), (86, 86)]


def test_spec_that_is_a_fifo_is_refused_not_waited_on(model_copy):
    spec = spec_path_for(model_copy)
    spec.unlink()
    os.mkfifo(spec)
    line = one_error_line(run_edge(["--model", str(model_copy), "--check-config"], timeout=60))
    assert "model.spec.json" in line
