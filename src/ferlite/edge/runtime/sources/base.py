"""What every frame source is: the Frame, the FrameSource protocol, the InputSettings (the [input]
table of fer-edge's config) that say how a source is opened and read, and the sources' defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from ...contract import settings
from ...contract.errors import ConfigError
from ...contract.settings import setting

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg", ".h264"})
# The sources' defaults, here once (EdgeConfig's max_image_pixels, frame_width/frame_height and
# reopen_initial_s/reopen_max_s take them as theirs).
DEFAULT_MAX_PIXELS = 40_000_000  # an image file whose header says more is skipped unread
DEFAULT_FRAME_SIZE = (640, 480)  # width, height asked of a camera
DEFAULT_REOPEN_S = (0.5, 10.0)  # first and longest wait before reopening a failed camera (or re-reading a folder)
BYTES_PER_PIXEL = 4  # a file larger than max_pixels * this (+ 1 MiB) is no image worth decoding
MAX_CAMERA_INDEX = 99  # --source N: cameras 0..99 (a larger number: its /dev/videoN)


@dataclass(frozen=True)
class InputSettings(settings.Settings):
    """How frames are read: how many, how fast, at what size, how a lost camera is reopened."""

    max_frames: int | None = setting(None, "stop after this many frames", low=1, high=2**62, group="input")
    loop: bool = setting(False, "replay a folder or video forever", group="input")
    frame_width: int = setting(DEFAULT_FRAME_SIZE[0], "camera sources only: frame width asked for", low=16,
                               high=16384, group="input")
    frame_height: int = setting(DEFAULT_FRAME_SIZE[1], "camera sources only: frame height asked for", low=16,
                                high=16384, group="input")
    fps_limit: float | None = setting(None, "image/video sources: pace to this rate (default: as fast as possible)",
                                      low=0.01, high=1000.0, group="input")
    reopen_initial_s: float = setting(DEFAULT_REOPEN_S[0], "first wait before reopening a failed camera",
                                      low=0.001, high=3600.0, group="input")
    reopen_max_s: float = setting(DEFAULT_REOPEN_S[1], "longest wait between reopening attempts", low=0.001,
                                  high=3600.0, group="input")
    max_image_pixels: int = setting(DEFAULT_MAX_PIXELS, "image sources: a file whose header says it holds more "
                                    "pixels is skipped unread", low=64, high=1 << 30, group="input")

    def check_relations(self) -> None:
        super().check_relations()
        if self.reopen_max_s < self.reopen_initial_s:
            raise ConfigError("reopen_initial_s must be <= reopen_max_s")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR (h, w, 3) or gray (h, w): a picamera2 Y plane is gray
    file: str | None = None  # image sources: the file's name
    pos_ms: float | None = None  # video files: the frame's position in the video (ms from its start)
    last: bool = False  # video files: no frame follows (the file ends here and does not loop)
    repeat: bool = False  # a looping photo source's later passes: this photo was given before


class FrameSource(Protocol):
    """Where frames come from. Besides read() and close(), a source says what its callers must know:

    name: what logs and the feed call it (the source as given).
    temporal: True when its frames follow each other (a camera, a video: tracked and smoothed); False
        for unrelated photos (a folder, one image, the demo: each searched in full, no tracks).
    fps: the rate a recording plays at (a video file); None for a live camera (it paces itself) and
        photos.
    skipped: frames it could not give so far (unreadable photos); 0 for a camera or video.
    files: the files it reads frames from (a video file, the photos); empty for a camera.
    folder: the folder it lists again on each pass (a folder source); None otherwise.
    """

    name: str

    @property
    def temporal(self) -> bool: ...

    @property
    def fps(self) -> float | None: ...

    @property
    def skipped(self) -> int: ...

    @property
    def files(self) -> Sequence[Path]: ...

    @property
    def folder(self) -> Path | None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Closing:
    """Context-manager plumbing shared by the sources."""

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
