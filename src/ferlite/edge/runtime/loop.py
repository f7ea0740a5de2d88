"""The frame loop: source -> pipeline -> JSON lines to the sinks (fer-edge, fer-preview and the soak bench
run it). Parts come in as arguments; a sink raises StopFeed to end the loop cleanly."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..algorithm.pipeline import FrameResult, Pipeline, frame_to_json
from ..contract.errors import ModelOutputError
from .backoff import stoppable_sleep
from .sources import Frame, FrameSource

log = logging.getLogger(__name__)

FAILURE_WARN_EVERY_S = 10.0  # frames the model failed on: the first is logged, then a count this often

Sink = Callable[[bytes], None]
MessageSink = Callable[[dict[str, Any]], None]


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
    # Frames the model failed on, or gave no probabilities for (ModelOutputError): logged, counted, no result.
    failed: int = 0
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
    return frame_to_json(result, frame=index, ts=round(time.time(), 3), source=source_name, file=frame.file,
                         pos_ms=getattr(frame, "pos_ms", None))


def encode(message: dict[str, Any]) -> bytes:
    """One feed line. Strict JSON: a NaN or infinity raises ValueError instead of being written as
    `NaN`, which no JSON reader takes."""
    return (json.dumps(message, separators=(", ", ": "), allow_nan=False) + "\n").encode()


class _Failures:
    """Frames without a result: the first is logged at once, then a count every FAILURE_WARN_EVERY_S."""

    def __init__(self, stats: LoopStats) -> None:
        self.stats = stats
        self._next = 0.0

    def __call__(self, why: str) -> None:
        self.stats.failed += 1
        now = time.monotonic()
        if now >= self._next:
            log.warning("frame %d: no result (%s); %d frame(s) without a result so far",
                        self.stats.frames + self.stats.failed - 1, why, self.stats.failed)
            self._next = now + FAILURE_WARN_EVERY_S


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
    message_sinks: Sequence[MessageSink] = (),
) -> LoopStats:
    """Process frames until the source ends, max_frames is reached, or should_stop() is true.

    `sinks` take each frame's message as a JSON line; `message_sinks` take the message itself
    (fer-edge --format csv). `status_requested()` true (e.g. after SIGUSR1) logs a status line at
    once; `status_extra()` adds to every status line (readers, dropped lines). `on_result(frame,
    result)`, when given, is called after the sinks with every frame (--annotate, fer-preview).
    The last frame of a video file carries an `end` event for every track still open.
    """
    notifier = notifier or NullNotifier()
    stats = LoopStats(started=time.monotonic())
    failure = _Failures(stats)
    next_status = stats.started + status_every_s
    period = 1.0 / fps_limit if fps_limit else 0.0
    faces_now = 0
    while True:
        if should_stop():
            stats.ended = "stop"
            break
        if max_frames is not None and stats.frames + stats.failed >= max_frames:
            stats.ended = "max_frames"
            break
        frame_start = time.monotonic()
        frame = source.read()
        if frame is None:
            stats.ended = "stop" if should_stop() else "source"
            break
        # The model failing on this frame (ModelOutputError), or a value JSON cannot carry (NaN): an error
        # for this frame only, logged and counted; no result is written for it.
        why = ""
        try:
            result = pipeline.process(frame.image)
        except ModelOutputError as e:
            why = str(e)
        if not why:
            if frame.last:  # the file ends here: so do the faces still in view
                result = dataclasses.replace(result, events=result.events + pipeline.end_tracks())
            message = frame_message(stats.frames, source.name, frame, result)
            try:
                line = encode(message) if sinks else b""
            except ValueError as e:
                why = f"not JSON: {e}"
        if why:
            failure(why)
            notifier.watchdog()
            if period:
                stoppable_sleep(period - (time.monotonic() - frame_start), should_stop)
            continue
        try:
            if sinks:
                for sink in sinks:
                    sink(line)
            for message_sink in message_sinks:
                message_sink(message)
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
            failed = f", {stats.failed} frames without a result (model errors)" if stats.failed else ""
            text = f"{stats.fps:.1f} fps, {stats.frames} frames, {faces_now} faces now{failed}{status_extra()}"
            notifier.status(text)
            log.info("%s", text)
            next_status = now + status_every_s
        if period:
            stoppable_sleep(period - (time.monotonic() - frame_start), should_stop)
    return stats
