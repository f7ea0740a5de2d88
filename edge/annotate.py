"""Boxes, labels, scores and track ids drawn on frames, and written as a video or as image files.

`draw_result(frame, result)` is the public helper; fer-edge --annotate and fer-preview use it.
Nothing here is imported unless annotation is asked for.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import (
    AnnotateError,
    )
from .frames import check_frame
from .pipeline import FrameResult
from .sources import IMAGE_SUFFIXES, Frame

log = logging.getLogger(__name__)

# BGR, one per label (Angry, Disgust, Happy, Neutral, Sad, Surprise); readable on dark and light.
COLOURS: dict[str, tuple[int, int, int]] = {
    "Angry": (40, 40, 230),
    "Disgust": (40, 160, 40),
    "Happy": (0, 200, 255),
    "Neutral": (200, 200, 200),
    "Sad": (230, 120, 30),
    "Surprise": (220, 60, 220),
}
_OTHER = (0, 255, 0)
NOTE_BACKGROUND = (0, 0, 0)  # a note ("no face"): white on black, readable on any photo
NOTE_TEXT = (255, 255, 255)
# Video containers and the codec written into each (all in OpenCV's bundled FFmpeg).
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
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
    for face in result.faces:
        x, y, w, h = face.box
        colour = COLOURS.get(face.label, _OTHER)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, thick)
        text = caption(face.label, face.score, face.track)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
        top = y - th - base - 2 * thick
        if top < 0:  # no room above: inside the box, at its top
            top = y
        left = min(max(0, x), max(0, width - tw - 2 * thick))
        cv2.rectangle(out, (left, top), (left + tw + 2 * thick, top + th + base + 2 * thick), colour, cv2.FILLED)
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

    def __init__(self, path: str | os.PathLike[str], fps: float = DEFAULT_FPS) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise AnnotateError(
                f"{self.path}: annotate: a video source needs a video file ({', '.join(sorted(VIDEO_CODECS))})"
            )
        _check_folder(self.path.parent)
        self.fps = fps if fps and fps > 0 else DEFAULT_FPS
        self.codec = VIDEO_CODECS[suffix]
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
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*self.codec), self.fps, (width, height))
        if not writer.isOpened():
            writer.release()
            self._failed = True
            log.error("%s: annotate: OpenCV cannot write %s video here; no annotated output", self.path, self.codec)
            return
        self._writer = writer
        self._size = (width, height)
        log.info("annotated video: %s (%dx%d, %s, %.1f fps)", self.path, width, height, self.codec, self.fps)

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
        self.path = Path(path)
        self.single = self.path.suffix.lower() in IMAGE_SUFFIXES
        folder = self.path.parent if self.single else self.path
        if source_folder is not None and folder.resolve() == source_folder.resolve() and not self.single:
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
            # Bytes written here, not cv2.imwrite: that crashes on names that are not UTF-8.
            target.write_bytes(data.tobytes())
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


def annotator_for(config: Any, source: Any, temporal: bool) -> VideoAnnotator | ImageAnnotator:
    """fer-edge's --annotate writer for its config (`annotate`, `fps_limit`) and opened source.

    The video's frame rate is `fps_limit` when set, else what the video file or camera reports,
    else DEFAULT_FPS.

    Raises:
        AnnotateError: see open_annotator().
    """
    fps = config.fps_limit or getattr(source, "fps", None)
    return open_annotator(config.annotate, stills=not temporal, fps=fps, source_folder=getattr(source, "folder", None))
