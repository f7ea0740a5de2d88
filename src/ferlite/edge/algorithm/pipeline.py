"""One frame in, one result out: detect (or track) faces, classify them in one batch."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from ..contract import DEFAULT_MARGIN, FACE_SIZE, INPUT_SIZE, LABELS
from ..contract.preprocess import Box, preprocess_faces, to_gray
from .detector import Detector, DetectSettings, scale_box
from .tracking import FaceTracker, Track, TrackSettings, suppress_nested


class Classifier(Protocol):
    def classify(self, faces: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class FaceResult:
    """One face in one frame.

    Attributes:
        box: (x, y, w, h) of the face, in the pixels of the frame that was given.
        label: the predicted expression, one of LABELS. For video (Recognizer.process, cameras,
            video files) it is smoothed over the track's last `smooth_window` frames; for stills
            it is this frame's own prediction.
        score: the probability of `label` (smoothed like the label).
        scores: this frame's raw probability for each of the six LABELS.
        track: video only: an id that stays the same while the face stays in view; None for stills.
    """

    box: Box
    label: str
    score: float
    scores: dict[str, float]
    track: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The face as the feed carries it (`faces[]` of a feed message): box as a list, scores
        rounded to 4 places, `track` only when there is one."""
        data: dict[str, Any] = {
            "box": list(self.box),
            "label": self.label,
            "score": round(self.score, 4),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
        }
        if self.track is not None:
            data["track"] = self.track
        return data


@dataclass(frozen=True)
class TrackEvent:
    """A face came into view (`type` "new") or left it ("end"), with its track id."""

    type: str
    track: int

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "track": self.track}


@dataclass(frozen=True)
class FrameResult:
    """What one frame gave.

    Attributes:
        faces: the faces found, at most `max_faces` (tracked faces in track order for video,
            largest first for stills).
        timing_ms: time spent on this frame, in ms: "detect", "classify" and "total".
        size: (width, height) of the frame; boxes are in these pixels.
        events: video only: faces that appeared or left with this frame.
    """

    faces: tuple[FaceResult, ...]
    timing_ms: dict[str, float]
    size: tuple[int, int]  # width, height
    events: tuple[TrackEvent, ...] = ()

    def to_json(
        self, *, frame: int | None = None, ts: float | None = None, source: str | None = None,
        file: str | None = None, pos_ms: float | None = None,
    ) -> dict[str, Any]:
        """The feed message for this frame; see frame_to_json()."""
        return frame_to_json(self, frame=frame, ts=ts, source=source, file=file, pos_ms=pos_ms)


def frame_to_json(
    result: FrameResult, *, frame: int | None = None, ts: float | None = None, source: str | None = None,
    file: str | None = None, pos_ms: float | None = None,
) -> dict[str, Any]:
    """One frame's result as the feed carries it: the one serialisation, used by fer-edge too.

    Args:
        result: the frame's result.
        frame: the frame counter; `ts`: Unix time of the result; `pos_ms`: the frame's position in
            its video file (ms); `source`: the source as given; `file`: the image's file name (image
            sources). Each is left out of the message when None.

    Returns:
        A dict in the feed's key order (frame, ts, pos_ms, source, file, size, faces, events,
        timing_ms), ready for json.dumps; `events` only when there are some.
    """
    message: dict[str, Any] = {}
    if frame is not None:
        message["frame"] = frame
    if ts is not None:
        message["ts"] = ts
    if pos_ms is not None:
        message["pos_ms"] = pos_ms
    if source is not None:
        message["source"] = source
    if file is not None:
        message["file"] = file
    message["size"] = list(result.size)
    message["faces"] = [face.to_json() for face in result.faces]
    if result.events:
        message["events"] = [event.to_json() for event in result.events]
    message["timing_ms"] = dict(result.timing_ms)
    return message


# Test-time flip on by default (EdgeConfig.flip's default too): docs/model.md, "Test-time flip".
DEFAULT_FLIP = True


@dataclass(frozen=True)
class PipelineConfig:
    """What the frame pipeline runs with: the detection and tracking settings, and what the model and the
    source say. Never the daemon's whole config: assemble() hands it its parts (DetectSettings.of(config)).

    Attributes:
        detect: how faces are found (the detector, its sizes, the new-face search's schedule).
        track: how faces are followed and their labels smoothed, and how many are classified.
        temporal: frames follow each other (camera, video): track and smooth. False for stills.
        margin: framing of a face crop, from the model's spec unless the config overrides it.
        face_size: the resolution faces pass through, from the model's spec.
        flip: test-time flip (each face classified with its mirror image).
    """

    detect: DetectSettings = DetectSettings()
    track: TrackSettings = TrackSettings()
    temporal: bool = True
    margin: float = DEFAULT_MARGIN
    face_size: int = FACE_SIZE
    flip: bool = DEFAULT_FLIP


def classify(classifier: Classifier, faces: np.ndarray, *, flip: bool) -> np.ndarray:
    """(n, len(LABELS)) probabilities of a batch of faces; with `flip`, the mean over each face and
    its mirror image (one batch of 2n), which evens out a face's left/right asymmetries."""
    if not len(faces):
        return np.zeros((0, len(LABELS)), dtype=np.float32)
    if not flip:
        return classifier.classify(faces)
    both = classifier.classify(np.concatenate([faces, faces[:, :, ::-1]]))
    return (both[: len(faces)] + both[len(faces) :]) / 2


