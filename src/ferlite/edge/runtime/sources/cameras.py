"""Frames from OpenCV's VideoCapture (V4L2 cameras, video files) and from picamera2 (the Pi camera)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ...contract.errors import SourceError, SourceOpenError
from ...contract.files import opencv_path
from .base import DEFAULT_FRAME_SIZE, DEFAULT_MAX_PIXELS, Closing, Frame

log = logging.getLogger(__name__)

VIDEO_DECODE_THREADS = 1


def _open_capture(factory: Callable[..., Any], target: str | int, live: bool) -> Any:
    if live or factory is not cv2.VideoCapture:
        return factory(target)
    capture = factory(target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, VIDEO_DECODE_THREADS])
    if capture.isOpened():
        return capture
    capture.release()
    return factory(target)  # not an FFmpeg file: let OpenCV pick the backend


def _whole(value: object) -> int:
    """A capture property (a float; NaN or absurd when the backend does not know) as a size in pixels."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    return int(number) if math.isfinite(number) and 0 < number < 1 << 31 else 0


class VideoCaptureSource(Closing):
    """OpenCV VideoCapture: a V4L2 camera (live) or a video file (finite, or looped).

    A video file's frames carry their position in the video (`pos_ms`), and the last one says so
    (`last`): the next frame is grabbed (demuxed and decoded, not yet converted) before a frame is
    returned, which costs no copy of a frame.
    """

    temporal = True
    skipped = 0
    folder: Path | None = None

    def __init__(
        self,
        target: str | int,
        live: bool,
        loop: bool = False,
        size: tuple[int, int] | None = None,
        capture_factory: Callable[..., Any] = cv2.VideoCapture,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.name = str(target)
        self.live = live
        self.loop = loop
        self.max_pixels = max_pixels
        if isinstance(target, str):
            target = opencv_path(target, SourceOpenError, "video source")
        self._capture = _open_capture(capture_factory, target, live)
        if live and size:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceOpenError(f"{self.name}: cannot open video source")
        # The frame size the container (or camera) declares, before a frame is decoded: a 12000x12000
        # MJPEG frame takes ~430 MB decoded, and FFmpeg keeps more than one.
        get = getattr(self._capture, "get", lambda _prop: 0.0)  # a capture that cannot say: checked per frame
        width, height = _whole(get(cv2.CAP_PROP_FRAME_WIDTH)), _whole(get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > max_pixels:
            self._capture.release()
            raise SourceOpenError(
                f"{self.name}: frames of {width}x{height} pixels, more than max_image_pixels ({max_pixels})"
            )
        self._grabbed: bool | None = None  # video files: whether the next frame is grabbed; None: not tried
        self._index = 0  # video files: frames returned since the video (re)started

    @property
    def files(self) -> tuple[Path, ...]:
        """The video file; none for a camera (live)."""
        return () if self.live else (Path(self.name),)

    @property
    def fps(self) -> float | None:
        """The frame rate the video file reports; None when it does not say, and for a camera (live)."""
        if self.live:
            return None
        value = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return value if 0.0 < value < 1000.0 else None

    def read(self) -> Frame | None:
        if self.live:
            ok, image = self._capture.read()
            if not ok:
                raise SourceError(f"{self.name}: camera stopped delivering frames")
            if self._oversized(image):  # reopened with the usual back-off, never spun on
                raise SourceError(f"{self.name}: {self._oversized(image)}")
            return Frame(image=image)
        if self._grabbed is None:
            self._grabbed = self._grab()
        if not self._grabbed:
            return None
        pos_ms = self._position()
        ok, image = self._capture.retrieve()
        if not ok:
            self._grabbed = False
            return None
        too_big = self._oversized(image)
        if too_big:  # a frame larger than the header said: the video ends here (one frame decoded, no more)
            log.warning("%s: %s; the video ends here", self.name, too_big)
            self._grabbed = False
            return None
        self._index += 1
        self._grabbed = self._grab()
        return Frame(image=image, pos_ms=pos_ms, last=not self._grabbed)

    def _oversized(self, image: np.ndarray) -> str:
        """Why a decoded frame is refused ("" when it is not): more pixels than max_pixels."""
        height, width = image.shape[:2]
        if width * height <= self.max_pixels:
            return ""
        return f"a frame of {width}x{height} pixels, more than max_image_pixels ({self.max_pixels})"

    def _grab(self) -> bool:
        """Grab the next frame of the file; at its end, start it again when looping."""
        if self._capture.grab():
            return True
        if self.loop and self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self._index = 0
            return bool(self._capture.grab())
        return False

    def _position(self) -> float | None:
        """The grabbed frame's position (ms): what the file says, else its index at the reported frame rate."""
        pos = float(self._capture.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
        if math.isfinite(pos) and (pos > 0 or (pos == 0 and self._index == 0)):
            return round(pos, 3)
        fps = self.fps
        return round(self._index * 1000.0 / fps, 3) if fps else None

    def close(self) -> None:
        self._capture.release()


class Picamera2Source(Closing):
    """picamera2's lores YUV420 stream; the Y plane goes straight to Haar, no colour conversion."""

    temporal = True
    fps: float | None = None
    skipped = 0
    files: tuple[Path, ...] = ()
    folder: Path | None = None

    def __init__(self, size: tuple[int, int] = DEFAULT_FRAME_SIZE, module: Any = None) -> None:
        self.name = "picamera2"
        if module is None:
            try:
                module = importlib.import_module("picamera2")
            except ImportError as e:
                raise SourceOpenError(
                    "picamera2: not importable (on a Pi: apt install python3-picamera2 and a "
                    "venv made with --system-site-packages)"
                ) from e
        width, height = size
        try:
            self._camera = module.Picamera2()
            config = self._camera.create_preview_configuration(
                main={"size": (width, height)},
                lores={"size": (width, height), "format": "YUV420"},
            )
            self._camera.configure(config)
            self._camera.start()
        except (RuntimeError, OSError, IndexError) as e:
            raise SourceOpenError(f"picamera2: cannot start camera ({e})") from e
        self._height = height
        self._width = width

    def read(self) -> Frame | None:
        try:
            yuv = self._camera.capture_array("lores")
        except (RuntimeError, OSError) as e:
            raise SourceError(f"picamera2: capture failed ({e})") from e
        # YUV420 comes as (h * 3 / 2, w): the first h rows are the Y (luma) plane.
        return Frame(image=yuv[: self._height, : self._width])

    def close(self) -> None:
        try:
            self._camera.stop()
        finally:
            self._camera.close()
