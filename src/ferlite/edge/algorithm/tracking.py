"""Cheap detection between searches: follow known faces in small regions, give them ids.

Each known face is searched for only in a region around its last box, at scales near its last
size. New faces are looked for by NewFaceSearch (sweep.py): only where the picture changed
(or every `refresh_every` frames, everywhere), a few scales at a time, within a budget per
frame, so no frame after the first pays for a whole-frame search. A known face not found in its
region is looked for around where it was, at scales near its size, on the same frame; it
ends after `keep_missed` frames unseen. The first frame (and a frame of a new size)
is searched whole.

TrackSettings (the [track] table of fer-edge's config) are the tracking settings, beside the code that reads
them; EdgeConfig derives from them, and the pipeline is handed `TrackSettings.of(config)`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..contract import settings
from ..contract.preprocess import Box
from ..contract.settings import setting
from .sweep import (
    DEFAULT_BUDGET,
    DEFAULT_COOLDOWN,
    DEFAULT_REFRESH_EVERY,
    ChangeMap,
    Detect,
    NewFaceSearch,
    SearchCost,
)

DEFAULT_MAX_FACES = 8  # most faces followed and classified per frame (TrackSettings' max_faces too)
DEFAULT_TRACK_MARGIN = 0.3  # a known face is searched for in its box grown by this share (TrackSettings' too)
MATCH_IOU = 0.2  # boxes overlapping at least this much are the same face
MERGE_IOU = 0.4  # two tracks whose boxes overlap this much follow one face: one of them ends
NESTED = 0.7  # a box with this share of its area inside another box is part of that face (an eye)


@dataclass(frozen=True)
class TrackSettings(settings.Settings):
    """How faces are followed from frame to frame and how their labels are smoothed."""

    track_margin: float = setting(DEFAULT_TRACK_MARGIN, "ROI around a known face, as a fraction of its size",
                                  low=0.0, high=4.0, group="track")
    smooth_window: int = setting(5, "frames of scores averaged for a face's label (1: none)", low=1, high=1000,
                                 group="track")
    max_faces: int = setting(DEFAULT_MAX_FACES, "most faces classified per frame", low=1, high=256, group="track")


# A known face is looked for at sizes this share of its last size (faces grow or shrink slowly).
NEAR_SCALES = (0.8, 1.25)
# Changes this share of a known face's size around it are that face's (hair, shoulders, what it
# uncovers as it moves): they owe no search for new faces.
EXPLAINED = 0.6
# A face lost from its region is looked for this share of its size around where it was, at scales
# near its size (sweep.LOST_SIZES), at once (a person who moved fast, a video that looped back).
LOST_GROW = 1.5


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
    """Boxes largest first, without those that are part of a larger one (a detector's hit on an eye
    inside a face, a second box on the same face)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        if not any(same_face(box, other, min_iou) for other in kept):
            kept.append(box)
    return kept


def merge_same_face(boxes: Sequence[Box]) -> list[Box]:
    """Boxes of one face found by separate searches (each run of scales groups its own hits)
    become their mean, as a cascade's own grouping would give; largest face first."""
    groups: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        # Overlap only: a small box inside a face (an eye) is not averaged in; suppress_nested drops it.
        group = next((g for g in groups if iou(box, g[0]) >= MERGE_IOU), None)
        if group is None:
            groups.append([box])
        else:
            group.append(box)
    merged = []
    for group in groups:
        x, y, w, h = (round(sum(b[i] for b in group) / len(group)) for i in range(4))
        merged.append((x, y, w, h))
    return merged


@dataclass
class Track:
    track_id: int
    box: Box
    history: deque[np.ndarray] = field(default_factory=deque)
    missed: int = 0


