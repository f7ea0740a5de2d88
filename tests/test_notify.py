"""sd_notify / socket activation (ferlite.edge.runtime.notify), and the daemon under a notify listener."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferlite.edge.runtime.notify import SystemdNotifier

REPO = Path(__file__).resolve().parent.parent
FIXTURE_MODEL = REPO / "tests" / "fixtures" / "tiny_int8.tflite"


class Listener:
    """A notify socket of the test's own: what systemd would receive."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value
        self.sock.settimeout(0.05)

    def get(self, timeout: float = 2.0) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self.sock.recv(4096).decode()
            except TimeoutError:
                continue
        return None

    def get_nowait(self) -> str | None:
        try:
            return self.sock.recv(4096, socket.MSG_DONTWAIT).decode()
        except (BlockingIOError, TimeoutError):
            return None

    def drain(self) -> list[str]:
        out = []
        while (msg := self.get(timeout=0.1)) is not None:
            out.append(msg)
        return out


@pytest.fixture
def path_listener(tmp_path: Path) -> Iterator[Listener]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield Listener(sock, str(path))


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    name = f"ferlite-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield Listener(sock, "@" + name)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- no systemd -------------------------------------------------------------------------------


def test_no_notify_socket_is_a_silent_no_op() -> None:
    n = SystemdNotifier.from_env({})
    assert not n.enabled
    assert n.watchdog_interval() is None
    n.ready("x")
    n.status("y")
    n.watchdog()
    n.stopping()
    assert n.notify("READY=1") is False


def test_watchdog_without_notify_socket_is_off() -> None:
    n = SystemdNotifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert n.watchdog_interval() is None


def test_unusable_notify_socket_value_disables(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ferlite.edge.runtime.notify"):
        n = SystemdNotifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not n.enabled
    assert "not a Unix socket path" in caplog.text


# --- the messages -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_messages_reach_the_listener(
    kind: str, request: pytest.FixtureRequest
) -> None:
    listener: Listener = request.getfixturevalue(f"{kind}_listener")
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": listener.env_value})
    assert n.enabled
    n.ready()
    assert listener.get() == "READY=1"
    n.ready("model loaded")
    assert listener.get() == "READY=1\nSTATUS=model loaded"
    n.status("12.5 fps, 1 faces")
    assert listener.get() == "STATUS=12.5 fps, 1 faces"
    n.stopping()
    assert listener.get() == "STOPPING=1"
    n.close()


def test_status_newlines_cannot_inject_fields(path_listener: Listener) -> None:
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": path_listener.env_value})
    n.status("ok\nREADY=1")
    assert path_listener.get() == "STATUS=ok READY=1"


def test_send_failure_never_raises_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.DEBUG, logger="ferlite.edge.runtime.notify"):
        n.ready()
        n.status("x")
        n.stopping()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    debugs = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(warnings) == 1 and "cannot notify systemd" in warnings[0].getMessage()
    assert len(debugs) == 2


# --- the watchdog -----------------------------------------------------------------------------


def test_watchdog_is_rate_limited_to_half_the_timeout(path_listener: Listener) -> None:
    clock = FakeClock()
    n = SystemdNotifier.from_env(
        {"NOTIFY_SOCKET": path_listener.env_value, "WATCHDOG_USEC": "500000"}, clock=clock
    )
    assert n.watchdog_interval() == 0.25
    sent_at = []
    for step in range(128):  # 1 s of frames at 128 fps (binary fractions: exact arithmetic)
        clock.now = 100.0 + step / 128
        n.watchdog()
        if path_listener.get_nowait() is not None:  # local datagrams arrive at once
            sent_at.append(clock.now - 100.0)
    assert path_listener.drain() == []  # nothing may arrive late either
    assert sent_at == [0.0, 0.25, 0.5, 0.75]


def test_watchdog_message_is_exactly_watchdog_1(path_listener: Listener) -> None:
    n = SystemdNotifier.from_env(
        {"NOTIFY_SOCKET": path_listener.env_value, "WATCHDOG_USEC": "5000000"}
    )
    n.watchdog()
    n.watchdog()
    assert path_listener.drain() == ["WATCHDOG=1"]