class Pipeline:
    def __init__(
        self,
        detector: Detector | None,
        classifier: Classifier,
        settings: PipelineConfig,
        input_size: tuple[int, int] = INPUT_SIZE,
    ) -> None:
        detect, track = settings.detect, settings.track
        if detector is None and not detect.whole_frame:
            raise ValueError("a detector is needed unless whole_frame is set")
        self.detector = detector
        self.classifier = classifier
        self.settings = settings
        self.detect, self.track = detect, track
        self.input_size = input_size
        self._scale = 1.0
        self.tracker = FaceTracker(
            self._detect_region,
            min_size=detect.min_size,  # rescaled to the detection frame in process()
            cooldown=detect.full_detect_every,
            roi_margin=track.track_margin,
            max_faces=track.max_faces,
            near=self._detect_near,
            cost=detector.cost if detector is not None else None,
            budget=detect.search_budget,
            refresh_every=detect.refresh_every,
        )

    def _detect_region(self, gray: np.ndarray, min_size: int, max_size: int | None) -> list[Box]:
        """The detector over the image given at the sizes given (the search for new faces)."""
        assert self.detector is not None
        return self.detector.detect(gray, min_size=min_size, max_size=max_size)

    def _detect_near(self, gray: np.ndarray, min_size: int, max_size: int | None) -> list[Box]:
        """A search of one region (max_size given) at the scales near one face (the detector's own
        way: the cascade shrinks the region), or a full search."""
        assert self.detector is not None
        if max_size is None:
            return self.detector.detect(gray, min_size=min_size, max_size=None)
        return self.detector.detect_near(gray, min_size, max_size)

    def _small_gray(self, gray: np.ndarray) -> np.ndarray:
        width = gray.shape[1]
        target = self.detect.detect_width
        if not target or width <= target:
            self._scale = 1.0
            return gray
        self._scale = width / target
        height = round(gray.shape[0] / self._scale)
        return cv2.resize(gray, (target, height), interpolation=cv2.INTER_AREA)

    def _detect_stills(self, gray: np.ndarray) -> list[Box]:
        """Unrelated photos: a full search on every frame, no tracks."""
        small = self._small_gray(gray)
        boxes = self._detect_region(small, self._detection_min_size(), None)
        boxes = suppress_nested(boxes)  # largest first, no box inside another face's
        return [scale_box(b, self._scale) for b in boxes[: self.track.max_faces]]

    def _detection_min_size(self) -> int:
        """min_size in the pixels of the (possibly shrunk) detection frame."""
        return max(self.tracker.new_faces.cost.smallest, round(self.detect.min_size / self._scale))

    def faces_below_min_size(self, image: np.ndarray) -> list[Box]:
        """Faces smaller than min_size (down to the detector's smallest face) in a still: the sizes
        process() does not look for. Asked for only when process() found no face in a photo, to say
        whether the photo holds none or only faces too small; it searches the scales below min_size,
        which costs about as much as process()'s own search or more (the largest images it scans)."""
        if self.detector is None:
            return []
        small = self._small_gray(to_gray(image))
        low, high = self.detector.smallest_face, self._detection_min_size() - 1
        if high < low:
            return []
        boxes = suppress_nested(self.detector.detect(small, min_size=low, max_size=high))
        return [scale_box(b, self._scale) for b in boxes]

    def end_tracks(self) -> tuple[TrackEvent, ...]:
        """End every track still open (the video ended): their `end` events; the tracker forgets them."""
        ended = tuple(TrackEvent("end", track.track_id) for track in self.tracker.tracks)
        self.tracker.tracks = []
        return ended

    def process(self, image: np.ndarray) -> FrameResult:
        start = time.perf_counter()
        gray = to_gray(image)
        height, width = gray.shape[:2]
        events: list[TrackEvent] = []
        if self.detect.whole_frame:
            boxes: list[Box] = [(0, 0, width, height)]
            tracks: list[Track] = []
        elif not self.settings.temporal:
            boxes = self._detect_stills(gray)
            tracks = []
        else:
            small = self._small_gray(gray)
            self.tracker.min_size = self._detection_min_size()
            tracks, appeared, ended = self.tracker.update(small)
            tracks = tracks[: self.track.max_faces]
            boxes = [scale_box(t.box, self._scale) for t in tracks]
            events = [TrackEvent("new", i) for i in appeared]
            events += [TrackEvent("end", i) for i in ended]
        detected = time.perf_counter()
        faces = preprocess_faces(gray, boxes, margin=self.settings.margin, size=self.input_size,
                                 face_size=self.settings.face_size)
        probs = classify(self.classifier, faces, flip=self.settings.flip)
        results = [
            self._face_result(box, p, tracks[i] if tracks else None)
            for i, (box, p) in enumerate(zip(boxes, probs, strict=True))
        ]
        done = time.perf_counter()
        timing = {
            "detect": round((detected - start) * 1000, 3),
            "classify": round((done - detected) * 1000, 3),
            "total": round((done - start) * 1000, 3),
        }
        return FrameResult(tuple(results), timing, (width, height), tuple(events))

    def _face_result(self, box: Box, probs: np.ndarray, track: Track | None) -> FaceResult:
        raw = {label: float(p) for label, p in zip(LABELS, probs, strict=True)}
        smoothed = probs
        if track is not None and self.settings.temporal and self.track.smooth_window > 1:
            if track.history.maxlen != self.track.smooth_window:
                track.history = deque(track.history, maxlen=self.track.smooth_window)
            track.history.append(np.asarray(probs, dtype=np.float32))
            smoothed = np.mean(track.history, axis=0)
        best = int(np.argmax(smoothed))
        return FaceResult(
            box=box,
            label=LABELS[best],
            score=float(smoothed[best]),
            scores=raw,
            track=track.track_id if track is not None else None,
        )
