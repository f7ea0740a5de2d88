"""scripts/measure_model.py re-measures a model through fer-edge on the real data (skipped without it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ferlite.edge.runtime.config import default_model_path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "measure_model.py"


def _measure(model: Path, shared_data: Path, tmp_path: Path) -> dict:
    out_file = tmp_path / "m.json"
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(shared_data), "--model", str(model), "--limit", "12",
         "--out", str(out_file)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr
    for name in ("FER+ FER2013Test", "FER2013 PrivateTest", "CK+ held-out, hugoiwnl crops",
                 "CK+ held-out, ckplus48 crops"):
        assert f"| {name} | 12 |" in out.stdout
    assert "FER+ FER2013Test: left out" in out.stdout
    return json.loads(out_file.read_text())


def test_measure_sample_with_fixture_model(shared_data, tiny_model, tmp_path):
    results = _measure(tiny_model, shared_data, tmp_path)["results"]
    for r in results.values():
        assert r["images"] == 12
        confusion = r["confusion"]
        assert sum(map(sum, confusion)) == 12
        assert r["accuracy"] == pytest.approx(sum(confusion[i][i] for i in range(6)) / 12)
        assert 0.0 <= r["macro_f1"] <= 1.0


def test_shipped_model_beats_chance_on_a_sample(shared_data, tmp_path):
    model = default_model_path()
    if not model.exists():
        pytest.fail(f"{model} is not shipped")
    results = _measure(model, shared_data, tmp_path)["results"]
    assert results["CK+ held-out, hugoiwnl crops"]["accuracy"] > 0.5
    assert results["FER+ FER2013Test"]["accuracy"] > 0.5
    assert results["FER2013 PrivateTest"]["accuracy"] > 0.3


def test_missing_data_folder_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "none")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "none" in out.stderr
