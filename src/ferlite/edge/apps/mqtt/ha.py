"""Home Assistant's side of fer-mqtt: the topics, the discovery payloads, and a calm expression state.

- `Topics`: every topic under `<prefix>/<device_id>/`.
- `discovery_messages` / `removed_discovery_topics`: retained MQTT discovery configs (one device, four entities:
  the sensors "Expression" and "Faces in view", the binary sensor "Someone in view" and the event entity "Face"),
  and the config topics of entities disabled in the settings (an empty retained config removes them).
- `Calm`: the dominant expression with hysteresis: a new expression must lead by `hold_margin` for `hold_s`;
  `None` once no face has been seen for `none_after_s`.
- `Throttle`: a retained topic published on change, at most once per interval, plus a heartbeat.
- `scene_scores` / `attributes`: the six mean scores and the small attributes payload.

Standard library only, like the rest of fer-mqtt. The keys HA accepts for each component are checked in
tests/test_ha.py (from HA's MQTT sensor, binary_sensor and event schemas). docs/home-assistant.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ...contract import LABELS
from ...contract.version import package_version
from .config import HA_ENTITIES, MqttConfig

# Each entity's component, by object id (the names `disabled_entities` takes, declared with the settings).
ENTITIES: dict[str, str] = dict(zip(HA_ENTITIES, ("sensor", "sensor", "binary_sensor", "event"), strict=True))
EVENT_TYPES = {"new": "appeared", "end": "left"}  # fer-edge's track event -> the HA event entity's event_type
HEARTBEATS_TO_EXPIRE = 3  # sensors fed by the state expire after this many heartbeats without a message
MAX_ATTRIBUTE_TRACKS = 16  # track ids listed in the attributes at most (the count says how many there are)


def dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


class _Topic:
    """A topic under Topics.base named as the attribute: `state = _Topic()` is `<base>/state`."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, topics: Topics, owner: type | None = None) -> str:
        return f"{topics.base}/{self.name}"


@dataclass(frozen=True)
class Topics:
    """Every topic fer-mqtt publishes under `<prefix>/<device_id>` (base)."""

    base: str
    availability = _Topic()
    state = _Topic()
    attributes = _Topic()
    frame = _Topic()
    event = _Topic()
    ha_event = _Topic()
    bridge = _Topic()


# --- discovery -----------------------------------------------------------------------------------------


def _node(config: MqttConfig) -> str:
    return f"ferlite_{config.effective_device_id}"


def discovery_topic(config: MqttConfig, object_id: str) -> str:
    return f"{config.discovery_prefix}/{ENTITIES[object_id]}/{_node(config)}/{object_id}/config"


def status_topic(config: MqttConfig) -> str:
    """Where Home Assistant announces itself (`online` when it starts): discovery is sent again then."""
    return f"{config.discovery_prefix}/status"


def expire_after_s(config: MqttConfig) -> int:
    """Seconds after which HA marks a state-fed sensor unavailable when no state (or heartbeat) came."""
    return math.ceil(HEARTBEATS_TO_EXPIRE * config.heartbeat_s + config.state_interval_s)


def _entity_configs(config: MqttConfig, topics: Topics) -> dict[str, dict[str, Any]]:
    expire = expire_after_s(config)
    return {
        "expression": {
            "name": "Expression", "state_topic": topics.state, "value_template": "{{ value_json.dominant or 'none' }}",
            "device_class": "enum", "options": [*LABELS, "none"], "icon": "mdi:emoticon-outline",
            "json_attributes_topic": topics.attributes, "expire_after": expire,
        },
        "faces": {
            "name": "Faces in view", "state_topic": topics.state, "value_template": "{{ value_json.faces }}",
            "state_class": "measurement", "unit_of_measurement": "faces", "icon": "mdi:account-multiple",
            "expire_after": expire,
        },
        "someone": {
            "name": "Someone in view", "state_topic": topics.state,
            "value_template": "{{ 'ON' if value_json.dominant else 'OFF' }}", "payload_on": "ON",
            "payload_off": "OFF", "device_class": "occupancy", "expire_after": expire,
        },
        "face": {
            "name": "Face", "state_topic": topics.ha_event, "event_types": sorted(EVENT_TYPES.values()),
            "device_class": "motion", "icon": "mdi:face-recognition",
        },
    }


def discovery_messages(config: MqttConfig) -> dict[str, str]:
    """Home Assistant discovery: config topic -> retained config, for each entity not disabled, one device."""
    topics = Topics(config.base_topic)
    node = _node(config)
    common = {
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {"identifiers": [node], "name": config.effective_device_name, "manufacturer": "ferlite",
                   "model": "fer-edge facial-expression recognition", "sw_version": package_version()},
        "origin": {"name": "ferlite fer-mqtt", "sw_version": package_version()},
    }
    return {discovery_topic(config, object_id): dumps({**extra, "unique_id": f"{node}_{object_id}", **common})
            for object_id, extra in _entity_configs(config, topics).items()
            if object_id not in config.disabled_entities}


