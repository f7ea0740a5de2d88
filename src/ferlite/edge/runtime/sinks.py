"""Where fer-edge's results go besides the socket feed (feed.SocketFeed): stdout, never stalling the pipeline.

A sink takes one encoded feed line (loop.Sink); it raises loop.StopFeed when its reader went away.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat
import threading
import time
from collections import deque

from ..contract.errors import OutputError
from .feed import SocketFeed
from .loop import StopFeed

log = logging.getLogger("ferlite.edge")

__all__ = ["SocketFeed", "StdoutSink"]


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
