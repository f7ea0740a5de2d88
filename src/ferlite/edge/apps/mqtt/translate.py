"""fer-mqtt's translator: fer-edge's feed messages (frames) in, MQTT topics and payloads (into the outbox) out.

A message's faces are checked and rebuilt first (`_faces`); tracks are followed for the new/end events; the
retained state and attributes go through ha.py's Calm and Throttle."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...runtime.feed import finite_number
from .config import MqttConfig
from .ha import (
    Calm,
    Throttle,
    Topics,
    attributes,
    discovery_messages,
    dumps,
    ha_event,
    removed_discovery_topics,
    scene_scores,
)
from .outbox import Outbox

log = logging.getLogger("ferlite.mqtt")

STALE_TRACK_S = 600.0  # a track not seen for this long (its "end" was never read) is forgotten
# What a feed message may hold (fer-edge's stay far below: max_faces is at most 256, labels are words);
# a message with more faces is skipped and counted, longer labels and other ids are left out.
MAX_FACES = 256
MAX_LABEL_CHARS = 64
MAX_ID = 2**63 - 1
MAX_TRACKS = 4096  # open tracks remembered at most (the least recently seen are forgotten)
MAX_SCORES = 32  # labels in a face's `scores` at most (fer-edge's models have 6)


@dataclass
class _Track:
    first_ts: float
    last_ts: float
    frames: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    score_sums: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    first: dict[str, Any] | None = None  # label, score, ts and frame at its "new" (the end event's `before`)

    def see(self, ts: float, label: str, score: float) -> None:
        self.last_ts = max(self.last_ts, ts)
        self.frames += 1
        self.counts[label] += 1
        self.score_sums[label] += score

    def dominant(self) -> str | None:
        return dominant_label(self.counts, self.score_sums)


def dominant_label(counts: Mapping[str, int], score_sums: Mapping[str, float]) -> str | None:
    """The label seen most often; a tie goes to the higher summed score, then to the name."""
    if not counts:
        return None
    return max(counts, key=lambda label: (counts[label], score_sums.get(label, 0.0), label))


def _whole(value: Any) -> int | None:
    """A JSON integer in 0..2**63-1 (a frame number, a track id); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        return None
    return value


