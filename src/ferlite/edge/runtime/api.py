"""The in-process API: facial expressions from Python, without running the daemon.

    from ferlite.edge import Recognizer, recognize

    faces = recognize(photo)                 # unrelated stills, the shipped model
    with Recognizer(min_size=64) as rec:     # video: tracks and smoothing, as fer-edge does
        for frame in frames:
            result = rec.process(frame)

fer-edge, fer-preview, the Recognizer and the benchmarks are put together here, once (`assemble`):
the model and detector, the pipeline for a source's kind of frames, and the source in its reopen
wrapper; so a frame gives the same faces, labels and JSON through the API as through the daemon.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..algorithm.detector import DETECTORS, Detector, DetectSettings, make_detector
from ..algorithm.frames import check_frame
from ..algorithm.native import check_opencv_environment, set_opencv_threads
from ..algorithm.pipeline import FaceResult, FrameResult, Pipeline, PipelineConfig, TrackEvent
from ..algorithm.runner import ModelLoadError, ModelRunner
from ..algorithm.tracking import TrackSettings
from ..contract import LABELS
from ..contract.errors import InputError, SourceError, StartupError
from ..contract.files import name_problem, utf8_name
from ..contract.spec import ModelSpec, check_model_input, spec_path_for
from .config import ConfigError, EdgeConfig, make_config, resolve_model
from .sources import (
    DEFAULT_MAX_PIXELS,
    InputSettings,
    ReopeningSource,
    Requests,
    StopOnly,
    UnusableImage,
    open_reopening,
    read_image,
)

log = logging.getLogger("ferlite.edge")

PathLike = str | os.PathLike[str]


def pipeline_settings(config: EdgeConfig, temporal: bool, spec: ModelSpec) -> PipelineConfig:
    """The frame pipeline's settings: detection and tracking from the config, framing from the
    model's spec (the config's `margin` overrides it, with a log line).

    Args:
        config: the settings (EdgeConfig).
        temporal: True for frames that follow each other (camera, video): track and smooth.
            False for unrelated stills: every frame searched in full, no tracks.
        spec: the model's spec (margin and face size of its training crops).

    Returns:
        The PipelineConfig fer-edge and the Recognizer run with.
    """
    margin = spec.margin
    if config.margin is not None and config.margin != spec.margin:
        log.info("margin %.3f from the config overrides the model's %.3f", config.margin, spec.margin)
        margin = config.margin
    return PipelineConfig(detect=DetectSettings.of(config), track=TrackSettings.of(config), temporal=temporal,
                          margin=margin, face_size=spec.face_size, flip=config.flip)


def build_pipeline(
    config: EdgeConfig, runner: ModelRunner, detector: Detector | None, *, temporal: bool
) -> Pipeline:
    """The frame pipeline fer-edge runs, from its config and loaded parts.

    Args:
        config: the settings.
        runner: the loaded model (its spec gives the framing and the input size).
        detector: the face detector (make_detector); None only with `config.whole_frame`.
        temporal: see pipeline_settings().

    Returns:
        A Pipeline; `process(image)` gives one FrameResult per frame.
    """
    return Pipeline(
        detector, runner, pipeline_settings(config, temporal, runner.spec), input_size=runner.spec.input_size
    )


def load_parts(config: EdgeConfig) -> tuple[ModelRunner, Detector | None]:
    """Load the model named by the config (the shipped one by default) and the detector it names.

    Raises:
        ModelLoadError: the model file is missing, not a loadable TFLite model, or its name is not UTF-8.
        ModelSpecError: its spec is missing, broken or does not match it.
        DetectorError: the detector (its cascade) cannot be found or loaded.
    """
    model_path = resolve_model(config)
    problem = name_problem(model_path, opencv=False)
    if problem is not None:  # a NUL byte
        raise ModelLoadError(f"{os.fspath(model_path)!a}: model: {problem}")
    if not utf8_name(model_path):
        raise ModelLoadError(f"{os.fspath(model_path)!a}: the model's file name is not valid UTF-8; rename it")
    runner = ModelRunner(model_path, threads=config.threads)
    check_model_input(runner.spec, runner.input_dtype.name, spec_path_for(model_path))
    detector = None
    if not config.whole_frame:
        detector = make_detector(DetectSettings.of(config))
        warn_framing(config, runner.spec)
    return runner, detector


@dataclass(frozen=True)
class Assembly:
    """The parts every front end runs, loaded once from one config: the model (`runner`) and the face
    detector (None with `whole_frame`); pipelines and the source are made from them here."""

    config: EdgeConfig
    runner: ModelRunner
    detector: Detector | None

    def pipeline(self, temporal: bool) -> Pipeline:
        """A fresh pipeline: temporal for frames that follow each other, else for unrelated stills."""
        return build_pipeline(self.config, self.runner, self.detector, temporal=temporal)

    def pipeline_for(self, source: ReopeningSource) -> Pipeline:
        """The pipeline for the source's kind of frames (photos from a folder: no tracks, no smoothing)."""
        return self.pipeline(source.temporal)

    def open_source(self, requests: Requests | None = None,
                    on_wait: Callable[[], None] = lambda: None) -> ReopeningSource:
        """The config's source, reopened when it fails and when `requests` ask (SIGHUP).

        Raises:
            StartupError: the source cannot be opened (one line naming it).
        """
        config = self.config
        try:
            return open_reopening(config.source, requests or StopOnly(), InputSettings.of(config), on_wait)
        except SourceError as e:
            raise StartupError(str(e)) from e


