"""Test doubles for programs built on ferlite.edge: a camera that replays frames from memory.

Not used by fer-edge itself; the tests and the soak benchmark drive the frame loop with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..contract.errors import SourceError, SourceOpenError
from .sources import Closing, Frame


class ReplaySource(Closing):
    """Replays frames from memory: the fake camera of tests and benchmarks.

    `fail_every=N` makes every Nth read raise SourceError, as a camera that drops out would.
    """

    temporal = True  # a camera's frames follow each other
    fps: float | None = None  # live: it paces itself
    skipped = 0
    files: tuple[Path, ...] = ()  # a camera reads no file
    folder: Path | None = None

    def __init__(self, images: Sequence[np.ndarray], name: str = "replay", loop: bool = False,
                 fail_every: int | None = None) -> None:
        if not images:
            raise SourceOpenError(f"{name}: no frames to replay")
        self.name = name
        self.images = list(images)
        self.loop = loop
        self.fail_every = fail_every
        self.reads = 0
        self.closed = False
        self._index = 0

    def read(self) -> Frame | None:
        if self.closed:
            raise SourceError(f"{self.name}: read after close")
        self.reads += 1
        if self.fail_every and self.reads % self.fail_every == 0:
            raise SourceError(f"{self.name}: simulated camera failure at read {self.reads}")
        if self._index >= len(self.images):
            if not self.loop:
                return None
            self._index = 0
        image = self.images[self._index]
        self._index += 1
        return Frame(image=image)

    def close(self) -> None:
        self.closed = True
