"""fer-mqtt's outbox: bounded, shared by the feed thread (puts) and the broker thread (takes).

While the broker is away it keeps at most `max_summaries` frame summaries and `max_events` events, dropping the
oldest of each and counting what it dropped; retained topics keep only their latest value."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Outgoing:
    topic: str
    payload: str
    retain: bool
    kind: str  # "retained", "event" or "summary"


class Outbox:
    def __init__(self, max_summaries: int, max_events: int) -> None:
        self._lock = threading.Lock()
        self._summaries: deque[Outgoing] = deque()
        self._events: deque[Outgoing] = deque()
        self._retained_pending: dict[str, str] = {}
        self._retained_current: dict[str, str] = {}  # every retained topic's latest value, re-sent on reconnect
        self.max_summaries = max_summaries
        self.max_events = max_events
        self.dropped_summaries = 0
        self.dropped_events = 0
        self.on_first_drop: Callable[[str], None] | None = None  # told once per outage and kind
        self._warned: set[str] = set()

    def put_retained(self, topic: str, payload: str) -> None:
        with self._lock:
            self._retained_current[topic] = payload
            self._retained_pending.pop(topic, None)  # re-insert: the latest change goes last
            self._retained_pending[topic] = payload

    def put_event(self, topic: str, payload: str) -> None:
        self._put(self._events, Outgoing(topic, payload, False, "event"), self.max_events)

    def put_summary(self, topic: str, payload: str) -> None:
        self._put(self._summaries, Outgoing(topic, payload, False, "summary"), self.max_summaries)

    def _put(self, queue: deque[Outgoing], item: Outgoing, bound: int) -> None:
        warn = False
        with self._lock:
            queue.append(item)
            while len(queue) > bound:
                queue.popleft()
                if item.kind == "event":
                    self.dropped_events += 1
                else:
                    self.dropped_summaries += 1
                if item.kind not in self._warned:
                    self._warned.add(item.kind)
                    warn = True
        if warn and self.on_first_drop is not None:
            self.on_first_drop(item.kind)

    def resync(self) -> None:
        """After a (re)connect: send every retained topic again (the broker may have restarted empty)."""
        with self._lock:
            self._warned.clear()
            pending = dict(self._retained_current)
            pending.update(self._retained_pending)
            self._retained_pending = pending

    def pop(self) -> Outgoing | None:
        """The next message to send: retained topics first, then events, then frame summaries."""
        with self._lock:
            if self._retained_pending:
                topic = next(iter(self._retained_pending))
                return Outgoing(topic, self._retained_pending.pop(topic), True, "retained")
            if self._events:
                return self._events.popleft()
            if self._summaries:
                return self._summaries.popleft()
            return None

    def unpop(self, item: Outgoing) -> None:
        """Put back a message the client could not take (it goes first again)."""
        with self._lock:
            if item.kind == "retained":
                if item.topic not in self._retained_pending:
                    self._retained_pending = {item.topic: item.payload, **self._retained_pending}
            elif item.kind == "event":
                self._events.appendleft(item)
            else:
                self._summaries.appendleft(item)

    def empty(self) -> bool:
        with self._lock:
            return not self._summaries and not self._events and not self._retained_pending

    def sizes(self) -> tuple[int, int]:
        with self._lock:
            return len(self._summaries), len(self._events)
