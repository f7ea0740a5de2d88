"""The frame sources: folders, image files, videos, cameras; what they skip, refuse and wait for."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import types

import cv2
import numpy as np
import pytest
from helpers import EDGE, as_nobody, gray_images, one_error_line, run_edge, within, write_config

from ferlite.edge.contract.errors import SourceError, SourceOpenError
from ferlite.edge.runtime.sources import (
    Frame,
    InputSettings,
    Picamera2Source,
    ReopeningSource,
    VideoCaptureSource,
    demo_source,
    open_source,
)
from ferlite.edge.runtime.testing import ReplaySource


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
    source = open_source(str(tmp_path / "f"), InputSettings(loop=True))
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
    looped = open_source(str(path), InputSettings(loop=True))
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


def test_image_named_in_invalid_utf8_is_read_not_a_segfault(tmp_path, tiny_model):
    folder = gray_images(tmp_path / "photos", 1)
    shutil.copy(folder / "img_000.png", os.path.join(os.fsencode(folder), b"zz\xff.png"))
    out = run_edge(["--source", str(folder), "--model", str(tiny_model), "--threads", "1"])
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    files = [json.loads(line)["file"] for line in out.stdout.splitlines()]
    assert files == ["img_000.png", "zz\udcff.png"]  # JSON escapes the undecodable byte


def test_video_named_in_invalid_utf8_is_refused_in_one_line(tmp_path, tiny_model):
    path = os.path.join(os.fsencode(tmp_path), b"clip\xff.avi")
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(3):
        writer.write(np.full((48, 64, 3), 90, np.uint8))
    writer.release()
    os.rename(tmp_path / "clip.avi", path)
    line = one_error_line(run_edge(["--source", os.fsdecode(path), "--model", str(tiny_model)]))
    assert "clip" in line and "UTF-8" in line


def test_unreadable_pass_backs_off_doubling_and_sees_files_come_back(tmp_path):
    from ferlite.edge.runtime.sources import open_source

    folder = gray_images(tmp_path / "f", 1)
    sleeps: list[float] = []
    waits: list[int] = []
    source = open_source(str(folder), InputSettings(loop=True, reopen_initial_s=0.5, reopen_max_s=2.0),
                         on_wait=lambda: waits.append(1))
    source._sleep = sleeps.append  # record instead of waiting
    assert source.read().file == "img_000.png"
    good = (folder / "img_000.png").read_bytes()
    (folder / "img_000.png").unlink()  # deleted while it runs
    (folder / "x.png").write_bytes(b"broken")

    def restore(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 4:
            (folder / "y.png").write_bytes(good)

    source._sleep = restore
    frame = within(10, source.read)
    assert frame is not None and frame.file == "y.png"
    assert sleeps == [0.5, 1.0, 2.0, 2.0]  # doubling, capped; never a spin
    assert len(waits) == 4  # the watchdog hears about each wait


def test_unreadable_pass_returns_when_asked_to_stop(tmp_path):
    from ferlite.edge.runtime.sources import open_source

    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"junk")
    stop = {"now": False}
    source = open_source(str(folder), InputSettings(loop=True, reopen_initial_s=30.0, reopen_max_s=60.0),
                         should_stop=lambda: stop["now"])
    threading.Timer(0.3, lambda: stop.update(now=True)).start()
    started = time.monotonic()
    assert within(10, source.read) is None
    assert time.monotonic() - started < 5.0  # not the 30 s back-off


def test_float_tiff_holding_nan_is_skipped_and_the_folder_goes_on(tmp_path):
    from ferlite.edge.runtime.sources import open_source

    folder = tmp_path / "f"
    folder.mkdir()
    bad = np.full((32, 32), 0.5, np.float32)
    bad[3, 3] = np.nan
    assert cv2.imwrite(str(folder / "a_nan.tiff"), bad)
    inf = np.full((32, 32), 0.5, np.float32)
    inf[0, 0] = np.inf
    assert cv2.imwrite(str(folder / "b_inf.tiff"), inf)
    assert cv2.imwrite(str(folder / "c_ok.tiff"), np.full((32, 32), 0.25, np.float32))
    with open_source(str(folder)) as source:
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
    assert [f.file for f in frames] == ["c_ok.tiff"]
    assert frames[0].image.dtype == np.uint8
    assert source.skipped == 2


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header is edited to claim another size."""
    ok, data = cv2.imencode(".jpg", np.full((16, 16, 3), 120, np.uint8))
    assert ok
    raw = bytearray(data.tobytes())
    sof = raw.index(b"\xff\xc0")
    struct.pack_into(">HH", raw, sof + 5, height, width)
    return bytes(raw)


