"""fer-mqtt for Home Assistant (issue 24): a calm expression state, attributes, the event entity, discovery that
survives HA and broker restarts, and one `online` at start. Against a real Mosquitto (the fixtures of
tests/test_mqtt.py), fer-mqtt as its own process; the state machine and the payloads also without a broker.

The discovery payloads are checked against Home Assistant's MQTT schemas, encoded below key by key from HA's
documentation (https://www.home-assistant.io/integrations/sensor.mqtt/, binary_sensor.mqtt/, event.mqtt/ and
/integrations/mqtt/#mqtt-discovery) and its source (homeassistant/components/mqtt/: schemas.py
MQTT_ENTITY_COMMON_SCHEMA, config.py MQTT_RO_SCHEMA, sensor.py, binary_sensor.py, event.py).
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_mqtt import REPO, Bridge, Broker, FakeFeed, Subscriber, bridge_settings

from ferlite.edge.apps.mqtt import Outbox, Reconnects, Translator
from ferlite.edge.apps.mqtt.config import HA_ENTITIES, MqttConfigError, make_config, read_model
from ferlite.edge.apps.mqtt.ha import (
    ENTITIES,
    Calm,
    Throttle,
    discovery_messages,
    removed_discovery_topics,
    scene_scores,
)
from ferlite.edge.runtime.feed import SocketFeed

try:
    import paho.mqtt.client as mqtt
except ImportError:  # the broker tests skip; the others run
    mqtt = None

LABELS = ("Angry", "Disgust", "Happy", "Neutral", "Sad", "Surprise")
SPEC = REPO / "src" / "ferlite" / "edge" / "models" / "ferlite_int8.spec.json"


# --- Home Assistant's MQTT discovery schema, per component --------------------------------------------------


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def _optional_string(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "must be a string or null"


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _positive_int(value: Any) -> str | None:  # cv.positive_int: a whole number >= 0
    return None if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else "must be an int >= 0"


def _topic(value: Any) -> str | None:  # util.valid_subscribe_topic
    if not isinstance(value, str) or not value or "\0" in value or len(value.encode()) > 65535:
        return "must be a non-empty topic"
    levels = value.split("/")
    if any(("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+")
           for i, level in enumerate(levels)):
        return "has a misplaced wildcard"
    return None


def _icon(value: Any) -> str | None:  # cv.icon: "prefix:name"
    return None if isinstance(value, str) and re.fullmatch(r"[^:\s]+:[^:\s]+", value) else "must be prefix:name"


def _one_of(*choices: Any) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {choices}"


def _string_list(value: Any) -> str | None:
    ok = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
    return None if ok else "must be a non-empty list of strings"


DEVICE_KEYS = {"identifiers": _string_list, "connections": lambda v: None if isinstance(v, list) else "a list",
               "manufacturer": _string, "model": _string, "model_id": _string, "name": _string,
               "hw_version": _string, "serial_number": _string, "sw_version": _string, "via_device": _string,
               "suggested_area": _string, "configuration_url": _string}
ORIGIN_KEYS = {"name": _string, "sw_version": _string, "support_url": _string}


Check = Callable[[Any], "str | None"]


def _keys(allowed: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return "must be an object"
        problems = [f"{k} is required" for k in required if k not in value]
        problems += [f"{k} is not a key" for k in value if k not in allowed]
        problems += [f"{k} {p}" for k, v in value.items() if k in allowed and (p := allowed[k](v))]
        return "; ".join(problems) or None
    return check


# MQTT_ENTITY_COMMON_SCHEMA (availability, device, origin, ...) + MQTT_BASE_SCHEMA (qos, encoding).
COMMON = {
    "availability_topic": _topic, "availability_template": _string, "payload_available": _string,
    "payload_not_available": _string, "availability_mode": _one_of("all", "any", "latest"),
    "availability": lambda v: None if isinstance(v, list) else "must be a list",
    "device": _keys(DEVICE_KEYS), "origin": _keys(ORIGIN_KEYS, required=("name",)),
    "enabled_by_default": _bool, "entity_category": _one_of("config", "diagnostic"), "icon": _icon,
    "json_attributes_topic": _topic, "json_attributes_template": _string, "object_id": _string,
    "default_entity_id": _string, "unique_id": _string, "qos": _one_of(0, 1, 2), "encoding": _string,
}
READ_ONLY = {"state_topic": _topic, "value_template": _string}  # MQTT_RO_SCHEMA: state_topic is required
SENSOR_DEVICE_CLASSES = (
    "apparent_power", "aqi", "area", "atmospheric_pressure", "battery", "blood_glucose_concentration",
    "carbon_dioxide", "carbon_monoxide", "current", "data_rate", "data_size", "date", "distance", "duration",
    "energy", "energy_distance", "energy_storage", "enum", "frequency", "gas", "humidity", "illuminance",
    "irradiance", "moisture", "monetary", "nitrogen_dioxide", "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph",
    "pm1", "pm10", "pm25", "power_factor", "power", "precipitation", "precipitation_intensity", "pressure",
    "reactive_power", "signal_strength", "sound_pressure", "speed", "sulphur_dioxide", "temperature", "timestamp",
    "volatile_organic_compounds", "volatile_organic_compounds_parts", "voltage", "volume", "volume_storage",
    "volume_flow_rate", "water", "weight", "wind_direction", "wind_speed", None)
BINARY_SENSOR_DEVICE_CLASSES = (
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas", "heat",
    "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power", "presence", "problem",
    "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window", None)


def _sensor_rules(payload: dict[str, Any]) -> str | None:
    """sensor.py validate_sensor_state_and_device_class_config: options only for an enum sensor without
    state_class or unit; last_reset_value_template only with state_class total."""
    if "options" in payload:
        if payload.get("state_class") or payload.get("unit_of_measurement"):
            return "options with state_class or unit_of_measurement"
        if payload.get("device_class") != "enum":
            return "options without device_class enum"
    if "last_reset_value_template" in payload and payload.get("state_class") != "total":
        return "last_reset_value_template without state_class total"
    return None


SCHEMAS: dict[str, tuple[dict[str, Callable[[Any], str | None]], tuple[str, ...], Callable[[Any], str | None]]] = {
    "sensor": ({**COMMON, **READ_ONLY, "device_class": _one_of(*SENSOR_DEVICE_CLASSES),
                "expire_after": _positive_int, "force_update": _bool, "last_reset_value_template": _string,
                "name": _optional_string, "options": _string_list, "suggested_display_precision": _positive_int,
                "state_class": _one_of("measurement", "measurement_angle", "total", "total_increasing", None),
                "unit_of_measurement": _optional_string}, ("state_topic",), _sensor_rules),
    "binary_sensor": ({**COMMON, **READ_ONLY, "device_class": _one_of(*BINARY_SENSOR_DEVICE_CLASSES),
                       "expire_after": _positive_int, "force_update": _bool, "name": _optional_string,
                       "off_delay": _positive_int, "payload_off": _string, "payload_on": _string},
                      ("state_topic",), lambda payload: None),
    "event": ({**COMMON, **READ_ONLY, "device_class": _one_of("button", "doorbell", "motion"),
               "name": _optional_string, "event_types": _string_list}, ("state_topic", "event_types"),
              lambda payload: None),
}


def ha_problems(component: str, payload: Any) -> str | None:
    """What Home Assistant's discovery schema for `component` refuses in `payload` (None: it validates). Stricter
    than HA in one way: a key HA does not know is refused (HA drops it silently: a typo would go unnoticed)."""
    allowed, required, rules = SCHEMAS[component]
    return _keys(allowed, required)(payload) or rules(payload)


def test_the_schema_check_refuses_what_home_assistant_refuses() -> None:
    """The checker can fail: each of these is a payload HA's schema rejects (or a key it ignores)."""
    good = {"state_topic": "a/b", "event_types": ["appeared"], "unique_id": "u"}
    assert ha_problems("event", good) is None
    assert "event_types is required" in (ha_problems("event", {"state_topic": "a/b"}) or "")
    assert "device_class" in (ha_problems("event", {**good, "device_class": "occupancy"}) or "")
    assert "expire_after is not a key" in (ha_problems("event", {**good, "expire_after": 5}) or "")
    assert "event_types" in (ha_problems("event", {**good, "event_types": "appeared"}) or "")
    sensor = {"state_topic": "a/b", "device_class": "enum", "options": ["x"]}
    assert ha_problems("sensor", sensor) is None
    assert ha_problems("sensor", {**sensor, "unit_of_measurement": "faces"}) is not None
    assert ha_problems("sensor", {**sensor, "expire_after": -1}) is not None
    assert ha_problems("sensor", {**sensor, "expire_after": 1.5}) is not None
    assert ha_problems("sensor", {**sensor, "json_attributes_topic": "a/#/b"}) is not None
    assert ha_problems("binary_sensor", {"state_topic": "s", "origin": {"sw_version": "1"}}) is not None


