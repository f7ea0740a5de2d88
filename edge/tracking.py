"""Cheap detection between full searches: follow known faces in small regions, give them ids.

A full-frame search (on the downscaled frame) runs every `full_every` frames, with or without
faces in view, and on the same frame whenever a tracked face is not found in its region, so a
new face appears within `full_every` frames at most. Between full searches each known face is searched for only in a
region around its last box, at scales near its last size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .preprocess import Box

Detect = Callable[[np.ndarray, int, int | None], list[Box]]  # (gray, min_size, max_size)
HAAR_WINDOW = 24  # the frontal-face cascade's own window: nothing smaller is ever found


def iou(a: Sequence[int], b: Sequence[int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / float(aw * ah + bw * bh - inter)


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
    ) -> None:
        self._detect = detect
        self.min_size = max(HAAR_WINDOW, min_size)
        self.full_every = full_every
        self.roi_margin = roi_margin
        self.keep_missed = keep_missed
        self.max_faces = max_faces
        self.tracks: list[Track] = []
        self._next_id = 1
        self._since_full = full_every  # first frame: full search
        self.full_searches = 0

    def update(self, gray: np.ndarray) -> tuple[list[Track], list[int], list[int]]:
        """Returns (tracks seen this frame, ids that appeared, ids that ended)."""
        lost_one = False
        if self._since_full < self.full_every and not self.tracks:
            self._since_full += 1  # nothing to follow: the next full search is at most full_every away
            return [], [], []
        if self._since_full < self.full_every:
            found = [self._search_near(gray, t.box) for t in self.tracks]
            lost_one = any(box is None for box in found)
            if not lost_one:
                for track, box in zip(self.tracks, found, strict=True):
                    assert box is not None
                    track.box, track.missed = box, 0
                self._since_full += 1
                return list(self.tracks), [], []
        self._since_full = 1
        self.full_searches += 1
        boxes = self._detect(gray, self.min_size, None)
        return self._match(boxes)

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
        best = max(found, key=lambda b: iou((b[0] + x0, b[1] + y0, b[2], b[3]), box))
        return best[0] + x0, best[1] + y0, best[2], best[3]

    def _match(self, boxes: list[Box]) -> tuple[list[Track], list[int], list[int]]:
        boxes = sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)[: self.max_faces]
        pairs = sorted(
            ((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_boxes: set[int] = set()
        for overlap, ti, bi in pairs:
            if overlap < 0.2:
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
                track = Track(self._next_id, box)
                self._next_id += 1
                survivors.append(track)
                seen.append(track)
                appeared.append(track.track_id)
        self.tracks = survivors
        return seen, appeared, ended

    def reset(self) -> list[int]:
        ended = [t.track_id for t in self.tracks]
        self.tracks = []
        self._since_full = self.full_every
        return ended
