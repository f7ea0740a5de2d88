"""One frame in, one result out: detect (or track) faces, classify them in one batch."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from .contract import DEFAULT_MARGIN, FACE_SIZE, INPUT_SIZE, LABELS
from .detector import HaarDetector
from .preprocess import Box, preprocess_faces, to_gray
from .tracking import HAAR_WINDOW, ChangeDetector, FaceTracker, Track, suppress_nested


def scale_box(box: Box, factor: float) -> Box:
    return round(box[0] * factor), round(box[1] * factor), round(box[2] * factor), round(box[3] * factor)

# A tracked face's region is shrunk until its smallest candidate face is this many px (then, if
# nothing is found, this many).
ROI_TARGETS = (36, 54)


class Classifier(Protocol):
    def classify(self, faces: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class FaceResult:
    box: Box  # x, y, w, h in the pixels of the frame the user gave
    label: str  # smoothed over the track's last frames (equal to the raw one for stills)
    score: float
    scores: dict[str, float]  # this frame's raw probabilities
    track: int | None = None

    def to_json(self) -> dict[str, Any]:
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
class FrameResult:
    faces: list[FaceResult]
    timing_ms: dict[str, float]
    size: tuple[int, int]  # width, height
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class PipelineSettings:
    whole_frame: bool = False
    temporal: bool = True  # frames follow each other (camera, video): track and smooth
    detect_width: int = 0
    min_size: int = 48
    full_detect_every: int = 5
    track_margin: float = 0.5
    smooth_window: int = 5
    max_faces: int = 8
    margin: float = DEFAULT_MARGIN  # from the model's spec: frames faces as the training crops are
    face_size: int = FACE_SIZE  # from the model's spec: the training faces' resolution
    flip: bool = False  # average each face with its mirror image (one more inference per face)


def classify(classifier: Classifier, faces: np.ndarray, flip: bool = False) -> np.ndarray:
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
        detector: HaarDetector | None,
        classifier: Classifier,
        settings: PipelineSettings,
        input_size: tuple[int, int] = INPUT_SIZE,
    ) -> None:
        if detector is None and not settings.whole_frame:
            raise ValueError("a detector is needed unless whole_frame is set")
        self.detector = detector
        self.classifier = classifier
        self.settings = settings
        self.input_size = input_size
        self._scale = 1.0
        self.tracker = FaceTracker(
            self._detect_small,
            min_size=settings.min_size,  # rescaled to the detection frame in process()
            full_every=settings.full_detect_every,
            roi_margin=settings.track_margin,
            max_faces=settings.max_faces,
            change=ChangeDetector(),
        )

    def _detect_small(self, gray: np.ndarray, min_size: int, max_size: int | None) -> list[Box]:
        """Full search, or a search of one region (max_size given) at the scales near one face.

        A region is shrunk first so that the smallest face searched is ROI_TARGETS[0] pixels: Haar
        then scans a few small images. If that finds nothing, the region is searched again with
        more detail before the tracker falls back to a full search (which costs far more).
        """
        assert self.detector is not None
        if max_size is None:
            return self.detector.detect(gray, min_size=min_size, max_size=None)
        found: list[Box] = []
        for target in ROI_TARGETS:
            shrink = min_size / target
            if shrink <= 1.25:
                return self.detector.detect(gray, min_size=min_size, max_size=max_size)
            found = self._detect_shrunk(gray, shrink, target, max_size)
            if found:
                break
        return found

    def _detect_shrunk(self, gray: np.ndarray, shrink: float, min_size: int, max_size: int) -> list[Box]:
        assert self.detector is not None
        size = (max(1, round(gray.shape[1] / shrink)), max(1, round(gray.shape[0] / shrink)))
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        high = max(min_size + 1, round(max_size / shrink))
        found = self.detector.detect(small, min_size=min_size, max_size=high)
        return [scale_box(box, shrink) for box in found]

    def _small_gray(self, gray: np.ndarray) -> np.ndarray:
        width = gray.shape[1]
        target = self.settings.detect_width
        if not target or width <= target:
            self._scale = 1.0
            return gray
        self._scale = width / target
        height = round(gray.shape[0] / self._scale)
        return cv2.resize(gray, (target, height), interpolation=cv2.INTER_AREA)

    def _detect_stills(self, gray: np.ndarray) -> list[Box]:
        """Unrelated photos: a full search on every frame, no tracks."""
        small = self._small_gray(gray)
        boxes = self._detect_small(small, self._detection_min_size(), None)
        boxes = suppress_nested(boxes)  # largest first, no box inside another face's
        return [scale_box(b, self._scale) for b in boxes[: self.settings.max_faces]]

    def _detection_min_size(self) -> int:
        """min_size in the pixels of the (possibly shrunk) detection frame."""
        return max(HAAR_WINDOW, round(self.settings.min_size / self._scale))

    def process(self, image: np.ndarray) -> FrameResult:
        start = time.perf_counter()
        gray = to_gray(image)
        height, width = gray.shape[:2]
        events: list[dict[str, Any]] = []
        if self.settings.whole_frame:
            boxes: list[Box] = [(0, 0, width, height)]
            tracks: list[Track] = []
        elif not self.settings.temporal:
            boxes = self._detect_stills(gray)
            tracks = []
        else:
            small = self._small_gray(gray)
            self.tracker.min_size = self._detection_min_size()
            tracks, appeared, ended = self.tracker.update(small)
            tracks = tracks[: self.settings.max_faces]
            boxes = [scale_box(t.box, self._scale) for t in tracks]
            events = [{"type": "new", "track": i} for i in appeared]
            events += [{"type": "end", "track": i} for i in ended]
        detected = time.perf_counter()
        faces = preprocess_faces(gray, boxes, margin=self.settings.margin, size=self.input_size,
                                 face_size=self.settings.face_size)
        probs = classify(self.classifier, faces, self.settings.flip)
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
        return FrameResult(results, timing, (width, height), events)

    def _face_result(self, box: Box, probs: np.ndarray, track: Track | None) -> FaceResult:
        raw = {label: float(p) for label, p in zip(LABELS, probs, strict=True)}
        smoothed = probs
        if track is not None and self.settings.temporal and self.settings.smooth_window > 1:
            if track.history.maxlen != self.settings.smooth_window:
                track.history = deque(track.history, maxlen=self.settings.smooth_window)
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
