"""fer-edge under bad input, hostile paths and signals (issue 11): never a crash, a hang or a lie.

Every test here failed before its fix. Subprocess tests have timeouts: a hang is a failure, not a
stuck test run. Tests that need a non-root user (permissions) drop to uid 65534 with setpriv
when run as root (as CI does), and skip when that is impossible.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import EDGE, ScriptedDetector, gray_images, one_error_line, run_edge, write_config

from ferlite.edge.spec import ModelSpec, ModelSpecError, read_spec, spec_path_for

# ---------------------------------------------------------------- 1. names that are not UTF-8


def test_model_named_in_invalid_utf8_is_refused_in_one_line(tmp_path, tiny_model):
    base = os.fsencode(tmp_path)
    shutil.copy(tiny_model, os.path.join(base, b"m\xff.tflite"))
    shutil.copy(spec_path_for(tiny_model), os.path.join(base, b"m\xff.spec.json"))
    model = os.fsdecode(os.path.join(base, b"m\xff.tflite"))
    line = one_error_line(run_edge(["--model", model, "--check-config"]))
    assert "UTF-8" in line


# ---------------------------------------------------------------- 2. nothing readable: back off, stop on SIGTERM


def test_all_unreadable_folder_with_loop_backs_off_and_honours_sigterm(tmp_path, tiny_model):
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(b"not an image")
    with open(tmp_path / "err.txt", "wb") as err:
        proc = subprocess.Popen(EDGE + ["--source", str(folder), "--loop", "--model", str(tiny_model)],
                                stdout=subprocess.PIPE, stderr=err)
        try:
            deadline = time.monotonic() + 60
            while b"no readable image" not in (tmp_path / "err.txt").read_bytes():  # in the loop now
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
            time.sleep(1.0)  # backing off
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=5)
        finally:
            proc.kill()
            proc.wait()
    log = (tmp_path / "err.txt").read_text(errors="replace")
    assert code == 0, log[-2000:]
    assert proc.stdout is not None and proc.stdout.read() == b""
    assert len(log.splitlines()) < 20  # one warning per file, one for the empty pass: no flood
    assert "no readable image" in log


# ---------------------------------------------------------------- 5. one face, one entry


def test_tracks_that_end_up_on_one_face_merge():
    from ferlite.edge.tracking import FaceTracker

    frame = np.zeros((480, 640), np.uint8)
    det = ScriptedDetector(frame)
    tracker = FaceTracker(det, min_size=24)
    counts, ended_ids = [], []
    for i in range(40):
        x = 250 if i < 20 else 100 if i < 22 else 170
        det.faces = [(x, 150, 180, 180)]
        seen, _, ended = tracker.update(frame)
        counts.append(len(seen))
        ended_ids += ended
        assert len(tracker.tracks) <= 2
    assert counts[22:] == [1] * 18  # was 2 from frame 22 on: two tracks on the same face
    assert len(tracker.tracks) == 1
    assert ended_ids  # the duplicate track ended, with an "end" event


def test_box_inside_another_face_is_not_a_face():
    from ferlite.edge.tracking import FaceTracker

    frame = np.zeros((480, 640), np.uint8)
    det = ScriptedDetector(frame)
    face, eye = (100, 100, 180, 180), (140, 150, 40, 40)
    det.faces = [face, eye]
    tracker = FaceTracker(det, min_size=24)
    for _ in range(6):
        seen, _, _ = tracker.update(frame)
        assert [t.box for t in seen] == [face]


def test_still_photo_box_inside_a_face_is_not_a_face():
    from ferlite.edge.pipeline import Pipeline, PipelineConfig

    class Detector:
        def detect(self, gray, min_size=None, max_size=None, min_neighbors=None):
            return [(140, 150, 40, 40), (100, 100, 180, 180), (400, 100, 100, 100)]

    class Uniform:
        def classify(self, faces):
            return np.full((len(faces), 6), 1 / 6, np.float32)

    pipeline = Pipeline(Detector(), Uniform(), PipelineConfig(temporal=False))  # type: ignore[arg-type]
    result = pipeline.process(np.zeros((480, 640), np.uint8))
    assert sorted(f.box for f in result.faces) == [(100, 100, 180, 180), (400, 100, 100, 100)]


# ---------------------------------------------------------------- 6. stdout never stalls the loop


def test_unread_stdout_pipe_neither_stalls_the_loop_nor_delays_sigterm(tmp_path, tiny_model):
    folder = gray_images(tmp_path / "faces", 4)
    sock = tmp_path / "feed.sock"
    config = write_config(tmp_path, "socket_buffer = 4096\n")
    with open(tmp_path / "err.txt", "wb") as err:
        proc = subprocess.Popen(
            EDGE + ["--config", str(config), "--source", str(folder), "--loop", "--whole-frame",
                    "--model", str(tiny_model), "--threads", "1", "--socket", str(sock)],
            stdout=subprocess.PIPE, stderr=err,  # stdout is never read: the pipe fills up
        )
        try:
            deadline = time.monotonic() + 60
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            reader = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            reader.connect(str(sock))
            reader.settimeout(20)
            got = b""
            while got.count(b"\n") < 600:  # a 64 KiB pipe holds ~200 lines: the loop went on past it
                chunk = reader.recv(65536)
                assert chunk, "feed closed"
                got += chunk
            reader.close()
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = proc.wait(timeout=20)
            stopped_in = time.monotonic() - started
        finally:
            proc.kill()
            proc.wait()
    log = (tmp_path / "err.txt").read_text(errors="replace")
    assert code == 0, log[-2000:]
    assert stopped_in < 8.0  # at most 2 s drain the queue, then it exits
    assert "stdout: reader is too slow" in log and "Traceback" not in log
    assert not sock.exists()


# ---------------------------------------------------------------- 7. the model's integrity


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
    from ferlite.edge.cli import main

    _edit_spec(model_copy, sha256="")
    data = bytearray(model_copy.read_bytes())
    data[-1] ^= 1  # tampered
    model_copy.write_bytes(bytes(data))
    assert main(["--model", str(model_copy), "--check-config"]) == 2
    assert "sha256" in capsys.readouterr().err.strip().splitlines()[-1]


def test_spec_quantization_must_match_the_models_input(model_copy, capsys):
    from ferlite.edge.cli import main

    _edit_spec(model_copy, quantization="float32")  # the model takes int8
    assert main(["--model", str(model_copy), "--check-config"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "quantization" in line and "int8" in line and "model.spec.json" in line


def test_model_of_another_input_size_gets_faces_of_that_size(tmp_path, monkeypatch, restore_signals, capfd):
    import ferlite.edge.api as api
    from ferlite.edge.cli import main

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


# ---------------------------------------------------------------- 10. signals


def test_sighup_reopens_the_source_sigusr1_logs_status_sigterm_stops(tmp_path, tiny_model):
    folder = gray_images(tmp_path / "f", 3)
    sock = tmp_path / "feed.sock"
    with open(tmp_path / "err.txt", "wb") as err:
        proc = subprocess.Popen(
            EDGE + ["--source", str(folder), "--loop", "--fps-limit", "20", "--whole-frame", "--no-stdout",
                    "--socket", str(sock), "--model", str(tiny_model), "--threads", "1"],
            stdout=subprocess.DEVNULL, stderr=err,
        )
        try:
            deadline = time.monotonic() + 60
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
            assert proc.poll() is None  # neither signal killed it
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
        finally:
            proc.kill()
            proc.wait()
    log = (tmp_path / "err.txt").read_text(errors="replace")
    assert code == 0, log[-2000:]
    assert f"{folder} reopened" in log
    assert " frames, " in log and " fps, " in log  # the SIGUSR1 status line
    assert not sock.exists()


# ---------------------------------------------------------------- exit 2 with one line, never a traceback


def test_stdout_that_is_dev_full_exits_2(tmp_path, tiny_model):
    folder = gray_images(tmp_path / "f", 2)
    with open("/dev/full", "wb") as full:
        out = run_edge(["--source", str(folder), "--model", str(tiny_model), "--whole-frame"], stdout=full)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == "fer-edge: stdout: cannot write results (No space left on device)"


def test_check_config_to_dev_full_exits_2(tiny_model):
    with open("/dev/full", "wb") as full:
        out = run_edge(["--model", str(tiny_model), "--check-config"], stdout=full)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr
    assert "stdout" in out.stderr.strip().splitlines()[-1]


def test_closed_stdout_exits_2(tmp_path, tiny_model):
    folder = gray_images(tmp_path / "f", 2)
    out = run_edge(["--source", str(folder), "--model", str(tiny_model)], stdout=None,
               preexec_fn=lambda: os.close(1))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "stdout is closed" in out.stderr.strip().splitlines()[-1]


def _empty_video(path: Path, fourcc: str) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    writer.release()
    return path


@pytest.mark.parametrize(("name", "fourcc"), [("empty.avi", "MJPG"), ("empty.mp4", "mp4v")])
def test_video_without_frames_exits_2(tmp_path, tiny_model, name, fourcc):
    path = _empty_video(tmp_path / name, fourcc)
    line = one_error_line(run_edge(["--source", str(path), "--model", str(tiny_model)]))
    assert name in line


def test_folder_of_only_corrupt_images_exits_2(tmp_path, tiny_model):
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(b"\xff\xd8\xff broken")
    line = one_error_line(run_edge(["--source", str(folder), "--model", str(tiny_model)]))
    assert "bad" in line and "no readable frame" in line and "3" in line
