"""`import ferlite.edge` and the feed readers (fer-watch, fer-mqtt) never load OpenCV.

OpenCV (with numpy) costs ~330 ms and ~30 MB at import on a Pi; the package's public names that need it load
on first use (ferlite.edge.__init__'s __getattr__). Each check runs in a fresh interpreter, so that nothing
this test process already imported hides an import.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# Prints the heavy modules that ended up imported, one per line (nothing when the import stayed light).
_REPORT = "import sys\nprint('\\n'.join(m for m in ('cv2', 'numpy') if m in sys.modules))\n"


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\n" + _REPORT], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_import_ferlite_edge_loads_neither_opencv_nor_numpy():
    assert _loaded_after("import ferlite.edge") == []


def test_the_light_public_names_stay_light():
    loaded = _loaded_after("from ferlite.edge import DEMO_DIR, LABELS, INPUT_SIZE, demo_photos, __version__\n"
                           "assert demo_photos() and DEMO_DIR.is_dir() and __version__")
    assert loaded == []


@pytest.mark.parametrize("module", ["ferlite.edge.apps.watch", "ferlite.edge.apps.mqtt"])
def test_feed_readers_do_not_import_opencv(module):
    assert "cv2" not in _loaded_after(f"import {module}")


@pytest.mark.parametrize("command", ["fer-watch", "fer-mqtt"])
def test_feed_reader_help_does_not_import_opencv(command):
    # The console script as pyproject.toml declares it, run with --help.
    code = ("import sys\n"
            "from importlib.metadata import entry_points\n"
            f"(script,) = entry_points(group='console_scripts', name={command!r})\n"
            f"sys.argv = [{command!r}, '--help']\n"
            "try:\n"
            "    script.load()()\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "print('--- modules')\n")
    out = subprocess.run([sys.executable, "-c", code + _REPORT], capture_output=True, text=True, check=False,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    help_text, _, loaded = out.stdout.partition("--- modules\n")
    assert f"usage: {command}" in help_text
    assert "cv2" not in loaded.split()


def test_the_lazy_names_still_load_on_first_use():
    code = ("import sys, ferlite.edge\n"
            "from ferlite.edge import Recognizer, recognize, preprocess_face, draw_result, FrameResult, InputError\n"
            "from ferlite.edge.runtime.api import Recognizer as R\n"
            "assert Recognizer is R and callable(recognize) and callable(preprocess_face)\n"
            "assert issubclass(InputError, ferlite.edge.FerliteError)\n"
            "assert all(hasattr(ferlite.edge, name) for name in ferlite.edge.__all__)\n"
            "try:\n"
            "    ferlite.edge.no_such_name\n"
            "except AttributeError as e:\n"
            "    assert 'no_such_name' in str(e)\n"
            "else:\n"
            "    raise AssertionError('no AttributeError')")
    assert "cv2" in _loaded_after(code)


def test_fer_edge_running_carries_no_random_generators_openssl_or_package_metadata(tiny_model):
    """fer-edge's start-up (flags, config, model load with its probe pictures, detector, a frame) leaves out
    numpy.random (with hashlib's OpenSSL, ~6 MB of RSS: the probe's noise picture once pulled it in) and
    importlib.metadata (~1.5 MB: --version read it on every start); the peak RSS bench measures them."""
    code = ("import sys\n"
            "from ferlite.edge.apps.cli import build_parser\n"
            "from ferlite.edge.runtime.config import make_config\n"
            "from ferlite.edge.runtime.api import assemble\n"
            "args = build_parser().parse_args(['--source', 'demo'])\n"
            f"parts = assemble(make_config({{'model': {str(tiny_model)!r}}}))\n"
            "import cv2\nfrom ferlite.edge import DEMO_DIR\n"
            "parts.pipeline(temporal=True).process(cv2.imread(str(DEMO_DIR / 'astronaut.jpg')))\n"
            "print('\\n'.join(m for m in ('numpy.random', '_hashlib', 'importlib.metadata') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []
