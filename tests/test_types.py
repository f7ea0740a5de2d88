"""mypy sees across the three packages (src/ferlite/{edge,train,convert}): a planted cross-package type error
fails it, and a type from another package is its real type, not Any."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MYPY = Path(sys.executable).parent / "mypy"
PLANTED = """\
from ferlite.edge.runtime.config import EdgeConfig
from ferlite.train.config import TrainConfig

wrong: int = EdgeConfig()
reveal_type(TrainConfig().epochs)
"""


@pytest.mark.skipif(not MYPY.exists() and shutil.which("mypy") is None, reason="mypy is not installed")
def test_a_planted_cross_package_type_error_fails_mypy(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(PLANTED)
    mypy = str(MYPY) if MYPY.exists() else "mypy"
    done = subprocess.run([mypy, "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"),
                           str(planted)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'expression has type "EdgeConfig", variable has type "int"' in done.stdout, done.stdout
    assert 'Revealed type is "builtins.int"' in done.stdout or 'Revealed type is "int"' in done.stdout, done.stdout