def test_every_discovery_payload_validates_against_home_assistants_schema() -> None:
    config = make_config({"device_id": "kitchen"})
    messages = discovery_messages(config)
    assert len(messages) == len(ENTITIES) == 4 and tuple(ENTITIES) == HA_ENTITIES
    for topic, text in messages.items():
        component = topic.split("/")[1]
        payload = json.loads(text)
        assert ha_problems(component, payload) is None, (topic, ha_problems(component, payload))
    event = json.loads(messages["homeassistant/event/ferlite_kitchen/face/config"])
    assert event["event_types"] == ["appeared", "left"] and event["state_topic"] == "ferlite/kitchen/ha_event"
    expression = json.loads(messages["homeassistant/sensor/ferlite_kitchen/expression/config"])
    assert expression["json_attributes_topic"] == "ferlite/kitchen/attributes"
    # Sensors fed by the state (on change + the heartbeat) expire after 3 heartbeats without one.
    for object_id in ("expression", "faces"):
        assert json.loads(messages[f"homeassistant/sensor/ferlite_kitchen/{object_id}/config"])["expire_after"] == 181
    assert json.loads(messages["homeassistant/binary_sensor/ferlite_kitchen/someone/config"])["expire_after"] == 181


def test_disabled_entities_get_no_config_and_a_removal() -> None:
    config = make_config({"device_id": "k", "disabled_entities": ["faces", "face"]})
    assert sorted(t.split("/")[3] for t in discovery_messages(config)) == ["expression", "someone"]
    assert removed_discovery_topics(config) == ["homeassistant/sensor/ferlite_k/faces/config",
                                                "homeassistant/event/ferlite_k/face/config"]
    with pytest.raises(MqttConfigError, match="disabled_entities must be one of expression, faces, someone, face"):
        make_config({"disabled_entities": ["smile"]})


