"""fer-mqtt against a real Mosquitto broker on 127.0.0.1: end to end, faults, TLS + password, load.

The broker is Debian's `mosquitto`, started by the tests on a free loopback port with a generated config
(installed by scripts/install_system_packages.sh, which .ci/run calls; without it these tests skip and say
why). The feed is either the project's own SocketFeed serving scripted frames, or a real `fer-edge` on a generated video
with the tiny test model. fer-mqtt always runs as its own process, as it would under systemd.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ferlite.edge.apps.mqtt import Outbox, Translator, discovery_messages
from ferlite.edge.apps.mqtt.config import MqttConfig, MqttConfigError, load_config, make_config
from ferlite.edge.runtime.feed import SocketFeed

try:
    import paho.mqtt.client as mqtt
except ImportError:  # the broker tests skip; the config and unit tests still run
    mqtt = None

REPO = Path(__file__).resolve().parents[1]
SERVICE = REPO / "systemd" / "fer-mqtt.service"

HOST = "127.0.0.1"
LABELS = {"Angry", "Disgust", "Happy", "Neutral", "Sad", "Surprise"}


# --- the broker -------------------------------------------------------------------------------------------


def _find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.access(p, os.X_OK)), None)


@pytest.fixture(scope="session")
def mosquitto_bin() -> str:
    if mqtt is None:
        pytest.skip("paho-mqtt not installed (pip install -e '.[mqtt]')")
    found = _find_mosquitto()
    if not found:  # tests install nothing: .ci/run does, through scripts/install_system_packages.sh
        pytest.skip("mosquitto not installed (scripts/install_system_packages.sh, or apt-get install mosquitto)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process on 127.0.0.1:port; stop() and start() again keep port and persisted state."""

    def __init__(self, binary: str, workdir: Path, extra: str = "", port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "mosquitto.log"
        self.conf = workdir / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""  # keep reading the test's files (0700 tmp dirs)
        self.conf.write_text(
            f"{user}listener {self.port} {HOST}\n{extra or 'allow_anonymous true'}\n"
            f"persistence true\npersistence_location {workdir}/\nautosave_interval 1\n"
            f"log_dest file {self.log}\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its sessions and retained messages
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def broker(mosquitto_bin: str, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(mosquitto_bin, tmp_path / "broker").start()
    yield b
    b.stop()


# --- a subscriber ------------------------------------------------------------------------------------------


class Subscriber:
    """A paho client subscribed to everything; a persistent session, so nothing is lost while it is away."""

    def __init__(self, port: int, topic: str = "#", client_id: str | None = None, username: str | None = None,
                 password: str | None = None, **tls: Any) -> None:
        self.messages: list[tuple[str, str, bool, float]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"test-sub-{free_port()}",
                                  clean_session=client_id is None)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        if tls:
            self.client.tls_set(**tls)
        if username:
            self.client.username_pw_set(username, password)
        self.topic = topic
        self.client.on_connect = lambda c, u, f, reason, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(HOST, port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(5), "subscriber did not get its SUBACK"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain), time.monotonic()))

    def on(self, topic: str) -> list[str]:
        with self.lock:
            return [payload for t, payload, _, _ in self.messages if t == topic]

    def json_on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.on(topic) if p]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.05)
        with self.lock:
            seen = sorted({t for t, *_ in self.messages})
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; topics seen: {seen}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    made: list[Subscriber] = []
    yield made
    for s in made:
        s.close()


# --- a scripted feed: the project's SocketFeed serving fer-edge-shaped frames ---------------------------------


CYCLE = 30  # frames per cycle: a face (one track) is in view for frames 5..24, its "end" comes at frame 27
IN_VIEW = range(5, 25)


def scripted_frame(frame: int, first_track: int = 1) -> dict[str, Any]:
    cycle, i = divmod(frame, CYCLE)
    track = first_track + cycle
    message: dict[str, Any] = {"frame": frame, "ts": time.time(), "source": "/dev/video0", "size": [640, 480],
                               "faces": [], "timing_ms": {"detect": 1.0, "classify": 0.1, "total": 1.1}}
    if i in IN_VIEW:
        label = "Happy" if i < 20 else "Neutral"  # 15 frames Happy, 5 Neutral: dominant Happy
        message["faces"] = [{"box": [100, 80, 120, 120], "label": label, "score": 0.9, "track": track,
                             "scores": {name: (0.9 if name == label else 0.02) for name in sorted(LABELS)}}]
    if i == IN_VIEW.start:
        message["events"] = [{"type": "new", "track": track}]
    elif i == IN_VIEW.stop + 2:
        message["events"] = [{"type": "end", "track": track}]
    return message


class FakeFeed:
    """Serves scripted frames at `fps` on a Unix socket until stopped; restart() is a daemon restart."""

    def __init__(self, path: Path, fps: float = 30.0, first_track: int = 1) -> None:
        self.path = path
        self.fps = fps
        self.first_track = first_track
        self.frame = 0
        self.ends: list[int] = []  # tracks whose "end" the feed has sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.feed: SocketFeed | None = None

    def start(self) -> FakeFeed:
        self._stop.clear()
        self.feed = SocketFeed(self.path)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self.feed is not None
        next_at = time.monotonic()
        while not self._stop.is_set():
            message = scripted_frame(self.frame, self.first_track)
            self.feed.publish((json.dumps(message) + "\n").encode())
            self.ends += [e["track"] for e in message.get("events", []) if e["type"] == "end"]
            self.frame += 1
            next_at += 1.0 / self.fps
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.feed is not None:
            self.feed.close()
            self.feed = None

    @property
    def readers(self) -> int:
        return self.feed.reader_count if self.feed is not None else 0


