"""Exponential backoff, once for every retry loop: reopening a camera, an image folder with nothing readable,
connecting to a full feed socket (and, to come, fer-mqtt's broker and feed reconnects).

    backoff = Backoff(initial_s=0.5, max_s=10.0)
    while not connected():
        if backoff.wait(stop):      # 0.5, 1, 2, 4, 8, 10, 10, ... seconds; True once `stop` is set
            break
    backoff.reset()                 # after a success the next failure waits initial_s again

Standard library only: fer-watch and fer-mqtt import this without numpy or OpenCV.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

WAIT_SLICE_S = 0.1  # waits on a should_stop() callable are cut into slices this long so that a stop is seen soon

# What ends a wait early: an Event (seen at once) or a callable polled every WAIT_SLICE_S.
Stop: TypeAlias = "threading.Event | Callable[[], bool]"


def stoppable_sleep(seconds: float, stop: Stop | None = None) -> bool:
    """Sleep `seconds`, ending early once `stop` is set (an Event at once, a callable within WAIT_SLICE_S);
    True when it was (a stop asked for, not the time run out)."""
    if isinstance(stop, threading.Event):
        return stop.wait(max(seconds, 0.0))
    deadline = time.monotonic() + seconds
    while stop is None or not stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(left if stop is None else min(left, WAIT_SLICE_S))
    return True


@dataclass
class Backoff:
    """Waits that grow: `initial_s` first, `factor` times longer after each, never above `max_s`; reset() after a
    success. The values come from checked settings (finite, 0 < initial_s <= max_s, factor >= 1)."""

    initial_s: float
    max_s: float
    factor: float = 2.0
    delay: float = field(init=False)  # the next wait

    def __post_init__(self) -> None:
        self.delay = self.initial_s

    def reset(self) -> None:
        """The next wait is initial_s again."""
        self.delay = self.initial_s

    def next_delay(self) -> float:
        """The wait to make now (the one after it is `factor` times longer, up to max_s)."""
        delay = self.delay
        self.delay = min(delay * self.factor, self.max_s)
        return delay

    def wait(self, stop: Stop | None = None) -> bool:
        """Wait the next delay, ending early once `stop` is set; True when it was."""
        return stoppable_sleep(self.next_delay(), stop)
