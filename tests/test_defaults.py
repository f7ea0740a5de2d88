"""Each default is written once, beside the code that reads it: fer-edge's settings take it from there, and every
function that has it as a default says the same (no copy to drift)."""

from __future__ import annotations

import inspect

from ferlite.edge.apps import watch
from ferlite.edge.runtime import feed, sources
from ferlite.edge.runtime.config import EdgeConfig


def _default(function, name):
    return inspect.signature(function).parameters[name].default


def test_the_feeds_defaults_are_fer_edges():
    config = EdgeConfig()
    assert config.socket_mode == feed.DEFAULT_SOCKET_MODE == _default(feed.SocketFeed, "mode") == 0o660
    assert config.socket_buffer == feed.DEFAULT_SOCKET_BUFFER == _default(feed.SocketFeed, "buffer_limit")


def test_fer_watch_reads_the_feeds_default_socket(capsys):
    assert watch.DEFAULT_SOCKET is feed.DEFAULT_SOCKET
    try:
        watch.main(["--help"])
    except SystemExit:
        pass
    assert f"default {feed.DEFAULT_SOCKET}" in capsys.readouterr().out


def test_the_sources_defaults_are_fer_edges():
    config = EdgeConfig()
    assert config.max_image_pixels == sources.DEFAULT_MAX_PIXELS == _default(sources.read_image, "max_pixels")
    assert config.max_image_pixels == _default(sources.ImageFilesSource, "max_pixels")
    # the sources open from InputSettings: their defaults are fer-edge's, field for field
    assert sources.InputSettings.of(config) == _default(sources.open_source, "settings") == sources.InputSettings()
    assert _default(sources.open_reopening, "settings") == sources.InputSettings()
    size = (config.frame_width, config.frame_height)
    assert size == sources.DEFAULT_FRAME_SIZE
    assert size == _default(sources.Picamera2Source, "size")
    reopen = (config.reopen_initial_s, config.reopen_max_s)
    assert reopen == sources.DEFAULT_REOPEN_S
    assert reopen == _default(sources.ImageFilesSource, "backoff")
    assert reopen == (_default(sources.ReopeningSource, "initial_s"), _default(sources.ReopeningSource, "max_s"))


def test_the_trackers_and_the_pyramids_defaults_are_fer_edges():
    from ferlite.edge.algorithm import detector, sweep, tracking

    config = EdgeConfig()
    assert config.max_faces == tracking.DEFAULT_MAX_FACES == _default(tracking.FaceTracker, "max_faces")
    assert config.scale_factor == sweep.DEFAULT_SCALE_FACTOR == sweep.PyramidCost.__dataclass_fields__[
        "scale_factor"].default == _default(detector.HaarDetector, "scale_factor")