def _faces(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The message's faces, each rebuilt from what checks out: a `label` string (required), a finite
    `score` (else 0), a whole `track` and a `box` of four finite numbers (each left out otherwise)."""
    faces = message.get("faces", [])
    if not isinstance(faces, list):
        raise ValueError("'faces' is not a list")
    if len(faces) > MAX_FACES:
        raise ValueError(f"{len(faces)} faces, more than {MAX_FACES}")
    clean = []
    for face in faces:
        if not isinstance(face, dict):
            continue
        label = face.get("label")
        if not isinstance(label, str) or not 0 < len(label) <= MAX_LABEL_CHARS:
            continue
        item: dict[str, Any] = {"label": label, "score": finite_number(face.get("score")) or 0.0}
        track = _whole(face.get("track"))
        if track is not None:
            item["track"] = track
        box = face.get("box")
        if isinstance(box, list) and len(box) == 4 and all(finite_number(v) is not None for v in box):
            item["box"] = box
        scores = _scores(face.get("scores"))
        if scores:
            item["scores"] = scores
        clean.append(item)
    return clean


def _scores(scores: Any) -> dict[str, float] | None:
    """A face's `scores` (label -> probability) when it is one: at most MAX_SCORES labels of at most
    MAX_LABEL_CHARS, each a finite number in 0..1; None otherwise (the face's label and score stand in)."""
    if not isinstance(scores, dict) or not 0 < len(scores) <= MAX_SCORES:
        return None
    clean = {}
    for label, value in scores.items():
        number = finite_number(value)
        if not isinstance(label, str) or len(label) > MAX_LABEL_CHARS or number is None or not 0 <= number <= 1:
            return None
        clean[label] = number
    return clean


def _score(face: dict[str, Any]) -> float:
    return float(face["score"])


class Translator:
    """fer-edge frames in, MQTT messages (into the outbox) out. Not thread-safe: callers hold `lock`.

    The retained `state` carries the calm dominant expression (`ha.Calm`): it is published when the faces in
    view or the dominant expression change (at most once per state_interval_s) and every heartbeat_s; the
    `attributes` on change, at most once per attributes_interval_s."""

    def __init__(self, config: MqttConfig, outbox: Outbox, clock: Callable[[], float] = time.monotonic,
                 model: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.topics = Topics(config.base_topic)
        self.outbox = outbox
        self.clock = clock
        self.model = model
        self.lock = threading.Lock()
        self.tracks: dict[int, _Track] = {}
        self.frames = 0
        self.feed_up = False
        self._summary_due = 0.0
        self._skipped = 0
        self.calm = Calm(config.hold_s, config.hold_margin, config.none_after_s)
        self._state = Throttle(config.state_interval_s, config.heartbeat_s)
        self._attributes = Throttle(config.attributes_interval_s)
        self._ha_events = config.discovery and "face" not in config.disabled_entities
        if config.discovery:  # no availability yet: the first one said is `online`, once the feed is read
            for topic, payload in discovery_messages(config).items():
                outbox.put_retained(topic, payload)
            for topic in removed_discovery_topics(config):
                outbox.put_retained(topic, "")  # an empty retained config: Home Assistant removes the entity
        self._put_state(self._state_of([], None, None), force=True)

    # the feed
    def feed_connected(self) -> None:
        self.feed_up = True
        self.outbox.put_retained(self.topics.availability, "online")

    def feed_lost(self) -> None:
        """The daemon went away: its tracks end, nobody is in view, the entities become unavailable."""
        self.feed_up = False
        ts = time.time()
        for track_id in sorted(self.tracks):
            self._end(track_id, ts, None, reason="feed lost")
        self.tracks.clear()
        self.calm.clear(ts)
        self._put_state(self._state_of([], ts, None), force=True)
        self._put_attributes({}, [], force=True)
        self.outbox.put_retained(self.topics.availability, "offline")

    def handle(self, message: dict[str, Any]) -> None:
        if not isinstance(message, dict):
            raise ValueError("a feed message is not a JSON object")
        now = self.clock()
        faces = _faces(message)  # first: a message refused here changes nothing
        events = message.get("events")
        self.frames += 1
        ts = finite_number(message.get("ts"))
        ts = ts if ts is not None else time.time()
        frame = _whole(message.get("frame"))
        self._follow_tracks(faces, events if isinstance(events, list) else [], ts, frame)
        scores = scene_scores(faces)
        self.calm.see(scores, now, ts)
        self._put_state(self._state_of(faces, ts, frame))
        self._put_attributes(scores, faces)
        self._summarise(faces, ts, frame, now)

    def tick(self) -> None:
        """Between frames: the expression becomes none once no face was seen for none_after_s; a change held
        back by an interval is published when it ends; the state's heartbeat."""
        now = self.clock()
        if self.calm.expire(now, time.time()) and self._state.latest is not None:
            self._put_state({**self._state.latest, "faces": 0, "labels": {}, "dominant": None,
                             "since": self.calm.since})
        for topic, throttle in ((self.topics.state, self._state), (self.topics.attributes, self._attributes)):
            payload = throttle.due(now)
            if payload is not None:
                self.outbox.put_retained(topic, dumps(payload))

    def _follow_tracks(self, faces: list[dict[str, Any]], events: list[Any], ts: float, frame: int | None) -> None:
        by_track: dict[int, dict[str, Any]] = {}
        for face in faces:
            track_id = face.get("track")
            if track_id is not None:
                by_track[track_id] = face
                self.tracks.setdefault(track_id, _Track(ts, ts)).see(ts, face["label"], _score(face))
        for event in events:
            if not isinstance(event, dict) or _whole(event.get("track")) is None:
                continue
            if event.get("type") == "new":
                self._new(event["track"], ts, frame, by_track.get(event["track"]))
            elif event.get("type") == "end":
                self._end(event["track"], ts, frame)
        self._forget_stale(ts)

    def _summarise(self, faces: list[dict[str, Any]], ts: float, frame: int | None, now: float) -> None:
        rate = self.config.summary_rate
        if rate > 0 and now >= self._summary_due:
            self._summary_due = max(self._summary_due + 1.0 / rate, now)
            summary = {
                "frame": frame, "ts": ts, "count": len(faces), "dominant": self.calm.dominant,
                "faces": [{k: face[k] for k in ("track", "label", "score", "box") if k in face} for face in faces],
                "skipped": self._skipped,
            }
            self._skipped = 0
            self.outbox.put_summary(self.topics.frame, dumps(summary))
        else:
            self._skipped += 1

    # events: fer-edge's new/end on the raw topic (Frigate-like: type, before, after), and Home Assistant's
    def _new(self, track_id: int, ts: float, frame: Any, face: dict[str, Any] | None) -> None:
        track = self.tracks.setdefault(track_id, _Track(ts, ts))
        label = face["label"] if face else None
        score = round(_score(face), 4) if face else None
        track.first = {"label": label, "score": score, "ts": ts, "frame": frame}
        event = {"type": "new", "track": track_id, "ts": ts, "frame": frame, "label": label, "score": score,
                 "before": track.first, "after": track.first}
        self.outbox.put_event(self.topics.event, dumps(event))
        self._put_ha_event("new", track_id, label)

    def _end(self, track_id: int, ts: float, frame: Any, reason: str | None = None) -> None:
        track = self.tracks.pop(track_id, None)
        event: dict[str, Any] = {"type": "end", "track": track_id, "ts": ts, "frame": frame}
        if track is None:
            event.update(label=None, duration_s=0.0, frames=0, labels={}, before=None)
        else:
            event.update(label=track.dominant(), duration_s=round(track.last_ts - track.first_ts, 3),
                         frames=track.frames, labels=dict(sorted(track.counts.items())), before=track.first)
        event["after"] = {"label": event["label"], "ts": ts, "frame": frame, "duration_s": event["duration_s"]}
        if reason:
            event["reason"] = reason
        self.outbox.put_event(self.topics.event, dumps(event))
        self._put_ha_event("end", track_id, event["label"], event["duration_s"])

    def _put_ha_event(self, kind: str, track_id: int, label: str | None, duration_s: float | None = None) -> None:
        payload = ha_event(kind, track_id, label, duration_s) if self._ha_events else None
        if payload is not None:
            self.outbox.put_event(self.topics.ha_event, payload)

    def _forget_stale(self, ts: float) -> None:
        for track_id in [t for t, track in self.tracks.items() if ts - track.last_ts > STALE_TRACK_S]:
            log.debug("track %d not seen for %.0f s and never ended: forgotten", track_id, STALE_TRACK_S)
            del self.tracks[track_id]
        if len(self.tracks) > MAX_TRACKS:  # a feed that invents track ids: the least recently seen go
            for track_id in sorted(self.tracks, key=lambda t: self.tracks[t].last_ts)[:len(self.tracks) - MAX_TRACKS]:
                del self.tracks[track_id]

    # the retained state and attributes
    def _state_of(self, faces: list[dict[str, Any]], ts: float | None, frame: int | None) -> dict[str, Any]:
        counts = Counter(face["label"] for face in faces)
        return {"faces": len(faces), "dominant": self.calm.dominant, "since": self.calm.since,
                "labels": dict(sorted(counts.items())), "ts": ts, "frame": frame}

    def _put_state(self, state: dict[str, Any], force: bool = False) -> None:
        payload = self._state.offer((state["faces"], state["dominant"]), state, self.clock(), force)
        if payload is not None:
            self.outbox.put_retained(self.topics.state, dumps(payload))

    def _put_attributes(self, scores: Mapping[str, float], faces: list[dict[str, Any]], force: bool = False) -> None:
        tracks = [face["track"] for face in faces if "track" in face]
        payload = attributes(self.calm, scores, tracks, len(faces), self.model)
        sent = self._attributes.offer(payload, payload, self.clock(), force)
        if sent is not None:
            self.outbox.put_retained(self.topics.attributes, dumps(sent))
