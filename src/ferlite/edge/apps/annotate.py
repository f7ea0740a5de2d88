"""Boxes, labels, scores and track ids drawn on frames, and written as a video or as image files.

`draw_result(frame, result)` is the public helper; fer-edge --annotate and fer-preview use it.
Nothing here is imported unless annotation is asked for.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..algorithm.frames import check_frame
from ..algorithm.pipeline import FrameResult
from ..contract import IMAGE_SUFFIXES
from ..contract.atomic import atomic_write
from ..contract.errors import AnnotateError
from ..contract.files import name_problem, opencv_path
from ..runtime.sources import Frame, FrameSource

log = logging.getLogger(__name__)

# BGR, one per label (Angry, Disgust, Happy, Neutral, Sad, Surprise). Each box and caption is drawn inside a
# dark OUTLINE, so a light colour (Neutral's gray, Happy's yellow) still stands out on a white wall or a
# pale face, and the colour itself stands out on a dark one (tests/test_annotate.py measures the contrast).
COLOURS: dict[str, tuple[int, int, int]] = {
    "Angry": (40, 40, 230),
    "Disgust": (40, 160, 40),
    "Happy": (0, 200, 255),
    "Neutral": (200, 200, 200),
    "Sad": (230, 120, 30),
    "Surprise": (220, 60, 220),
}
_OTHER = (0, 255, 0)
OUTLINE = (0, 0, 0)
NOTE_BACKGROUND = (0, 0, 0)  # a note ("no face"): white on black, readable on any photo
NOTE_TEXT = (255, 255, 255)
# Video containers and the codecs tried for each, best first. MP4: H.264 (`avc1`) plays in every browser, but
# OpenCV's pip wheels carry no H.264 encoder (a Pi's own OpenCV or an FFmpeg build with libx264 may); MPEG-4
# Part 2 (`mp4v`) is always there and plays in VLC and ffmpeg, not in most browsers. VP9 would play, but
# encodes at ~170 ms a 640x480 frame: too slow for the frame loop.
VIDEO_CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("avc1", "mp4v"), ".m4v": ("avc1", "mp4v"), ".mov": ("avc1", "mp4v"), ".avi": ("MJPG",), ".mkv": ("MJPG",),
}
BROWSER_CODECS = frozenset({"avc1"})  # what a browser's <video> plays in an MP4/MOV
_warned_codecs: set[str] = set()  # "may not play in a browser" is said once per process and codec
DEFAULT_FPS = 30.0


def caption(label: str, score: float, track: int | None = None) -> str:
    """"#3 Happy 0.93" (no track id for stills): the text drawn above a face, and the preview's."""
    return f"{'' if track is None else f'#{track} '}{label} {score:.2f}"


