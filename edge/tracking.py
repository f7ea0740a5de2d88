"""Cheap detection between full searches: follow known faces in small regions, give them ids.

Each known face is searched for only in a region around its last box, at scales near its last
size; a face not found there triggers a search of the whole frame on the same frame. Every
`full_every` frames a search for new faces is due. Without a ChangeDetector it covers the whole
(downscaled) frame; with one it covers only the regions that changed since the last due search
(a face that appears changes the picture), and the whole frame after COMPLETE_AFTER such
searches, or when most of the frame changed. Either way a face that comes into view appears
within `full_every` frames at most.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .preprocess import Box

Detect = Callable[[np.ndarray, int, int | None], list[Box]]  # (gray, min_size, max_size)
HAAR_WINDOW = 24  # the frontal-face cascade's own window: nothing smaller is ever found
COMPLETE_AFTER = 5  # with a ChangeDetector: after this many region-only searches, search the whole frame


MATCH_IOU = 0.2  # boxes overlapping at least this much are the same face
MERGE_IOU = 0.4  # two tracks whose boxes overlap this much follow one face: one of them ends
NESTED = 0.7  # a box with this share of its area inside another box is part of that face (an eye)


def shift_box(box: Sequence[int], dx: int, dy: int) -> Box:
    """A box found in a region whose top-left corner is (dx, dy), in the whole frame's pixels."""
    return box[0] + dx, box[1] + dy, box[2], box[3]


def _intersection(a: Sequence[int], b: Sequence[int]) -> int:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    return w * h if w > 0 and h > 0 else 0


def iou(a: Sequence[int], b: Sequence[int]) -> float:
    inter = _intersection(a, b)
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def inside_share(a: Sequence[int], b: Sequence[int]) -> float:
    """The share of the smaller box's area that lies inside the other box."""
    inter = _intersection(a, b)
    return inter / float(max(1, min(a[2] * a[3], b[2] * b[3]))) if inter else 0.0


def same_face(a: Sequence[int], b: Sequence[int], min_iou: float = MATCH_IOU) -> bool:
    """Boxes that overlap at least `min_iou`, or one mostly inside the other, are one face."""
    return iou(a, b) >= min_iou or inside_share(a, b) >= NESTED