def test_model_spec_gives_the_attributes_name_and_version(tmp_path: Path) -> None:
    spec = json.loads(SPEC.read_text())
    model = read_model(make_config({"model_spec": str(SPEC)}))
    assert model == {"name": "ferlite_int8", "version": f"{spec['sha256'][:12]} {spec['quantization']}"}
    bad = tmp_path / "bad.spec.json"
    bad.write_text('{"sha256": "nope"}')
    with pytest.raises(MqttConfigError, match="bad.spec.json: not a model spec"):
        read_model(make_config({"model_spec": str(bad)}))


# --- the calm state, without a broker ---------------------------------------------------------------------


def _face(label: str, scores: dict[str, float], track: int) -> dict[str, Any]:
    return {"label": label, "score": scores[label], "track": track,
            "scores": {name: scores.get(name, 0.02) for name in LABELS}}


def two_faces(happy_face: float, neutral_face: float) -> list[dict[str, Any]]:
    """Face 1 mostly Happy, face 2 mostly Neutral: the scene's Happy and Neutral means differ by
    (happy_face - neutral_face) / 2."""
    return [_face("Happy", {"Happy": happy_face, "Neutral": 0.05}, 1),
            _face("Neutral", {"Neutral": neutral_face, "Happy": 0.05}, 2)]


