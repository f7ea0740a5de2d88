"""The frame loop: source -> pipeline -> JSON lines to the sinks. Parts come in as arguments."""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import OutputError
from .pipeline import FrameResult, Pipeline, frame_to_json
from .sources import Closing, Frame, FrameSource, SourceError, stoppable_sleep

log = logging.getLogger(__name__)

Sink = Callable[[bytes], None]


class Notifier(Protocol):
    def ready(self, status: str | None = None) -> None: ...

    def status(self, text: str) -> None: ...

    def watchdog(self) -> None: ...

    def stopping(self) -> None: ...


class NullNotifier:
    def ready(self, status: str | None = None) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def watchdog(self) -> None:
        pass

    def stopping(self) -> None:
        pass


class StopFeed(Exception):
    """A sink that can no longer take output (stdout closed): stop cleanly."""


@dataclass
class LoopStats:
    frames: int = 0
    faces: int = 0
    started: float = 0.0
    # Why the loop ended: "source" (it ran out), "max_frames", "stop" (asked to) or "output" (closed).
    ended: str = ""

    @property
    def fps(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0


def frame_message(
    index: int, source_name: str, frame: Frame, result: FrameResult
) -> dict[str, Any]:
    return frame_to_json(result, frame=index, ts=round(time.time(), 3), source=source_name, file=frame.file)


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(", ", ": ")) + "\n").encode()


def run_loop(
    source: FrameSource,
    pipeline: Pipeline,
    sinks: Sequence[Sink],
    *,
    max_frames: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    notifier: Notifier | None = None,
    status_every_s: float = 5.0,
    fps_limit: float | None = None,
    status_requested: Callable[[], bool] = lambda: False,
    status_extra: Callable[[], str] = lambda: "",
    on_result: Callable[[Frame, FrameResult], None] | None = None,
) -> LoopStats:
    """Process frames until the source ends, max_frames is reached, or should_stop() is true.

    `status_requested()` true (e.g. after SIGUSR1) logs a status line at once; `status_extra()`
    adds to every status line (readers, dropped lines). `on_result(frame, result)`, when given,
    is called after the sinks with every frame (--annotate, fer-preview).
    """
    notifier = notifier or NullNotifier()
    stats = LoopStats(started=time.monotonic())
    next_status = stats.started + status_every_s
    period = 1.0 / fps_limit if fps_limit else 0.0
    faces_now = 0
    while True:
        if should_stop():
            stats.ended = "stop"
            break
        if max_frames is not None and stats.frames >= max_frames:
            stats.ended = "max_frames"
            break
        frame_start = time.monotonic()
        frame = source.read()
        if frame is None:
            stats.ended = "stop" if should_stop() else "source"
            break
        result = pipeline.process(frame.image)
        line = encode(frame_message(stats.frames, source.name, frame, result))
        try:
            for sink in sinks:
                sink(line)
        except StopFeed:
            log.info("output closed; stopping")
            stats.ended = "output"
            break
        stats.frames += 1
        if on_result is not None:
            on_result(frame, result)
        stats.faces += len(result.faces)
        faces_now = len(result.faces)
        if stats.frames == 1:
            notifier.ready(f"first frame from {source.name}")
        notifier.watchdog()
        now = time.monotonic()
        asked = status_requested()
        if now >= next_status or asked:
            text = f"{stats.fps:.1f} fps, {stats.frames} frames, {faces_now} faces now{status_extra()}"
            notifier.status(text)
            log.info("%s", text)
            next_status = now + status_every_s
        if period:
            stoppable_sleep(period - (time.monotonic() - frame_start), should_stop)
    return stats


