"""From a --source spec (auto, demo, picamera2, a camera, a video, an image, a folder) to an open source."""

from __future__ import annotations

import importlib
import importlib.util
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...contract import IMAGE_SUFFIXES
from ...contract.errors import SourceOpenError
from ...contract.files import name_problem, opencv_path
from .base import MAX_CAMERA_INDEX, VIDEO_SUFFIXES, FrameSource, InputSettings
from .cameras import Picamera2Source, VideoCaptureSource
from .photos import ImageFilesSource, demo_source, folder_source
from .reopening import ReopeningSource, Requests


def _v4l2_or_error(size: tuple[int, int]) -> FrameSource:
    if Path("/dev/video0").exists():
        return VideoCaptureSource("/dev/video0", live=True, size=size)
    raise SourceOpenError("auto: no picamera2 module and no /dev/video0; give --source")


def _picamera2_importable() -> bool:
    return importlib.util.find_spec("picamera2") is not None


def open_source(
    spec: str,
    settings: InputSettings = InputSettings(),  # noqa: B008 - frozen: one shared default is safe
    should_stop: Callable[[], bool] = lambda: False,
    on_wait: Callable[[], None] = lambda: None,
) -> FrameSource:
    """auto | demo | picamera2 | /dev/videoN | N | VIDEO FILE | IMAGE | FOLDER, read as `settings` say; a
    camera comes in a ReopeningSource (reopened when it fails), a file or folder as it is."""
    opener, live = source_opener(spec, settings, should_stop, on_wait)
    if live:
        return ReopeningSource(opener, settings.reopen_initial_s, settings.reopen_max_s, should_stop=should_stop,
                               on_wait=on_wait)
    return opener()


def open_reopening(
    spec: str,
    requests: Requests,
    settings: InputSettings = InputSettings(),  # noqa: B008 - frozen: one shared default is safe
    on_wait: Callable[[], None] = lambda: None,
) -> ReopeningSource:
    """Any source (as open_source() takes it) in the one reopen wrapper: reopened when it fails and
    when `requests` ask for it (fer-edge and fer-preview on SIGHUP)."""
    opener, _ = source_opener(spec, settings, requests.interrupted, on_wait)
    return ReopeningSource(opener, settings.reopen_initial_s, settings.reopen_max_s, on_wait=on_wait,
                           requests=requests)


def source_opener(
    spec: str,
    settings: InputSettings,
    should_stop: Callable[[], bool] = lambda: False,
    on_wait: Callable[[], None] = lambda: None,
) -> tuple[Callable[[], FrameSource], bool]:
    """What opens the source `spec` names (the spec checked now), and whether it is a camera (live).

    `should_stop`, `on_wait` and the reopen backoff go to the photo sources, which wait between
    passes that read nothing.
    """
    loop, max_pixels = settings.loop, settings.max_image_pixels
    size = (settings.frame_width, settings.frame_height)
    reopen = (settings.reopen_initial_s, settings.reopen_max_s)
    opener: Callable[[], FrameSource]
    if not spec.strip():
        raise SourceOpenError("source is empty; give auto, demo, a camera, a file or a folder")
    images = {"max_pixels": max_pixels, "backoff": reopen, "should_stop": should_stop, "on_wait": on_wait}
    if spec == "demo":
        return (lambda: demo_source(loop, **images)), False
    if spec == "auto":
        opener = (lambda: Picamera2Source(size)) if _picamera2_importable() else (
            lambda: _v4l2_or_error(size)
        )
    elif spec == "picamera2":
        opener = lambda: Picamera2Source(size)  # noqa: E731
    elif (spec.isascii() and spec.isdigit()) or spec.startswith("/dev/video"):
        target: str | int = spec
        if spec.isdigit():  # ASCII digits only: "٣" is no camera 3
            if int(spec) > MAX_CAMERA_INDEX:  # OpenCV takes a C int, and reads 100 and up as a backend
                raise SourceOpenError(f"{short_name(spec)}: a camera number must be 0..{MAX_CAMERA_INDEX} "
                                      "(or give its device, /dev/videoN)")
            target = int(spec)
        else:
            opencv_path(spec, SourceOpenError, "camera")
        opener = lambda: VideoCaptureSource(  # noqa: E731
            target, live=True, size=size, max_pixels=max_pixels)
    else:
        return (lambda: _open_path(spec, loop, images)), False
    return opener, True


def _open_path(spec: str, loop: bool, images: dict[str, Any]) -> FrameSource:
    """A file or folder source. Messages name the source as given (Path would turn rtsp://h/x into rtsp:/h/x)."""
    problem = name_problem(spec, opencv=False)
    if problem is not None:
        raise SourceOpenError(f"{spec!a}: {problem}")
    path = Path(spec)
    shown = short_name(spec)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as e:
        hint = " (URLs are not read: give a camera, a file or a folder)" if "://" in spec else ""
        raise SourceOpenError(f"{shown}: no such file, folder or camera{hint}") from e
    except OSError as e:
        raise SourceOpenError(f"{shown}: cannot open ({e.strerror})") from e
    if stat.S_ISDIR(mode):
        return folder_source(path, loop, **images)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        raise SourceOpenError(f"{shown}: not an image, video or folder ({suffix or 'no suffix'})")
    if not stat.S_ISREG(mode):  # a FIFO or a device named .jpg would block the reader forever
        raise SourceOpenError(f"{shown}: not a regular file")
    if suffix in IMAGE_SUFFIXES:
        return ImageFilesSource([path], str(path), loop=loop, **images)
    opencv_path(spec, SourceOpenError, "video source")
    if not os.access(path, os.R_OK):
        raise SourceOpenError(f"{shown}: cannot open (Permission denied)")
    return VideoCaptureSource(str(path), live=False, loop=loop, max_pixels=images["max_pixels"])


def short_name(text: str, limit: int = 200) -> str:
    """A source as given, cut to fit one error line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
