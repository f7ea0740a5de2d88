"""The one exponential backoff (ferlite.edge.runtime.backoff) and the retry loops that use it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ferlite.edge.runtime import backoff as backoff_module
from ferlite.edge.runtime.backoff import WAIT_SLICE_S, Backoff, stoppable_sleep


def test_delays_grow_by_the_factor_up_to_the_most_and_reset_starts_again():
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    tripling = Backoff(1.0, 20.0, factor=3.0)
    assert [tripling.next_delay() for _ in range(4)] == [1.0, 3.0, 9.0, 20.0]


def test_delay_is_the_next_wait_without_taking_it():
    backoff = Backoff(0.25, 1.0)
    assert backoff.delay == 0.25 and backoff.delay == 0.25
    backoff.next_delay()
    assert backoff.delay == 0.5


def _timed(call) -> tuple[object, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def test_wait_ends_at_once_on_a_set_event():
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    stopped, took = _timed(lambda: Backoff(30.0, 60.0).wait(stop))
    assert stopped is True and took < 5


def test_wait_ends_soon_after_a_should_stop_callable_turns_true():
    asked = time.monotonic() + 0.05
    stopped, took = _timed(lambda: Backoff(30.0, 60.0).wait(lambda: time.monotonic() >= asked))
    assert stopped is True and took < 0.05 + WAIT_SLICE_S + 2


@pytest.mark.parametrize("stop", [None, threading.Event(), lambda: False], ids=["none", "event", "callable"])
def test_wait_runs_its_whole_delay_when_not_stopped(stop):
    backoff = Backoff(0.05, 1.0)
    stopped, took = _timed(lambda: backoff.wait(stop))
    assert stopped is False and took >= 0.05
    assert backoff.delay == 0.1  # and the next wait is longer


def test_stoppable_sleep_never_sleeps_when_already_stopped():
    assert _timed(lambda: stoppable_sleep(30.0, lambda: True))[0] is True
    assert _timed(lambda: stoppable_sleep(-1.0, threading.Event()))[0] is False  # a past deadline: no wait


def test_the_retry_loops_take_their_waits_from_the_one_backoff(monkeypatch, tmp_path):
    """A looping folder with nothing readable, a camera that keeps failing and a feed socket whose backlog is
    full wait what Backoff says."""
    from ferlite.edge.contract.errors import SourceError
    from ferlite.edge.runtime import feed
    from ferlite.edge.runtime.sources import ImageFilesSource, ReopeningSource

    taken: list[float] = []
    said = [7.0]  # a wait only the one backoff would say
    real = Backoff.next_delay

    def recorded(self: Backoff) -> float:
        taken.append(real(self))
        return said[0]

    monkeypatch.setattr(backoff_module.Backoff, "next_delay", recorded)

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    slept: list[float] = []
    folder = ImageFilesSource([Path(bad)], "bad", loop=True, backoff=(0.5, 1.0), sleep=slept.append,
                              should_stop=lambda: len(slept) >= 3)
    assert folder.read() is None
    assert slept == [7.0, 7.0, 7.0] and taken == [0.5, 1.0, 1.0]

    class Failing:
        name = "cam"

        def read(self):
            raise SourceError("cam: gone")

        def close(self):
            pass

    taken.clear()
    slept.clear()
    camera = ReopeningSource(Failing, initial_s=0.25, max_s=0.5, sleep=slept.append,
                             should_stop=lambda: len(slept) >= 3)
    assert camera.read() is None
    assert slept == [7.0, 7.0, 7.0] and taken == [0.25, 0.5, 0.5]

    class FullBacklog:
        tries = 0

        def settimeout(self, seconds):
            pass

        def connect(self, path):
            self.tries += 1
            if self.tries <= 3:
                raise BlockingIOError

    taken.clear()
    said[0] = 0.0
    feed._connect(FullBacklog(), "feed.sock", timeout=60.0, should_stop=None)
    assert taken == [0.005, 0.01, 0.02]