class ReopenOnRequest(Closing):
    """A source that opens itself afresh on request (SIGHUP): a camera, video or folder is
    reopened and the log says so. If the fresh open fails, the current source stays.

    `take_request()` returns and clears the request; `pending()` only looks. Give the inner
    sources a should_stop() that is also true while a request is pending, so that a source
    waiting for frames (a camera reopening, a folder backing off) returns to be reopened.
    """

    def __init__(
        self,
        opener: Callable[[], FrameSource],
        take_request: Callable[[], bool],
        pending: Callable[[], bool],
    ) -> None:
        self._opener = opener
        self._take_request = take_request
        self._pending = pending
        self.source: FrameSource = opener()
        self.name = self.source.name
        self.reopens = 0

    def read(self) -> Frame | None:
        while True:
            if self._take_request():
                self._reopen()
            frame = self.source.read()
            if frame is not None or not self._pending():
                return frame

    def _reopen(self) -> None:
        try:
            fresh = self._opener()
        except SourceError as e:
            log.warning("reopen requested: %s; keeping the current source", e)
            return
        old, self.source = self.source, fresh
        try:
            old.close()
        except (RuntimeError, OSError) as e:
            log.debug("closing the old source: %s", e)
        self.reopens += 1
        log.info("reopen requested: %s reopened", self.name)

    def close(self) -> None:
        self.source.close()


class StdoutSink:
    """Results to stdout without ever stalling the pipeline.

    A regular file is written at once. Anything that can block (a pipe, a terminal, a socket) is
    written by a thread from a queue of at most `budget` bytes: when the reader falls that far
    behind, new lines are dropped, counted and logged (like a slow socket reader, except that
    stdout stays connected). A reader that went away (EPIPE) stops the loop cleanly (StopFeed);
    any other write error (disk full, /dev/full) is an OutputError.
    """

    WARN_EVERY_S = 10.0

    def __init__(self, fd: int = 1, budget: int = 256 * 1024, drain_s: float = 2.0) -> None:
        try:
            mode = os.fstat(fd).st_mode
        except OSError as e:
            raise OutputError("stdout is closed; give --no-stdout (or stdout = false) to run without it") from e
        self.fd = fd
        self.budget = budget
        self.drain_s = drain_s
        self.dropped = 0
        self._error: OSError | None = None
        self._next_warning = 0.0
        self._threaded = not stat.S_ISREG(mode)
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._writing = False
        self._closing = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        if self._threaded:
            self._thread = threading.Thread(target=self._run, name="fer-edge-stdout", daemon=True)
            self._thread.start()

    def __call__(self, line: bytes) -> None:
        self._raise_error()
        if not self._threaded:
            try:
                self._write_all(line)
            except OSError as e:
                self._error = e
                self._raise_error()
            return
        with self._cond:
            if self._queued and self._queued + len(line) > self.budget:  # one line always fits
                self._drop()
                return
            self._queue.append(line)
            self._queued += len(line)
            self._cond.notify()

    def _drop(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now >= self._next_warning:
            log.warning("stdout: reader is too slow, results dropped (%d lines so far)", self.dropped)
            self._next_warning = now + self.WARN_EVERY_S

    def _raise_error(self) -> None:
        error = self._error
        if error is None:
            return
        if isinstance(error, BrokenPipeError) or error.errno in (errno.EPIPE, errno.ECONNRESET):
            raise StopFeed from error
        raise OutputError(f"stdout: cannot write results ({error.strerror or error})") from error

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:  # stdout came already non-blocking: wait until it takes more
                select.select([], [self.fd], [], 0.5)
                continue
            view = view[written:]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                line = self._queue.popleft()
                self._writing = True
            try:
                self._write_all(line)
            except OSError as e:
                with self._cond:
                    self._error = e
                    self._queue.clear()
                    self._queued = 0
                    self._writing = False
                    self._cond.notify_all()
                return
            with self._cond:
                self._queued -= len(line)
                self._writing = False
                self._cond.notify_all()

    def close(self) -> None:
        """Let the queue drain for at most drain_s, then leave what is left (never hang)."""
        if self._thread is None:
            return
        deadline = time.monotonic() + self.drain_s
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while (self._queue or self._writing) and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            left_over = self._queued
        if left_over and self._error is None:
            log.warning("stdout: %d bytes of results not written (the reader is too slow)", left_over)
        if self.dropped:
            log.info("stdout: %d lines dropped in all (reader too slow)", self.dropped)

    def check(self) -> None:
        """Raise the write error a finished run met (OutputError; a gone reader is no error)."""
        try:
            self._raise_error()
        except StopFeed:
            pass

    def __enter__(self) -> StdoutSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