@pytest.fixture
def feeds() -> Iterator[list[FakeFeed]]:
    made: list[FakeFeed] = []
    yield made
    for f in made:
        f.stop()


# --- fer-mqtt as a process -------------------------------------------------------------------------------------


class Bridge:
    def __init__(self, workdir: Path, settings: dict[str, Any], name: str = "bridge") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / f"{name}.toml"
        self.config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
        self.stderr_path = workdir / f"{name}.log"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "ferlite.edge.apps.mqtt", "--config", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=self._stderr)

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._stderr.close()
        return self.proc.returncode


@pytest.fixture
def bridges() -> Iterator[list[Bridge]]:
    made: list[Bridge] = []
    yield made
    for b in made:
        b.stop()


def bridge_settings(socket_path: Path, port: int, device_id: str, **extra: Any) -> dict[str, Any]:
    return {"socket": str(socket_path), "host": HOST, "port": port, "device_id": device_id,
            "reconnect_initial_s": 0.1, "reconnect_max_s": 1.0, "state_interval_s": 0.2, "summary_rate": 5.0,
            "keepalive": 10, "log_level": "INFO", **extra}


def events_of(sub: Subscriber, base: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in sub.json_on(f"{base}/event") if e["type"] == kind]


# --- configuration (no broker needed) --------------------------------------------------------------------------


def _run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferlite.edge.apps.mqtt", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('colour = "red"\n', "unknown setting(s) colour"),
        ('password = "hunter2"\n', "password_file"),
        ("port = 0\n", "port must be at least 1"),
        ('qos = "1"\n', "qos must be int"),
        ("qos = 3\n", "qos must be 0, 1 or 2"),
        ('prefix = "a/#"\n', "prefix must be"),
        ('device_id = "kitchen pi"\n', "device_id must be"),
        ('ca_file = "/etc/ssl/certs/ca-certificates.crt"\n', "set tls = true"),
        ('username = "u"\npassword_file = "/nonexistent/pw"\n', "/nonexistent/pw: cannot read"),
        ('tls = true\nca_file = "/nonexistent/ca.pem"\n', "/nonexistent/ca.pem: cannot read"),
        ("summary_rate = -1\n", "summary_rate"),
        ("this is not toml\n", "not valid TOML"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path: Path, toml: str, expected: str) -> None:
    config = tmp_path / "mqtt.toml"
    config.write_text(toml)
    result = _run_cli("--config", str(config))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fer-mqtt: ") and expected in lines[0], lines[0]
    assert "hunter2" not in result.stderr