def test_huge_image_is_skipped_from_its_header_without_decoding(tmp_path):
    from ferlite.edge.runtime.sources import image_size, open_source

    folder = tmp_path / "f"
    folder.mkdir()
    assert image_size(_jpeg_claiming(20000, 20000)) == (20000, 20000)
    (folder / "a_huge.jpg").write_bytes(_jpeg_claiming(8000, 8000))  # 64 MP: above the 40 MP default
    cv2.imwrite(str(folder / "b_ok.jpg"), np.full((40, 40, 3), 90, np.uint8))
    started = time.monotonic()
    with open_source(str(folder)) as source:
        frame = within(10, source.read)
        assert frame is not None and frame.file == "b_ok.jpg"
        assert source.skipped == 1
    assert time.monotonic() - started < 5.0  # nothing decoded (20000x20000 took 51 s and 5.9 GB)


def test_pixel_cap_is_a_setting(tmp_path, tiny_model):
    folder = tmp_path / "f"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_big.png"), np.full((200, 200, 3), 90, np.uint8))
    cv2.imwrite(str(folder / "b_small.png"), np.full((50, 50, 3), 90, np.uint8))
    config = write_config(tmp_path, "max_image_pixels = 10000\n")
    out = run_edge(["--config", str(config), "--source", str(folder), "--model", str(tiny_model), "--threads", "1"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert [json.loads(line)["file"] for line in out.stdout.splitlines()] == ["b_small.png"]
    assert "a_big.png" in out.stderr and "max_image_pixels" in out.stderr


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".pgm", ".ppm", ".tiff", ".webp"])
def test_image_size_read_from_every_supported_header(ext):
    from ferlite.edge.runtime.sources import image_size

    image = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    if ext == ".pgm":
        image = image[:, :, 0]
    ok, data = cv2.imencode(ext, image)
    assert ok
    assert image_size(data.tobytes()) == (53, 37)


def test_image_size_of_garbage_is_none():
    from ferlite.edge.runtime.sources import image_size

    assert image_size(b"") is None
    assert image_size(b"\xff\xd8\xff" + b"\x00" * 50) is None
    assert image_size(b"II*\x00" + b"\xff" * 8) is None
    assert image_size(b"not an image at all") is None


def test_fifo_named_jpg_as_the_source_exits_2_at_once(tmp_path, tiny_model):
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)
    line = one_error_line(run_edge(["--source", str(fifo), "--model", str(tiny_model)], timeout=60))
    assert "camera.jpg" in line and "regular file" in line


def test_fifo_in_place_of_an_image_is_skipped_not_waited_on(tmp_path):
    from ferlite.edge.runtime.sources import open_source

    folder = gray_images(tmp_path / "f", 2)
    with open_source(str(folder)) as source:
        (folder / "img_001.png").unlink()
        os.mkfifo(folder / "img_001.png")  # swapped in after the folder was listed
        assert source.read().file == "img_000.png"
        assert within(5, source.read) is None  # not blocked on the FIFO
        assert source.skipped == 1


def test_folder_not_readable_by_a_non_root_user_exits_2(shared_dir, tiny_model):
    prefix = as_nobody()
    folder = gray_images(shared_dir / "private", 1)
    folder.chmod(0o311)  # may enter, may not list
    out = subprocess.run(prefix + EDGE + ["--source", str(folder), "--model", str(tiny_model)],
                         capture_output=True, text=True, timeout=60, check=False)
    line = one_error_line(out)
    assert "private" in line and "Permission denied" in line
