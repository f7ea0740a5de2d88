"""fer-preview: its HTTP endpoints on loopback, and the page in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import ROOT, read_video, write_face_video

from ferlite.edge.apps import preview as preview_module
from ferlite.edge.apps.annotate import COLOURS
from ferlite.edge.apps.preview import DEFAULT_BIND, build_parser, is_loopback, labels_text, parse_bind
from ferlite.edge.contract import LABELS
from ferlite.edge.runtime.config import ConfigError, EdgeConfig
from ferlite.edge.runtime.loop import LoopStats

PREVIEW = [sys.executable, "-m", "ferlite.edge.apps.preview"]
START_S = 60  # until the preview prints its address
BROWSER_S = 90  # one Chromium run
# Set to a path (e.g. docs/preview.png) to keep the browser test's screenshot.
KEEP_SCREENSHOT = os.environ.get("FERLITE_PREVIEW_SCREENSHOT")


def test_bind_is_loopback_unless_another_address_is_given():
    assert build_parser().parse_args([]).bind == DEFAULT_BIND == "127.0.0.1:8080"
    assert parse_bind("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_bind("[::1]:0") == ("::1", 0)
    assert parse_bind("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    for bad in (":8080", "8080", "host:port", "127.0.0.1:70000", "::1:80", "[::1]"):
        with pytest.raises(ConfigError, match="--bind"):
            parse_bind(bad)


def test_labels_text_says_what_the_feed_says():
    message = {"frame": 12, "faces": [{"box": [1, 2, 3, 4], "label": "Happy", "score": 0.934, "track": 3}]}
    assert labels_text(message) == "frame 12 · 1 face\n#3 Happy 0.93 [1, 2, 3, 4]"
    assert labels_text({"frame": 1, "faces": []}) == "frame 1 · no face"
    assert "waiting" in labels_text(None)


def _paced_at(monkeypatch, tiny_model, source: str, **settings) -> float:
    """The frame rate fer-preview's frame loop is given for `source` (the loop itself is not run)."""
    seen: dict = {}

    def fake_loop(*args, **kwargs):
        seen.update(kwargs)
        return LoopStats(started=time.monotonic(), ended="stop")

    monkeypatch.setattr(preview_module, "run_loop", fake_loop)
    config = EdgeConfig(source=source, model=str(tiny_model), threads=1, **settings)
    assert preview_module.serve(config, ("127.0.0.1", 0), 80, lambda: True) == 0
    return seen["fps_limit"]


def test_preview_shows_photos_at_a_pace_to_look_at_unless_told(monkeypatch, tmp_path, tiny_model, astronaut):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.jpg"), astronaut)
    assert _paced_at(monkeypatch, tiny_model, str(folder)) == preview_module.PHOTO_FPS == 2.0
    assert _paced_at(monkeypatch, tiny_model, str(folder / "p0.jpg")) == 2.0  # one photo
    assert _paced_at(monkeypatch, tiny_model, "demo") == 2.0
    assert _paced_at(monkeypatch, tiny_model, str(folder), fps_limit=12.5) == 12.5  # --fps-limit wins
    assert build_parser().parse_args(["--fps-limit", "12.5"]).fps_limit == 12.5
    clip = write_face_video(tmp_path / "clip.avi", astronaut, frames=3, fps=12.0)
    assert _paced_at(monkeypatch, tiny_model, str(clip)) == pytest.approx(12.0)  # a video: its own rate
    assert _paced_at(monkeypatch, tiny_model, str(clip), fps_limit=5.0) == 5.0