def test_missing_config_file_and_bad_flag_exit_2(tmp_path: Path) -> None:
    result = _run_cli("--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "nope.toml: cannot read config" in result.stderr
    result = _run_cli("--port", "70000")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "port" in result.stderr


def test_no_password_flag_and_check_config(tmp_path: Path) -> None:
    assert _run_cli("--password", "x").returncode == 2  # argparse: no such option
    config = tmp_path / "mqtt.toml"
    config.write_text('host = "broker.lan"\ndevice_id = "kitchen"\n')
    result = _run_cli("--config", str(config), "--check-config", "--port", "8883")
    assert result.returncode == 0, result.stderr
    assert 'host = "broker.lan"' in result.stdout and "port = 8883" in result.stdout
    assert "topics: ferlite/kitchen/..." in result.stdout


def test_flags_override_only_what_was_typed(tmp_path: Path) -> None:
    config = tmp_path / "mqtt.toml"
    config.write_text('host = "broker.lan"\nqos = 0\n')
    merged = load_config(config, {"port": 1884})
    assert (merged.host, merged.qos, merged.port) == ("broker.lan", 0, 1884)
    with pytest.raises(MqttConfigError, match="command line: qos"):
        load_config(config, {"qos": 5})


def test_sample_config_is_accepted() -> None:
    sample = REPO / "systemd" / "mqtt.toml"
    config = load_config(sample, {})
    assert config.socket == "/run/ferlite/feed.sock" and config.qos == 1


def test_discovery_payloads_share_one_device() -> None:
    config = make_config({"device_id": "kitchen", "prefix": "home/ferlite"})
    messages = {topic: json.loads(p) for topic, p in discovery_messages(config).items()}
    assert sorted(messages) == [
        "homeassistant/binary_sensor/ferlite_kitchen/someone/config",
        "homeassistant/event/ferlite_kitchen/face/config",
        "homeassistant/sensor/ferlite_kitchen/expression/config",
        "homeassistant/sensor/ferlite_kitchen/faces/config",
    ]
    for topic, payload in messages.items():
        state = "ha_event" if "/event/" in topic else "state"
        assert payload["state_topic"] == f"home/ferlite/kitchen/{state}"
        assert payload["availability_topic"] == "home/ferlite/kitchen/availability"
        assert payload["device"]["identifiers"] == ["ferlite_kitchen"]
    assert len({p["unique_id"] for p in messages.values()}) == 4
    assert MqttConfig().effective_device_id  # the host name, made topic-safe


def test_outbox_bounds_drop_oldest_and_count() -> None:
    box = Outbox(max_summaries=2, max_events=3)
    told: list[str] = []
    box.on_first_drop = told.append
    for i in range(5):
        box.put_summary("s", str(i))
        box.put_event("e", str(i))
    box.put_retained("r", "old")
    box.put_retained("r", "new")
    assert (box.dropped_summaries, box.dropped_events) == (3, 2)
    assert sorted(told) == ["event", "summary"]  # once per kind until the next reconnect
    taken = []
    while (item := box.pop()) is not None:
        taken.append((item.kind, item.payload))
    assert taken == [("retained", "new"), ("event", "2"), ("event", "3"), ("event", "4"), ("summary", "3"),
                     ("summary", "4")]
    box.resync()  # after a reconnect every retained topic goes again
    item = box.pop()
    assert item is not None and (item.topic, item.payload, item.retain) == ("r", "new", True)


def test_translator_events_state_and_rate_limit() -> None:
    now = [0.0]
    config = make_config({"device_id": "t", "summary_rate": 2.0, "state_interval_s": 1.0})
    box = Outbox(1000, 1000)
    translator = Translator(config, box, clock=lambda: now[0])
    translator.feed_connected()
    for frame in range(60):  # two seconds at 30 fps
        now[0] = frame / 30
        translator.handle({**scripted_frame(frame), "ts": 1000.0 + frame / 30})
        translator.tick()
    out = []
    while (item := box.pop()) is not None:
        out.append(item)
    summaries = [json.loads(o.payload) for o in out if o.topic == "ferlite/t/frame"]
    assert len(summaries) == 4 and sum(s["skipped"] for s in summaries) + 4 <= 60  # 2/s over 2 s
    events = [json.loads(o.payload) for o in out if o.topic == "ferlite/t/event"]
    assert [(e["type"], e["track"]) for e in events] == [("new", 1), ("end", 1), ("new", 2), ("end", 2)]
    assert events[1]["label"] == "Happy" and events[1]["frames"] == 20
    assert abs(events[1]["duration_s"] - 19 / 30) < 0.05
    assert [json.loads(o.payload)["faces"] for o in out if o.topic == "ferlite/t/state"][-1:] == [0]
    translator.feed_lost()
    assert json.loads(box.pop().payload)["faces"] == 0  # type: ignore[union-attr]


def _unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_service_unit_is_hardened_reads_the_feed_and_reaches_only_ip() -> None:
    s = _unit_settings(SERVICE)
    assert s["ExecStart"] == ["/opt/ferlite/venv/bin/fer-mqtt --config /etc/ferlite/mqtt.toml"]
    assert "fer-edge.service" in s["After"][0].split() and "fer-edge.service" in s["Wants"][0].split()
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert s["SupplementaryGroups"] == ["fer"] and s["DynamicUser"] == ["yes"]
    assert s["RestartPreventExitStatus"] == ["2"]
    assert "PrivateNetwork" not in s  # it must reach the broker
    assert s.get("PrivateUsers") == ["no"]  # PrivateUsers=yes would hide the group fer
    for key in ("ProtectSystem", "NoNewPrivileges", "CapabilityBoundingSet", "MemoryDenyWriteExecute"):
        assert key in s, key
    assert not any("password" in v.lower() for v in s["ExecStart"])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt: systemd)")
