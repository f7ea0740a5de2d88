"""SIGINT (Ctrl-C) and SIGTERM in the workstation commands (fer-train, fer-convert).

While fer-train's epochs run, the first signal stops training after the epoch under way: that epoch's
checkpoint, model.keras (the best epoch so far) and the report are written as for a finished run, and
`fer-train --out RUN --resume` continues it. A second signal, or one at any other time (reading faces,
converting), stops at once: the handler raises KeyboardInterrupt wherever the main thread is, and the command
prints one line and exits 128 + the signal's number; what was written before stays (files are written
atomically: none is left half-written).

The raise alone is not enough: it lands wherever the main thread is, and native code that clears errors
(numpy's array coercion, seen swallowing it inside Keras's per-batch log conversion; a second signal handled
inside the first one's log write) can lose it. So the handler also records it (`StopRequests.now`) and the
commands ask again (`check()`) where nothing swallows it: after each training batch and epoch, between phases.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """The signals received so far, and whether training is running (then the first one waits for the end of
    the epoch: `stop_after_epoch`)."""

    def __init__(self) -> None:
        self.received: list[signal.Signals] = []
        self.training = False
        self.now = False  # a signal asked to stop at once

    @property
    def stop_after_epoch(self) -> signal.Signals | None:
        return self.received[0] if self.received else None

    @property
    def last(self) -> signal.Signals:
        """The signal that stopped the command (SIGINT when none was seen: a KeyboardInterrupt of Python's own)."""
        return self.received[-1] if self.received else signal.SIGINT

    def handle(self, signum: int, frame: FrameType | None) -> None:
        received = signal.Signals(signum)
        self.received.append(received)
        if self.training and len(self.received) == 1:
            log.warning("%s: stopping after this epoch (its checkpoint, model.keras and the report are written; "
                        "--resume continues); send it again to stop now", received.name)
            return
        self.now = True
        raise KeyboardInterrupt  # unwinds the main thread from wherever it is; the command says one line

    def check(self) -> None:
        """Raise KeyboardInterrupt if a signal asked to stop at once (its own raise may have been lost)."""
        if self.now:
            raise KeyboardInterrupt


@contextmanager
def stop_requests() -> Iterator[StopRequests]:
    """SIGINT and SIGTERM go to a StopRequests while the block runs; the previous handlers come back after.

    Only the main thread can set handlers: elsewhere (a command's main() called from a thread) none are set. A
    signal the process was started ignoring (a background job of a non-interactive shell ignores SIGINT) stays
    ignored.
    """
    requests = StopRequests()
    if threading.current_thread() is not threading.main_thread():
        yield requests
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, requests.handle)
    try:
        yield requests
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def report_stopped(command: str, requests: StopRequests, what_stays: str) -> int:
    """Say on stderr, in one line, that `command` was stopped by a signal and what stays; return its exit
    status (128 + the signal's number)."""
    received = requests.last
    print(f"{command}: stopped by {received.name}; {what_stays}", file=sys.stderr)
    return 128 + int(received)