def test_configured_interval_is_used_but_never_longer_than_half(
    path_listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"NOTIFY_SOCKET": path_listener.env_value, "WATCHDOG_USEC": "10000000"}
    assert SystemdNotifier.from_env(env, watchdog_interval=1.0).watchdog_interval() == 1.0
    with caplog.at_level(logging.WARNING, logger="ferlite.edge.runtime.notify"):
        n = SystemdNotifier.from_env(env, watchdog_interval=60.0)
    assert n.watchdog_interval() == 5.0
    assert "longer than half of WatchdogSec" in caplog.text


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_PID": "1"}, None),  # the watchdog is someone else's
        ({"WATCHDOG_PID": "junk"}, 0.5),
        ({}, 0.5),
    ],
)
def test_watchdog_pid(path_listener: Listener, extra: dict[str, str], expected: float | None) -> None:
    env = {"NOTIFY_SOCKET": path_listener.env_value, "WATCHDOG_USEC": "1000000", **extra}
    assert SystemdNotifier.from_env(env).watchdog_interval() == expected


@pytest.mark.parametrize("usec", ["", "0", "-5", "soon"])
def test_bad_watchdog_usec_means_no_watchdog(path_listener: Listener, usec: str) -> None:
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": path_listener.env_value, "WATCHDOG_USEC": usec})
    assert n.watchdog_interval() is None
    n.watchdog()
    assert path_listener.drain() == []


# --- socket activation ------------------------------------------------------------------------


def _daemon_available() -> str | None:
    try:
        import ferlite.edge.apps.cli  # noqa: F401
    except ImportError as e:
        return f"ferlite.edge.apps.cli not importable yet ({e})"
    if not FIXTURE_MODEL.exists():
        return f"fixture model {FIXTURE_MODEL.relative_to(REPO)} not there yet"
    return None


def _face_images(folder: Path, count: int = 4) -> None:
    import cv2
    import numpy as np

    folder.mkdir()
    try:
        from skimage import data

        face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    except ImportError:
        rng = np.random.default_rng(0)
        face = rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
    for i in range(count):
        frame = cv2.resize(face, (640, 480)) if i % 2 else face
        assert cv2.imwrite(str(folder / f"img_{i:03d}.jpg"), frame)


def _collect(listener: Listener, until: float, into: list[tuple[float, str]]) -> None:
    while time.monotonic() < until:
        msg = listener.get(timeout=0.05)
        if msg is not None:
            into.append((time.monotonic(), msg))


@pytest.mark.slow
def test_daemon_speaks_the_notify_protocol(tmp_path: Path, path_listener: Listener) -> None:
    reason = _daemon_available()
    if reason:
        pytest.skip(reason)
    images = tmp_path / "faces"
    _face_images(images)
    config = tmp_path / "edge.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            source = "{images}"
            model = "{FIXTURE_MODEL}"
            loop = true
            stdout = false
            threads = 1
            fps_limit = 20.0
            status_every_s = 0.5
            log_level = "INFO"
            """
        )
    )
    # 2 s: pings every 1 s, with a second of slack for a loaded machine (this test's listener
    # and the daemon share the CPU with whatever else runs).
    watchdog_usec = 2_000_000
    env = {
        **os.environ,
        "NOTIFY_SOCKET": path_listener.env_value,
        "WATCHDOG_USEC": str(watchdog_usec),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferlite.edge.apps.cli", "--config", str(config)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    messages: list[tuple[float, str]] = []
    try:
        # READY=1 only once the model is loaded and a first frame read.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("READY=1" in m for _, m in messages):
            assert proc.poll() is None, f"daemon exited early: {proc.stderr and proc.stderr.read()}"
            _collect(path_listener, time.monotonic() + 0.2, messages)
        ready_at = next((t for t, m in messages if "READY=1" in m), None)
        assert ready_at is not None, "no READY=1 within 120 s"
        _collect(path_listener, time.monotonic() + 6.0, messages)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        _collect(path_listener, time.monotonic() + 0.5, messages)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    texts = [m for _, m in messages]
    assert rc == 0, stderr

    # Nothing before READY except possibly watchdog pings (never STOPPING or a second READY).
    assert sum("READY=1" in m for m in texts) == 1
    pings = [t for t, m in messages if m == "WATCHDOG=1"]
    assert len(pings) >= 5, texts
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    interval = watchdog_usec / 2e6
    # Rate-limited: never much faster than the interval...
    assert min(gaps) >= interval * 0.75, gaps
    # ...and always well inside WatchdogSec, or systemd would have killed the service.
    assert max(gaps) < watchdog_usec / 1e6, gaps
    statuses = [m for m in texts if m.startswith("STATUS=") and "fps" in m]
    assert statuses, texts
    assert texts[-1] == "STOPPING=1", texts
    assert texts.count("STOPPING=1") == 1