def test_check_units_passes_the_bridge_at_exposure_2_or_less() -> None:
    result = subprocess.run(["bash", str(REPO / "scripts" / "check_units.sh")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify fer-mqtt.service: clean" in result.stdout
    score = float(re.search(r"security fer-mqtt.service: exposure ([\d.]+) \(<= 2.0\)", result.stdout)[1])  # type: ignore[index]
    assert score <= 2.0
    print(f"\nfer-mqtt.service exposure {score}")


# --- end to end ------------------------------------------------------------------------------------------------


def test_end_to_end_summaries_events_state_discovery_availability(
    broker: Broker, tmp_path: Path, feeds: list[FakeFeed], bridges: list[Bridge], subscribers: list[Subscriber]
) -> None:
    sub = Subscriber(broker.port)
    subscribers.append(sub)
    feed = FakeFeed(tmp_path / "feed.sock").start()
    feeds.append(feed)
    base = "ferlite/e2e"
    bridge = Bridge(tmp_path, bridge_settings(feed.path, broker.port, "e2e", device_name="Test room"))
    bridges.append(bridge)

    sub.wait_for(lambda: "online" in sub.on(f"{base}/availability"), 15, "availability online")
    sub.wait_for(lambda: len(events_of(sub, base, "end")) >= 2, 15, "two end events")
    start = time.monotonic()
    summaries_before = len(sub.on(f"{base}/frame"))
    time.sleep(2.0)
    summary_rate = (len(sub.on(f"{base}/frame")) - summaries_before) / (time.monotonic() - start)

    # Discovery: three retained configs under one device.
    configs = {t: json.loads(p) for t, p, r, _ in sub.messages if t.startswith("homeassistant/")}
    assert set(configs) == set(discovery_messages(make_config({"device_id": "e2e"})))
    assert all(c["device"]["name"] == "Test room" for c in configs.values())
    ends = events_of(sub, base, "end")
    # Events: new with the first label; end with the track's dominant label and how long it was in view.
    news = events_of(sub, base, "new")
    assert news[0]["label"] == "Happy" and news[0]["type"] == "new", news
    end = next(e for e in ends if e["track"] in {n["track"] for n in news})  # a track seen from its start
    assert end["label"] == "Happy" and end["frames"] == 20 and end["labels"] == {"Happy": 15, "Neutral": 5}
    assert 0.4 < end["duration_s"] < 1.2  # 19 frame intervals at 30 fps: 0.63 s
    assert {e["track"] for e in ends if e["track"] > news[0]["track"]} <= {e["track"] for e in news}
    # Summaries: rate-limited to 5/s from a 30 fps feed.
    assert 3.0 <= summary_rate <= 6.5, summary_rate
    summary = sub.json_on(f"{base}/frame")[-1]
    assert {"frame", "ts", "count", "dominant", "faces", "skipped"} <= set(summary)
    # State: retained; someone in view and nobody in view both appear.
    states = sub.json_on(f"{base}/state")
    assert any(s["faces"] == 1 and s["dominant"] == "Happy" for s in states)
    assert any(s["faces"] == 0 and s["dominant"] is None for s in states)

    # A dashboard connecting now gets the retained topics at once.
    late = Subscriber(broker.port, topic=f"{base}/#")
    subscribers.append(late)
    late.wait_for(lambda: late.on(f"{base}/state") and late.on(f"{base}/availability"), 5, "retained state")
    # The first message on each retained topic is the broker's retained copy (live ones may follow it).
    for topic in (f"{base}/state", f"{base}/availability"):
        first = next(m for m in late.messages if m[0] == topic)
        assert first[2], f"{topic}: the first message a late subscriber gets is not the retained one"

    # A clean stop says offline (retained) and exits 0.
    assert bridge.stop() == 0
    sub.wait_for(lambda: sub.on(f"{base}/availability")[-1:] == ["offline"], 5, "offline on stop")


def test_last_will_says_offline_when_the_bridge_dies(
    broker: Broker, tmp_path: Path, feeds: list[FakeFeed], bridges: list[Bridge], subscribers: list[Subscriber]
) -> None:
    sub = Subscriber(broker.port)
    subscribers.append(sub)
    feed = FakeFeed(tmp_path / "feed.sock").start()
    feeds.append(feed)
    bridge = Bridge(tmp_path, bridge_settings(feed.path, broker.port, "will"))
    bridges.append(bridge)
    sub.wait_for(lambda: sub.on("ferlite/will/availability")[-1:] == ["online"], 15, "online")
    bridge.stop(signal.SIGKILL)  # no goodbye: the broker publishes the Last Will
    sub.wait_for(lambda: sub.on("ferlite/will/availability")[-1:] == ["offline"], 10, "offline from the will")


def _write_video(path: Path, face_image: Path) -> None:
    """A 640x480 clip: 10 empty frames, 20 of a face photo drifting right, 10 empty (one track per loop)."""
    import cv2
    import numpy as np

    photo = cv2.imread(str(face_image))
    assert photo is not None and photo.shape[:2] == (480, 640)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (640, 480))
    for i in range(40):
        frame = np.roll(photo, 2 * (i - 10), axis=1) if 10 <= i < 30 else np.full_like(photo, 100)
        writer.write(frame)
    writer.release()


@pytest.mark.slow
def test_real_fer_edge_on_a_video_through_the_broker(
    broker: Broker, tmp_path: Path, tiny_model: Path, bridges: list[Bridge], subscribers: list[Subscriber]
) -> None:
    pytest.importorskip("cv2")
    demo = REPO / "src" / "ferlite" / "edge" / "demo" / "astronaut_640x480_1.jpg"
    video = tmp_path / "clip.avi"
    _write_video(video, demo)
    sock = tmp_path / "feed.sock"
    sub = Subscriber(broker.port)
    subscribers.append(sub)
    bridge = Bridge(tmp_path, bridge_settings(sock, broker.port, "edge"))
    bridges.append(bridge)
    edge = subprocess.Popen(
        [sys.executable, "-m", "ferlite.edge.apps.cli", "--source", str(video), "--model", str(tiny_model), "--loop",
         "--fps-limit", "15", "--socket", str(sock), "--no-stdout", "--threads", "1", "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        base = "ferlite/edge"
        sub.wait_for(lambda: "online" in sub.on(f"{base}/availability"), 30, "fer-edge feed online")
        ends = sub.wait_for(lambda: [e for e in events_of(sub, base, "end") if e["frames"] >= 10], 30,
                            "a track of 10 frames or more ending in fer-edge's video")
        assert ends[0]["label"] in LABELS and ends[0]["duration_s"] > 0.5, ends
        assert events_of(sub, base, "new")
        assert any(s["faces"] == 1 and s["dominant"] in LABELS for s in sub.json_on(f"{base}/state"))
        assert any(s["count"] == 1 for s in sub.json_on(f"{base}/frame"))
    finally:
        edge.send_signal(signal.SIGTERM)
        try:
            _, err = edge.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            edge.kill()
            _, err = edge.communicate(timeout=10)
    assert edge.returncode == 0, err.decode(errors="replace")[-2000:]
    # fer-edge gone: its track ends, nobody is in view, the entities are unavailable; fer-mqtt keeps running.
    sub.wait_for(lambda: sub.on(f"{base}/availability")[-1:] == ["offline"], 10, "offline after fer-edge stopped")
    assert sub.json_on(f"{base}/state")[-1]["faces"] == 0
    assert bridge.proc.poll() is None


# --- faults --------------------------------------------------------------------------------------------------


def test_broker_down_at_start_and_restarted_mid_run(
    mosquitto_bin: str, tmp_path: Path, feeds: list[FakeFeed], bridges: list[Bridge], subscribers: list[Subscriber]
) -> None:
    b = Broker(mosquitto_bin, tmp_path / "broker")
    feed = FakeFeed(tmp_path / "feed.sock").start()
    feeds.append(feed)
    base = "ferlite/outage"
    bridge = Bridge(tmp_path, bridge_settings(feed.path, b.port, "outage", summary_rate=10.0, buffer_summaries=5,
                                              buffer_events=1000))
    bridges.append(bridge)
    try:
        # Down at start: the bridge keeps trying, it never exits.
        deadline = time.monotonic() + 10
        while "unreachable" not in bridge.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "unreachable" in bridge.log() and bridge.proc.poll() is None
        b.start()
        sub = Subscriber(b.port, client_id="outage-watcher")  # persistent session: kept across the restart
        subscribers.append(sub)
        sub.wait_for(lambda: len(events_of(sub, base, "end")) >= 2, 15, "events before the outage")

        # Mid-run: stop the broker for 3 s while the feed goes on at 30 fps.
        b.stop()
        down_at = time.monotonic()
        sent_before = len(feed.ends)
        time.sleep(3.0)
        ends_during = len(feed.ends) - sent_before
        b.start()
        up_at = time.monotonic()
        line = sub.wait_for(lambda: re.search(r"reconnected to broker .* after ([\d.]+) s; sending (\d+) buffered "
                                              r"events and (\d+) frame summaries; dropped while away: (\d+) frame "
                                              r"summaries, (\d+) events", bridge.log()), 15, "the reconnect log line")
        outage_s, buffered_events, buffered_summaries, dropped_summaries, dropped_events = (
            float(line[1]), int(line[2]), int(line[3]), int(line[4]), int(line[5]))
        # Every track the feed ended up to now arrives (duplicates allowed: QoS 1 re-sends after reconnect).
        last_end = feed.ends[-1]
        sub.wait_for(lambda: last_end in {e["track"] for e in events_of(sub, base, "end")}, 15, "events after")
        ended = sorted({e["track"] for e in events_of(sub, base, "end")})
        assert ended == list(range(ended[0], last_end + 1)), ended  # no event lost across the outage
        stats = sub.wait_for(lambda: [s for s in sub.json_on(f"{base}/bridge") if s["connects"] >= 2], 10, "stats")
        assert stats[-1]["dropped_events"] == 0 and stats[-1]["dropped_summaries"] == dropped_summaries
        assert dropped_summaries > 0 and dropped_events == 0 and buffered_summaries == 5
        assert bridge.proc.poll() is None
        print(f"\nOUTAGE: broker down {up_at - down_at:.1f} s (bridge saw {outage_s:.1f} s); feed ended "
              f"{ends_during} tracks meanwhile; bridge buffered {buffered_events} events and {buffered_summaries} "
              f"summaries, dropped {dropped_summaries} summaries and {dropped_events} events; {len(ended)} tracks "
              f"delivered without a gap")
    finally:
        b.stop()


def test_stops_promptly_while_broker_and_feed_are_away(mosquitto_bin: str, tmp_path: Path,
                                                      bridges: list[Bridge]) -> None:
    bridge = Bridge(tmp_path, bridge_settings(tmp_path / "none.sock", free_port(), "away"))
    bridges.append(bridge)
    deadline = time.monotonic() + 10
    while not ("unreachable" in bridge.log() and "no fer-edge feed there" in bridge.log()):
        assert time.monotonic() < deadline, bridge.log()
        time.sleep(0.1)
    time.sleep(1.0)
    assert bridge.proc.poll() is None  # still trying
    started = time.monotonic()
    assert bridge.stop() == 0
    assert time.monotonic() - started < 5


def test_feed_restart_is_followed(
    broker: Broker, tmp_path: Path, feeds: list[FakeFeed], bridges: list[Bridge], subscribers: list[Subscriber]
) -> None:
    sub = Subscriber(broker.port)
    subscribers.append(sub)
    path = tmp_path / "feed.sock"
    base = "ferlite/restart"
    bridge = Bridge(tmp_path, bridge_settings(path, broker.port, "restart"))  # before the daemon: it waits
    bridges.append(bridge)
    time.sleep(0.5)
    feed = FakeFeed(path).start()
    feeds.append(feed)
    sub.wait_for(lambda: "online" in sub.on(f"{base}/availability"), 15, "online")
    sub.wait_for(lambda: [e for e in events_of(sub, base, "new") if e["track"] == 2], 15, "track 2 new")
    # The daemon restarts while track 2 is in view: the bridge ends it, says offline, then follows the new feed.
    while feed.frame % CYCLE not in range(8, 20):
        time.sleep(0.01)
    feed.stop()
    feeds.remove(feed)
    sub.wait_for(lambda: sub.on(f"{base}/availability")[-1:] == ["offline"], 10, "offline when the feed is gone")
    lost = [e for e in events_of(sub, base, "end") if e.get("reason") == "feed lost"]
    assert [e["track"] for e in lost] == [2] and lost[0]["label"] == "Happy"
    assert sub.json_on(f"{base}/state")[-1]["faces"] == 0
    time.sleep(1.0)
    again = FakeFeed(path, first_track=100).start()
    feeds.append(again)
    sub.wait_for(lambda: sub.on(f"{base}/availability")[-1:] == ["online"], 15, "online again")
    sub.wait_for(lambda: [e for e in events_of(sub, base, "end") if e["track"] == 100], 15, "events from the new feed")
    assert again.readers == 1 and bridge.proc.poll() is None
    assert "feed" in bridge.log() and "lost" in bridge.log()


# --- TLS and a password ------------------------------------------------------------------------------------


def _make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60, cwd=directory)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ferlite test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out",
        "server.csr")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.ext", "-out", "server.pem")
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


def test_tls_and_password_file_wrong_password_retries(
    mosquitto_bin: str, tmp_path: Path, feeds: list[FakeFeed], bridges: list[Bridge], subscribers: list[Subscriber]
) -> None:
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.access(passwd, os.X_OK):
        pytest.skip("mosquitto_passwd not installed")
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = _make_ca_and_server_cert(certs)
    users = tmp_path / "users"
    subprocess.run([passwd, "-b", "-c", str(users), "ferlite", "s3cret pass"], check=True, timeout=30,
                   capture_output=True)
    users.chmod(0o600)
    b = Broker(mosquitto_bin, tmp_path / "broker", extra=(
        f"allow_anonymous false\npassword_file {users}\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"))
    b.start()
    try:
        good = tmp_path / "good.pw"
        good.write_text("s3cret pass\n")
        bad = tmp_path / "bad.pw"
        bad.write_text("wrong\n")
        feed = FakeFeed(tmp_path / "feed.sock").start()
        feeds.append(feed)
        common = {"tls": True, "ca_file": str(ca), "username": "ferlite"}
        wrong = Bridge(tmp_path, bridge_settings(feed.path, b.port, "wrong", password_file=str(bad), **common),
                       name="wrong")
        bridges.append(wrong)
        right = Bridge(tmp_path, bridge_settings(feed.path, b.port, "right", password_file=str(good), **common),
                       name="right")
        bridges.append(right)

        sub = Subscriber(b.port, ca_certs=str(ca), username="ferlite", password="s3cret pass")
        subscribers.append(sub)
        sub.wait_for(lambda: sub.on("ferlite/right/availability")[-1:] == ["online"], 20, "the TLS bridge online")
        sub.wait_for(lambda: events_of(sub, "ferlite/right", "end"), 15, "events over TLS")
        sub.wait_for(lambda: "refused the connection" in wrong.log(), 10, "the refusal logged")
        time.sleep(1.5)
        assert wrong.proc.poll() is None  # refused: it logs and retries, it does not exit
        refusals = wrong.log().count("refused the connection")
        assert refusals >= 2 and "check username and password_file" in wrong.log(), wrong.log()
        assert "s3cret" not in wrong.log() + right.log() and "wrong" not in sub.on("ferlite/wrong/availability")
        assert not sub.on("ferlite/wrong/availability")
    finally:
        b.stop()


# --- load ---------------------------------------------------------------------------------------------------


def test_four_bridges_one_broker_no_event_lost(
    broker: Broker, tmp_path: Path, feeds: list[FakeFeed], bridges: list[Bridge], subscribers: list[Subscriber]
) -> None:
    """4 devices (4 bridges, different ids) on one broker, each reading a 30 fps feed, for a few seconds."""
    sub = Subscriber(broker.port, topic="ferlite/#")
    subscribers.append(sub)
    feed = FakeFeed(tmp_path / "feed.sock", fps=30.0).start()
    feeds.append(feed)
    ids = [f"load{i}" for i in range(4)]
    for device in ids:
        bridges.append(Bridge(tmp_path, bridge_settings(feed.path, broker.port, device, summary_rate=10.0),
                              name=device))
    for device in ids:
        sub.wait_for(lambda d=device: sub.on(f"ferlite/{d}/availability")[-1:] == ["online"], 20, f"{device}")
    time.sleep(1.0)
    with sub.lock:
        start, counted = time.monotonic(), len(sub.messages)
    first_end = feed.ends[-1] + 1 if feed.ends else 1
    time.sleep(5.0)
    with sub.lock:
        window = sub.messages[counted:]
        elapsed = time.monotonic() - start
    last_end = feed.ends[-1]
    for device in ids:
        sub.wait_for(lambda d=device: last_end in {e["track"] for e in events_of(sub, f"ferlite/{d}", "end")}, 10,
                     f"{device}'s last end event")
    per_device = {d: sum(1 for t, *_ in window if t.startswith(f"ferlite/{d}/")) / elapsed for d in ids}
    by_kind = {k: sum(1 for t, *_ in window if t.endswith(f"/{k}")) / elapsed for k in ("frame", "event", "state")}
    for device in ids:
        ended = {e["track"] for e in events_of(sub, f"ferlite/{device}", "end")}
        assert set(range(first_end, last_end + 1)) <= ended, (device, sorted(ended))
        assert 6 <= per_device[device] <= 20, per_device
    assert not any("dropping" in b.log() or b.proc.poll() is not None for b in bridges)
    print(f"\nLOAD: feed 30 frames/s per device, 4 devices, summary_rate 10: "
          f"{sum(per_device.values()):.1f} messages/s in all ({', '.join(f'{v:.1f}' for v in per_device.values())} "
          f"per device); frame {by_kind['frame']:.1f}/s, event {by_kind['event']:.1f}/s, "
          f"state {by_kind['state']:.1f}/s; "
          f"tracks {first_end}..{last_end} ended on every device, none lost")


# --- hostile input (issue 22, items 3 and 10) -----------------------------------------------------------------


def _feed_with_reader(path: Path) -> SocketFeed:
    """A SocketFeed (the daemon's own) once fer-mqtt has connected to it."""
    feed = SocketFeed(path, buffer_limit=4 << 20)
    deadline = time.monotonic() + 15
    while feed.reader_count == 0:
        assert time.monotonic() < deadline, "fer-mqtt did not connect to the feed"
        feed.publish(b"\n")  # takes readers in; a blank line is no message
        time.sleep(0.05)
    return feed


def _frame_line(frame: int, track: int, event: str | None = None, **face: Any) -> bytes:
    message: dict[str, Any] = {"frame": frame, "ts": time.time(), "faces": [
        {"box": [1, 2, 3, 4], "label": "Happy", "score": 0.9, "track": track, **face}]}
    if event:
        message["events"] = [{"type": event, "track": track}]
    return (json.dumps(message) + "\n").encode()


HOSTILE_FEED_LINES = [
    b'{"frame": 2, "faces": ' + b"[" * 200_000 + b"\n",  # RecursionError in json.loads
    b'{"frame": 3, "ts": ' + b"9" * 400 + b', "faces": []}\n',  # OverflowError in float(ts)
    b'{"frame": 4, "faces": [{"label": "Happy", "score": ' + b"9" * 400 + b', "track": 1}]}\n',
    b'{"frame": 5, "faces": [{"label": "Happy", "score": 0.5, "track": 1, "box": ' + b"[" * 900 + b"]" * 900
    + b"}]}\n",  # parses (under Python's recursion limit), too deep to be a frame
    b'{"frame": 6, "faces": 7, "events": 8}\n',
    b'{"frame": 7, "faces": [], "events": 8}\n',
    b"\xff\xfe not UTF-8\n",
    b"[1, 2]\n",
]


def test_hostile_feed_lines_are_skipped_and_counted_and_the_bridge_goes_on(
    broker: Broker, tmp_path: Path, bridges: list[Bridge], subscribers: list[Subscriber]
) -> None:
    """Item 3: one bad line used to kill the feed thread while availability stayed `online`."""
    sub = Subscriber(broker.port)
    subscribers.append(sub)
    path = tmp_path / "feed.sock"
    base = "ferlite/hostile"
    bridge = Bridge(tmp_path, bridge_settings(path, broker.port, "hostile"))
    bridges.append(bridge)
    feed = _feed_with_reader(path)
    try:
        feed.publish(_frame_line(1, 1, "new"))
        sub.wait_for(lambda: [e for e in events_of(sub, base, "new") if e["track"] == 1], 10, "track 1 new")
        for line in HOSTILE_FEED_LINES:
            feed.publish(line)
        feed.publish(_frame_line(8, 2, "new"))

        def track_2_new() -> list[dict[str, Any]]:
            feed.publish(b"\n")  # SocketFeed sends what waits only when it publishes again
            return [e for e in events_of(sub, base, "new") if e["track"] == 2]

        sub.wait_for(track_2_new, 10, "track 2 new: the feed thread read on after the hostile lines")
        # The numbers that are not finite are not passed on: the state is valid JSON with the last frame.
        sub.wait_for(lambda: sub.json_on(f"{base}/state")[-1]["frame"] == 8, 10, "the state of frame 8")
        assert bridge.proc.poll() is None
    finally:
        feed.close()
    assert bridge.stop() == 0
    assert "Traceback" not in bridge.log(), bridge.log()
    expected = len(HOSTILE_FEED_LINES) - 1  # frame 7 is a frame: its events that are no list are left out
    final = re.search(r"(\d+) feed messages skipped", bridge.log())
    assert final and int(final[1]) == expected, bridge.log()
    # The count goes to the retained bridge topic too (here: on the clean stop).
    sub.wait_for(lambda: sub.json_on(f"{base}/bridge")[-1].get("skipped_messages") == expected, 5, "the count")


def test_translator_takes_only_finite_numbers_and_whole_ids() -> None:
    box = Outbox(1000, 1000)
    translator = Translator(make_config({"device_id": "t", "summary_rate": 100.0, "state_interval_s": 0}), box)
    translator.handle({"frame": 10**30, "ts": 10**400, "faces": [
        {"label": "Happy", "score": 10**400, "track": True, "box": [1, 2, 3, 10**400]},
        {"label": "x" * 65, "score": 0.5}, {"label": "Sad", "score": float("nan"), "track": 3}]})
    payloads = []
    while (item := box.pop()) is not None:
        payloads.append(json.loads(item.payload) if item.payload.startswith("{") else item.payload)
    summary = next(p for p in payloads if isinstance(p, dict) and "count" in p)
    assert summary["frame"] is None and math.isfinite(summary["ts"])
    assert summary["faces"] == [{"label": "Happy", "score": 0.0}, {"track": 3, "label": "Sad", "score": 0.0}]
    with pytest.raises(ValueError, match="more than 256"):
        translator.handle({"frame": 1, "faces": [{"label": "Happy", "score": 0.5}] * 257})


INJECTED_FAILURE = """
import sys
from ferlite.edge.apps import mqtt
def handle(self, message):
    raise RuntimeError("injected: a bug in the translator")
mqtt.Translator.handle = handle
sys.exit(mqtt.main(sys.argv[1:]))
"""


def test_a_thread_that_dies_ends_the_process_with_status_1_and_says_offline(
    broker: Broker, tmp_path: Path, feeds: list[FakeFeed], subscribers: list[Subscriber]
) -> None:
    """Item 3: a dead thread used to leave the process up, `online`, doing nothing; systemd never restarted it.
    The failure is injected (a translator that raises); the broker, the feed and the process are real."""
    sub = Subscriber(broker.port)
    subscribers.append(sub)
    feed = FakeFeed(tmp_path / "feed.sock").start()
    feeds.append(feed)
    config = tmp_path / "dies.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n"
                              for k, v in bridge_settings(feed.path, broker.port, "dies").items()))
    proc = subprocess.Popen([sys.executable, "-c", INJECTED_FAILURE, "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"fer-mqtt stayed up with a dead feed thread: {err[-2000:]}") from None
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert "the feed thread failed: RuntimeError: injected: a bug in the translator (at <string>:" in err, err
    assert "exiting with status 1" in err
    sub.wait_for(lambda: sub.on("ferlite/dies/availability")[-1:] == ["offline"], 10, "offline after the failure")


@pytest.mark.parametrize(("settings", "setting"), [
    ({"prefix": "p" * 70_000}, "prefix"),
    ({"discovery_prefix": "d" * 70_000}, "discovery_prefix"),
    ({"username": "u" * 70_000}, "username"),
    ({"socket": "/tmp/" + "s" * 120}, "socket"),
])
def test_what_mqtt_cannot_carry_is_refused_at_start(tmp_path: Path, settings: dict[str, Any], setting: str) -> None:
    """Item 3: a 70,000-character prefix used to kill the broker thread (struct.error: MQTT gives a topic 16
    bits of length) and leave the process up; a socket path over 107 bytes the feed thread."""
    config = tmp_path / "mqtt.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in
                              {"host": HOST, "port": free_port(), "device_id": "long", **settings}.items()))
    result = _run_cli("--config", str(config), timeout=15)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and f"{setting} " in result.stderr, result.stderr[:300]
    assert len(result.stderr) < 500


