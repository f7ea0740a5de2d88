"""Photos as frames: a folder (listed again on each pass), one image file, the demo folder."""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...contract import DEMO_DIR, IMAGE_SUFFIXES
from ...contract.errors import SourceOpenError
from ..backoff import Backoff, stoppable_sleep
from .base import DEFAULT_MAX_PIXELS, DEFAULT_REOPEN_S, Closing, Frame
from .imagefile import UnusableImage, read_image

log = logging.getLogger(__name__)

def list_images(folder: Path) -> list[Path]:
    """The folder's image files (by suffix), sorted; FIFOs, devices and folders are left out."""
    try:
        entries = list(folder.iterdir())
    except OSError as e:
        raise SourceOpenError(f"{folder}: cannot list folder ({e.strerror})") from e
    images = []
    for path in entries:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            regular = stat.S_ISREG(path.stat().st_mode)
        except OSError:  # gone, or a dangling link
            continue
        if regular:
            images.append(path)
    return sorted(images)



class ImageFilesSource(Closing):
    """A list of image files, one frame each, in order; unreadable files are skipped and counted.

    A folder (`folder` given) that loops is listed again at the start of every pass, so files
    added or removed while it runs are seen. A looping pass in which no file could be read
    backs off (`backoff`: first and longest wait, doubling) instead of spinning; the wait calls
    `on_wait` (the watchdog) and ends early when `should_stop()` is true.
    """

    MAX_WARNED = 1000  # files warned about by name; the rest at DEBUG
    temporal = False  # unrelated photos
    fps: float | None = None

    def __init__(
        self,
        files: Sequence[Path],
        name: str,
        loop: bool = False,
        *,
        folder: Path | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        backoff: tuple[float, float] = DEFAULT_REOPEN_S,
        should_stop: Callable[[], bool] = lambda: False,
        on_wait: Callable[[], None] = lambda: None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if not files:
            raise SourceOpenError(f"{name}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.name = name
        self.files = list(files)
        self.loop = loop
        self.folder = folder
        self.max_pixels = max_pixels
        self.backoff = backoff
        self.skipped = 0
        self.read_count = 0
        self._should_stop = should_stop
        self._on_wait = on_wait
        self._sleep = sleep or (lambda seconds: stoppable_sleep(seconds, should_stop))
        self._index = 0
        self.passes = 0  # passes completed (a looping folder): 0 while the first pass runs
        self._pass_read = False
        self._backoff = Backoff(*backoff)
        self._warned: set[str] = set()
        self._next_idle_warning = 0.0

    def read(self) -> Frame | None:
        while not self._should_stop():
            if self._index >= len(self.files):
                if not self.loop:
                    return None
                self._next_pass()
                continue
            path = self.files[self._index]
            self._index += 1
            try:
                image = read_image(path, self.max_pixels)
            except UnusableImage as e:
                self._skip(path, str(e))
                continue
            self._pass_read = True
            self.read_count += 1
            return Frame(image=image, file=path.name, repeat=self.passes > 0)
        return None

    def _skip(self, path: Path, why: str) -> None:
        self.skipped += 1
        key = os.fspath(path)
        if key in self._warned or len(self._warned) >= self.MAX_WARNED:
            log.debug("%s: %s, skipped", path, why)
            return
        self._warned.add(key)
        log.warning("%s: %s, skipped", path, why)

    def _next_pass(self) -> None:
        if self._pass_read:
            self._backoff.reset()
        else:
            now = time.monotonic()
            if now >= self._next_idle_warning:
                log.warning(
                    "%s: no readable image in a whole pass (%d skipped so far); retrying every %.1f s "
                    "at most (this is logged once a minute)", self.name, self.skipped, self.backoff[1],
                )
                self._next_idle_warning = now + 60.0
            self._on_wait()
            self._sleep(self._backoff.next_delay())
        self._pass_read = False
        self._index = 0
        self.passes += 1
        if self.folder is not None:
            try:
                self.files = list_images(self.folder)
            except SourceOpenError as e:
                log.debug("%s", e)
                self.files = []


def folder_source(folder: Path, loop: bool = False, **options: Any) -> ImageFilesSource:
    return ImageFilesSource(list_images(folder), str(folder), loop=loop, folder=folder, **options)


def demo_source(loop: bool = False, **options: Any) -> ImageFilesSource:
    """Frames that ship inside the package (public-domain photos), for a first run without a camera."""
    return ImageFilesSource(list_images(DEMO_DIR), "demo", loop=loop, **options)


# A video file is decoded on one thread: FFmpeg's default (one per core, plus one) keeps a frame