class FaceTracker:
    """Detect faces on a frame, reusing what the last frames found.

    Args:
        detect: the detector's search of a region, (gray, min_size, max_size) -> boxes: the first frame's
            whole-frame search and the search for new faces.
        min_size: the smallest face (px of the frames given to update()).
        cooldown: a region that keeps changing is searched for new faces at most every this
            many frames (see NewFaceSearch).
        roi_margin: a known face is searched for in its box grown by this share of its size.
        keep_missed: a known face unseen this many frames in a row ends.
        max_faces: at most this many tracks (the largest faces win).
        near: the search around a known face (default `detect`); the pipeline's shrinks the region.
        cost: the detector's cost model (default: the Haar cascade's); budget, refresh_every,
            change: see NewFaceSearch.
    """

    def __init__(
        self,
        detect: Detect,
        min_size: int,
        cooldown: int = DEFAULT_COOLDOWN,
        roi_margin: float = DEFAULT_TRACK_MARGIN,
        keep_missed: int = 2,
        max_faces: int = DEFAULT_MAX_FACES,
        *,
        near: Detect | None = None,
        cost: SearchCost | None = None,
        budget: float = DEFAULT_BUDGET,
        refresh_every: int = DEFAULT_REFRESH_EVERY,
        change: ChangeMap | None = None,
    ) -> None:
        self._near = near or detect
        self.new_faces = NewFaceSearch(detect, min_size, cost, cooldown, budget, refresh_every, change)
        self.min_size = min_size
        self.roi_margin = roi_margin
        self.keep_missed = keep_missed
        self.max_faces = max_faces
        self.tracks: list[Track] = []
        self._next_id = 1
        self.full_searches = 0  # searches of the whole frame (the first frame, a new frame size)

    @property
    def min_size(self) -> int:
        return self._min_size

    @min_size.setter
    def min_size(self, value: int) -> None:
        self._min_size = max(self.new_faces.cost.smallest, value)
        self.new_faces.min_size = self._min_size

    def update(self, gray: np.ndarray) -> tuple[list[Track], list[int], list[int]]:
        """Returns (tracks seen this frame, ids that appeared, ids that ended)."""
        if self.new_faces.needs_reset(gray):
            return self._search_whole(gray)
        seen: list[Track] = []
        for track in self.tracks:
            box = self._search_near(gray, track.box)
            if box is None:
                track.missed += 1
                self.new_faces.look_around(track.box, LOST_GROW)
            else:
                track.box, track.missed = box, 0
                seen.append(track)
        found = self.new_faces.step(gray, [t.box for t in seen], EXPLAINED)
        appeared = self._adopt(found)
        ended = [t.track_id for t in self.tracks if t.missed > self.keep_missed]
        self.tracks = [t for t in self.tracks if t.missed <= self.keep_missed]
        merged = self._merge_tracks()
        appeared = [i for i in appeared if i not in merged]
        ended += [i for i in merged if i not in appeared]
        return [t for t in self.tracks if t.missed == 0], appeared, ended

    def _search_whole(self, gray: np.ndarray) -> tuple[list[Track], list[int], list[int]]:
        self.full_searches += 1
        self.new_faces.reset(gray)
        boxes = merge_same_face(self.new_faces.search_whole(gray))
        seen, appeared, ended = self._match(boxes)
        merged = self._merge_tracks()
        seen = [t for t in seen if t.track_id not in merged]
        return seen, [i for i in appeared if i not in merged], ended + [i for i in merged if i not in appeared]

    def _adopt(self, boxes: list[Box]) -> list[int]:
        """Boxes found by the new-face search: a face followed already is skipped, a lost one
        is picked up again, the others start tracks (while there is room). Returns new ids."""
        appeared: list[int] = []
        for box in suppress_nested(merge_same_face(boxes)):
            if any(same_face(box, t.box) for t in self.tracks if t.missed == 0):
                continue
            lost = [t for t in self.tracks if t.missed and same_face(box, t.box)]
            if lost:
                lost[0].box, lost[0].missed = box, 0
            elif len(self.tracks) < self.max_faces:
                track = self._start_track(box)
                self.tracks.append(track)
                appeared.append(track.track_id)
        return appeared

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

    def _start_track(self, box: Box) -> Track:
        track = Track(self._next_id, box)
        self._next_id += 1
        return track

    def _search_near(self, gray: np.ndarray, box: Box) -> Box | None:
        x, y, w, h = box
        dx, dy = round(w * self.roi_margin), round(h * self.roi_margin)
        x0, y0 = max(0, x - dx), max(0, y - dy)
        x1, y1 = min(gray.shape[1], x + w + dx), min(gray.shape[0], y + h + dy)
        low = max(self.min_size, int(w * NEAR_SCALES[0]))
        high = max(low + 1, int(w * NEAR_SCALES[1]))
        if x1 - x0 < low or y1 - y0 < low:
            return None
        found = self._near(gray[y0:y1, x0:x1], low, high)
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
