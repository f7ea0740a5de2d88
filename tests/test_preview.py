"""fer-preview: its HTTP endpoints on loopback, and the page in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
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

from ferlite.edge import preview as preview_module
from ferlite.edge.annotate import COLOURS
from ferlite.edge.config import ConfigError, EdgeConfig
from ferlite.edge.contract import LABELS
from ferlite.edge.loop import LoopStats
from ferlite.edge.preview import DEFAULT_BIND, build_parser, is_loopback, labels_text, parse_bind

PREVIEW = [sys.executable, "-m", "ferlite.edge.preview"]
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
        match = re.search(r"http://127\.0\.0\.1:\d+/", found[0] if found else "")
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
