"""Frame sources behind one tiny protocol: read() -> Frame | None, close(), context manager.

read() returns None when a finite source ends and raises SourceError when a live source
fails (a camera unplugged); ReopeningSource turns such failures into reopen-with-backoff.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg", ".h264"})
DEMO_DIR = Path(__file__).resolve().parent / "demo"


class SourceError(RuntimeError):
    """A frame could not be read (the source may come back)."""


class SourceOpenError(SourceError):
    """The source cannot be opened at all (bad path, no camera, nothing to read)."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR (h, w, 3) or gray (h, w): a picamera2 Y plane is gray
    file: str | None = None  # image sources: the file's name


class FrameSource(Protocol):
    name: str

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _Closing:
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


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class ImageFilesSource(_Closing):
    """A list of image files, one frame each, in order; unreadable files are skipped and counted."""

    def __init__(self, files: Sequence[Path], name: str, loop: bool = False) -> None:
        if not files:
            raise SourceOpenError(f"{name}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.name = name
        self.files = list(files)
        self.loop = loop
        self.skipped = 0
        self._next = self._cycle()

    def _cycle(self) -> Iterator[Path]:
        while True:
            yield from self.files
            if not self.loop:
                return

    def read(self) -> Frame | None:
        for path in self._next:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is None:
                self.skipped += 1
                log.warning("%s: unreadable image, skipped", path)
                continue
            if image.dtype != np.uint8:
                image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
            return Frame(image=image, file=path.name)
        return None


def folder_source(folder: Path, loop: bool = False) -> ImageFilesSource:
    return ImageFilesSource(list_images(folder), str(folder), loop=loop)


def demo_source(loop: bool = False) -> ImageFilesSource:
    """Frames that ship inside the package (public-domain photos), for a first run without a camera."""
    return ImageFilesSource(list_images(DEMO_DIR), "demo", loop=loop)


class ReplaySource(_Closing):
    """Replays frames from memory: the fake camera of tests and benchmarks.

    `fail_every=N` makes every Nth read raise SourceError, as a camera that drops out would.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        name: str = "replay",
        loop: bool = False,
        fail_every: int | None = None,
        live: bool = True,
    ) -> None:
        if not images:
            raise SourceOpenError(f"{name}: no frames to replay")
        self.name = name
        self.images = list(images)
        self.loop = loop
        self.fail_every = fail_every
        self.live = live
        self.reads = 0
        self.closed = False
        self._index = 0

    def read(self) -> Frame | None:
        if self.closed:
            raise SourceError(f"{self.name}: read after close")
        self.reads += 1
        if self.fail_every and self.reads % self.fail_every == 0:
            raise SourceError(f"{self.name}: simulated camera failure at read {self.reads}")
        if self._index >= len(self.images):
            if not self.loop:
                return None
            self._index = 0
        image = self.images[self._index]
        self._index += 1
        return Frame(image=image)

    def close(self) -> None:
        self.closed = True


class VideoCaptureSource(_Closing):
    """OpenCV VideoCapture: a V4L2 camera (live) or a video file (finite, or looped)."""

    def __init__(
        self,
        target: str | int,
        live: bool,
        loop: bool = False,
        size: tuple[int, int] | None = None,
        capture_factory: Callable[..., Any] = cv2.VideoCapture,
    ) -> None:
        self.name = str(target)
        self.live = live
        self.loop = loop
        self._capture = capture_factory(target)
        if live and size:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceOpenError(f"{self.name}: cannot open video source")

    def read(self) -> Frame | None:
        ok, image = self._capture.read()
        if ok:
            return Frame(image=image)
        if self.live:
            raise SourceError(f"{self.name}: camera stopped delivering frames")
        if self.loop and self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            ok, image = self._capture.read()
            if ok:
                return Frame(image=image)
        return None

    def close(self) -> None:
        self._capture.release()


class Picamera2Source(_Closing):
    """picamera2's lores YUV420 stream; the Y plane goes straight to Haar, no colour conversion."""

    def __init__(self, size: tuple[int, int] = (640, 480), module: Any = None) -> None:
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


class ReopeningSource(_Closing):
    """Wraps a live source: when it fails, close it and reopen with exponential backoff."""

    def __init__(
        self,
        opener: Callable[[], FrameSource],
        initial_s: float = 0.5,
        max_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
        on_wait: Callable[[], None] = lambda: None,
    ) -> None:
        self._opener = opener
        self._on_wait = on_wait  # e.g. the systemd watchdog: reopening is progress, not a hang
        self._source: FrameSource | None = opener()  # a failure at start-up is the caller's
        self.name = self._source.name
        self.initial_s = initial_s
        self.max_s = max_s
        self._sleep = sleep
        self._should_stop = should_stop
        self.reopens = 0

    def read(self) -> Frame | None:
        delay = self.initial_s
        while not self._should_stop():
            if self._source is not None:
                try:
                    return self._source.read()
                except SourceError as e:
                    log.warning("%s; reopening in %.1f s", e, delay)
                    self._drop()
            self._on_wait()
            self._sleep(delay)
            delay = min(delay * 2, self.max_s)
            try:
                self._source = self._opener()
            except SourceError as e:
                log.warning("%s; retrying in %.1f s", e, delay)
                continue
            self.reopens += 1
            log.info("%s reopened", self.name)
        return None

    def _drop(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except (RuntimeError, OSError) as e:
                log.debug("closing failed source: %s", e)

    def close(self) -> None:
        self._drop()


def _v4l2_or_error(size: tuple[int, int]) -> FrameSource:
    if Path("/dev/video0").exists():
        return VideoCaptureSource("/dev/video0", live=True, size=size)
    raise SourceOpenError("auto: no picamera2 module and no /dev/video0; give --source")


def _picamera2_importable() -> bool:
    return importlib.util.find_spec("picamera2") is not None


def open_source(
    spec: str,
    loop: bool = False,
    size: tuple[int, int] = (640, 480),
    reopen: tuple[float, float] = (0.5, 10.0),
    should_stop: Callable[[], bool] = lambda: False,
    on_wait: Callable[[], None] = lambda: None,
) -> FrameSource:
    """auto | demo | picamera2 | /dev/videoN | N | VIDEO FILE | IMAGE | FOLDER."""
    opener: Callable[[], FrameSource]
    if spec == "demo":
        return demo_source(loop)
    if spec == "auto":
        opener = (lambda: Picamera2Source(size)) if _picamera2_importable() else (
            lambda: _v4l2_or_error(size)
        )
    elif spec == "picamera2":
        opener = lambda: Picamera2Source(size)  # noqa: E731
    elif spec.isdigit() or spec.startswith("/dev/video"):
        target: str | int = int(spec) if spec.isdigit() else spec
        opener = lambda: VideoCaptureSource(target, live=True, size=size)  # noqa: E731
    else:
        return _open_path(Path(spec), loop)
    return ReopeningSource(opener, reopen[0], reopen[1], should_stop=should_stop, on_wait=on_wait)


def _open_path(path: Path, loop: bool) -> FrameSource:
    if path.is_dir():
        return folder_source(path, loop)
    if not path.exists():
        raise SourceOpenError(f"{path}: no such file, folder or camera")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return ImageFilesSource([path], str(path), loop=loop)
    if suffix in VIDEO_SUFFIXES:
        return VideoCaptureSource(str(path), live=False, loop=loop)
    raise SourceOpenError(f"{path}: not an image, video or folder ({suffix or 'no suffix'})")
