"""fer-edge under bad input, hostile paths and signals (issue 11): never a crash, a hang or a lie.

Every test here failed before its fix. Subprocess tests have timeouts: a hang is a failure, not a
stuck test run. Tests that need a non-root user (permissions) drop to uid 65534 with setpriv
when run as root (as CI does), and skip when that is impossible.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import cv2
import pytest
from helpers import EDGE, gray_images, one_error_line, run_edge, write_config

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
