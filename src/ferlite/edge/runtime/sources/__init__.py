"""Frame sources behind one tiny protocol: read() -> Frame | None, close(), context manager, and what a
caller needs to know of them (name, temporal, fps, skipped, files, folder).

read() returns None when a finite source ends and raises SourceError when a live source fails (a camera
unplugged); ReopeningSource turns such failures into reopen-with-backoff, and reopens any source when asked
(SIGHUP).

The modules, one responsibility each (each imports only those above it):
  base.py        Frame, the FrameSource protocol, Closing, InputSettings (the [input] table of fer-edge's
                 config, beside the code that reads it; EdgeConfig derives from it) and the sources' defaults
  imagefile.py   one image file as a frame: size from the header before decoding, EXIF orientation, refusals
  photos.py      ImageFilesSource: a folder (listed again each pass), one image, the demo
  cameras.py     VideoCaptureSource (V4L2 cameras, video files) and Picamera2Source
  reopening.py   ReopeningSource, the one reopen wrapper, and the Requests it answers (stop, reopen)
  opening.py     open_source / open_reopening / source_opener: a --source spec to an open source
"""

from __future__ import annotations

from .base import (
    DEFAULT_FRAME_SIZE,
    DEFAULT_MAX_PIXELS,
    DEFAULT_REOPEN_S,
    VIDEO_SUFFIXES,
    Closing,
    Frame,
    FrameSource,
    InputSettings,
)
from .cameras import Picamera2Source, VideoCaptureSource
from .imagefile import UnusableImage, exif_orientation, image_size, read_image
from .opening import open_reopening, open_source, short_name, source_opener
from .photos import ImageFilesSource, demo_source, folder_source
from .reopening import ReopeningSource, Requests, StopOnly

__all__ = [
    "DEFAULT_FRAME_SIZE",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_REOPEN_S",
    "VIDEO_SUFFIXES",
    "Closing",
    "Frame",
    "FrameSource",
    "ImageFilesSource",
    "InputSettings",
    "Picamera2Source",
    "ReopeningSource",
    "Requests",
    "StopOnly",
    "UnusableImage",
    "VideoCaptureSource",
    "demo_source",
    "exif_orientation",
    "folder_source",
    "image_size",
    "open_reopening",
    "open_source",
    "read_image",
    "short_name",
    "source_opener",
]