def suppress_nested(boxes: Sequence[Box], min_iou: float = MERGE_IOU) -> list[Box]:
    """Boxes largest first, without those that are part of a larger one (a Haar hit on an eye
    inside a face, a second box on the same face)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        if not any(same_face(box, other, min_iou) for other in kept):
            kept.append(box)
    return kept


class ChangeDetector:
    """Where a frame differs from the last one it was shown, as boxes; None when that is most of it.

    Frames are compared as thumbnails of cell x cell averages, so sensor noise does not count.
    """

    def __init__(self, cell: int = 8, threshold: float = 12.0, max_fraction: float = 0.35) -> None:
        self.cell = cell
        self.threshold = threshold
        self.max_fraction = max_fraction
        self._ref: np.ndarray | None = None

    def _thumb(self, gray: np.ndarray) -> np.ndarray:
        size = (max(1, gray.shape[1] // self.cell), max(1, gray.shape[0] // self.cell))
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.int16)

    def remember(self, gray: np.ndarray) -> None:
        self._ref = self._thumb(gray)

    def regions(self, gray: np.ndarray, pad: int) -> list[Box] | None:
        thumb = self._thumb(gray)
        ref, self._ref = self._ref, thumb
        if ref is None or ref.shape != thumb.shape:
            return None
        mask = (np.abs(thumb - ref) > self.threshold).astype(np.uint8)
        if not mask.any():
            return []
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
        if mask.mean() > self.max_fraction:
            return None
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        height, width = gray.shape[:2]
        boxes = []
        for x, y, w, h, _area in stats[1:]:
            x0, y0 = max(0, int(x) * self.cell - pad), max(0, int(y) * self.cell - pad)
            x1 = min(width, int(x + w) * self.cell + pad)
            y1 = min(height, int(y + h) * self.cell + pad)
            boxes.append((x0, y0, x1 - x0, y1 - y0))
        if sum(w * h for _, _, w, h in boxes) > self.max_fraction * 2 * width * height:
            return None  # the regions would cost about as much as the whole frame
        return boxes


@dataclass
class Track:
    track_id: int
    box: Box
    history: deque[np.ndarray] = field(default_factory=deque)
    missed: int = 0


class FaceTracker:
    """Detect faces on a frame, reusing what the last frames found."""

    def __init__(
        self,
        detect: Detect,
        min_size: int,
        full_every: int = 5,
        roi_margin: float = 0.5,
        keep_missed: int = 2,
        max_faces: int = 8,
        change: ChangeDetector | None = None,
    ) -> None:
        self._detect = detect
        self.change = change
        self.min_size = max(HAAR_WINDOW, min_size)
        self.full_every = full_every
        self.roi_margin = roi_margin
        self.keep_missed = keep_missed
        self.max_faces = max_faces
        self.tracks: list[Track] = []
        self._next_id = 1
        self._since_full = full_every  # first frame: full search
        self._since_complete = 0
        self.full_searches = 0  # searches of the whole frame
        self.partial_searches = 0  # due searches that covered only the changed regions

    def update(self, gray: np.ndarray) -> tuple[list[Track], list[int], list[int]]:
        """Returns (tracks seen this frame, ids that appeared, ids that ended)."""
        due = self._since_full >= self.full_every
        regions = self._regions_to_search(gray) if due else []
        if regions is not None:
            found = [self._search_near(gray, t.box) for t in self.tracks]
            if all(box is not None for box in found):
                for track, box in zip(self.tracks, found, strict=True):
                    assert box is not None
                    track.box, track.missed = box, 0
                appeared = self._search_regions(gray, regions) if due else []
                self._since_full = 1 if due else self._since_full + 1
                ended = self._merge_tracks()
                return list(self.tracks), [i for i in appeared if i not in ended], ended
        self._since_full = 1
        self._since_complete = 0
        self.full_searches += 1
        if self.change is not None and not due:
            self.change.remember(gray)
        boxes = self._detect(gray, self.min_size, None)
        seen, appeared, ended = self._match(boxes)
        merged = self._merge_tracks()
        seen = [t for t in seen if t.track_id not in merged]
        return seen, [i for i in appeared if i not in merged], ended + [i for i in merged if i not in appeared]

    def _merge_tracks(self) -> list[int]:
        """End tracks that now follow the same face as another (found in the same place, or one
        inside the other); the one seen this frame wins, then the older one. Returns ended ids."""
        kept: list[Track] = []
        ended: list[int] = []
        for track in sorted(self.tracks, key=lambda t: (t.missed, t.track_id)):
            if any(same_face(track.box, other.box, MERGE_IOU) for other in kept):
                ended.append(track.track_id)
            else:
                kept.append(track)
        if ended:
            self.tracks = [t for t in self.tracks if t.track_id not in ended]
        return ended

    def _regions_to_search(self, gray: np.ndarray) -> list[Box] | None:
        """What a due full search must cover: the changed regions, or None for the whole frame."""
        if self.change is None:
            return None
        regions = self.change.regions(gray, pad=self.min_size)
        self._since_complete += 1
        if self._since_complete > COMPLETE_AFTER:
            return None
        if regions is not None:
            self.partial_searches += 1
        return regions

    def _search_regions(self, gray: np.ndarray, regions: list[Box]) -> list[int]:
        """Search changed regions for faces no track has yet; start tracks for them."""
        boxes: list[Box] = []
        for x, y, w, h in regions:
            if w < self.min_size or h < self.min_size:
                continue
            for found in self._detect(gray[y : y + h, x : x + w], self.min_size, None):
                box = shift_box(found, x, y)
                known = [t.box for t in self.tracks] + boxes
                if not any(same_face(box, other) for other in known):
                    boxes.append(box)
        room = max(0, self.max_faces - len(self.tracks))
        new_tracks = [self._start_track(b) for b in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)[:room]]
        self.tracks += new_tracks
        return [t.track_id for t in new_tracks]

    def _start_track(self, box: Box) -> Track:
        track = Track(self._next_id, box)
        self._next_id += 1
        return track

    def _search_near(self, gray: np.ndarray, box: Box) -> Box | None:
        x, y, w, h = box
        dx, dy = round(w * self.roi_margin), round(h * self.roi_margin)
        x0, y0 = max(0, x - dx), max(0, y - dy)
        x1, y1 = min(gray.shape[1], x + w + dx), min(gray.shape[0], y + h + dy)
        low = max(self.min_size, int(w * 0.75))
        high = max(low + 1, int(w * 1.35))
        if x1 - x0 < low or y1 - y0 < low:
            return None
        found = self._detect(gray[y0:y1, x0:x1], low, high)
        if not found:
            return None
        return max((shift_box(b, x0, y0) for b in found), key=lambda b: iou(b, box))

    def _match(self, boxes: list[Box]) -> tuple[list[Track], list[int], list[int]]:
        boxes = suppress_nested(boxes)[: self.max_faces]  # largest first
        pairs = sorted(
            ((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_boxes: set[int] = set()
        for overlap, ti, bi in pairs:
            if overlap < MATCH_IOU:
                break
            if ti in used_tracks or bi in used_boxes:
                continue
            used_tracks.add(ti)
            used_boxes.add(bi)
            self.tracks[ti].box, self.tracks[ti].missed = boxes[bi], 0
        seen = [self.tracks[ti] for ti in sorted(used_tracks)]
        ended = []
        survivors = []
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
                if track.missed > self.keep_missed:
                    ended.append(track.track_id)
                    continue
            survivors.append(track)
        appeared = []
        for bi, box in enumerate(boxes):
            if bi not in used_boxes:
                track = self._start_track(box)
                survivors.append(track)
                seen.append(track)
                appeared.append(track.track_id)
        self.tracks = survivors
        return seen, appeared, ended
