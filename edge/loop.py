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

from .pipeline import FrameResult, Pipeline, frame_to_json
from .sources import Frame, FrameSource, stoppable_sleep

log = logging.getLogger(__name__)

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
        if frame.last:  # the file ends here: so do the faces still in view
            result = dataclasses.replace(result, events=result.events + pipeline.end_tracks())
        message = frame_message(stats.frames, source.name, frame, result)
        try:
            if sinks:
                line = encode(message)
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
            text = f"{stats.fps:.1f} fps, {stats.frames} frames, {faces_now} faces now{status_extra()}"
            notifier.status(text)
            log.info("%s", text)
            next_status = now + status_every_s
        if period:
            stoppable_sleep(period - (time.monotonic() - frame_start), should_stop)
    return stats