def removed_discovery_topics(config: MqttConfig) -> list[str]:
    """The config topics of the entities disabled in the settings: an empty retained config removes each."""
    return [discovery_topic(config, object_id) for object_id in ENTITIES if object_id in config.disabled_entities]


def ha_event(kind: str, track: int, expression: str | None, duration_s: float | None = None) -> str | None:
    """The event entity's message for a fer-edge track event (`new`/`end`); None for other kinds. Its keys
    besides `event_type` become the entity's attributes."""
    event_type = EVENT_TYPES.get(kind)
    if event_type is None:
        return None
    payload: dict[str, Any] = {"event_type": event_type, "track": track, "expression": expression}
    if duration_s is not None:
        payload["duration_s"] = duration_s
    return dumps(payload)


# --- the calm state ------------------------------------------------------------------------------------


def scene_scores(faces: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each label's mean score over the faces in view: a face's six `scores` when it has them, else its
    `label` with its `score`. Empty with no face."""
    totals: dict[str, float] = {}
    for face in faces:
        scores = face.get("scores") or {face["label"]: face["score"]}
        for label, score in scores.items():
            totals[label] = totals.get(label, 0.0) + score
    return {label: total / len(faces) for label, total in totals.items()}


class Calm:
    """The dominant expression with hysteresis. `see` takes each frame's scene scores (`scene_scores`);
    `expire` is called between frames. Times: `now` is the monotonic clock the holds are measured on,
    `ts` the Unix time recorded as `since`."""

    def __init__(self, hold_s: float, margin: float, none_after_s: float) -> None:
        self.hold_s = hold_s
        self.margin = margin
        self.none_after_s = none_after_s
        self.dominant: str | None = None
        self.since: float | None = None  # Unix time the dominant (or none) took over
        self._candidate: str | None = None
        self._candidate_at = 0.0
        self._face_at = -math.inf

    def see(self, scores: Mapping[str, float], now: float, ts: float) -> bool:
        """One frame; True when the dominant expression changed. Someone coming into view sets it at once;
        another expression takes over once it has led by `margin` for `hold_s` (frames without a face
        neither break nor extend its lead)."""
        if not scores:
            return self.expire(now, ts)
        self._face_at = now
        leader = max(scores, key=lambda label: (scores[label], label))
        if self.dominant is None:
            return self._switch(leader, ts)
        if leader == self.dominant or scores[leader] - scores.get(self.dominant, 0.0) < self.margin:
            self._candidate = None
            return False
        if leader != self._candidate:
            self._candidate, self._candidate_at = leader, now
        return now - self._candidate_at >= self.hold_s and self._switch(leader, ts)

    def expire(self, now: float, ts: float) -> bool:
        """None once no face has been seen for none_after_s; True when that changed the dominant."""
        if self.dominant is not None and now - self._face_at >= self.none_after_s:
            return self._switch(None, ts)
        return False

    def clear(self, ts: float) -> bool:
        """Nobody in view now (the feed is gone); True when that changed the dominant."""
        return self._switch(None, ts) if self.dominant is not None else False

    def _switch(self, label: str | None, ts: float) -> bool:
        self.dominant, self.since, self._candidate = label, ts, None
        return True


class Throttle:
    """A retained topic's latest payload: sent on a change of `key`, at most once per `interval_s` (a change
    held back goes out when the interval ends, with the newest payload), and every `heartbeat_s` (0: never)
    without a change."""

    def __init__(self, interval_s: float, heartbeat_s: float = 0.0) -> None:
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self.latest: dict[str, Any] | None = None
        self._key: Any = object()
        self._pending = False
        self._sent_at = -math.inf

    def offer(self, key: Any, payload: dict[str, Any], now: float, force: bool = False) -> dict[str, Any] | None:
        """The payload to send now, or None (unchanged, or held back until the interval ends)."""
        self.latest = payload
        if key == self._key and not force:
            return None
        self._key = key
        if force or now - self._sent_at >= self.interval_s:
            return self._send(now)
        self._pending = True
        return None

    def due(self, now: float) -> dict[str, Any] | None:
        """A held-back change whose interval is over, or the heartbeat; else None."""
        if self.latest is None:
            return None
        waited = now - self._sent_at
        if (self._pending and waited >= self.interval_s) or (self.heartbeat_s > 0 and waited >= self.heartbeat_s):
            return self._send(now)
        return None

    def _send(self, now: float) -> dict[str, Any] | None:
        self._pending = False
        self._sent_at = now
        return self.latest


def iso_time(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def attributes(calm: Calm, scores: Mapping[str, float], tracks: Sequence[int], faces: int,
               model: Mapping[str, str] | None) -> dict[str, Any]:
    """The Expression sensor's attributes: small (the six mean scores to 2 places, at most 16 track ids)."""
    return {
        "dominant": calm.dominant,
        "since": iso_time(calm.since),
        "faces": faces,
        "tracks": sorted(tracks)[:MAX_ATTRIBUTE_TRACKS],
        "scores": {label: round(scores.get(label, 0.0), 2) for label in LABELS},
        "model": dict(model) if model is not None else None,
    }
