"""A new user's first hour on the workstation side: fer-train and fer-convert explain themselves."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import needs_tensorflow, needs_training
from train_fixtures import write_folder_set

from ferlite.train.cli import main as train_main
from ferlite.train.splits import read_manifest

NOISE = ("cuInit", "cudart_stub", "Captures:", "Saved artifact", "absl::InitializeLog", "fully_quantize")
TINY = ["--filters", "4,4,8,8,8", "--dense", "8,8", "--batch-size", "16", "--no-cache"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_folder_set(tmp_path_factory.mktemp("data") / "set", per_class=8, subjects=8)


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("fer-train: error")]


@needs_training
def test_an_existing_run_is_not_overwritten(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["--data", f"crops:set={data}", "--dry-run", "--no-cache", "--out", str(out)]) == 0
    before = (out / "run.json").read_bytes()
    assert train_main(["--data", f"crops:set={data}", "--dry-run", "--no-cache", "--out", str(out)]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "--resume" in errors[0] and "new --out" in errors[0]
    assert (out / "run.json").read_bytes() == before
    assert train_main(["--data", f"crops:set={data}", "--dry-run", "--no-cache", "--overwrite",
                       "--seed", "3", "--out", str(out)]) == 0


def test_bad_arguments_leave_no_folder(data, tmp_path, capsys):
    out = tmp_path / "never"
    assert train_main(["--data", f"crops:set={data}", "--repeat", "nope=2", "--out", str(out)]) == 2
    assert not out.exists()
    assert train_main(["--data", f"folder:set={tmp_path / 'missing'}", "--out", str(out)]) == 2
    assert not out.exists()


@needs_training
def test_limit_caps_images_per_class_and_side(data, tmp_path):
    out = tmp_path / "small"
    assert train_main(["--data", f"crops:set={data}", "--limit", "2", "--dry-run", "--no-cache",
                       "--out", str(out)]) == 0
    rows = read_manifest(out / "manifest.csv")
    per_label: dict[str, int] = {}
    for row in rows:
        per_label[row["label"]] = per_label.get(row["label"], 0) + 1
    assert per_label and max(per_label.values()) == 2


@needs_training
def test_small_crops_given_as_folder_say_use_crops(data, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        code = train_main(["--data", f"folder:set={data}", "--dry-run", "--no-cache", "--out", str(tmp_path / "r")])
    assert code in (0, 2)
    assert "no face found in" in caplog.text and "--data crops:set=" in caplog.text


def test_edge_only_install_is_told_which_extra(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else real(name, *a))
    assert train_main(["--data", "crops:x=y", "--out", str(tmp_path / "r")]) == 2
    from ferlite.convert.cli import main as convert_main

    assert convert_main([str(tmp_path / "m.keras"), "--out", str(tmp_path / "m.tflite")]) == 2
    err = capsys.readouterr().err
    assert "fer-train needs the training extra" in err and "pip install 'ferlite[train]'" in err
    assert "fer-convert needs the training extra" in err
    assert not (tmp_path / "r").exists()


@needs_tensorflow
def test_convert_checks_arguments_before_importing_tensorflow(tmp_path):
    code = ("import sys\nfrom ferlite.convert.cli import main\n"
            f"rc = main([{str(tmp_path / 'missing.keras')!r}, '--out', {str(tmp_path / 'm.tflite')!r}])\n"
            "print(rc, 'tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.stdout.split() == ["2", "False"], out.stderr
    assert "missing.keras" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@needs_training
def test_a_default_run_talks_and_is_quiet(data, tmp_path):
    """A real fer-train (stdout to a pipe, as to a file) logs progress inside the epoch and none of
    TensorFlow's native start-up lines; then fer-convert adds none of the converter's chatter."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    train = subprocess.run(
        [sys.executable, "-m", "ferlite.train.cli", "--data", f"crops:set={data}", "--epochs", "1",
         "--progress-every", "0", "--out", str(out), *TINY],
        capture_output=True, text=True, timeout=300, check=False, env=env)
    assert train.returncode == 0, train.stderr
    assert "ETA epoch" in train.stderr and "images/s" in train.stderr
    assert "training with tensorflow on the CPU (no GPU found)" in train.stderr
    assert not [n for n in NOISE if n in train.stderr], train.stderr
    convert = subprocess.run(
        [sys.executable, "-m", "ferlite.convert.cli", str(out / "model.keras"), "--calibration", str(data),
         "--cropped", "--samples", "20", "--min-agreement", "0", "--out", str(tmp_path / "m.tflite")],
        capture_output=True, text=True, timeout=300, check=False, env=env)
    assert convert.returncode == 0, convert.stderr
    assert not [n for n in NOISE if n in convert.stderr], convert.stderr


def test_fer_edge_at_warning_prints_no_native_runtime_lines(tiny_model):
    """TensorFlow Lite's "Created TensorFlow Lite XNNPACK delegate" bypasses logging: it must not reach stderr."""
    out = subprocess.run(
        [sys.executable, "-m", "ferlite.edge.apps.cli", "--source", "demo", "--max-frames", "1",
         "--model", str(tiny_model), "--log-level", "WARNING"],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "XNNPACK" not in out.stderr and out.stderr.strip() == ""


def test_check_config_says_the_source_is_not_opened(tiny_model):
    out = subprocess.run(
        [sys.executable, "-m", "ferlite.edge.apps.cli", "--source", "/dev/video99", "--model", str(tiny_model),
         "--check-config"], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "the source is not opened" in out.stdout


def test_watch_summary_shows_track_ids():
    from ferlite.edge.apps.watch import summary_line

    message = {"frame": 12, "faces": [{"label": "Happy", "score": 0.934, "track": 3},
                                      {"label": "Sad", "score": 0.5}]}
    assert summary_line(message) == "frame 12: #3 Happy 0.93, Sad 0.50"
    assert summary_line({"frame": 1, "faces": []}) == "frame 1: -"


def test_fer_edge_on_small_crops_says_use_whole_frame(tiny_model, tmp_path):
    import cv2
    import numpy as np

    folder = tmp_path / "crops"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (48, 48), dtype=np.uint8))
    out = subprocess.run(
        [sys.executable, "-m", "ferlite.edge.apps.cli", "--source", str(folder), "--model", str(tiny_model),
         "--log-level", "WARNING"], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    hints = [line for line in out.stderr.splitlines() if "--whole-frame" in line]
    assert len(hints) == 1 and "48x48" in hints[0]  # said once, not per image
    assert len(out.stdout.splitlines()) == 3
