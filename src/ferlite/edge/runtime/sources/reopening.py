"""The one reopen wrapper: a source reopened with backoff when it fails, and when asked (SIGHUP)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from ...contract.errors import SourceError
from ..backoff import Backoff, stoppable_sleep
from .base import DEFAULT_REOPEN_S, Closing, Frame, FrameSource

log = logging.getLogger(__name__)

class Requests(Protocol):
    """What a running source is asked from elsewhere (daemon.Signals: set by signal handlers).

    `__call__()`: stop. `interrupted()`: stop, or a reopen is asked for; a source's waits end on it.
    `take_reopen()`: whether a reopen was asked for, taking the request.
    """

    def __call__(self) -> bool: ...

    def interrupted(self) -> bool: ...

    def take_reopen(self) -> bool: ...


class StopOnly:
    """Requests for a caller that can only ask to stop (`should_stop`); a reopen is never asked for."""

    def __init__(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        self._should_stop = should_stop

    def __call__(self) -> bool:
        return self._should_stop()

    def interrupted(self) -> bool:
        return self._should_stop()

    def take_reopen(self) -> bool:
        return False


class ReopeningSource(Closing):
    """A source that is opened again: when it fails (a camera unplugged: closed, then reopened with
    exponential backoff) and when asked (`requests.take_reopen()`, SIGHUP: a camera, video or folder
    is opened afresh at once; if that fails, the current source stays). The one reopen wrapper."""

    def __init__(
        self,
        opener: Callable[[], FrameSource],
        initial_s: float = DEFAULT_REOPEN_S[0],
        max_s: float = DEFAULT_REOPEN_S[1],
        sleep: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_wait: Callable[[], None] = lambda: None,
        requests: Requests | None = None,
    ) -> None:
        """`requests` default to only `should_stop`; `sleep` defaults to a wait that ends early when
        requests.interrupted() turns true."""
        self._opener = opener
        self._on_wait = on_wait  # e.g. the systemd watchdog: reopening is progress, not a hang
        self._requests: Requests = requests or StopOnly(should_stop)
        self._source: FrameSource | None = opener()  # a failure at start-up is the caller's
        self.name = self._source.name
        self._skipped_before = 0  # the last source closed: its count stays readable after close()
        self.initial_s = initial_s
        self.max_s = max_s
        self._sleep = sleep or (lambda seconds: stoppable_sleep(seconds, self._requests.interrupted))
        self.reopens = 0

    @property
    def temporal(self) -> bool:
        """The open source's; True while none is open (only a camera fails, and is reopened)."""
        return self._source.temporal if self._source is not None else True

    @property
    def fps(self) -> float | None:
        return self._source.fps if self._source is not None else None

    @property
    def skipped(self) -> int:
        """The open source's count (a fresh open starts again); after close(), the last one's."""
        return self._source.skipped if self._source is not None else self._skipped_before

    @property
    def files(self) -> Sequence[Path]:
        return self._source.files if self._source is not None else ()

    @property
    def folder(self) -> Path | None:
        return self._source.folder if self._source is not None else None

    @property
    def current(self) -> FrameSource | None:
        """The source open now; None while a failed one waits to be reopened."""
        return self._source

    def read(self) -> Frame | None:
        backoff = Backoff(self.initial_s, self.max_s)
        while not self._requests():
            if self._requests.take_reopen():
                self._reopen_on_request()
            if self._source is not None:
                try:
                    frame = self._source.read()
                except SourceError as e:
                    log.warning("%s; reopening in %.1f s", e, backoff.delay)
                    self._drop()
                else:
                    if frame is None and self._requests.take_reopen():  # it stopped waiting to be reopened
                        self._reopen_on_request()
                        continue
                    return frame
            self._on_wait()
            self._sleep(backoff.next_delay())
            if self._requests():
                break
            self._requests.take_reopen()  # asked while waiting: the open below is that reopen
            try:
                self._source = self._opener()
            except SourceError as e:
                log.warning("%s; retrying in %.1f s", e, backoff.delay)
                continue
            self.reopens += 1
            log.info("%s reopened", self.name)
        return None

    def _reopen_on_request(self) -> None:
        try:
            fresh = self._opener()
        except SourceError as e:
            log.warning("reopen requested: %s; keeping the current source", e)
            return
        self._drop()
        self._source = fresh
        self.reopens += 1
        log.info("reopen requested: %s reopened", self.name)

    def _drop(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except (RuntimeError, OSError) as e:
                log.debug("closing the old source: %s", e)

    def close(self) -> None:
        if self._source is not None:
            self._skipped_before = self._source.skipped
        self._drop()
