"""fer-mqtt: read fer-edge's socket feed and publish it to an MQTT broker, with Home Assistant discovery.

Three threads, one owner each:
  feed    reads the socket with `iterate_messages` (reconnecting with backoff) and turns each frame into
          messages (`Translator`, under a lock) that go into the bounded `Outbox`;
  broker  owns the paho client: connects (with backoff, never giving up; a refusing broker is probed every
          `restart_probe_s`), drains the outbox while connected, and re-sends the retained topics after
          every reconnect and when Home Assistant announces itself on <discovery_prefix>/status;
  main    waits for SIGTERM/SIGINT and ticks the translator (a change held back by `state_interval_s` or
          `attributes_interval_s` is published when the interval ends, the expression becomes none after
          `none_after_s` without a face, the state's heartbeat), even if no frame comes.

Home Assistant's side (topics, discovery payloads, the calm expression, the throttles) is in ha.py.

While the broker is away the outbox keeps at most `buffer_summaries` frame summaries and `buffer_events`
events, dropping the oldest of each and counting what it dropped; retained topics keep only their latest
value. Settings, topics and payloads: docs/mqtt.md.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import ssl
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from .backoff import Backoff
from .errors import FeedError
from .feed import check_socket_path, finite_number, iterate_messages
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
    status_topic,
)
from .mqtt_config import (
    MqttConfig,
    MqttConfigError,
    check_files,
    describe,
    load_config,
    read_model,
    read_password,
)
from .version import version_text

log = logging.getLogger("ferlite.mqtt")

STALE_TRACK_S = 600.0  # a track not seen for this long (its "end" was never read) is forgotten
STATS_EVERY_S = 60.0  # the retained bridge topic is refreshed this often (and on every change of link)
LOOP_TIMEOUT_S = 0.05  # the broker thread's longest wait between draining the outbox
CONNECT_TIMEOUT_S = 5.0  # TCP (and TLS) connect to the broker
CONNACK_TIMEOUT_S = 5.0  # from the TCP connection to the broker's CONNACK (brokers answer in milliseconds)
EXIT_OK = 0
EXIT_CRASHED = 1  # a thread died: systemd's Restart=on-failure starts fer-mqtt again
EXIT_BAD_CONFIG = 2  # a bad setting: RestartPreventExitStatus=2, no restart
MAX_MQTT_STRING = 65535  # bytes in a topic, client id, user name or password (a 16-bit length on the wire)
STOP_JOIN_S = 0.2  # on SIGTERM without a broker connection: what the broker thread is given to finish
SHUTDOWN_FLUSH_S = 2.0  # on SIGTERM: time allowed to deliver what is buffered before disconnecting
# What a feed message may hold (fer-edge's stay far below: max_faces is at most 256, labels are words);
# a message with more faces is skipped and counted, longer labels and other ids are left out.
MAX_FACES = 256
MAX_LABEL_CHARS = 64
MAX_ID = 2**63 - 1
MAX_TRACKS = 4096  # open tracks remembered at most (the least recently seen are forgotten)
MAX_SCORES = 32  # labels in a face's `scores` at most (fer-edge's models have 6)


# --- the outbox: bounded, shared by the feed thread (puts) and the broker thread (takes) --------------


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


# --- frames -> messages --------------------------------------------------------------------------------


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


# --- the threads ---------------------------------------------------------------------------------------


def describe_failure(error: BaseException) -> str:
    """One line for an unexpected exception: its type, message (cut short) and the innermost place it came
    from, e.g. `struct.error: 'H' format requires 0 <= number <= 65535 (at client.py:1234 in _pack_str16)`."""
    where = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    text = str(error)
    text = text if len(text) <= 200 else text[:200] + "..."
    kind = type(error).__qualname__
    module = type(error).__module__
    if module not in ("builtins", "__main__"):
        kind = f"{module}.{kind}"
    place = f" (at {os.path.basename(where[0].filename)}:{where[0].lineno} in {where[0].name})" if where else ""
    return f"{kind}: {text}{place}"


class Worker(threading.Thread):
    """A thread that reports its own unexpected death in one line (the traceback at DEBUG) and records it
    in `failure`; `run()` then stops fer-mqtt with EXIT_CRASHED, so that systemd's Restart= starts it again
    instead of it staying up with a dead half."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.failure: str | None = None

    def run(self) -> None:
        try:
            self.work()
        except Exception as e:  # noqa: BLE001 - any failure ends the process (below), said in one line
            self.failure = describe_failure(e)
            log.critical("the %s thread failed: %s", self.name, self.failure)
            log.debug("the %s thread failed", self.name, exc_info=True)

    def work(self) -> None:
        raise NotImplementedError