def test_calm_two_faces_alternating_below_the_margin_never_switch() -> None:
    calm = Calm(hold_s=2.0, margin=0.1, none_after_s=5.0)
    assert calm.see(scene_scores(two_faces(0.85, 0.83)), 0.0, 1000.0) and calm.dominant == "Happy"
    for i in range(1, 300):  # 10 s at 30 fps; the lead changes every second, by 0.01
        faces = two_faces(0.85, 0.83) if (i // 30) % 2 == 0 else two_faces(0.83, 0.85)
        assert not calm.see(scene_scores(faces), i / 30, 1000.0 + i / 30)
    assert calm.dominant == "Happy"


def test_calm_a_lead_shorter_than_the_hold_changes_nothing_a_longer_one_does() -> None:
    calm = Calm(hold_s=2.0, margin=0.1, none_after_s=5.0)
    calm.see(scene_scores(two_faces(0.9, 0.6)), 0.0, 0.0)
    neutral = scene_scores([_face("Neutral", {"Neutral": 0.9}, 1), _face("Neutral", {"Neutral": 0.8}, 2)])
    for i in range(1, 55):  # 1.8 s of a clear Neutral lead
        assert not calm.see(neutral, i / 30, i / 30)
    calm.see(scene_scores(two_faces(0.9, 0.6)), 1.9, 1.9)  # Happy again: the lead is broken
    switched = [i for i in range(60, 200) if calm.see(neutral, i / 30, i / 30)]
    assert calm.dominant == "Neutral" and abs(switched[0] / 30 - (2.0 + 2.0)) < 0.05, switched
    assert calm.since == switched[0] / 30


def test_calm_none_after_no_face_for_a_while_and_gaps_do_not_count() -> None:
    calm = Calm(hold_s=2.0, margin=0.1, none_after_s=5.0)
    calm.see(scene_scores(two_faces(0.9, 0.6)), 0.0, 0.0)
    assert not calm.see({}, 4.9, 4.9) and calm.dominant == "Happy"  # a gap shorter than none_after_s
    calm.see(scene_scores(two_faces(0.9, 0.6)), 5.0, 5.0)
    assert not calm.expire(9.9, 9.9) and calm.expire(10.0, 10.0) and calm.dominant is None and calm.since == 10.0


def test_throttle_sends_changes_at_most_once_per_interval_and_a_heartbeat() -> None:
    throttle = Throttle(interval_s=1.0, heartbeat_s=10.0)
    assert throttle.offer("a", {"v": 1}, 0.0) == {"v": 1}
    assert throttle.offer("a", {"v": 2}, 0.1) is None  # no change of key
    assert throttle.offer("b", {"v": 3}, 0.2) is None and throttle.due(0.9) is None  # held back
    assert throttle.offer("b", {"v": 4}, 0.5) is None and throttle.due(1.0) == {"v": 4}  # the newest
    assert throttle.due(5.0) is None and throttle.due(11.0) == {"v": 4}  # the heartbeat


def test_translator_publishes_the_calm_state_only_on_change() -> None:
    now = [0.0]
    config = make_config({"device_id": "t", "state_interval_s": 0.0, "summary_rate": 0.0})
    box = Outbox(1000, 1000)
    translator = Translator(config, box, clock=lambda: now[0])
    states: list[dict[str, Any]] = []

    def drain() -> None:  # the outbox keeps only a retained topic's latest value: take each as it comes
        while (item := box.pop()) is not None:
            if item.topic == "ferlite/t/state":
                states.append(json.loads(item.payload))

    drain()
    for i in range(300):  # two faces, the lead alternating by 0.01 every second for 10 s
        now[0] = i / 30
        faces = two_faces(0.85, 0.83) if (i // 30) % 2 == 0 else two_faces(0.83, 0.85)
        translator.handle({"frame": i, "ts": 1000.0 + i / 30, "faces": faces})
        translator.tick()
        drain()
    assert [(s["faces"], s["dominant"]) for s in states] == [(0, None), (2, "Happy")], states


def test_backoff_probes_a_refusing_peer_every_restart_probe_s() -> None:
    backoff = Reconnects(make_config({"reconnect_initial_s": 0.5, "reconnect_max_s": 30.0, "restart_probe_s": 1.0}))
    assert [backoff.wait(refused=True) for _ in range(6)] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert backoff.wait(refused=False) == 30.0  # unreachable, a timeout, a TLS error: the backoff as before
    backoff.reset()
    assert backoff.wait(refused=False) == 0.5


# --- against a real broker --------------------------------------------------------------------------------


class SceneFeed:
    """A feed serving `scene(i)` (the faces of frame i) at 30 frames/s until stopped; `at(i)`: when frame i went."""

    def __init__(self, path: Path, scene: Callable[[int], list[dict[str, Any]]], frames: int) -> None:
        self.feed = SocketFeed(path)
        self.scene = scene
        self.frames = frames
        self.sent: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self.feed.reader_count == 0 and not self._stop.wait(0.02):
            self.feed.publish(b"\n")  # takes the reader in
        start = time.monotonic()
        for i in range(self.frames):
            if self._stop.wait(max(0.0, start + i / 30 - time.monotonic())):
                return
            message = {"frame": i, "ts": time.time(), "faces": self.scene(i)}
            self.feed.publish((json.dumps(message) + "\n").encode())
            self.sent[i] = time.monotonic()

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the scene did not finish"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.feed.close()


# --- fixtures: a broker, fer-mqtt processes, feeds, subscribers (tests/test_mqtt.py's parts) --------------------


@pytest.fixture(scope="module")
def mosquitto() -> str:
    from test_mqtt import _find_mosquitto

    found = _find_mosquitto() if mqtt is not None else None
    if found is None:
        pytest.skip("paho-mqtt or mosquitto missing (pip install -e '.[mqtt]'; scripts/install_system_packages.sh)")
    return found


@pytest.fixture
def running(mosquitto: str, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(mosquitto, tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def made() -> Iterator[list[Any]]:
    """The bridges, feeds and subscribers a test made: stopped or closed at its end, the last made first."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        (thing.close if hasattr(thing, "close") else thing.stop)()


def test_two_faces_whose_scores_alternate_by_less_than_the_margin_give_no_state_change(
    running: Broker, tmp_path: Path, made: list[Any]
) -> None:
    """Issue 24, item 1: one Happy and one Neutral face, their sums 0.85 and 0.83 swapping every second, made the
    Expression flap. Then a clear lead shorter than the hold changes nothing; a longer one does, after hold_s."""
    sub = Subscriber(running.port, topic="ferlite/calm/state")
    made.append(sub)
    neutral = [_face("Neutral", {"Neutral": 0.9}, 1), _face("Neutral", {"Neutral": 0.8}, 2)]
    phases = [(120, lambda i: two_faces(0.85, 0.83) if (i // 30) % 2 == 0 else two_faces(0.83, 0.85)),  # 4 s
              (45, lambda i: neutral), (15, lambda i: two_faces(0.9, 0.6)),  # a 1.5 s lead, broken
              (105, lambda i: neutral)]  # a 3.5 s lead
    starts = [sum(n for n, _ in phases[:k]) for k in range(len(phases) + 1)]

    def scene(i: int) -> list[dict[str, Any]]:
        k = max(k for k in range(len(phases)) if starts[k] <= i)
        return phases[k][1](i)

    path = tmp_path / "feed.sock"
    made.append(Bridge(tmp_path, bridge_settings(path, running.port, "calm", hold_s=2.0, hold_margin=0.1)))
    feed = SceneFeed(path, scene, starts[-1])
    made.append(feed)
    feed.wait(30)
    sub.wait_for(lambda: any(s["dominant"] == "Neutral" for s in sub.json_on("ferlite/calm/state")), 5, "Neutral")
    with sub.lock:
        received = [(json.loads(p), at) for t, p, _, at in sub.messages if p]
    changes = [(s["dominant"], at) for s, at in received if s["dominant"] is not None]
    dominants = [d for i, (d, _) in enumerate(changes) if i == 0 or d != changes[i - 1][0]]
    assert dominants == ["Happy", "Neutral"], dominants
    switched_at = next(at for d, at in changes if d == "Neutral")
    held = switched_at - feed.sent[starts[3]]
    assert 1.8 <= held <= 2.8, f"Neutral took over {held:.2f} s after it began to lead (hold_s 2)"
    print(f"\nCALM: 4 s of two faces alternating by 0.01: no change; a 1.5 s lead: none; Neutral after {held:.2f} s")


def test_attributes_arrive_small_and_rate_limited(
    running: Broker, tmp_path: Path, made: list[Any]
) -> None:
    sub = Subscriber(running.port, topic="ferlite/attrs/attributes")
    made.append(sub)
    feed = FakeFeed(tmp_path / "feed.sock").start()
    made.append(feed)
    made.append(Bridge(tmp_path, bridge_settings(feed.path, running.port, "attrs", attributes_interval_s=0.5,
                                                    model_spec=str(SPEC))))
    sub.wait_for(lambda: any(a["faces"] == 1 for a in sub.json_on("ferlite/attrs/attributes")), 15, "attributes")
    with sub.lock:
        start, counted = time.monotonic(), len(sub.messages)
    time.sleep(3.0)
    with sub.lock:
        window = sub.messages[counted:]
        elapsed = time.monotonic() - start
    assert 2 <= len(window) <= elapsed / 0.5 + 1, len(window)  # on change, at most 2 a second
    sizes = [len(p) for _, p, _, _ in sub.messages]
    assert max(sizes) < 320, max(sizes)
    attrs = sub.wait_for(lambda: [a for a in sub.json_on("ferlite/attrs/attributes")
                                  if a["faces"] == 1 and a["scores"]["Happy"] == 0.9], 10, "a Happy face's")[0]
    spec = json.loads(SPEC.read_text())
    assert set(attrs) == {"dominant", "since", "faces", "tracks", "scores", "model"}
    assert attrs["dominant"] == "Happy" and len(attrs["tracks"]) == 1 and tuple(attrs["scores"]) == LABELS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", attrs["since"])
    assert attrs["model"] == {"name": "ferlite_int8", "version": f"{spec['sha256'][:12]} int8"}


def test_face_events_reach_the_event_entity_and_the_raw_topic_keeps_new_and_end(
    running: Broker, tmp_path: Path, made: list[Any]
) -> None:
    sub = Subscriber(running.port)
    made.append(sub)
    feed = FakeFeed(tmp_path / "feed.sock").start()
    made.append(feed)
    made.append(Bridge(tmp_path, bridge_settings(feed.path, running.port, "ev")))
    config = json.loads(sub.wait_for(lambda: sub.on("homeassistant/event/ferlite_ev/face/config"), 15, "config")[-1])
    assert ha_problems("event", config) is None

    def appeared_and_left() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        events = sub.json_on(config["state_topic"])
        return [(a, e) for a in events if a["event_type"] == "appeared"
                for e in events if e["event_type"] == "left" and e["track"] == a["track"]]

    appeared, left = sub.wait_for(appeared_and_left, 15, "a face appearing and leaving")[0]
    assert {e["event_type"] for e in sub.json_on(config["state_topic"])} <= set(config["event_types"])
    assert appeared["expression"] == "Happy" and left["expression"] == "Happy" and 0.4 < left["duration_s"] < 1.2
    assert not any(r for t, _, r, _ in sub.messages if t == config["state_topic"])  # HA ignores retained events
    raw = {e["type"]: e for e in sub.json_on("ferlite/ev/event") if e["track"] == appeared["track"]}
    assert raw["new"]["before"] == raw["new"]["after"] and raw["new"]["after"]["label"] == "Happy"
    assert raw["end"]["before"] == raw["new"]["after"] and raw["end"]["after"]["label"] == "Happy"


def test_home_assistant_online_resends_every_config_and_a_retained_one_does_not(
    running: Broker, tmp_path: Path, made: list[Any]
) -> None:
    sub = Subscriber(running.port, topic="homeassistant/#")
    made.append(sub)
    sub.client.publish("homeassistant/status", "online", qos=1, retain=True).wait_for_publish(5)  # a stale birth
    feed = FakeFeed(tmp_path / "feed.sock").start()
    made.append(feed)
    bridge = Bridge(tmp_path, bridge_settings(feed.path, running.port, "birth"))
    made.append(bridge)
    topics = set(discovery_messages(make_config({"device_id": "birth"})))
    sub.wait_for(lambda: all(sub.on(t) for t in topics), 15, "the four configs")
    time.sleep(1.5)
    assert all(len(sub.on(t)) == 1 for t in topics), {t: len(sub.on(t)) for t in topics}
    sub.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)  # HA (re)started
    sub.wait_for(lambda: all(len(sub.on(t)) == 2 for t in topics), 5, "every config again")
    assert "Home Assistant is online" in bridge.log()
    sub.client.publish("homeassistant/status", "", qos=1, retain=True).wait_for_publish(5)


def test_an_entity_disabled_in_config_is_removed_by_an_empty_retained_config(
    running: Broker, tmp_path: Path, made: list[Any]
) -> None:
    feed = FakeFeed(tmp_path / "feed.sock").start()
    made.append(feed)
    faces_topic = "homeassistant/sensor/ferlite_gone/faces/config"
    first = Bridge(tmp_path, bridge_settings(feed.path, running.port, "gone"), name="first")
    made.append(first)
    sub = Subscriber(running.port, topic="homeassistant/#")
    made.append(sub)
    sub.wait_for(lambda: sub.on(faces_topic), 15, "the faces config")
    assert first.stop() == 0
    second = Bridge(tmp_path, bridge_settings(feed.path, running.port, "gone", disabled_entities=["faces"]),
                    name="second")
    made.append(second)
    sub.wait_for(lambda: sub.on(faces_topic)[-1:] == [""], 15, "an empty config for the disabled entity")
    late = Subscriber(running.port, topic="homeassistant/#")  # what HA finds when it starts now: retained configs
    made.append(late)
    late.wait_for(lambda: len({t for t, *_ in late.messages}) >= 3, 5, "the retained configs")
    time.sleep(0.5)
    assert sorted({t.split("/")[3] for t, *_ in late.messages}) == ["expression", "face", "someone"]


def _log_line(bridge: Bridge, pattern: str, timeout: float) -> tuple[re.Match[str], float]:
    """The first line of the bridge's log matching `pattern`, and when it was seen (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while (match := re.search(pattern, bridge.log())) is None:
        assert time.monotonic() < deadline, f"no {pattern!r} in: {bridge.log()[-2000:]}"
        time.sleep(0.02)
    return match, time.monotonic()


def test_broker_restarted_mid_run_is_reconnected_within_2_s_of_its_return(
    mosquitto: str, tmp_path: Path, made: list[Any]
) -> None:
    """The default backoff (0.5 s doubling to 30 s) had grown to 8 s after an 8 s restart: the broker was found
    up to 8 s after its return. A refused connection (the host up, the port closed) is probed every 1 s."""
    b = Broker(mosquitto, tmp_path / "broker").start()
    try:
        feed = FakeFeed(tmp_path / "feed.sock").start()
        made.append(feed)
        bridge = Bridge(tmp_path, bridge_settings(feed.path, b.port, "probe", reconnect_initial_s=0.5,
                                                  reconnect_max_s=30.0))
        made.append(bridge)
        _log_line(bridge, r"connected to broker", 15)
        b.stop()
        time.sleep(8.0)
        b.start()
        back = time.monotonic()
        line, seen = _log_line(bridge, r"reconnected to broker \S+ after ([\d.]+) s", 40)
        assert seen - back <= 2.0, f"reconnected {seen - back:.2f} s after the broker was back"
        assert "Traceback" not in bridge.log()
        print(f"\nPROBE: broker down {float(line[1]):.1f} s; reconnected {seen - back:.2f} s after its return")
    finally:
        b.stop()


def test_feed_back_after_n_s_is_logged_within_2_s_of_fer_edge_returning(
    running: Broker, tmp_path: Path, made: list[Any]
) -> None:
    path = tmp_path / "feed.sock"
    feed = FakeFeed(path).start()
    made.append(feed)
    bridge = Bridge(tmp_path, bridge_settings(path, running.port, "feedback", reconnect_initial_s=0.5,
                                              reconnect_max_s=30.0))
    made.append(bridge)
    _log_line(bridge, r"reading the feed", 15)
    feed.stop()
    made.remove(feed)
    time.sleep(4.5)
    again = FakeFeed(path).start()
    made.append(again)
    back = time.monotonic()
    line, seen = _log_line(bridge, r"feed \S+ back after ([\d.]+) s", 15)
    assert seen - back <= 2.0 and 4.0 <= float(line[1]) <= 7.0, (seen - back, line[0])


def test_a_start_publishes_one_availability_message_and_a_fresh_bridge_topic(
    running: Broker, tmp_path: Path, made: list[Any]
) -> None:
    """fer-mqtt said `offline` at connect and `online` once the feed was read; the bridge topic said the feed was
    down for 60 s. Here fer-edge starts a second after fer-mqtt."""
    sub = Subscriber(running.port, topic="ferlite/one/#")
    made.append(sub)
    path = tmp_path / "feed.sock"
    bridge = Bridge(tmp_path, bridge_settings(path, running.port, "one"))
    made.append(bridge)
    _log_line(bridge, r"connected to broker", 15)
    time.sleep(1.0)
    feed = FakeFeed(path).start()
    made.append(feed)
    started = time.monotonic()
    sub.wait_for(lambda: sub.on("ferlite/one/availability"), 10, "availability")
    sub.wait_for(lambda: sub.json_on("ferlite/one/bridge")[-1:] and sub.json_on("ferlite/one/bridge")[-1]["feed"]
                 == "up", 5, "the bridge topic saying the feed is up")
    fresh_after = time.monotonic() - started
    time.sleep(2.0)
    assert sub.on("ferlite/one/availability") == ["online"]
    assert fresh_after <= 3.0, fresh_after
    assert bridge.stop(signal.SIGTERM) == 0
    sub.wait_for(lambda: sub.on("ferlite/one/availability") == ["online", "offline"], 5, "offline on stop")