def draw_result(frame: np.ndarray, result: FrameResult, *, copy: bool = True, note: str | None = None) -> np.ndarray:
    """Draw one frame's faces on the frame: a box per face and "#track label score" above it.

    Args:
        frame: the frame the result is for (BGR, BGRA, gray or a YUV420 Y plane, uint8).
        result: its FrameResult (from Recognizer.process, or a Pipeline).
        copy: False draws into `frame` itself when it is already BGR (no copy made).
        note: a line written at the top left, white on black (fer-edge: "no face" on a photo
            in which none was found).

    Returns:
        A BGR (H, W, 3) uint8 image with the annotations; `frame` is untouched unless copy=False.

    Raises:
        InputError: the frame is None, empty, not uint8 or of another shape.
    """
    image = check_frame(frame)
    if image.ndim == 2 or image.shape[2] == 1:
        out = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        out = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    else:
        out = image.copy() if copy and image is frame else image  # check_frame may have copied it already
    height, width = out.shape[:2]
    thick = max(1, round(min(width, height) / 240))
    font_scale = max(0.4, min(width, height) / 900)
    edge = max(1, thick // 2)  # the outline's width on each side of a line
    for face in result.faces:
        x, y, w, h = face.box
        colour = COLOURS.get(face.label, _OTHER)
        text = caption(face.label, face.score, face.track)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
        top = y - th - base - 2 * thick
        if top < 0:  # no room above: inside the box, at its top
            top = y
        left = min(max(0, x), max(0, width - tw - 2 * thick))
        corner = (left + tw + 2 * thick, top + th + base + 2 * thick)
        # The outlines first (a wider dark line, a larger dark box), the colour over them: dark on each side.
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), OUTLINE, thick + 2 * edge)
        cv2.rectangle(out, (left - edge, top - edge), (corner[0] + edge, corner[1] + edge), OUTLINE, cv2.FILLED)
        cv2.rectangle(out, (left, top), corner, colour, cv2.FILLED)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, thick)
        cv2.putText(out, text, (left + thick, top + th + thick), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (0, 0, 0), thick, cv2.LINE_AA)
    if note:
        (tw, th), base = cv2.getTextSize(note, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
        pad = 3 * thick
        cv2.rectangle(out, (0, 0), (tw + 2 * pad, th + base + 2 * pad), NOTE_BACKGROUND, cv2.FILLED)
        cv2.putText(out, note, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, NOTE_TEXT, thick, cv2.LINE_AA)
    return out


class VideoAnnotator:
    """Annotated frames into one video file; opened on the first frame (its size is the video's).

    A frame of another size (a camera reopened differently) is resized to the first one.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float = DEFAULT_FPS,
                 writer_factory: Callable[..., Any] | None = None) -> None:
        # cv2.VideoWriter crashes (SIGSEGV) on a name that is not UTF-8: refused here, at start.
        self.path = Path(opencv_path(path, AnnotateError, "annotate"))
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise AnnotateError(
                f"{self.path}: annotate: a video source needs a video file ({', '.join(sorted(VIDEO_CODECS))})"
            )
        _check_folder(self.path.parent)
        self.fps = fps if fps and fps > 0 else DEFAULT_FPS
        self.codecs = VIDEO_CODECS[suffix]
        self.codec = self.codecs[0]  # the one written, once open
        self._factory = writer_factory or cv2.VideoWriter
        self.frames = 0
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self._failed = False

    def __call__(self, frame: Frame, result: FrameResult, note: str | None = None) -> None:
        if self._failed:
            return
        image = draw_result(frame.image, result, note=note)
        height, width = image.shape[:2]
        if self._writer is None:
            self._open(width, height)
            if self._writer is None:
                return
        assert self._size is not None
        if (width, height) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        writer = None
        for codec in self.codecs:
            # An encoder OpenCV lacks makes FFmpeg print its own errors; they say nothing the log below does not.
            with _quiet_stderr(enabled=codec != self.codecs[-1]):
                writer = self._factory(str(self.path), cv2.VideoWriter.fourcc(*codec), self.fps, (width, height))
            if writer.isOpened():
                self.codec = codec
                break
            writer.release()
            writer = None
        if writer is None:
            self._failed = True
            log.error("%s: annotate: OpenCV cannot write %s video here; no annotated output", self.path,
                      " or ".join(self.codecs))
            return
        self._writer = writer
        self._size = (width, height)
        log.info("annotated video: %s (%dx%d, %s, %.1f fps)", self.path, width, height, self.codec, self.fps)
        browser = [codec for codec in self.codecs if codec in BROWSER_CODECS]
        if browser and self.codec not in BROWSER_CODECS and self.codec not in _warned_codecs:
            _warned_codecs.add(self.codec)
            log.warning("annotate: this OpenCV has no %s (H.264) encoder; writing %s, which VLC and ffmpeg play but "
                        "browsers may not (for a browser: ffmpeg -i %s -c:v libx264 -pix_fmt yuv420p out.mp4)",
                        browser[0], self.codec, self.path.name)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.info("annotated video: %s, %d frames", self.path, self.frames)

    def __enter__(self) -> VideoAnnotator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageAnnotator:
    """Annotated frames as image files: into a folder, named after each frame's file (stills), or
    into one image file (a single photo; each frame replaces it)."""

    def __init__(self, path: str | os.PathLike[str], source_folder: Path | None = None) -> None:
        problem = name_problem(path, opencv=False)  # files are written here, as bytes: any other name will do
        if problem is not None:
            raise AnnotateError(f"{os.fspath(path)!a}: annotate: {problem}")
        self.path = Path(path)
        self.single = self.path.suffix.lower() in IMAGE_SUFFIXES
        folder = self.path.parent if self.single else self.path
        if source_folder is not None and not self.single and _same_file(folder, source_folder):
            raise AnnotateError(f"{self.path}: annotate: the source folder itself; give another folder")
        if not self.single:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise AnnotateError(f"{folder}: annotate: cannot make the folder ({e.strerror})") from e
        _check_folder(folder)
        self.frames = 0
        self._warned = False

    def target(self, frame: Frame) -> Path:
        if self.single:
            return self.path
        name = frame.file or f"frame_{self.frames:06d}.jpg"
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            name += ".jpg"
        target = self.path / Path(name).name
        return target.with_suffix(".png") if target.suffix.lower() == ".pgm" else target  # PGM is gray only

    def __call__(self, frame: Frame, result: FrameResult, note: str | None = None) -> None:
        target = self.target(frame)
        image = draw_result(frame.image, result, note=note)
        ok, data = cv2.imencode(target.suffix.lower(), image)
        try:
            if not ok:
                raise OSError(0, f"OpenCV cannot encode {target.suffix}")
            # Bytes written here, not cv2.imwrite: that crashes on names that are not UTF-8. Written to a
            # new file renamed over the target: a target that is a hard link to a photo replaces the
            # link, never the photo's bytes.
            atomic_write(target, data.tobytes())
        except OSError as e:
            if not self._warned:
                log.error("%s: annotate: cannot write (%s)", target, e.strerror or e)
                self._warned = True
            return
        self.frames += 1

    def close(self) -> None:
        log.info("annotated images: %s, %d written", self.path, self.frames)

    def __enter__(self) -> ImageAnnotator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _quiet_stderr(enabled: bool = True) -> Iterator[None]:
    """File descriptor 2 to /dev/null for a moment: FFmpeg's and OpenCV's C code print there directly
    when an encoder is missing. Python's own stderr is flushed first."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (closed): nothing to quieten
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_folder(folder: Path) -> None:
    folder = folder if str(folder) else Path(".")
    if not folder.is_dir():
        raise AnnotateError(f"{folder}: annotate: no such folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AnnotateError(f"{folder}: annotate: folder not writable")


def open_annotator(
    path: str | os.PathLike[str], *, stills: bool, fps: float | None = None, source_folder: Path | None = None
) -> VideoAnnotator | ImageAnnotator:
    """The writer fer-edge --annotate uses: image files for stills (a folder, or one image file for
    a single photo), a video file for cameras and videos.

    Args:
        path: where to write.
        stills: the source gives unrelated photos (a folder, one image, the demo).
        fps: the video's frame rate (default: DEFAULT_FPS).
        source_folder: the folder the photos come from (never written into).

    Raises:
        AnnotateError: the path cannot take that kind of output (no such folder, not writable,
            a video path without a video suffix, the source folder itself).
    """
    if stills:
        return ImageAnnotator(path, source_folder)
    return VideoAnnotator(path, fps or DEFAULT_FPS)


def _identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(device, inode) of what a name leads to, through links; None when it leads nowhere."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two names lead to the same existing file or folder (through links and other names)."""
    found = _identity(a)
    return found is not None and found == _identity(b)


def refuse_own_source(target: str | os.PathLike[str], source: FrameSource) -> None:
    """AnnotateError when the annotated output would be written over what the source reads: the video
    itself (its frames still to come), a photo, or into the folder the photos come from. Compared as
    files (device and inode, as os.path.samefile does), so a symbolic or hard link to the source, or
    another name of its folder, is caught too.

    A folder of annotated images names each after its photo: it must not be the folder of a photo
    (`--source a.jpg --annotate .` would replace a.jpg). One annotated image file must not be a
    photo, nor lie in a folder source (the folder is listed again each pass and would read it back).
    """
    target = Path(target)
    video = source.temporal  # a video file (its own file) or a camera (no file)
    files = [Path(f) for f in source.files]
    folder = source.folder
    own = _identity(target)
    if own is not None:
        for file in files:
            if _identity(file) == own:
                raise AnnotateError(f"{target}: annotate: the source {file} itself; give another file")
    if video:
        return
    if target.suffix.lower() in IMAGE_SUFFIXES:  # one image file
        if folder is not None and _same_file(target.parent, folder):
            raise AnnotateError(f"{target}: annotate: into the source folder {folder}; give another folder")
        return
    if own is None:  # a folder still to be made: nobody reads it
        return
    for read_from in ({Path(folder)} if folder is not None else {file.parent for file in files}):
        if _identity(read_from) == own:
            raise AnnotateError(f"{target}: annotate: the source folder itself; give another folder")


def annotator_for(target: str, source: FrameSource, fps_limit: float | None = None) -> VideoAnnotator | ImageAnnotator:
    """fer-edge's --annotate writer: annotated video for a camera or video source, annotated images for
    photos, written to `target` (the config's `annotate`).

    The video's frame rate is `fps_limit` when set, else what the video file or camera reports,
    else DEFAULT_FPS.

    Raises:
        AnnotateError: see open_annotator(); also the output would overwrite the source
            (refuse_own_source()).
    """
    problem = name_problem(target, opencv=False)
    if problem is not None:  # a NUL byte: nothing can be compared or opened with it
        raise AnnotateError(f"{target!a}: annotate: {problem}")
    refuse_own_source(target, source)
    fps = fps_limit or source.fps
    return open_annotator(target, stills=not source.temporal, fps=fps, source_folder=source.folder)
