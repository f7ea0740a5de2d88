"""fer-edge as a running process: SIGHUP reopens the source, SIGUSR1 logs its status, SIGTERM stops it cleanly and
promptly (while it backs off from an unreadable folder, or with a stdout nobody reads).

Subprocess tests, with timeouts: a hang is a failure, not a stuck test run.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time

from helpers import EDGE, gray_images, write_config


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
