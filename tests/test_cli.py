"""The fer-edge daemon end to end, as a user runs it (subprocesses, real sockets)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import place_face

from ferlite.edge.contract import LABELS
from ferlite.edge.contract.spec import spec_path_for

EDGE = [sys.executable, "-m", "ferlite.edge.apps.cli"]
WATCH = [sys.executable, "-m", "ferlite.edge.apps.watch"]


def _run(args, timeout=60):
    return subprocess.run(EDGE + args, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, astronaut):
    """A folder of 640x480 frames with the astronaut's face at known places."""
    folder = tmp_path_factory.mktemp("photos")
    for i in range(6):
        cv2.imwrite(str(folder / f"frame_{i:03d}.jpg"), place_face(astronaut, 20 + 40 * i, 10 + 8 * i, scale=0.8))
    cv2.imwrite(str(folder / "frame_999_empty.jpg"), np.full((480, 640, 3), 90, np.uint8))
    return folder


def _face_centre_expected(i):
    # In the 512px photo the face box is about (177, 66, 95, 95); pasted at 0.8 size.
    return 20 + 40 * i + (177 + 47) * 0.8, 10 + 8 * i + (66 + 47) * 0.8


def _distance(box, cx, cy):
    x, y, w, h = box
    return max(abs(x + w / 2 - cx), abs(y + h / 2 - cy))


def test_folder_of_photos_gives_json_lines_with_boxes_on_the_faces(photo_folder, tiny_model):
    out = _run(["--source", str(photo_folder), "--max-frames", "20", "--model", str(tiny_model), "--threads", "1"])
    assert out.returncode == 0, out.stderr
    messages = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(messages) == 7  # the folder ends before 20 frames
    assert [m["frame"] for m in messages] == list(range(7))
    for i, message in enumerate(messages[:6]):
        assert message["file"] == f"frame_{i:03d}.jpg"
        assert message["size"] == [640, 480]
        cx, cy = _face_centre_expected(i)
        near = [f for f in message["faces"] if _distance(f["box"], cx, cy) < 15]
        assert len(near) == 1, (message["faces"], cx, cy)
        face = near[0]
        assert face["label"] in LABELS and set(face["scores"]) == set(LABELS)
        assert face["label"] == max(face["scores"], key=face["scores"].get)
        assert set(message["timing_ms"]) == {"detect", "classify", "total"}
    assert messages[6]["faces"] == []
    assert "Traceback" not in out.stderr


def test_max_frames_stops_a_looping_source(photo_folder, tiny_model):
    out = _run(["--source", str(photo_folder), "--loop", "--max-frames", "10", "--model", str(tiny_model)])
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 10


def test_whole_frame_on_precropped_faces(tmp_path, tiny_model):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (48, 48), dtype=np.uint8))
    out = _run(["--source", str(tmp_path), "--whole-frame", "--model", str(tiny_model)])
    assert out.returncode == 0, out.stderr
    messages = [json.loads(line) for line in out.stdout.splitlines()]
    assert [m["faces"][0]["box"] for m in messages] == [[0, 0, 48, 48]] * 3


def test_min_size_flag_changes_what_is_looked_for(photo_folder, tiny_model):
    """The faces in photo_folder are about 76 px: --min-size 120 skips them, the default finds them."""
    args = ["--source", str(photo_folder), "--max-frames", "2", "--model", str(tiny_model), "--threads", "1"]
    found = [json.loads(line)["faces"] for line in _run(args).stdout.splitlines()]
    assert len(found) == 2 and all(len(faces) == 1 for faces in found)
    out = _run([*args, "--min-size", "120"])
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["faces"] for line in out.stdout.splitlines()] == [[], []]
    assert "no face of min_size (120 px)" in out.stderr


