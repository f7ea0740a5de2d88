"""Frame sources behind one tiny protocol: read() -> Frame | None, close(), context manager, and what a
caller needs to know of them (name, temporal, fps, skipped).

read() returns None when a finite source ends and raises SourceError when a live source
fails (a camera unplugged); ReopeningSource turns such failures into reopen-with-backoff, and
reopens any source when asked (SIGHUP).

InputSettings (the [input] table of fer-edge's config) are how a source is opened and read, beside the code
that reads them; EdgeConfig derives from them.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import os
import stat
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import cv2
import numpy as np

from ..contract import DEMO_DIR, IMAGE_SUFFIXES, settings
from ..contract.errors import ConfigError, FileRefusedError, SourceError, SourceOpenError
from ..contract.files import name_problem, opencv_path, read_bytes
from ..contract.settings import setting
from .backoff import Backoff, stoppable_sleep

log = logging.getLogger(__name__)

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


class UnusableImage(Exception):
    """An image file that cannot be a frame; the message says why."""


def _u16(data: bytes, offset: int, order: str) -> int:
    return int(struct.unpack_from(order + "H", data, offset)[0])


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    for marker, at, _ in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack_from(">HH", data, at + 5)
            return int(width), int(height)
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    big = _u16(data, 2, order) == 43
    if big:
        offset = int(struct.unpack_from(order + "Q", data, 8)[0])
        count = int(struct.unpack_from(order + "Q", data, offset)[0])
        first, entry, value_at = offset + 8, 20, 12
    else:
        offset = int(struct.unpack_from(order + "I", data, 4)[0])
        count = _u16(data, offset, order)
        first, entry, value_at = offset + 2, 12, 8
    size: dict[int, int] = {}
    for n in range(min(count, 4096)):
        at = first + n * entry
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            code = "H" if kind == 3 else "I" if kind == 4 else "Q" if kind == 16 else None
            if code is None:
                return None
            size[tag] = int(struct.unpack_from(order + code, data, at + value_at)[0])
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    head = data[:4096]
    if head[:2] == b"P7":  # PAM: WIDTH and HEIGHT lines
        fields = dict(line.split(None, 1) for line in head.split(b"\n") if b" " in line.strip())
        return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    tokens: list[bytes] = []
    for line in head[2:].split(b"\n"):
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            return int(tokens[0]), int(tokens[1])
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        return _u16(data, 26, "<") & 0x3FFF, _u16(data, 28, "<") & 0x3FFF
    if chunk == b"VP8L":
        bits = int(struct.unpack_from("<I", data, 21)[0])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an image file's header without decoding it; None when the format
    is not one of IMAGE_SUFFIXES' or the header is broken."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg_size(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            width, height = struct.unpack_from(">II", data, 16)
            return int(width), int(height)
        if data[:2] == b"BM":
            if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 core header
                return _u16(data, 18, "<"), _u16(data, 20, "<")
            width, height = struct.unpack_from("<ii", data, 18)
            return abs(int(width)), abs(int(height))
        if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
            return _tiff_size(data)
        if len(data) > 2 and data[:1] == b"P" and data[1:2] in b"1234567fF":
            return _pnm_size(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except (struct.error, ValueError, KeyError, IndexError):
        return None
    return None


# EXIF Orientation (TIFF tag 274): 1 upright; 2-8 how the stored pixels must be turned to be shown.
ORIENTATION_TAG = 0x0112
MAX_EXIF_ENTRIES = 1024  # IFD0 of a real photo holds a few dozen; a count past this is a broken block
MAX_SEGMENTS = 4096  # JPEG markers / PNG / RIFF chunks looked at before giving up


def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation of an EXIF block (a TIFF header and IFD0); 1 when it has none or is broken."""
    if tiff[:6] == b"Exif\0\0":  # some PNG/WebP writers keep JPEG's APP1 prefix
        tiff = tiff[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or _u16(tiff, 2, order) != 42:
        return 1
    ifd = int(struct.unpack_from(order + "I", tiff, 4)[0])
    count = _u16(tiff, ifd, order)
    if count > MAX_EXIF_ENTRIES:
        return 1
    for n in range(count):
        at = ifd + 2 + 12 * n
        tag, kind, values = struct.unpack_from(order + "HHI", tiff, at)
        if tag != ORIENTATION_TAG:
            continue
        if kind != 3 or values != 1:  # SHORT, one value: anything else is a broken tag
            return 1
        value = _u16(tiff, at + 8, order)
        return value if 1 <= value <= 8 else 1
    return 1


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """A JPEG's marker segments before its image data, as (marker, offset of its 0xFF, length after the
    marker): the one walk for the frame size and the EXIF block. It stops at the start of scan or the end
    of image, at a byte that is no marker, at the end of the data, and after MAX_SEGMENTS steps."""
    i = 2
    for _ in range(MAX_SEGMENTS):
        if i + 4 > len(data) or data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # TEM, RSTn, SOI: no length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan
            return
        length = _u16(data, i + 2, ">")
        yield marker, i, length
        i += 2 + length


def _jpeg_exif(data: bytes) -> bytes | None:
    """The EXIF block of a JPEG's APP1 "Exif" segment (before its image data), if any."""
    for marker, at, length in _jpeg_segments(data):
        if marker == 0xE1 and data[at + 4 : at + 10] == b"Exif\0\0":
            return data[at + 10 : at + 2 + length]
    return None


def _chunk_exif(data: bytes, png: bool) -> bytes | None:
    """The EXIF chunk of a PNG (eXIf: length then kind, big-endian, 4 CRC bytes after the data) or a WebP
    (EXIF: kind then length, little-endian, data padded to an even length)."""
    i, wanted = (8, b"eXIf") if png else (12, b"EXIF")
    for _ in range(MAX_SEGMENTS):
        if i + 8 > len(data):
            return None
        if png:
            length, kind = int(struct.unpack_from(">I", data, i)[0]), data[i + 4 : i + 8]
        else:
            kind, length = data[i : i + 4], int(struct.unpack_from("<I", data, i + 4)[0])
        if kind == wanted:
            return data[i + 8 : i + 8 + length]
        if png and kind == b"IEND":
            return None
        i += 8 + length + (4 if png else length & 1)
    return None


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation (1-8) of a JPEG, PNG or WebP file's bytes; 1 when there is none, and for
    a missing, truncated or corrupt EXIF block (never an exception).

    These are the formats whose orientation OpenCV applies only in cv2.imread/IMREAD_COLOR, never with
    IMREAD_UNCHANGED (which read_image decodes with). TIFF is left alone: its decoder turns it itself.
    """
    try:
        if data[:3] == b"\xff\xd8\xff":
            block = _jpeg_exif(data)
        elif data[:8] == b"\x89PNG\r\n\x1a\n":
            block = _chunk_exif(data, png=True)
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            block = _chunk_exif(data, png=False)
        else:
            return 1
        return _tiff_orientation(block) if block else 1
    except (struct.error, ValueError, IndexError):
        return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """The image as a viewer shows it under an EXIF Orientation (the same turns as cv2.imread's):
    2 mirrored, 3 turned 180 degrees, 4 flipped, 5 transposed, 6 turned 90 degrees clockwise,
    7 transverse, 8 turned 90 degrees counter-clockwise; 1 (or anything else) as it is."""
    if orientation == 1 or not 2 <= orientation <= 8:
        return image
    if orientation >= 5:
        image = np.swapaxes(image, 0, 1)
    turned = {2: image[:, ::-1], 3: image[::-1, ::-1], 4: image[::-1], 5: image,
              6: image[:, ::-1], 7: image[::-1, ::-1], 8: image[::-1]}[orientation]
    return np.ascontiguousarray(turned)


def _frame_image(image: np.ndarray) -> np.ndarray:
    """A decoded image as the pipeline takes it: uint8, gray or 3/4 channels."""
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise UnusableImage(f"unsupported image shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise UnusableImage("holds NaN or infinite values")
    peak = float(np.max(np.abs(image)))
    return cv2.convertScaleAbs(image, alpha=255.0 / max(1.0, peak))


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one image file from bytes read here, upright, or raise UnusableImage saying why.

    The file is read by the one hardened reader (files.read_bytes: opened without blocking, a regular
    file of at most what `max_pixels` needs; a FIFO named .jpg would block forever); its header must
    name at most `max_pixels` pixels before anything is decoded.
    cv2.imread is never used: it crashes on names that are not valid UTF-8. The image comes back
    as a viewer shows it: its EXIF orientation (a phone's portrait photo) applied, as cv2.imread
    would. Every image file fer-edge, fer-preview and the API read comes through here.
    """
    max_bytes = max_pixels * BYTES_PER_PIXEL + (1 << 20)
    problem = name_problem(path, opencv=False)
    if problem is not None:  # a NUL byte: os.open would raise ValueError
        raise UnusableImage(problem)
    try:
        data, _ = read_bytes(path, max_bytes)
    except FileRefusedError as e:
        raise UnusableImage(_refusal(e)) from e
    size = image_size(data)
    if size is None:
        raise UnusableImage("not a JPEG, PNG, BMP, PNM, TIFF or WebP image")
    width, height = size
    if width * height > max_pixels:
        raise UnusableImage(f"{width}x{height} pixels, more than max_image_pixels ({max_pixels})")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise UnusableImage("cannot decode") from e
    if image is None or image.size == 0:
        raise UnusableImage("cannot decode")
    if image.shape[0] * image.shape[1] > max_pixels:  # the header lied
        raise UnusableImage(f"decodes to more than max_image_pixels ({max_pixels})")
    return apply_orientation(_frame_image(image), exif_orientation(data))


def _refusal(e: FileRefusedError) -> str:
    """Why an image file was not read, in the words of a skipped file's warning."""
    if e.kind == "a directory":  # a file turned into a folder after the listing
        return "a folder, not an image file"
    if e.limit is not None:
        size = f"{e.size} bytes" if e.size is not None else "grew while read"
        return f"{size}, more than an image of max_image_pixels needs"
    return str(e)


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
# buffer per thread, several MB on a Pi, for no gain at 640x480 where Haar and the model dominate.
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


class Requests(Protocol):
    """What a running source is asked from elsewhere (daemon.Signals: set by signal handlers).

    `__call__()`: stop. `interrupted()`: stop, or a reopen is asked for; a source's waits end on it.
    `take_reopen()`: whether a reopen was asked for, taking the request.
    """

    def __call__(self) -> bool: ...

    def interrupted(self) -> bool: ...

    def take_reopen(self) -> bool: ...


class StopOnly:
    """Requests for a caller that can only ask to stop (`should_stop`); a reopen is never asked for."""

    def __init__(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        self._should_stop = should_stop

    def __call__(self) -> bool:
        return self._should_stop()

    def interrupted(self) -> bool:
        return self._should_stop()

    def take_reopen(self) -> bool:
        return False


class ReopeningSource(Closing):
    """A source that is opened again: when it fails (a camera unplugged: closed, then reopened with
    exponential backoff) and when asked (`requests.take_reopen()`, SIGHUP: a camera, video or folder
    is opened afresh at once; if that fails, the current source stays). The one reopen wrapper."""

    def __init__(
        self,
        opener: Callable[[], FrameSource],
        initial_s: float = DEFAULT_REOPEN_S[0],
        max_s: float = DEFAULT_REOPEN_S[1],
        sleep: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_wait: Callable[[], None] = lambda: None,
        requests: Requests | None = None,
    ) -> None:
        """`requests` default to only `should_stop`; `sleep` defaults to a wait that ends early when
        requests.interrupted() turns true."""
        self._opener = opener
        self._on_wait = on_wait  # e.g. the systemd watchdog: reopening is progress, not a hang
        self._requests: Requests = requests or StopOnly(should_stop)
        self._source: FrameSource | None = opener()  # a failure at start-up is the caller's
        self.name = self._source.name
        self._skipped_before = 0  # the last source closed: its count stays readable after close()
        self.initial_s = initial_s
        self.max_s = max_s
        self._sleep = sleep or (lambda seconds: stoppable_sleep(seconds, self._requests.interrupted))
        self.reopens = 0

    @property
    def temporal(self) -> bool:
        """The open source's; True while none is open (only a camera fails, and is reopened)."""
        return self._source.temporal if self._source is not None else True

    @property
    def fps(self) -> float | None:
        return self._source.fps if self._source is not None else None

    @property
    def skipped(self) -> int:
        """The open source's count (a fresh open starts again); after close(), the last one's."""
        return self._source.skipped if self._source is not None else self._skipped_before

    @property
    def files(self) -> Sequence[Path]:
        return self._source.files if self._source is not None else ()

    @property
    def folder(self) -> Path | None:
        return self._source.folder if self._source is not None else None

    @property
    def current(self) -> FrameSource | None:
        """The source open now; None while a failed one waits to be reopened."""
        return self._source

    def read(self) -> Frame | None:
        backoff = Backoff(self.initial_s, self.max_s)
        while not self._requests():
            if self._requests.take_reopen():
                self._reopen_on_request()
            if self._source is not None:
                try:
                    frame = self._source.read()
                except SourceError as e:
                    log.warning("%s; reopening in %.1f s", e, backoff.delay)
                    self._drop()
                else:
                    if frame is None and self._requests.take_reopen():  # it stopped waiting to be reopened
                        self._reopen_on_request()
                        continue
                    return frame
            self._on_wait()
            self._sleep(backoff.next_delay())
            if self._requests():
                break
            self._requests.take_reopen()  # asked while waiting: the open below is that reopen
            try:
                self._source = self._opener()
            except SourceError as e:
                log.warning("%s; retrying in %.1f s", e, backoff.delay)
                continue
            self.reopens += 1
            log.info("%s reopened", self.name)
        return None

    def _reopen_on_request(self) -> None:
        try:
            fresh = self._opener()
        except SourceError as e:
            log.warning("reopen requested: %s; keeping the current source", e)
            return
        self._drop()
        self._source = fresh
        self.reopens += 1
        log.info("reopen requested: %s reopened", self.name)

    def _drop(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except (RuntimeError, OSError) as e:
                log.debug("closing the old source: %s", e)

    def close(self) -> None:
        if self._source is not None:
            self._skipped_before = self._source.skipped
        self._drop()


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


def short_name(text: str, limit: int = 200) -> str:
    """A source as given, cut to fit one error line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
