from __future__ import annotations

import sys
import types

import cv2
import numpy as np
import pytest

from ferlite.edge.sources import (
    Frame,
    Picamera2Source,
    ReopeningSource,
    SourceError,
    SourceOpenError,
    VideoCaptureSource,
    demo_source,
    open_source,
)
from ferlite.edge.testing import ReplaySource


def _write_images(folder, count):
    folder.mkdir(exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"img_{i:04d}.png"), np.full((20, 30, 3), i * 10, np.uint8))


def test_folder_yields_sorted_images_and_skips_corrupt(tmp_path):
    folder = tmp_path / "frames"
    _write_images(folder, 3)
    (folder / "img_0001b.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("ignored")
    with open_source(str(folder)) as source:
        names = []
        while (frame := source.read()) is not None:
            names.append(frame.file)
        assert names == ["img_0000.png", "img_0001.png", "img_0002.png"]
        assert source.skipped == 1


def test_folder_loop_replays(tmp_path):
    _write_images(tmp_path / "f", 2)
    source = open_source(str(tmp_path / "f"), loop=True)
    assert [source.read().file for _ in range(5)] == ["img_0000.png", "img_0001.png"] * 2 + ["img_0000.png"]


@pytest.mark.parametrize("spec", ["does/not/exist", "empty_dir", "file.xyz"])
def test_bad_sources_refused(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "file.xyz").write_text("?")
    with pytest.raises(SourceOpenError, match=spec.split("/")[0]):
        open_source(spec)


def test_demo_ships_real_faces():
    source = demo_source()
    frame = source.read()
    assert frame is not None and frame.image.ndim == 3 and frame.file


def test_video_file_source_and_loop(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    with open_source(str(path)) as source:
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
        assert len(frames) == 4 and frames[0].image.shape == (48, 64, 3)
    looped = open_source(str(path), loop=True)
    assert sum(looped.read() is not None for _ in range(9)) == 9
    looped.close()


class FakeCapture:
    def __init__(self, target, frames_before_failure=2, opened=True):
        self.target = target
        self.left = frames_before_failure
        self.opened = opened
        self.props = {}

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.opened

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def read(self):
        if self.left == 0:
            return False, None
        self.left -= 1
        return True, np.zeros((480, 640, 3), np.uint8)

    def release(self):
        self.opened = False


def test_live_camera_failure_raises_for_reopen():
    source = VideoCaptureSource("/dev/video9", live=True, size=(640, 480), capture_factory=FakeCapture)
    assert source.read() is not None and source.read() is not None
    with pytest.raises(SourceError, match="stopped delivering"):
        source.read()


def test_camera_that_cannot_open_is_refused():
    with pytest.raises(SourceOpenError, match="cannot open"):
        VideoCaptureSource("/dev/video9", live=True, capture_factory=lambda t: FakeCapture(t, opened=False))


def test_reopening_source_backs_off_and_recovers():
    frame = np.zeros((4, 4), np.uint8)
    opened = []
    attempts = iter([True, False, False, True])  # first open works, two reopen failures, then back

    def opener():
        if not next(attempts):
            raise SourceOpenError("camera gone")
        source = ReplaySource([frame] * 3, fail_every=3)
        opened.append(source)
        return source

    sleeps = []
    waits = []
    source = ReopeningSource(opener, initial_s=0.5, max_s=1.5, sleep=sleeps.append, on_wait=lambda: waits.append(1))
    got = [source.read() for _ in range(4)]
    assert all(isinstance(f, Frame) for f in got)
    assert sleeps == [0.5, 1.0, 1.5]  # doubled, capped at max_s
    assert len(waits) == 3  # the watchdog hears about each wait
    assert source.reopens == 1
    assert opened[0].closed  # the failed camera was closed before reopening
    source.close()
    assert opened[1].closed


def test_reopening_source_stops_when_asked():
    def opener():
        return ReplaySource([np.zeros((2, 2), np.uint8)], fail_every=1)

    stop = iter([False, False, True])
    source = ReopeningSource(opener, sleep=lambda s: None, should_stop=lambda: next(stop))
    assert source.read() is None


class StandInPicamera2:
    """Mimics exactly the Picamera2 calls ferlite makes."""

    instances: list[StandInPicamera2] = []

    def __init__(self):
        self.calls = []
        self.config = None
        StandInPicamera2.instances.append(self)

    def create_preview_configuration(self, main=None, lores=None):
        self.calls.append("create_preview_configuration")
        return {"main": main, "lores": lores}

    def configure(self, config):
        self.calls.append("configure")
        self.config = config

    def start(self):
        self.calls.append("start")

    def capture_array(self, name):
        self.calls.append(f"capture_array:{name}")
        width, height = self.config[name]["size"]
        yuv = np.zeros((height * 3 // 2, width), np.uint8)
        yuv[:height] = 200  # luma
        yuv[height:] = 50  # chroma: must not leak into the frame
        return yuv

    def stop(self):
        self.calls.append("stop")

    def close(self):
        self.calls.append("close")


def test_picamera2_source_reads_the_lores_y_plane():
    module = types.SimpleNamespace(Picamera2=StandInPicamera2)
    with Picamera2Source((320, 240), module=module) as source:
        frame = source.read()
    camera = StandInPicamera2.instances[-1]
    assert camera.config["lores"] == {"size": (320, 240), "format": "YUV420"}
    assert frame.image.shape == (240, 320) and (frame.image == 200).all()
    assert camera.calls == [
        "create_preview_configuration", "configure", "start", "capture_array:lores", "stop", "close"
    ]


def test_picamera2_missing_module_is_a_clear_error(monkeypatch):
    # None in sys.modules makes any import of it fail, even on a Pi where picamera2 is installed.
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceOpenError, match="python3-picamera2"):
        Picamera2Source()