def assemble(config: EdgeConfig) -> Assembly:
    """Load the model and detector the config names: the one composition root of fer-edge,
    fer-preview, the Recognizer and the benchmarks.

    Raises:
        ModelLoadError, ModelSpecError, DetectorError: see load_parts().
    """
    runner, detector = load_parts(config)
    return Assembly(config, runner, detector)


def warn_framing(config: EdgeConfig, spec: ModelSpec) -> bool:
    """Log a warning (and say True) when the model's framing was measured with another detector than
    the config's and the config sets no margin: the detectors' boxes may sit differently on a face,
    so faces may be cropped unlike the training faces. Not a refusal: the faces are still found."""
    if config.margin is not None or spec.framing_detector == config.detector:
        return False
    known = "" if spec.framing_detector in DETECTORS else ", not a detector of this ferlite"
    log.warning("the model's framing (margin %.3f) was measured with detector %s%s, the config selects %s: "
                "faces may be cropped unlike its training faces (set margin to choose the framing)",
                spec.margin, spec.framing_detector, known, config.detector)
    return True


def make_settings(config: EdgeConfig | None = None, model: PathLike | None = None, **settings: Any) -> EdgeConfig:
    """An EdgeConfig from a base config (default: EdgeConfig()), keyword settings and a model path.

    Raises:
        ConfigError: an unknown setting, a wrong type or a value out of range; a `config` that is
            not an EdgeConfig, a `model` that is not a path.
    """
    if config is not None and not isinstance(config, EdgeConfig):
        raise ConfigError(f"Recognizer: config must be an EdgeConfig, got {type(config).__name__} "
                          "(settings go as keywords: Recognizer(min_size=64))")
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"Recognizer: model must be a path (str or os.PathLike), got {type(model).__name__}")
    base = config if config is not None else EdgeConfig()
    if settings:
        make_config(settings, where="Recognizer")  # unknown keys, types and ranges, with the config's messages
        try:
            base = dataclasses.replace(base, **settings)
        except ConfigError as e:
            raise ConfigError(f"Recognizer: {e}") from e
    if model is not None:
        base = dataclasses.replace(base, model=os.fspath(model))
    return base