def test_check_limits_refuses_a_password_mqtt_cannot_carry() -> None:
    """The password is the file's first line: a file within the size cap can still hold one line over the
    65535 bytes MQTT carries, which paho would fail on inside the broker thread at every connect."""
    from ferlite.edge.apps.mqtt import check_limits

    config = make_config({"device_id": "pw", "username": "u"})
    check_limits(config, "p" * 65535)
    with pytest.raises(MqttConfigError, match="the password in password_file is 65536 bytes long; MQTT carries "
                                              "at most 65535"):
        check_limits(config, "p" * 65536)
    with pytest.raises(MqttConfigError, match="not valid UTF-8"):
        check_limits(config, "caf\udce9")


@pytest.mark.parametrize("timeout", [1e10, "inf"])
def test_a_huge_feed_timeout_never_leaves_the_bridge_alive_but_dead(
    broker: Broker, tmp_path: Path, feeds: list[FakeFeed], subscribers: list[Subscriber], timeout: Any
) -> None:
    """Item 3: feed_timeout_s = inf or 1e10 used to kill the feed thread at start (OverflowError in settimeout).
    Either it is refused at start (exit 2) or the bridge reads the feed."""
    sub = Subscriber(broker.port)
    subscribers.append(sub)
    feed = FakeFeed(tmp_path / "feed.sock").start()
    feeds.append(feed)
    config = tmp_path / "huge.toml"
    value = "inf" if timeout == "inf" else json.dumps(timeout)
    config.write_text("".join(f"{k} = {json.dumps(v)}\n"
                              for k, v in bridge_settings(feed.path, broker.port, "huge").items())
                      + f"feed_timeout_s = {value}\n")
    bridge = subprocess.Popen([sys.executable, "-m", "ferlite.edge.apps.mqtt", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        sub.wait_for(lambda: bridge.poll() is not None or sub.on("ferlite/huge/state")[1:], 15,
                     "a refusal or states from the feed")
    finally:
        if bridge.poll() is None:
            bridge.send_signal(signal.SIGTERM)
        _, err = bridge.communicate(timeout=10)
    if bridge.returncode == 2:
        assert err.count("\n") == 1 and "feed_timeout_s" in err, err
    else:
        assert bridge.returncode == 0 and "Traceback" not in err, err
        assert any(s["faces"] == 1 for s in sub.json_on("ferlite/huge/state"))


class SilentBroker:
    """A TCP port that accepts connections and never says a word (not an MQTT broker, or a hung one)."""

    def __init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind((HOST, 0))
        self.server.listen(16)
        self.port = int(self.server.getsockname()[1])
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.accepted:
            conn.close()


def test_a_silent_broker_is_named_as_such_promptly_and_sigterm_is_fast(
    tmp_path: Path, feeds: list[FakeFeed], bridges: list[Bridge]
) -> None:
    """Item 10: a broker that accepts TCP and never sends CONNACK: ~25 s without a word, then 'closed the
    connection before accepting it', and SIGTERM took 5 s."""
    silent = SilentBroker()
    try:
        feed = FakeFeed(tmp_path / "feed.sock").start()
        feeds.append(feed)
        started = time.monotonic()
        bridge = Bridge(tmp_path, bridge_settings(feed.path, silent.port, "silent", reconnect_initial_s=0.2,
                                                  reconnect_max_s=0.4))
        bridges.append(bridge)
        deadline = started + 15
        while "no MQTT reply (CONNACK)" not in bridge.log():
            assert time.monotonic() < deadline, bridge.log()
            time.sleep(0.05)
        said_after = time.monotonic() - started
        assert said_after < 10, said_after
        assert "closed the connection before accepting it" not in bridge.log()
        # SIGTERM while waiting for a CONNACK (a new attempt has been accepted by the silent port).
        accepted = len(silent.accepted)
        while len(silent.accepted) == accepted:
            assert time.monotonic() < deadline + 5, "no second attempt"
            time.sleep(0.02)
        time.sleep(0.3)
        sent = time.monotonic()
        assert bridge.stop() == 0
        took = time.monotonic() - sent
        assert took <= 0.5, f"SIGTERM took {took:.2f} s"
        assert "Traceback" not in bridge.log()
        print(f"\nSILENT BROKER: said after {said_after:.1f} s; SIGTERM while waiting for CONNACK: {took:.2f} s")
    finally:
        silent.close()