@pytest.mark.parametrize("command", ["fer-edge", "fer-watch", "fer-preview", "fer-mqtt"])
def test_version_of_each_command_is_the_installed_distributions(command):
    from importlib.metadata import version

    module = {"fer-edge": "cli", "fer-watch": "watch", "fer-preview": "preview", "fer-mqtt": "mqtt"}[command]
    out = subprocess.run([sys.executable, "-m", f"ferlite.edge.apps.{module}", "--version"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{command} {version('ferlite')}\n"


def test_package_version_in_python(monkeypatch):
    from importlib.metadata import PackageNotFoundError, version

    import ferlite.edge
    from ferlite.edge.contract import version as version_module

    assert ferlite.edge.__version__ == version("ferlite") != version_module.UNKNOWN
    code = "from ferlite.edge import __version__; print(__version__)"  # a fresh interpreter, from anywhere
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                         cwd="/")
    assert out.stdout.split() == [version("ferlite")], out.stderr

    def not_installed(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(version_module, "version", not_installed)
    assert version_module.package_version() == "0+unknown"  # a source tree that was never installed


def _one_error_line(out):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    return lines[-1]


def test_missing_model_refused(tmp_path, photo_folder):
    line = _one_error_line(_run(["--source", str(photo_folder), "--model", str(tmp_path / "gone.tflite")]))
    assert "gone.tflite" in line and "not found" in line


def test_broken_model_refused(model_copy, photo_folder):
    model_copy.write_bytes(b"\0" * 100)
    line = _one_error_line(_run(["--source", str(photo_folder), "--model", str(model_copy)]))
    assert str(spec_path_for(model_copy)) in line or str(model_copy) in line


def test_mismatched_model_refused(model_copy, photo_folder):
    spec = spec_path_for(model_copy)
    data = json.loads(spec.read_text())
    data["labels"] = list(reversed(data["labels"]))
    spec.write_text(json.dumps(data))
    line = _one_error_line(_run(["--source", str(photo_folder), "--model", str(model_copy)]))
    assert "labels" in line and "model.spec.json" in line


def test_bad_source_refused(tmp_path, tiny_model):
    line = _one_error_line(_run(["--source", str(tmp_path / "nothing.mp4"), "--model", str(tiny_model)]))
    assert "nothing.mp4" in line


def test_bad_socket_path_refused(photo_folder, tiny_model, tmp_path):
    line = _one_error_line(
        _run(["--source", str(photo_folder), "--model", str(tiny_model), "--socket", str(tmp_path / "x" / "s.sock")])
    )
    assert "s.sock" in line


def test_closed_stdout_stops_cleanly(photo_folder, tiny_model):
    proc = subprocess.Popen(
        EDGE + ["--source", str(photo_folder), "--loop", "--model", str(tiny_model)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=30) == 0
    assert b"Traceback" not in proc.stderr.read()


def _wait_for(path: Path, timeout=30.0):
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.05)


def test_watch_shows_the_socket_stream_and_sigterm_cleans_up(photo_folder, tiny_model, tmp_path):
    sock = tmp_path / "feed.sock"
    daemon = subprocess.Popen(
        EDGE + ["--source", str(photo_folder), "--loop", "--fps-limit", "50", "--model", str(tiny_model),
                "--socket", str(sock), "--no-stdout"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(sock)
        assert oct(os.stat(sock).st_mode & 0o777) == "0o660"
        watch = subprocess.run(WATCH + ["--socket", str(sock), "--count", "12"],
                               capture_output=True, text=True, timeout=30, check=False)
        assert watch.returncode == 0, watch.stderr
        messages = [json.loads(line) for line in watch.stdout.splitlines()]
        assert len(messages) == 12
        frames = [m["frame"] for m in messages]
        assert frames == list(range(frames[0], frames[0] + 12))  # consecutive: nothing lost
        assert sum(len(m["faces"]) for m in messages) >= 9
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=30)
    assert code == 0, daemon.stderr.read()
    assert daemon.stdout.read() == ""  # --no-stdout
    assert not sock.exists()


def test_watch_without_daemon_is_a_clear_error(tmp_path):
    out = subprocess.run(WATCH + ["--socket", str(tmp_path / "none.sock")], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert "none.sock" in out.stderr and "Traceback" not in out.stderr