# --- the broker connection ----------------------------------------------------------------------------


class Reconnects:
    """When to try the broker (or the feed) again: the one exponential backoff (reconnect_initial_s doubling up to
    reconnect_max_s), but at most restart_probe_s after a refusal (the host is up and nothing listens: the broker or
    fer-edge is restarting, and a refused attempt costs nothing), so it is found within about restart_probe_s of
    its return."""

    def __init__(self, config: MqttConfig) -> None:
        self.backoff = Backoff(config.reconnect_initial_s, config.reconnect_max_s)
        self.probe_s = config.restart_probe_s

    def reset(self) -> None:
        self.backoff.reset()

    def wait(self, refused: bool) -> float:
        delay = self.backoff.next_delay()
        return min(delay, self.probe_s) if refused else delay


class BrokerLink(Worker):
    """Owns the paho client: connect with backoff forever, drain the outbox while connected."""

    def __init__(self, config: MqttConfig, outbox: Outbox, stop: threading.Event, feed_up: Callable[[], bool],
                 skipped: Callable[[], int] = lambda: 0) -> None:
        super().__init__("broker")
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.config = config
        self.outbox = outbox
        self.stop = stop
        self.feed_up = feed_up
        self.skipped = skipped
        self.topics = Topics(config.base_topic)
        self.published = 0
        self.connects = 0
        self.refusals = 0
        self.connected = threading.Event()
        self._connack_ok = False
        self._down_since: float | None = time.monotonic()
        self._dropped_at_down = (0, 0)
        self._stats_due = 0.0
        self._stats_feed: bool | None = None  # the feed as the bridge topic last said it
        self._attempts = 0  # failed connection attempts since the last connection
        self._last_error: str | None = None
        self._logged_at = -math.inf
        self._status_topic = status_topic(config) if config.discovery else None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.effective_client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.max_inflight_messages_set(20)
        client.max_queued_messages_set(200)
        client.will_set(self.topics.availability, "offline", qos=config.qos, retain=True)
        if config.username is not None:
            client.username_pw_set(config.username, read_password(config))
        if config.tls:
            try:
                client.tls_set(ca_certs=config.ca_file, certfile=config.cert_file, keyfile=config.key_file,
                               cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
                raise MqttConfigError(f"tls: cannot use ca_file/cert_file/key_file ({e})") from e
        self.client = client

    # callbacks (run in this thread, inside client.loop)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.refusals += 1
            hint = " (check username and password_file)" if "authori" in str(reason).lower() or \
                "password" in str(reason).lower() else ""
            log.error("broker %s:%d refused the connection: %s%s; retrying", self.config.host, self.config.port,
                      reason, hint)
            return
        self._connack_ok = True
        self.connects += 1
        summaries, events = self.outbox.sizes()
        dropped = (self.outbox.dropped_summaries - self._dropped_at_down[0],
                   self.outbox.dropped_events - self._dropped_at_down[1])
        if self.connects == 1:
            log.info("connected to broker %s:%d as %s; topics under %s/", self.config.host, self.config.port,
                     self.config.effective_client_id, self.config.base_topic)
        else:
            outage = time.monotonic() - self._down_since if self._down_since is not None else 0.0
            log.warning("reconnected to broker %s:%d after %.1f s; sending %d buffered events and %d frame "
                        "summaries; dropped while away: %d frame summaries, %d events (totals %d, %d)",
                        self.config.host, self.config.port, outage, events, summaries, dropped[0], dropped[1],
                        self.outbox.dropped_summaries, self.outbox.dropped_events)
        self._down_since = None
        self.connected.set()
        self.outbox.resync()
        self._put_stats()
        if self._status_topic is not None:
            client.subscribe(self._status_topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        """Home Assistant announces `online` on <discovery_prefix>/status when it starts: it is sent every
        config (and the retained topics) again. A retained copy, replayed on subscribing, is no restart."""
        if message.topic == self._status_topic and message.payload == b"online" and not message.retain:
            log.info("Home Assistant is online (%s): sending discovery and the retained topics again",
                     message.topic)
            self.outbox.resync()

    def _put_stats(self) -> None:
        """The retained bridge topic: on every connect, when the feed comes or goes, and every STATS_EVERY_S."""
        self._stats_due = time.monotonic() + STATS_EVERY_S
        self._stats_feed = self.feed_up()
        stats = {"connects": self.connects, "published": self.published, "feed": "up" if self._stats_feed else "down",
                 "dropped_summaries": self.outbox.dropped_summaries, "dropped_events": self.outbox.dropped_events,
                 "skipped_messages": self.skipped(), "ts": round(time.time(), 3)}
        self.outbox.put_retained(self.topics.bridge, dumps(stats))

    # the thread
    def work(self) -> None:
        backoff = Reconnects(self.config)
        while not self.stop.is_set():
            refused = False
            try:
                self.client.connect(self.config.host, self.config.port, self.config.keepalive)
            except (OSError, ValueError) as e:  # refused, unreachable, DNS, TLS (ssl.SSLError), timeout
                error: str | None = f"unreachable ({str(e) or type(e).__name__})"
                refused = isinstance(e, ConnectionRefusedError)
            else:
                error = self._serve()
            if self.stop.is_set():
                break
            if self._connack_ok:
                backoff.reset()
                self._lost(backoff.wait(False))
            elif error is not None:
                wait = backoff.wait(refused)
                self._log_failure(error, wait)
                self.stop.wait(wait)
            else:
                self.stop.wait(backoff.wait(False))
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass

    def _lost(self, wait: float) -> None:
        """An established connection dropped: buffer from now on, and reconnect after `wait`."""
        self._connack_ok = False
        self._attempts = 0
        self._last_error = None
        self.connected.clear()
        self._down_since = time.monotonic()
        self._dropped_at_down = (self.outbox.dropped_summaries, self.outbox.dropped_events)
        log.warning("lost the broker %s:%d; buffering (at most %d frame summaries, %d events) and reconnecting in "
                    "%.1f s", self.config.host, self.config.port, self.outbox.max_summaries, self.outbox.max_events,
                    wait)
        self.stop.wait(wait)

    def _log_failure(self, error: str, wait: float) -> None:
        """A failed attempt: a warning when the reason is new, then at most one line per reconnect_max_s (the
        rest at DEBUG: a restarting broker is probed every restart_probe_s)."""
        self._attempts += 1
        now = time.monotonic()
        if error != self._last_error:
            level = logging.WARNING
        elif now - self._logged_at >= self.config.reconnect_max_s:
            level = logging.INFO
        else:
            level = logging.DEBUG
        if level > logging.DEBUG:
            self._logged_at = now
        log.log(level, "broker %s:%d %s; retrying in %.1f s (attempt %d)", self.config.host, self.config.port,
                error, wait, self._attempts)
        self._last_error = error

    def _serve(self) -> str | None:
        """Run the connection until it drops; on stop, say offline and flush briefly, then disconnect.

        Returns why the broker did not accept the connection (None when it did, when the refusal was
        already logged, or on stop). A broker that takes the TCP connection but sends no CONNACK within
        CONNACK_TIMEOUT_S (not an MQTT broker, or one that hangs) is left, and tried again later."""
        mqtt = self.mqtt
        connack_due = time.monotonic() + CONNACK_TIMEOUT_S
        while True:
            rc = self.client.loop(timeout=LOOP_TIMEOUT_S)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                if rc != mqtt.MQTT_ERR_CONN_REFUSED and not self._connack_ok:
                    return f"closed the connection before accepting it ({mqtt.error_string(rc)})"
                return None
            if not self._connack_ok:
                if self.stop.is_set():
                    return None
                if time.monotonic() >= connack_due:
                    self.client.disconnect()
                    return (f"took the TCP connection but sent no MQTT reply (CONNACK) in {CONNACK_TIMEOUT_S:g} s: "
                            "not an MQTT broker at that port, or a broker that hangs")
                continue
            if time.monotonic() >= self._stats_due or self.feed_up() != self._stats_feed:
                self._put_stats()
            self._drain()
            if self.stop.is_set():
                self._say_goodbye()
                return None

    def _drain(self) -> None:
        while True:
            item = self.outbox.pop()
            if item is None:
                return
            info = self.client.publish(item.topic, item.payload, qos=self.config.qos, retain=item.retain)
            if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
                self.outbox.unpop(item)  # the client's queue is full or the link just dropped: later
                return
            self.published += 1

    def _say_goodbye(self) -> None:
        self.outbox.put_retained(self.topics.availability, "offline")
        self._put_stats()
        deadline = time.monotonic() + SHUTDOWN_FLUSH_S
        while time.monotonic() < deadline:
            self._drain()
            if self.outbox.empty() and not self.client.want_write() and self._unacked() == 0:
                break
            if self.client.loop(timeout=LOOP_TIMEOUT_S) != self.mqtt.MQTT_ERR_SUCCESS:
                return
        self.client.disconnect()
        self.client.loop(timeout=LOOP_TIMEOUT_S)

    def _unacked(self) -> int:
        return len(getattr(self.client, "_out_messages", {}))



# --- the feed ----------------------------------------------------------------------------------------


class FeedReader(Worker):
    """Read fer-edge's socket with `iterate_messages`; reconnect with backoff whenever it goes away.

    A line that is not a message (iterate_messages skips it) or a message that is not a frame (the
    translator refuses it) is skipped and counted in `bad_messages`; the feed goes on."""

    def __init__(self, config: MqttConfig, translator: Translator, stop: threading.Event) -> None:
        super().__init__("feed")
        self.config = config
        self.translator = translator
        self.stop = stop
        self.connections = 0
        self.bad_messages = 0
        self._lost_at: float | None = None  # when a feed that was read went away

    def work(self) -> None:
        backoff = Reconnects(self.config)
        last_reason = None
        while not self.stop.is_set():
            up, reason, refused = self._read()
            if self.stop.is_set():
                return
            if up:
                backoff.reset()
                last_reason = None
                self._lost_at = time.monotonic()
                with self.translator.lock:
                    self.translator.feed_lost()
                log.warning("feed %s lost: %s; reconnecting", self.config.socket, reason)
            wait = backoff.wait(refused)
            if not up and reason != last_reason:
                log.warning("feed %s: %s; retrying in %.1f s (backing off to %g s)", self.config.socket, reason, wait,
                            self.config.reconnect_max_s)
            last_reason = reason
            self.stop.wait(wait)

    def _read(self) -> tuple[bool, str, bool]:
        """Read the feed until it ends: whether a message came, why it ended, and whether the connection was
        refused (no socket, or nobody listening on it: fer-edge is restarting)."""
        up = False
        try:
            for message in iterate_messages(self.config.socket, timeout=self.config.feed_timeout_s,
                                            should_stop=self.stop.is_set, on_skip=self._skip):
                if self.stop.is_set():
                    break
                with self.translator.lock:
                    if not up:
                        up = True
                        self._connected()
                    self._handle(message)
            return up, "the daemon closed the feed", False
        except TimeoutError:
            return up, f"no message for {self.config.feed_timeout_s:g} s", False
        except (FileNotFoundError, ConnectionRefusedError) as e:
            return up, f"no fer-edge feed there ({e.strerror})", True
        except PermissionError:
            return up, "permission denied (the reader needs the group 'fer')", False
        except OSError as e:
            return up, str(e), False

    def _connected(self) -> None:
        self.connections += 1
        if self._lost_at is None:
            log.info("reading the feed %s", self.config.socket)
        else:
            log.warning("feed %s back after %.1f s", self.config.socket, time.monotonic() - self._lost_at)
            self._lost_at = None
        self.translator.feed_connected()

    def _handle(self, message: Any) -> None:
        try:
            self.translator.handle(message)
        except (LookupError, TypeError, ValueError, ArithmeticError, RecursionError) as e:
            self._skip(f"a message that is not a frame ({e})")

    def _skip(self, reason: str) -> None:
        self.bad_messages += 1
        if self.bad_messages in (1, 10, 100) or self.bad_messages % 1000 == 0:
            log.warning("feed %s: skipped %s; %d skipped so far", self.config.socket, reason, self.bad_messages)


# --- the command ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-mqtt",
        description="Publish fer-edge's socket feed to an MQTT broker, with Home Assistant discovery. "
        "Settings come from --config (TOML); flags override only what you type. "
        "The password is read from password_file, never from the command line.",
    )
    p.add_argument("--config", dest="config_file", metavar="FILE", help="TOML settings (see systemd/mqtt.toml)")
    p.add_argument("--check-config", action="store_true", help="check the settings, print them, exit")
    p.add_argument("--socket", help="the fer-edge feed socket (default /run/ferlite/feed.sock)")
    p.add_argument("--host", help="MQTT broker host (default localhost)")
    p.add_argument("--port", type=int, help="MQTT broker port (default 1883)")
    p.add_argument("--device-id", help="topic and Home Assistant id of this device (default: host name)")
    p.add_argument("--prefix", help="topic prefix (default ferlite)")
    p.add_argument("--summary-rate", type=float, help="frame summaries per second at most (0: none)")
    p.add_argument("--qos", type=int, help="MQTT QoS 0, 1 or 2 (default 1)")
    p.add_argument("--log-level", help="DEBUG | INFO | WARNING | ERROR")
    p.add_argument("--version", action="version", version=version_text("fer-mqtt"))
    return p


_FLAGS = ("socket", "host", "port", "device_id", "prefix", "summary_rate", "qos", "log_level")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {name: getattr(args, name) for name in _FLAGS if getattr(args, name) is not None}
    try:
        config = load_config(args.config_file, overrides)
        check_files(config)
        check_limits(config, read_password(config))
        read_model(config)
    except MqttConfigError as e:
        print(f"fer-mqtt: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.check_config:
        print(describe(config))
        return 0
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        print("fer-mqtt: paho-mqtt is not installed (pip install 'ferlite[mqtt]')", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return run(config)


def check_limits(config: MqttConfig, password: str | None = None) -> None:
    """MqttConfigError for what MQTT cannot carry: a topic (prefix, discovery_prefix, device_id), client id,
    user name or password that is not UTF-8 or over 65535 bytes (paho would fail at its first connect or
    publish, inside the broker thread), or a feed socket path no Unix socket can have."""
    try:
        check_socket_path(config.socket)
    except FeedError as e:
        raise MqttConfigError(f"socket: {e}") from e
    topics = Topics(config.base_topic)
    strings = {"a topic under prefix": topics.availability, "client_id": config.effective_client_id}
    if config.discovery:
        strings["a discovery topic under discovery_prefix"] = max(discovery_messages(config), key=len)
    if config.username is not None:
        strings["username"] = config.username
    if password is not None:
        strings["the password in password_file"] = password
    for what, text in strings.items():
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise MqttConfigError(f"{what} is not valid UTF-8 (byte {e.object[e.start]!r})") from e
        if size > MAX_MQTT_STRING:
            raise MqttConfigError(f"{what} is {size} bytes long; MQTT carries at most {MAX_MQTT_STRING}")


def run(config: MqttConfig, stop: threading.Event | None = None) -> int:
    """Bridge until `stop` is set (by SIGTERM/SIGINT when run from the command line)."""
    stop = stop if stop is not None else threading.Event()
    outbox = Outbox(config.buffer_summaries, config.buffer_events)
    outbox.on_first_drop = lambda kind: log.warning(
        "broker away or slow: %s buffer full, dropping the oldest (counted; reported on reconnect)",
        "event" if kind == "event" else "frame summary")
    try:
        translator = Translator(config, outbox, model=read_model(config))
        reader = FeedReader(config, translator, stop)
        link = BrokerLink(config, outbox, stop, lambda: translator.feed_up, lambda: reader.bad_messages)
    except MqttConfigError as e:
        print(f"fer-mqtt: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: publishing offline and stopping", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    link.start()
    reader.start()
    status = EXIT_OK
    while not stop.wait(0.1):
        failed = _failed(link, reader, translator)
        if failed is not None:
            log.critical("fer-mqtt cannot go on without its %s; exiting with status %d (systemd restarts it)",
                         failed, EXIT_CRASHED)
            status = EXIT_CRASHED
            stop.set()
    # Connected: the broker thread says offline and flushes (at most SHUTDOWN_FLUSH_S). Not connected (the
    # broker down, silent, or a TCP/TLS connect under way): nothing to say, the process does not wait for it.
    link.join(timeout=SHUTDOWN_FLUSH_S + 0.5 if link.connected.is_set() else STOP_JOIN_S)
    log.info("stopped: %d messages published, %d frames read, %d feed messages skipped; dropped %d frame "
             "summaries, %d events", link.published, translator.frames, reader.bad_messages,
             outbox.dropped_summaries, outbox.dropped_events)
    return status


def _failed(link: BrokerLink, reader: FeedReader, translator: Translator) -> str | None:
    """Which part is gone (a thread that died, or the state tick failing); None while all are working."""
    for thread in (link, reader):
        if not thread.is_alive():
            return f"{thread.name} thread ({thread.failure or 'ended'})"
    try:
        with translator.lock:
            translator.tick()
    except Exception as e:  # noqa: BLE001 - said in one line, and the process ends
        return f"state timer ({describe_failure(e)})"
    return None


if __name__ == "__main__":
    sys.exit(main())
