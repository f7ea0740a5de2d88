"""The frame loop: source -> pipeline -> JSON lines to the sinks. Parts come in as arguments."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .pipeline import FrameResult, Pipeline
from .sources import Frame, FrameSource

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

    @property
    def fps(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0


def frame_message(
    index: int, source_name: str, frame: Frame, result: FrameResult
) -> dict[str, Any]:
    message: dict[str, Any] = {"frame": index, "ts": round(time.time(), 3), "source": source_name}
    if frame.file is not None:
        message["file"] = frame.file
    message["size"] = list(result.size)
    message["faces"] = [face.to_json() for face in result.faces]
    if result.events:
        message["events"] = result.events
    message["timing_ms"] = result.timing_ms
    return message


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
) -> LoopStats:
    """Process frames until the source ends, max_frames is reached, or should_stop() is true."""
    notifier = notifier or NullNotifier()
    stats = LoopStats(started=time.monotonic())
    next_status = stats.started + status_every_s
    period = 1.0 / fps_limit if fps_limit else 0.0
    while not should_stop() and (max_frames is None or stats.frames < max_frames):
        frame_start = time.monotonic()
        frame = source.read()
        if frame is None:
            break
        result = pipeline.process(frame.image)
        line = encode(frame_message(stats.frames, source.name, frame, result))
        try:
            for sink in sinks:
                sink(line)
        except StopFeed:
            log.info("output closed; stopping")
            break
        stats.frames += 1
        stats.faces += len(result.faces)
        if stats.frames == 1:
            notifier.ready(f"first frame from {source.name}")
        notifier.watchdog()
        now = time.monotonic()
        if now >= next_status:
            text = f"{stats.fps:.1f} fps, {stats.frames} frames, {len(result.faces)} faces now"
            notifier.status(text)
            log.info("%s", text)
            next_status = now + status_every_s
        if period:
            time.sleep(max(0.0, period - (time.monotonic() - frame_start)))
    return stats
