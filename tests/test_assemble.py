"""One composition root (api.assemble) and one reopen wrapper (sources.ReopeningSource): what fer-edge and
fer-preview both run, and what a source says of itself (temporal, fps, skipped) instead of being sniffed."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from helpers import write_face_video

from ferlite.edge.apps import preview as preview_module
from ferlite.edge.apps.daemon import Signals
from ferlite.edge.contract.errors import SourceOpenError, StartupError
from ferlite.edge.runtime.api import assemble
from ferlite.edge.runtime.config import EdgeConfig
from ferlite.edge.runtime.loop import LoopStats
from ferlite.edge.runtime.sources import InputSettings, ReopeningSource, open_reopening
from ferlite.edge.runtime.testing import ReplaySource

# The daemon's own requests (flags the signal handlers set; nothing is installed unless install() is called).
Asked = Signals


def _photos(folder, count=2, image=None):
    folder.mkdir()
    image = np.full((32, 32, 3), 128, np.uint8) if image is None else image
    for i in range(count):
        cv2.imwrite(str(folder / f"p{i}.png"), image)
    return folder


def test_a_reopen_asked_for_opens_the_source_afresh_and_a_failed_one_keeps_it():
    frames = [np.zeros((2, 2), np.uint8)] * 3
    opened: list[ReplaySource] = []
    works = iter([True, True, False])

    def opener():
        if not next(works):
            raise SourceOpenError("cam: gone")
        opened.append(ReplaySource(frames, name="cam"))
        return opened[-1]

    asked = Asked()
    source = ReopeningSource(opener, requests=asked, sleep=lambda s: None)
    assert source.read() is not None and opened[0].reads == 1
    asked.reopen = True
    assert source.read() is not None
    assert len(opened) == 2 and opened[0].closed and opened[1].reads == 1 and source.reopens == 1
    asked.reopen = True  # this open fails: the current source stays
    assert source.read() is not None and opened[1].reads == 2 and not opened[1].closed
    assert source.reopens == 1
    asked.stop = True
    assert source.read() is None


def test_a_finished_source_asked_to_reopen_starts_again_instead_of_ending():
    asked = Asked()
    source = ReopeningSource(lambda: ReplaySource([np.zeros((2, 2), np.uint8)]), requests=asked)
    assert source.read() is not None
    asked.reopen = True  # as SIGHUP after a file ended: reopened, its frames come again
    assert source.read() is not None and source.reopens == 1
    assert source.read() is None  # ended, nothing asked: the end


def test_a_reopen_asked_for_while_a_folder_waits_ends_the_wait_and_reopens_it(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"junk")
    asked = Asked()
    source = open_reopening(str(folder), asked, InputSettings(loop=True, reopen_initial_s=30.0, reopen_max_s=60.0))

    def sighup():
        cv2.imwrite(str(folder / "b.png"), np.zeros((8, 8, 3), np.uint8))
        asked.reopen = True

    threading.Timer(0.3, sighup).start()
    started = time.monotonic()
    frame = source.read()  # nothing readable: the folder waits 30 s, unless asked
    assert frame is not None and frame.file == "b.png" and source.reopens == 1
    assert time.monotonic() - started < 5.0
    source.close()


def test_sources_say_whether_frames_follow_each_other_and_a_recordings_rate(tmp_path, astronaut):
    folder = _photos(tmp_path / "photos")
    (folder / "broken.png").write_bytes(b"not an image")
    with open_reopening(str(folder), Asked(), InputSettings(loop=True)) as photos:
        first, second = photos.read(), photos.read()
        assert not photos.temporal and photos.fps is None
        assert photos.skipped == 1  # broken.png, sorted first
        again = [photos.read() for _ in range(2)]
        assert not first.repeat and not second.repeat and all(f.repeat for f in again)  # the second pass
        assert photos.skipped == 2  # broken.png once more
    assert photos.skipped == 2  # still readable after close, for the summary
    clip = write_face_video(tmp_path / "clip.avi", astronaut, frames=3, fps=12.0)
    with open_reopening(str(clip), Asked()) as video:
        assert video.temporal and video.fps == pytest.approx(12.0) and video.skipped == 0
    assert ReplaySource([astronaut]).temporal


def test_assemble_opens_the_configs_source_or_says_why_in_one_line(tmp_path, tiny_model):
    parts = assemble(EdgeConfig(model=str(tiny_model), threads=1, source=str(_photos(tmp_path / "p"))))
    with parts.open_source() as source:
        assert not parts.pipeline_for(source).settings.temporal
    missing = assemble(EdgeConfig(model=str(tiny_model), threads=1, source=str(tmp_path / "none")))
    with pytest.raises(StartupError, match="no such file"):
        missing.open_source()


def test_preview_reopens_its_source_on_sighup_as_fer_edge_does(monkeypatch, tmp_path, tiny_model):
    seen: dict = {}

    def fake_loop(source, pipeline, sinks, **kwargs):
        seen["first"] = source.read()
        signals.reopen = True  # SIGHUP
        seen["second"] = source.read()
        seen["reopens"] = source.reopens
        seen["status"] = kwargs["status_requested"]
        return LoopStats(started=time.monotonic(), ended="stop")

    monkeypatch.setattr(preview_module, "run_loop", fake_loop)
    signals = Signals()
    config = EdgeConfig(source=str(_photos(tmp_path / "p")), model=str(tiny_model), threads=1)
    assert preview_module.serve(config, ("127.0.0.1", 0), 80, signals, signals) == 0
    assert seen["first"].file == seen["second"].file == "p0.png"  # opened afresh: the first photo again
    assert seen["reopens"] == 1
    signals.status = True  # SIGUSR1
    assert seen["status"]() and not signals.status