class Preview:
    """fer-preview in a child process, on a free loopback port."""

    def __init__(self, args: list[str], cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            PREVIEW + ["--bind", "127.0.0.1:0", "--threads", "1", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        )
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr or []), daemon=True).start()
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append((self.proc.stdout or iter(())).readline()), daemon=True)
        reader.start()
        reader.join(START_S)
        match = re.search(r"http://(127\.0\.0\.1|\[[0-9a-f:.]+\]):\d+/", found[0] if found else "")
        if match is None:
            self.stop()
            raise AssertionError(f"no address from fer-preview: {found} {''.join(self.stderr)[-2000:]}")
        self.url = match.group(0)

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path.lstrip("/"), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_for_face(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.get("/labels.json")[1])
            if message and message["faces"]:
                return message
            time.sleep(0.2)
        raise AssertionError(f"no face in the preview's feed: {''.join(self.stderr)[-2000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise AssertionError("fer-preview did not stop within 15 s of SIGTERM") from None


@pytest.fixture
def clip(tmp_path, astronaut) -> Path:
    return write_face_video(tmp_path / "clip.avi", astronaut, frames=20)


@pytest.fixture
def preview(clip, tiny_model) -> Iterator[Preview]:
    running = Preview(["--source", str(clip), "--loop", "--fps-limit", "10", "--model", str(tiny_model)])
    yield running
    running.stop()


def _first_part(preview: Preview) -> bytes:
    """The first JPEG of the MJPEG stream."""
    with urllib.request.urlopen(preview.url + "stream.mjpg", timeout=10) as response:
        assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        head = b""
        while b"\r\n\r\n" not in head:
            head += response.read(1)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        assert head.startswith(b"--frame\r\nContent-Type: image/jpeg\r\n")
        return response.read(length)


def test_preview_serves_the_page_the_feed_and_an_annotated_stream(preview):
    message = preview.wait_for_face()
    assert set(message) >= {"frame", "ts", "source", "size", "faces", "timing_ms"}  # fer-edge's feed line
    face = message["faces"][0]
    assert face["label"] in LABELS and "track" in face
    status, page = preview.get("/")
    assert status == 200
    text = page.decode()
    assert "ferlite preview" in text and '<img id="stream" src="/stream.mjpg"' in text
    assert re.search(r'<pre id="labels"[^>]*>frame \d+ · 1 face\n#\d+ (' + "|".join(LABELS) + r") \d\.\d\d", text)
    status, script = preview.get("/app.js")
    assert status == 200 and b"/labels.json" in script
    image = cv2.imdecode(np.frombuffer(_first_part(preview), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (480, 640, 3)
    status, jpeg = preview.get("/frame.jpg")
    assert status == 200 and jpeg[:2] == b"\xff\xd8"
    assert preview.get("/nothing")[0] == 404
    # Loopback answers only loopback names: a page that rebinds its DNS name to 127.0.0.1 gets nothing.
    assert preview.get("/labels.json", headers={"Host": "attacker.example:80"})[0] == 403
    assert preview.get("/labels.json", headers={"Host": "localhost"})[0] == 200
    assert preview.stop() == 0


def test_preview_refuses_a_bad_start_with_one_line(tmp_path):
    out = subprocess.run(PREVIEW + ["--source", str(tmp_path / "none.avi"), "--bind", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=START_S, check=False)
    assert out.returncode == 2 and "none.avi" in out.stderr
    out = subprocess.run(PREVIEW + ["--source", "demo", "--bind", "8080"],
                         capture_output=True, text=True, timeout=START_S, check=False)
    assert out.returncode == 2 and "--bind" in out.stderr


# ------------------------------------------------------------------ a real browser


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    # Tests install nothing: .ci/run does, through scripts/install_system_packages.sh.
    pytest.skip("chromium not installed (scripts/install_system_packages.sh, or apt-get install chromium)")


def _browse(chromium: str, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="fer-chromium-") as profile:
        return subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", *extra, url],
            capture_output=True, text=True, timeout=BROWSER_S, check=False,
        )


def test_preview_in_headless_chromium_shows_the_picture_and_a_label(tmp_path, clip):
    chromium = _chromium()
    running = Preview(["--source", clip.name, "--loop", "--fps-limit", "10"], cwd=clip.parent)  # shipped model
    shot = tmp_path / "preview.png"
    try:
        running.wait_for_face()
        dom = _browse(chromium, running.url, "--dump-dom", "--virtual-time-budget=3000")
        assert dom.returncode == 0, dom.stderr[-2000:]
        labels = re.search(r'<pre id="labels"[^>]*data-live="1"[^>]*>(.*?)</pre>', dom.stdout, re.S)
        assert labels, dom.stdout[-3000:]  # the page's script replaced the text with a fresh /labels.json
        said = re.search(r"#\d+ (" + "|".join(LABELS) + r") \d\.\d\d \[", labels.group(1))
        assert said, labels.group(1)
        # The picture carries the box and caption in that label's colour: many more such pixels than the clip has.
        colour = np.array(COLOURS[said.group(1)])
        plain = max(int((np.abs(frame.astype(int) - colour).max(axis=2) <= 30).sum()) for frame in read_video(clip))
        shown = 0
        for _ in range(3):  # on a loaded machine a screenshot can beat the stream's first painted frame
            done = _browse(chromium, running.url, f"--screenshot={shot}", "--window-size=1100,560")
            assert shot.is_file(), done.stderr[-2000:]
            image = cv2.imread(str(shot))
            assert image is not None and image.shape[:2] == (560, 1100)
            assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 1000  # not blank
            stream = image[:500, :680]  # where the page shows the stream (640x480 at 16, 16)
            shown = int((np.abs(stream.astype(int) - colour).max(axis=2) <= 30).sum())
            if shown > plain + 400:
                break
    finally:
        assert running.stop() == 0
    assert shown > plain + 400, (said.group(1), shown, plain)
    if KEEP_SCREENSHOT:
        shutil.copy(shot, ROOT / KEEP_SCREENSHOT)


# ------------------------------------------------------------------ hostile clients (issue 22, item 13)


def _port(preview: Preview) -> tuple[str, int]:
    match = re.match(r"http://\[?([^\]]+?)\]?:(\d+)/", preview.url)
    assert match
    return match.group(1), int(match.group(2))


def _raw(preview: Preview, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data`, read until the server closes (or `timeout`)."""
    host, port = _port(preview)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except TimeoutError:
            reply += b"<no close>"
    return reply


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (what a browser tab killed mid-request, or a scanner, does)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("bind", ["127.1:0", "0x7f000001:0", "[::ffff:127.0.0.1]:0", "localhost:0"])
def test_every_spelling_of_loopback_keeps_the_host_check(tiny_model, bind):
    """`127.1`, `0x7f000001` and `[::ffff:127.0.0.1]` bind to loopback; the Host check must stay on (it went
    off: `Host: evil.com` got 200), decided by the address bound to."""
    running = Preview(["--source", "demo", "--model", str(tiny_model), "--bind", bind])
    try:
        assert running.get("/labels.json", headers={"Host": "evil.com"})[0] == 403
        assert running.get("/labels.json", headers={"Host": "attacker.example:80"})[0] == 403
        assert running.get("/labels.json", headers={"Host": "127.0.0.1:80"})[0] == 200
        assert running.get("/labels.json", headers={"Host": "localhost"})[0] == 200
        assert running.get("/labels.json", headers={"Host": bind.rsplit(":", 1)[0]})[0] == 200  # as typed
    finally:
        assert running.stop() == 0


def test_loopback_is_told_by_address_and_ports_by_ascii_digits():
    assert is_loopback("::ffff:127.0.0.1") and is_loopback("::ffff:127.8.9.1")
    assert not is_loopback("::ffff:10.0.0.1")
    for bad in ("127.0.0.1:\u0663", "127.0.0.1:\uff18\uff10", "127.0.0.1:+80", "127.0.0.1: 80"):  # "٣", "８０"
        with pytest.raises(ConfigError, match="the port must be 0..65535"):
            parse_bind(bad)


def test_a_port_in_other_digits_is_refused_in_one_line():
    out = subprocess.run(PREVIEW + ["--source", "demo", "--bind", "127.0.0.1:\u0663"], capture_output=True,
                         text=True, timeout=START_S, check=False)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--bind" in out.stderr, out.stderr


def test_clients_that_reset_get_no_traceback_and_http09_gets_a_reply(preview):
    host, port = _port(preview)
    for _ in range(20):  # reset in the middle of the request line
        sock = socket.create_connection((host, port))
        sock.sendall(b"GET /lab")
        _reset(sock)
    for _ in range(5):  # reset while being streamed to
        sock = socket.create_connection((host, port))
        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.recv(100)
        _reset(sock)
    started = time.monotonic()
    reply = _raw(preview, b"GET /labels.json\r\n")  # HTTP/0.9: no version, no headers
    assert reply.startswith(b"HTTP/1.0 505 "), reply[:200]
    assert time.monotonic() - started < 3 and not reply.endswith(b"<no close>")
    assert preview.get("/labels.json")[0] == 200  # still serving
    assert preview.stop() == 0
    stderr = "".join(preview.stderr)
    assert "Traceback" not in stderr and "ConnectionResetError" not in stderr, stderr[-3000:]


def test_clients_that_never_read_the_stream_do_not_lock_viewers_out(preview):
    """8 clients that ask for /stream.mjpg and never read used to take every viewer's place (503 for all)."""
    preview.wait_for_face()
    host, port = _port(preview)
    stuck = []
    for _ in range(preview_module.MAX_VIEWERS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a frame or two
        sock.connect((host, port))
        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        stuck.append(sock)
    try:
        time.sleep(2.0)  # a few frames at 10 fps: every one of them is stuck in a write
        started = time.monotonic()
        image = cv2.imdecode(np.frombuffer(_first_part(preview), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (480, 640, 3)
        assert time.monotonic() - started < 5
    finally:
        for sock in stuck:
            sock.close()
    assert preview.stop() == 0


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))


def test_connections_are_served_by_a_bounded_number_of_threads_and_a_burst_gets_in(preview):
    """One thread per connection without a limit (100 idle clients: 100 threads); a listen backlog of 5
    (200 connects at once: half waited a second or more for a SYN retry)."""
    host, port = _port(preview)
    before = _threads(preview.proc.pid)
    idle = [socket.create_connection((host, port)) for _ in range(100)]  # connect, never send a request
    try:
        time.sleep(1.0)
        grown = _threads(preview.proc.pid) - before
        assert grown <= preview_module.MAX_CONNECTIONS, grown
        busy = idle[-1].recv(200)  # one over the limit: a 503 instead of a thread
        assert busy.startswith(b"HTTP/1.0 503 "), busy
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.5)
    slowest = 0.0
    burst = []
    for _ in range(200):
        started = time.monotonic()
        burst.append(socket.create_connection((host, port), timeout=10))
        slowest = max(slowest, time.monotonic() - started)
    for sock in burst:
        sock.close()
    assert slowest < 0.5, f"a connect waited {slowest:.2f} s"
    assert preview.get("/labels.json")[0] == 200
    assert preview.stop() == 0


def test_sigterm_under_load_stops_within_half_a_second(preview):
    preview.wait_for_face()
    host, port = _port(preview)
    stop = threading.Event()

    def hammer(path: str) -> None:
        while not stop.is_set():
            try:
                with socket.create_connection((host, port), timeout=2) as sock:
                    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
                    while sock.recv(65536):
                        if stop.is_set():
                            break
            except OSError:
                time.sleep(0.01)

    workers = [threading.Thread(target=hammer, args=(path,), daemon=True)
               for path in ["/stream.mjpg"] * 6 + ["/frame.jpg"] * 6 + ["/labels.json", "/"] * 3]
    for worker in workers:
        worker.start()
    try:
        time.sleep(2.0)
        sent = time.monotonic()
        preview.proc.send_signal(signal.SIGTERM)
        code = preview.proc.wait(timeout=10)
        took = time.monotonic() - sent
        time.sleep(0.2)  # the stderr reader's last lines
        assert code == 0, "".join(preview.stderr)[-3000:]
    finally:
        stop.set()
    print(f"\nSIGTERM under load: {took:.2f} s")
    assert took <= 0.5, f"SIGTERM under load took {took:.2f} s"
