"""Shared test fixtures: the committed tiny int8 model, real face photos, the shared data."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import DEMO_DIR, SHARED_DATA, TINY_MODEL


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """A small int8 model with its spec, made by scripts/make_fixture_model.py and committed."""
    path = Path(os.environ.get("FERLITE_TEST_MODEL", TINY_MODEL))
    if not path.is_file():
        pytest.fail(f"{path} missing: run python scripts/make_fixture_model.py")
    return path


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model and its spec, safe to damage."""
    target = tmp_path / "model.tflite"
    shutil.copy(tiny_model, target)
    shutil.copy(tiny_model.with_name(tiny_model.stem + ".spec.json"), tmp_path / "model.spec.json")
    return target


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """NASA's public-domain astronaut portrait (as scikit-image ships it), BGR, 512x512: a real face."""
    image = cv2.imread(str(DEMO_DIR / "astronaut.jpg"))
    assert image is not None
    return image


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present (real data sets live beside the project)")
    return SHARED_DATA


@pytest.fixture
def restore_signals():
    """For in-process runs of main(): put the test process's own signal handlers back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture
def shared_dir():
    """A folder that uid 65534 may enter (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="ferlite-tests-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
