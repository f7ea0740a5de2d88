"""fer-convert takes the framing a training run recorded, and says nothing false about it."""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("tensorflow")

from ferlite.convert.cli import main  # noqa: E402
from ferlite.edge import DEMO_DIR  # noqa: E402
from ferlite.edge.contract.spec import read_spec  # noqa: E402
from ferlite.train.model import Architecture, build_model  # noqa: E402


@pytest.mark.parametrize("recorded", [True, False])
def test_the_runs_framing_is_used_without_a_false_warning(tmp_path, caplog, recorded):
    run = tmp_path / "run"
    run.mkdir()
    build_model(Architecture((4, 4, 8, 8, 8), (8, 8), 0.1)).save(run / "model.keras")
    if recorded:
        (run / "run.json").write_text(json.dumps({"options": {}, "framing": {"margin": 0.089, "faces": 600,
                                                                          "detector": "haar-alt2"}}))
    out = tmp_path / "m.tflite"
    with caplog.at_level(logging.INFO):
        code = main([str(run / "model.keras"), "--calibration", str(DEMO_DIR), "--samples", "4",
                     "--min-agreement", "0", "--out", str(out)])
    assert code == 0
    warned = "no framing in the run" in caplog.text
    assert warned is not recorded, caplog.text
    assert read_spec(out).margin == pytest.approx(0.089 if recorded else 0.10)
    assert read_spec(out).framing_detector == ("haar-alt2" if recorded else "haar")  # measured with it