class Recognizer:
    """Facial expressions in frames and photos, in this process.

    Holds one model interpreter and one face detector; building it costs a few hundred ms, so
    build it once and reuse it. Calls from several threads are safe and take turns: each call
    holds the Recognizer's lock (neither the interpreter nor OpenCV's detector may be entered
    twice at once). For work in parallel, make one Recognizer per thread.

    Frames are numpy arrays as OpenCV and picamera2 give them: BGR (H, W, 3), BGRA (H, W, 4),
    gray (H, W) or the Y plane of a YUV420 frame (picamera2's lores array `yuv[:height]`),
    dtype uint8. Boxes come back in the pixels of the frame given.

    Example:
        with Recognizer() as rec:
            for frame in frames:            # a video: faces keep their track id
                for face in rec.process(frame).faces:
                    print(face.track, face.label, face.score)
    """

    def __init__(self, model: PathLike | None = None, *, config: EdgeConfig | None = None, **settings: Any) -> None:
        """Load the model and the detector.

        Args:
            model: an int8 .tflite with its <name>.spec.json beside it. Default: `config.model`,
                else the model shipped inside the package.
            config: the settings, as fer-edge reads them from its TOML file (EdgeConfig).
                Only the detection, tracking, framing and `threads` settings matter here.
            **settings: EdgeConfig settings by name, overriding `config`
                (e.g. min_size=64, smooth_window=1, flip=False, threads=1).
                `threads` also sets OpenCV's thread count, which is process-wide.

        Raises:
            ConfigError: an unknown setting, a wrong type or a value out of range; a `config`
                that is not an EdgeConfig; a `model` that is not a path; OPENCV_FOR_THREADS_NUM
                in the environment not a number.
            ModelLoadError: the model file is missing or not a loadable TFLite model.
            ModelSpecError: the model's spec is missing, broken or does not match the model.
            DetectorError: the detector (OpenCV's cascade) cannot be found.
        """
        self.config: EdgeConfig = make_settings(config, model, **settings)
        if self.config.threads is not None:
            set_opencv_threads(self.config.threads)
        else:
            check_opencv_environment()
        self._lock = threading.RLock()  # one call at a time: the interpreter and the detector are not reentrant
        parts = assemble(self.config)
        self.model_path: Path = parts.runner.path
        self.spec: ModelSpec = parts.runner.spec
        self._parts: Assembly | None = parts
        self._video: Pipeline | None = parts.pipeline(temporal=True)
        self._stills: Pipeline | None = parts.pipeline(temporal=False)
        self._detector = parts.detector

    @property
    def labels(self) -> tuple[str, ...]:
        """The six labels, in the order of the model's outputs."""
        return tuple(LABELS)

    @property
    def closed(self) -> bool:
        return self._parts is None

    def process(self, frame: np.ndarray) -> FrameResult:
        """One video frame: detect or track faces, classify them, smooth each face's label.

        Frames given one after another are taken as a video (as fer-edge takes a camera): each
        face keeps a `track` id while it stays, its label and score are averaged over its last
        `smooth_window` frames, and `events` say when a face appears or leaves. Call reset()
        before frames from another video.

        Args:
            frame: BGR, BGRA, gray or a YUV420 Y plane, uint8.

        Returns:
            The FrameResult: faces, timings, frame size, events. `result.to_json()` is the
            message fer-edge's feed carries for it (less frame, ts and source).

        Raises:
            InputError: the frame is None, empty, not uint8, of another shape or larger than
                `max_image_pixels`; or the Recognizer is closed.
            ModelOutputError: the model failed on this frame's faces (not probabilities).
        """
        image = check_frame(frame, max_pixels=self.config.max_image_pixels)
        with self._lock:
            return self._pipeline(self._video).process(image)

    def recognize(self, image: np.ndarray | PathLike) -> list[FaceResult]:
        """The faces of one photo, unrelated to any other: a full search, no tracks, no smoothing.

        Args:
            image: BGR, BGRA, gray or a YUV420 Y plane (uint8), or the path of an image file
                (JPEG, PNG, BMP, PNM, TIFF, WebP). A file is read as a viewer shows it: its EXIF
                orientation (a phone's portrait photo) is applied. An array is taken as the pixels
                it holds: cv2.imread(path) has applied the orientation already, cv2.imdecode with
                IMREAD_UNCHANGED has not.

        Returns:
            The faces found, largest first (at most `max_faces`), `track` None.

        Raises:
            InputError: the image is None, empty, not uint8, of another shape, larger than
                `max_image_pixels`, or a file that cannot be read as an image (a folder, a NUL
                in its name); or the Recognizer is closed.
            ModelOutputError: the model failed on this image's faces (not probabilities).
        """
        self._pipeline(self._stills)  # closed: said before a file is read
        if isinstance(image, (str, os.PathLike)):
            image = _read(image, self.config.max_image_pixels)
        checked = check_frame(image, "image", max_pixels=self.config.max_image_pixels)
        with self._lock:
            return list(self._pipeline(self._stills).process(checked).faces)

    def reset(self) -> tuple[TrackEvent, ...]:
        """Forget the tracked faces: the next process() frame starts a new video.

        Returns:
            An `end` event for each face still tracked (fer-edge adds them to the last frame of a
            video file).

        Raises:
            InputError: the Recognizer is closed.
        """
        with self._lock:
            ended = self._pipeline(self._video).end_tracks()
            assert self._parts is not None
            self._video = self._parts.pipeline(temporal=True)
            return ended

    def close(self) -> None:
        """Release the model; later calls raise InputError. Closing twice is harmless. A call in
        progress in another thread ends first."""
        with self._lock:
            self._parts = self._video = self._stills = None
            self._detector = None

    def _pipeline(self, pipeline: Pipeline | None) -> Pipeline:
        if pipeline is None:
            raise InputError("this Recognizer is closed; make a new one")
        return pipeline

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Recognizer(model={os.fspath(self.model_path)!r}, {state})"


def _read(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    try:
        return read_image(Path(path), max_pixels)
    except UnusableImage as e:
        shown = os.fspath(path)
        raise InputError(f"{ascii(shown) if chr(0) in shown else shown}: {e}") from e


_default: Recognizer | None = None
_default_lock = threading.Lock()


def recognize(image: np.ndarray | PathLike) -> list[FaceResult]:
    """The faces of one photo with the model shipped in the package and the default settings.

    The model is loaded on the first call and kept; calls from several threads take turns.
    For other settings or a model of your own, use a Recognizer.

    Args:
        image: BGR, BGRA, gray or a YUV420 Y plane (uint8), taken as given, or the path of an image
            file, read upright (its EXIF orientation applied, as a viewer shows it).

    Returns:
        The faces found, largest first: box (x, y, w, h), label, score, scores.

    Raises:
        InputError: the image is None, empty, not uint8, of another shape, or an unreadable file.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = Recognizer()
        return _default.recognize(image)


__all__ = [
    "Assembly",
    "FaceResult",
    "FrameResult",
    "InputError",
    "Recognizer",
    "assemble",
    "build_pipeline",
    "load_parts",
    "pipeline_settings",
    "recognize",
]
