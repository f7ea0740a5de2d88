"""The search for new faces, spread over frames so that no frame pays for a whole-frame search.

A whole-frame search costs 10-20 times what following a known face does, and on a camera
almost all of it is wasted: the picture did not change where no face is. So:

* ChangeMap compares each frame's thumbnail (cell x cell averages) with a reference and marks
  the cells that changed by more than their own noise: each cell learns how much it flickers
  from frame to frame (sensor noise, codec noise) and only a change above that counts.
* A changed cell owes one search at every scale where a face could be (only the scales of
  faces small enough to fit the change: a few changed cells are not a new 300 px face), and
  at most once every `cooldown` frames (a waving hand is not searched on every frame). Changes
  around the faces already followed are theirs and owe nothing.
* The detector's scales (its SearchCost: the face sizes it searches and what each costs per
  pixel) are cut into runs, each costing a small share of a whole-frame search.
  NewFaceSearch searches the owed cells (padded by the largest face of the run) run after run
  within a budget per frame (a share of a whole-frame search); what is over the budget waits
  for the next frame, cut into horizontal strips. So a frame's extra cost stays bounded even
  when the whole picture changes (a light switched on, the camera moved).
* Every `refresh_every` frames every cell owes its searches again, changed or not: a face that
  never changed the picture enough (a slow fade-in) is still found.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from ..contract.preprocess import Box

Detect = Callable[[np.ndarray, int, int | None], list[Box]]  # (gray, min_size, max_size)
# The search's defaults, written once: DetectSettings (full_detect_every, search_budget, refresh_every)
# and FaceTracker take them from here.
DEFAULT_SCALE_FACTOR = 1.1  # the cascade pyramid's step (PyramidCost's and the detectors' default)
DEFAULT_COOLDOWN = 5
DEFAULT_BUDGET = 0.08
DEFAULT_REFRESH_EVERY = 90


# A cycle's searches cost at most this many whole-frame searches: the whole frame at every run,
# plus the strips' overlaps (each strip reaches a face's height below the face tops it covers).
CYCLE_COST = 2.0


def new_face_bound(cooldown: int, budget: float) -> int:
    """Frames a face that comes into view may wait at worst, whatever else changes: its cells
    may have been searched just before (`cooldown`), then the cycle of searches under way ends
    and the next one, with its cells, runs; each cycle costs at most CYCLE_COST whole-frame
    searches, `budget` of one per frame."""
    return cooldown + 2 * math.ceil(CYCLE_COST / budget)


class SearchCost(Protocol):
    """A detector's cost model, all the new-face search needs to know of it: the face sizes (its
    levels) a search from min_size to max_side goes through, and what each level costs per pixel
    of the region searched (in the detector's own units: the budget is a share of its own
    whole-frame search)."""

    @property
    def smallest(self) -> int:
        """px: no smaller face is ever found."""
        ...

    def levels(self, min_size: int, max_side: int) -> list[int]: ...

    def level_cost(self, size: int) -> float: ...


def pyramid_windows(min_size: int, max_side: int, scale_factor: float, window: int) -> list[int]:
    """The window sizes OpenCV's detectMultiScale tries between min_size and max_side (px) for a
    cascade of `window` px: round(window * scale_factor**k), as its own loop computes them."""
    windows: list[int] = []
    factor = 1.0
    while True:
        size = round(window * factor)
        if size > max_side:
            return windows
        if size >= min_size and (not windows or size != windows[-1]):
            windows.append(size)
        factor *= scale_factor


@dataclass(frozen=True)
class PyramidCost:
    """A sliding window over an image pyramid (OpenCV's cascades): at the level of faces of
    `size` px the image is scaled by window / size, so a level costs (window / size)**2 windows
    per pixel of the region."""

    window: int = 24
    scale_factor: float = DEFAULT_SCALE_FACTOR

    @property
    def smallest(self) -> int:
        return self.window

    def levels(self, min_size: int, max_side: int) -> list[int]:
        return pyramid_windows(min_size, max_side, self.scale_factor, self.window)

    def level_cost(self, size: int) -> float:
        return (self.window / size) ** 2


@dataclass(frozen=True)
class ScaleSlice:
    """A run of a detector's levels: faces from `low` to `high` px, costing `cost` per pixel searched."""

    low: int
    high: int
    windows: tuple[int, ...]
    costs: tuple[float, ...]  # of each level, per pixel

    @property
    def cost(self) -> float:
        return sum(self.costs)

    def region_cost(self, width: int, height: int) -> float:
        """Estimated windows evaluated searching a width x height region at these levels."""
        side = min(width, height)
        return width * height * sum(c for w, c in zip(self.windows, self.costs, strict=True) if w <= side)


# A lost face is looked for at these shares of its last size.
LOST_SIZES = (0.5, 2.0)
# A cascade's own grouping (min_neighbors) counts hits on neighbouring levels too: a run of one level
# finds fewer faces (73 of 81 in the bench's scenes, against 81 of 81 with two levels a run).
MIN_LEVELS = 2


def scale_slices(min_size: int, max_side: int, model: SearchCost, cap: float) -> list[ScaleSlice]:
    """The detector's levels from min_size up to max_side in runs of at least MIN_LEVELS levels that
    each cost at most `cap` of all the levels together (unless MIN_LEVELS levels cost more)."""
    windows = model.levels(min_size, max_side)
    costs = [model.level_cost(w) for w in windows]
    limit = cap * sum(costs)
    bounds: list[tuple[int, int]] = []  # [start, end) of each run
    start = 0
    for index in range(len(windows)):
        end = index + 1
        if end == len(windows):
            if end - start < MIN_LEVELS and bounds:
                start = bounds.pop()[0]  # too few levels left: they join the run before
            bounds.append((start, end))
        elif end - start >= MIN_LEVELS and sum(costs[start : end + 1]) > limit:
            bounds.append((start, end))
            start = end
    slices = []
    for number, (start, end) in enumerate(bounds):
        # A run reaches up to the next run's first window: sizes between the levels (a face
        # box from elsewhere) belong to one run, and the levels searched stay the same.
        high = max_side if number == len(bounds) - 1 else windows[end] - 1
        slices.append(ScaleSlice(windows[start], high, tuple(windows[start:end]), tuple(costs[start:end])))
    return slices


class ChangeMap:
    """Which cells of a frame changed since they were last looked at, above their own noise.

    Each cell (cell x cell pixels, averaged) keeps a reference value and a noise level: a
    running 90th percentile of its frame-to-frame difference, so a cell that flickers (sensor
    noise, compression) needs a larger change to count. A changed cell's reference becomes its
    new value: a change is reported once, and a slow drift is reported when it adds up.
    """

    QUANTILE = 0.9

    def __init__(self, cell: int = 8, min_threshold: float = 8.0, noise_factor: float = 3.0,
                 rate: float = 0.25) -> None:
        self.cell = cell
        self.min_threshold = min_threshold
        self.noise_factor = noise_factor
        self.rate = rate  # grey levels the noise level moves per frame (quantile tracking)
        self._ref: np.ndarray | None = None
        self._last: np.ndarray | None = None
        self._noise: np.ndarray | None = None

    def shape(self, frame_shape: Sequence[int]) -> tuple[int, int]:
        """(rows, columns) of cells for a frame of this shape."""
        return max(1, frame_shape[0] // self.cell), max(1, frame_shape[1] // self.cell)

    def thumb(self, gray: np.ndarray) -> np.ndarray:
        rows, cols = self.shape(gray.shape)
        return cv2.resize(gray, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.float32)

    def observe(self, gray: np.ndarray) -> np.ndarray | None:
        """The cells (rows x columns, bool) that changed; None when there is nothing to compare
        with (the first frame, or the frame size changed)."""
        thumb = self.thumb(gray)
        if self._ref is None or self._ref.shape != thumb.shape or self._last is None or self._noise is None:
            self._ref, self._last = thumb, thumb
            self._noise = np.zeros_like(thumb)
            return None
        step = np.abs(thumb - self._last)
        self._last = thumb
        # Quantile tracking: up by q*rate where the step is above the level, down by (1-q)*rate
        # elsewhere; a single large step (something moved) moves it by one small step only.
        above = step > self._noise
        self._noise += np.where(above, self.QUANTILE * self.rate, -(1 - self.QUANTILE) * self.rate)
        np.maximum(self._noise, 0, out=self._noise)
        threshold = np.maximum(self.min_threshold, self.noise_factor * self._noise)
        changed = np.abs(thumb - self._ref) > threshold
        self._ref[changed] = thumb[changed]
        return changed

    def settle(self, rows: slice, cols: slice) -> None:
        """Take the current picture as the reference in these cells (a tracked face moves there:
        its changes are explained)."""
        if self._ref is not None and self._last is not None:
            self._ref[rows, cols] = self._last[rows, cols]

    @property
    def noise(self) -> np.ndarray | None:
        """Each cell's learnt noise level (grey levels), None before the first frame."""
        return self._noise


def cell_rect(box: Box, cell: int, shape: Sequence[int], grow: float = 0.0) -> tuple[slice, slice]:
    """The cells (row slice, column slice) under a box grown by `grow` of its size on each side."""
    x, y, w, h = box
    dx, dy = w * grow, h * grow
    r0, c0 = max(0, int((y - dy) // cell)), max(0, int((x - dx) // cell))
    r1 = min(shape[0], math.ceil((y + h + dy) / cell))
    c1 = min(shape[1], math.ceil((x + w + dx) / cell))
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


class NewFaceSearch:
    """Searches the cells that owe a search, a run of scales at a time, within a budget per frame.

    Args:
        detect: the detector's search of a region: (gray, min_size, max_size) -> boxes in its pixels.
        min_size: the smallest face searched (px of the frames given to step()).
        cost: the detector's cost model (its levels and what each costs; default: OpenCV's
            frontal-face Haar cascade, a 24 px window at a 1.1 scale step).
        cooldown: a cell that keeps changing owes its searches again at most every this many
            frames (a waving hand is not searched on every frame).
        budget: the most a frame may spend on new faces, as a share of a whole-frame search.
        refresh_every: every this many frames, every cell owes its searches again.
        change: the ChangeMap (default: a new one with its defaults).
    """

    def __init__(self, detect: Detect, min_size: int, cost: SearchCost | None = None,
                 cooldown: int = DEFAULT_COOLDOWN, budget: float = DEFAULT_BUDGET,
                 refresh_every: int = DEFAULT_REFRESH_EVERY, change: ChangeMap | None = None) -> None:
        self._detect = detect
        self.cost = cost or PyramidCost()
        self.min_size = max(self.cost.smallest, min_size)
        self.cooldown = max(1, cooldown)
        self.budget = budget
        self.refresh_every = refresh_every
        self.change = change or ChangeMap()
        self._frame_shape: tuple[int, int] | None = None
        self._planned_min = 0
        self._slices: list[ScaleSlice] = []
        self._owed = np.zeros((0, 0, 0), bool)  # runs x rows x columns: searches of this cycle
        self._queued = np.zeros((0, 0, 0), bool)  # owed since this cycle began: the next cycle's
        self._lost: list[tuple[int, int, int, int, int]] = []  # x0, y0, x1, y1, size: searched first
        self._pending = np.zeros((0, 0), bool)  # changed while cooling down: owed when it ends
        self._armed_at = np.zeros((0, 0), np.int64)  # frame each cell last became owed
        self._budget_units = 0.0
        self._resume: dict[int, tuple[int, int, int]] = {}  # run -> (x0, x1, face top) of a cut strip
        self._frame = 0
        self.spent = 0.0  # windows evaluated (estimated) by the last step(), for the record
        self.searches = 0  # region searches run, all frames

    def reset(self, gray: np.ndarray) -> None:
        """Start over on this frame size with nothing owed (the caller searched it whole)."""
        height, width = gray.shape[:2]
        self._frame_shape = (height, width)
        self._planned_min = self.min_size
        # Each run costs at most half a frame's budget over the whole frame: a run is never
        # the reason a frame goes over; the costliest single levels are cut into strips.
        self._slices = scale_slices(self.min_size, min(height, width), self.cost, self.budget / 2)
        shape = self.change.shape(gray.shape)
        self._owed = np.zeros((len(self._slices), *shape), bool)
        self._queued = np.zeros_like(self._owed)
        self._pending = np.zeros(shape, bool)
        self._armed_at = np.full(shape, -self.cooldown, np.int64)
        whole = sum(s.cost for s in self._slices) * width * height
        self._budget_units = self.budget * whole
        self._frame = 0
        self.change.observe(gray)

    def search_whole(self, gray: np.ndarray) -> list[Box]:
        """Search the whole frame at every scale now (the first frame), one run of scales at a
        time: a cascade then holds the image pyramid of one run, not all of it (MBs less at 640x480)."""
        found: list[Box] = []
        height, width = gray.shape[:2]
        for part in self._slices:
            self._search(gray, part, (0, 0, width, height), found)
        return found

    def needs_reset(self, gray: np.ndarray) -> bool:
        """True on the first frame, and when the frame size or min_size changed."""
        return self._frame_shape != gray.shape[:2] or self._planned_min != self.min_size

    def look_around(self, box: Box, grow: float) -> None:
        """Search around a box (grown by `grow` of its size on each side) at the scales near its
        size (LOST_SIZES) on this frame, before anything else: a face was lost there."""
        x, y, w, h = box
        dx, dy = round(w * grow), round(h * grow)
        self._lost.append((x - dx, y - dy, x + w + dx, y + h + dy, w))

    def step(self, gray: np.ndarray, known: Sequence[Box], grow: float) -> list[Box]:
        """Note what changed on this frame and spend this frame's budget on the owed searches.

        Args:
            gray: the frame.
            known: faces followed on this frame: changes around them (grown by `grow` of their
                size) are theirs, and nothing there is searched.
            grow: see `known`.

        Returns:
            Boxes found (they may include known faces; the caller matches them).
        """
        self._frame += 1
        changed = self.change.observe(gray)
        if changed is not None:
            self._pending |= changed
        for box in known:
            rows, cols = cell_rect(box, self.change.cell, self._pending.shape, grow)
            self._owed[:, rows, cols] = False
            self._queued[:, rows, cols] = False
            self._pending[rows, cols] = False
            self.change.settle(rows, cols)
        if self.refresh_every and self._frame % self.refresh_every == 0:
            self._pending[:] = True
            self._armed_at[:] = -self.cooldown
        self._arm()
        return self._spend(gray)

    def _arm(self) -> None:
        """Pending cells out of their cooldown owe their searches: at the scales whose faces
        could have made a change that large (a few changed cells are not a new 200 px face)."""
        ready = self._pending & (self._frame - self._armed_at >= self.cooldown)
        if not ready.any():
            return
        self._pending &= ~ready
        self._armed_at[ready] = self._frame
        count, labels, stats, _ = cv2.connectedComponentsWithStats(ready.astype(np.uint8), connectivity=8)
        area = stats[:, cv2.CC_STAT_AREA] * self.change.cell**2
        for index, part in enumerate(self._slices):
            big = np.flatnonzero(area[1:] * 4 >= part.low**2) + 1
            if len(big) == count - 1:
                self._queued[index] |= ready
            elif len(big):
                self._queued[index] |= np.isin(labels, big)

    def _spend(self, gray: np.ndarray) -> list[Box]:
        """Work through this cycle's searches, largest faces first (their levels cost least per
        pixel), until the budget is spent; a new cycle takes what was owed meanwhile."""
        found: list[Box] = []
        self.spent = 0.0
        if not self._owed.any():
            self._owed, self._queued = self._queued, self._owed
            self._queued[:] = False
            self._resume.clear()
        self._search_lost(gray, found)
        for index in reversed(range(len(self._slices))):
            if not self._search_owed(gray, index, self._owed[index], found):
                break  # out of budget: the cycle goes on next frame
        return found

    def _search_lost(self, gray: np.ndarray, found: list[Box]) -> None:
        height, width = gray.shape[:2]
        for x0, y0, x1, y1, size in self._lost:
            rect = (max(0, x0), max(0, y0), min(width, x1), min(height, y1))
            for part in self._slices:
                if part.high >= size * LOST_SIZES[0] and part.low <= size * LOST_SIZES[1]:
                    self._search(gray, part, rect, found)
        self._lost.clear()

    def _search_owed(self, gray: np.ndarray, index: int, owed: np.ndarray, found: list[Box]) -> bool:
        """Search run `index` over the cells `owed` marks while budget lasts; False when it ran out.

        Owed cells close together are searched as one region (a face of the run's largest size
        touching any of them lies inside it). A region over the budget is searched in strips,
        top to bottom, each reaching `high` px below the face tops it covers."""
        if not owed.any():
            return True
        part = self._slices[index]
        cell = self.change.cell
        pad = math.ceil(part.high / cell)
        grown = cv2.dilate(owed.astype(np.uint8), np.ones((2 * pad + 1, 2 * pad + 1), np.uint8))
        count, _, stats, _ = cv2.connectedComponentsWithStats(grown)
        regions = sorted((tuple(int(v) for v in stats[i][:4]) for i in range(1, count)), key=lambda r: r[2] * r[3])
        height, width = gray.shape[:2]
        for col, row, cols, rows in regions:
            x0, x1 = col * cell, min(width, (col + cols) * cell)
            owed_rows = np.flatnonzero(owed[row : row + rows, col : col + cols].any(axis=1)) + row
            if not len(owed_rows):
                continue
            # Face tops to cover: any face of at most `high` px touching an owed row; a strip
            # cut short by the budget last frame goes on where it stopped.
            top = max(0, int(owed_rows[0]) * cell - part.high)
            resume = self._resume.pop(index, None)
            if resume is not None and resume[:2] == (x0, x1):
                top = max(top, resume[2])
            end = min(height, (int(owed_rows[-1]) + 1) * cell)
            while top < end:
                span = self._strip_span(part, x1 - x0, top, end, height)
                if span == 0:
                    self._resume[index] = (x0, x1, top)
                    return False
                self._search(gray, part, (x0, top, x1, min(height, top + span + part.high)), found)
                top += span
                done = top // cell if top < end else rows + row  # rows whose faces are all covered
                owed[row:done, col : col + cols] = False
        return True

    def _strip_span(self, part: ScaleSlice, width: int, top: int, end: int, height: int) -> int:
        """How many px of face tops from `top` fit in what is left of the budget (the strip
        reaches `high` px below them); at least one cell when nothing was spent yet this
        frame, so the work always moves on."""
        left = self._budget_units - self.spent
        per_px = part.region_cost(width, height) / height  # cost of one px of strip height
        span = min(end - top, int(left / per_px) - part.high) if per_px else end - top
        if span >= min(end - top, self.change.cell):
            return max(1, span)
        return min(end - top, self.change.cell) if self.spent == 0 else 0

    def _search(self, gray: np.ndarray, part: ScaleSlice, rect: tuple[int, int, int, int],
                found: list[Box]) -> None:
        x0, y0, x1, y1 = rect
        self.spent += part.region_cost(x1 - x0, y1 - y0)
        if min(x1 - x0, y1 - y0) < part.low:
            return
        self.searches += 1
        for x, y, w, h in self._detect(gray[y0:y1, x0:x1], part.low, part.high):
            found.append((x + x0, y + y0, w, h))
