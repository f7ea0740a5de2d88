"""Hostile-input probe (issue 22): replays its cases as an attacker or a careless user would, prints a table.

    .venv/bin/python tests/bench/hostile.py                  # every case (about two minutes on 2 cores)
    .venv/bin/python tests/bench/hostile.py --only mqtt      # the cases whose name contains "mqtt"
    .venv/bin/python tests/bench/hostile.py --list           # the cases, without running them
    .venv/bin/python tests/bench/hostile.py --json out.json  # the table as JSON too

Each case runs one command (fer-edge, fer-watch, fer-mqtt, fer-preview) as its own process in a fresh
folder, with what the case sets up there (files, a feed socket that writes whatever the case says, a TCP
port that never answers), while the case's `drive` does what the attacker does. A case whose process is
still running when its drive is done, or at its `limit`, gets SIGTERM (its time to exit is `term_s`), and
SIGKILL 5 s later (a hang). Columns: case, issue 22's item, rc, seconds (start to exit), term_s,
traceback? (a Python traceback, a fatal error or a C++ abort on stderr), max RSS (MiB: VmHWM read every
10 ms, so a peak in the last 10 ms of a run can be missed; "-" for a run too short to read) and the
verdict: `ok` needs the rc the case expects, no traceback, no crash (a signal), SIGTERM honoured within
0.5 s, RSS within the case's bound and the case's own check (e.g. `Host: evil.com` gets 403).

Cases are data: add one to CASES (a name, the item, the command line, the exit codes it may give, and
optionally setup/drive/check functions and a memory bound). The exit code of this script is 0 when every
case is ok.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "fixtures" / "tiny_int8.tflite"
HOSTILE_MODELS = ROOT / "tests" / "hostile" / "models"
PYTHON = sys.executable
TERM_LIMIT_S = 0.5  # SIGTERM must end every command within this
KILL_AFTER_S = 5.0  # after SIGTERM: a process still there is a hang, and is killed
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")
FATAL_MARKS = ("Traceback (most recent call last)", "Fatal Python error", "terminate called", "Segmentation fault")


def tool(name: str) -> list[str]:
    module = {"fer-edge": "cli", "fer-watch": "watch", "fer-mqtt": "mqtt", "fer-preview": "preview"}[name]
    return [PYTHON, "-m", f"ferlite.edge.apps.{module}"]


# --- what a case works with ---------------------------------------------------------------------------------


@dataclass
class Ctx:
    """One case's folder, its process, and what its setup started (closed after the run)."""

    root: Path
    model: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    term_sent: float | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.returncode is None and self.term_sent is None:
            self.term_sent = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def stderr(self) -> str:
        return (self.root / "stderr").read_text(errors="replace")

    def stdout(self) -> str:
        return (self.root / "stdout").read_text(errors="replace")

    def wait_log(self, text: str, timeout: float) -> float | None:
        """Seconds until `text` is on stderr (None: not within `timeout`)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if text in self.stderr():
                return time.monotonic() - started
            if not self.running():
                return None
            time.sleep(0.05)
        return None


class Skip(Exception):
    """The case cannot run here (a missing system package); it is listed as skipped."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_feed(ctx: Ctx, chunks: Iterable[bytes], hold: bool = True, name: str = "feed.sock") -> Path:
    """A Unix socket that sends `chunks` to its first reader, then stays open (hold) or closes."""
    path = ctx.root / name
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    done = threading.Event()

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        try:
            for chunk in chunks:
                conn.sendall(chunk)
            ctx.extra["feed_sent"] = time.monotonic()
            if hold:
                done.wait(120)
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    ctx.closers += [done.set, server.close]
    return path


def silent_port(ctx: Ctx) -> int:
    """A TCP port that accepts connections and never sends a byte (not a broker, or a hung one)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    ctx.extra["accepted"] = accepted

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    ctx.closers.append(server.close)
    ctx.closers.append(lambda: [conn.close() for conn in accepted])
    return int(server.getsockname()[1])


def write(ctx: Ctx, name: str, text: str | bytes) -> Path:
    path = ctx.root / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def mqtt_toml(ctx: Ctx, **settings: Any) -> str:
    """A fer-mqtt config: the case's feed socket and a port where no broker listens, plus `settings`."""
    values = {"socket": str(ctx.root / "feed.sock"), "host": "127.0.0.1", "port": ctx.port or free_port(),
              "device_id": "probe", "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5, **settings}
    lines = []
    for key, value in values.items():
        lines.append(f"{key} = {value}" if isinstance(value, str) and value in ("inf", "nan")
                     else f"{key} = {json.dumps(value)}")
    return str(write(ctx, "mqtt.toml", "\n".join(lines) + "\n"))


def frame_line(frame: int, track: int = 1) -> bytes:
    message = {"frame": frame, "ts": time.time(), "faces": [
        {"box": [1, 2, 3, 4], "label": "Happy", "score": 0.9, "track": track}], "events": []}
    return (json.dumps(message) + "\n").encode()


DEEP = b'{"frame": 2, "faces": ' + b"[" * 200_000 + b"\n"
BIG_TS = b'{"frame": 3, "ts": ' + b"9" * 400 + b', "faces": []}\n'
BIG_SCORE = b'{"frame": 4, "faces": [{"label": "Happy", "score": ' + b"9" * 400 + b', "track": 1}]}\n'
NOT_UTF8 = b'{"frame": 5, "faces": [], "x": "\xff\xfe"}\n'
GARBAGE = b"\x00\x01 not JSON at all\n"
WRONG_SHAPES = b"".join(json.dumps(m).encode() + b"\n" for m in (
    {"faces": []}, {"frame": 1}, {"frame": 1, "faces": {"label": "Happy"}}, {"frame": 1, "faces": [1]},
    {"frame": 1, "faces": [{"label": "Happy", "score": "high"}]}))


def huge_line(mib: int = 400) -> Iterable[bytes]:
    block = b"x" * (4 << 20)
    for _ in range(mib // 4):
        yield block
    yield b"\n" + frame_line(9)


# --- drives and checks ----------------------------------------------------------------------------------------


def wait_port(port: int, ctx: Ctx, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ctx.running():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def http(port: int, request: bytes, timeout: float = 5.0, host: str = "127.0.0.1") -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except TimeoutError:
            reply += b"<no close>"
    return reply


def get(port: int, path: str, host_header: str = "127.0.0.1") -> int:
    reply = http(port, f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\n\r\n".encode())
    try:
        return int(reply.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def after(seconds: float) -> Callable[[Ctx], str | None]:
    """A drive that lets the process run `seconds`, then SIGTERM (sent by the runner)."""
    def drive(ctx: Ctx) -> str | None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and ctx.running():
            time.sleep(0.05)
        return None
    return drive


def until_fed(extra_s: float) -> Callable[[Ctx], str | None]:
    """A drive that waits until the raw feed has sent everything, then `extra_s` more (the reader's turn)."""
    def drive(ctx: Ctx) -> str | None:
        deadline = time.monotonic() + 60
        while "feed_sent" not in ctx.extra and ctx.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(extra_s)
        return None if ctx.running() else "exited before SIGTERM"
    return drive


def stderr_has(*texts: str) -> Callable[[Ctx], str | None]:
    def check(ctx: Ctx) -> str | None:
        missing = [t for t in texts if t not in ctx.stderr()]
        return f"stderr lacks {missing[0]!r}" if missing else None
    return check


def one_line(ctx: Ctx) -> str | None:
    """One line saying why (`fer-edge: ...`); log lines before it (a timestamp first) do not count."""
    lines = [line for line in ctx.stderr().strip().splitlines() if not LOG_LINE.match(line)]
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr besides log lines, not 1"
    return None if lines[0].startswith("fer-") else f"the line does not name the command: {lines[0][:60]!r}"


def silent_broker_drive(ctx: Ctx) -> str | None:
    said = ctx.wait_log("no MQTT reply (CONNACK)", 10)
    if said is None:
        return "no line about the silent broker within 10 s"
    accepted = ctx.extra["accepted"]
    count = len(accepted)
    deadline = time.monotonic() + 5
    while len(accepted) == count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # SIGTERM while it waits for a CONNACK
    ctx.notes.append(f"said after {said:.1f} s")
    return None


def preview_argv(bind: str) -> Callable[[Ctx], list[str]]:
    def argv(ctx: Ctx) -> list[str]:
        text = bind.replace("PORT", str(ctx.port))
        return tool("fer-preview") + ["--source", "demo", "--loop", "--fps-limit", "10", "--threads", "1",
                                      "--model", str(ctx.model), "--bind", text]
    return argv


def with_port(ctx: Ctx) -> None:
    ctx.port = free_port()


def preview_host_check(connect_host: str) -> Callable[[Ctx], str | None]:
    def drive(ctx: Ctx) -> str | None:
        if not wait_port_on(connect_host, ctx.port, ctx):
            return "never listened"
        codes = {name: get_on(connect_host, ctx.port, "/labels.json", name) for name in ("evil.com", "localhost")}
        ctx.notes.append(f"Host evil.com: {codes['evil.com']}")
        return None if codes == {"evil.com": 403, "localhost": 200} else f"Host check: {codes}"
    return drive


def wait_port_on(host: str, port: int, ctx: Ctx, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ctx.running():
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def get_on(host: str, port: int, path: str, host_header: str) -> int:
    try:
        reply = http(port, f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\n\r\n".encode(), host=host)
        return int(reply.split(b" ", 2)[1])
    except (OSError, IndexError, ValueError):
        return 0


def preview_resets(ctx: Ctx) -> str | None:
    if not wait_port(ctx.port, ctx):
        return "never listened"
    for i in range(100):
        sock = socket.create_connection(("127.0.0.1", ctx.port))
        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" if i % 2 else b"GET /lab")
        if i % 2:
            sock.recv(100)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    time.sleep(0.5)
    return None if get(ctx.port, "/labels.json") == 200 else "not serving after 100 resets"


def preview_http09(ctx: Ctx) -> str | None:
    if not wait_port(ctx.port, ctx):
        return "never listened"
    started = time.monotonic()
    reply = http(ctx.port, b"GET /labels.json\r\n", timeout=3)
    took = time.monotonic() - started
    ctx.notes.append(f"reply {reply[:12]!r} in {took:.2f} s")
    return None if reply.startswith(b"HTTP/1.0 ") and not reply.endswith(b"<no close>") else "no reply"


def preview_nonreaders(ctx: Ctx) -> str | None:
    if not wait_port(ctx.port, ctx):
        return "never listened"
    stuck = []
    for _ in range(8):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", ctx.port))
        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        stuck.append(sock)
    try:
        time.sleep(2.0)
        with socket.create_connection(("127.0.0.1", ctx.port), timeout=5) as sock:
            sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = sock.recv(200)
    except OSError as e:
        head = repr(e).encode()
    finally:
        for sock in stuck:
            sock.close()
    ctx.notes.append(f"a 9th viewer got {head[:12]!r}")
    return None if head.startswith(b"HTTP/1.0 200") else "a viewer was locked out"


def preview_burst(ctx: Ctx) -> str | None:
    if not wait_port(ctx.port, ctx):
        return "never listened"
    slowest, socks = 0.0, []
    for _ in range(200):
        started = time.monotonic()
        socks.append(socket.create_connection(("127.0.0.1", ctx.port), timeout=10))
        slowest = max(slowest, time.monotonic() - started)
    time.sleep(1.0)
    threads = int(next(line.split()[1] for line in Path(f"/proc/{ctx.proc.pid}/status").read_text().splitlines()
                       if line.startswith("Threads:"))) if ctx.proc else 0
    for sock in socks:
        sock.close()
    ctx.notes.append(f"slowest connect {slowest:.2f} s, {threads} threads with 200 idle connections")
    problems = []
    if slowest >= 0.5:
        problems.append(f"a connect waited {slowest:.2f} s")
    if threads > 100:
        problems.append(f"{threads} threads")
    return "; ".join(problems) or None


def preview_load(ctx: Ctx) -> str | None:
    if not wait_port(ctx.port, ctx):
        return "never listened"
    stop = threading.Event()

    def hammer(path: str) -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", ctx.port), timeout=2) as sock:
                    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
                    while sock.recv(65536) and not stop.is_set():
                        pass
            except OSError:
                time.sleep(0.01)

    workers = [threading.Thread(target=hammer, args=(p,), daemon=True)
               for p in ["/stream.mjpg"] * 6 + ["/frame.jpg"] * 6 + ["/labels.json", "/"] * 3]
    for worker in workers:
        worker.start()
    time.sleep(2.0)
    ctx.terminate()  # under load
    deadline = time.monotonic() + KILL_AFTER_S + 1
    while ctx.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    return None


# --- the cases ------------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    item: int
    argv: Callable[[Ctx], list[str]]
    expect: tuple[int, ...]  # the exit codes that are right
    setup: Callable[[Ctx], Any] | None = None
    drive: Callable[[Ctx], str | None] | None = None  # None: wait for the process to end by itself
    check: Callable[[Ctx], str | None] | None = None  # after the run: a problem, or None
    limit: float = 20.0  # seconds before SIGTERM when the process has not ended (a hang unless it has a drive)
    max_rss_mib: float | None = None


def edge(*args: str) -> Callable[[Ctx], list[str]]:
    return lambda ctx: tool("fer-edge") + ["--model", str(ctx.model), "--threads", "1",
                                           *[a.replace("{root}", str(ctx.root)) for a in args]]


def mqtt(**settings: Any) -> Callable[[Ctx], list[str]]:
    return lambda ctx: tool("fer-mqtt") + ["--config", mqtt_toml(ctx, **settings)]


def watch(*args: str) -> Callable[[Ctx], list[str]]:
    return lambda ctx: tool("fer-watch") + ["--socket", str(ctx.root / "feed.sock"), *args]


def make_clip(ctx: Ctx) -> None:
    import cv2
    import numpy as np

    photo = cv2.imread(str(ROOT / "src" / "ferlite" / "edge" / "demo" / "astronaut_640x480_1.jpg"))
    writer = cv2.VideoWriter(str(ctx.root / "c2.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 15, (640, 480))
    for i in range(30):
        writer.write(np.roll(photo, i, axis=1))
    writer.release()
    ctx.extra["clip_size"] = (ctx.root / "c2.avi").stat().st_size


def clip_intact(ctx: Ctx) -> str | None:
    size = (ctx.root / "c2.avi").stat().st_size
    return None if size == ctx.extra["clip_size"] else f"c2.avi went from {ctx.extra['clip_size']} to {size} bytes"


def fifo(name: str) -> Callable[[Ctx], None]:
    return lambda ctx: os.mkfifo(ctx.root / name)


def spec_with(change: dict[str, Any]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        model = ctx.root / "model.tflite"
        model.write_bytes(ctx.model.read_bytes())
        spec = json.loads(ctx.model.with_name(ctx.model.stem + ".spec.json").read_text())
        spec.update(change)
        (ctx.root / "model.spec.json").write_text(json.dumps(spec).replace('"__INF__"', "1e999"))
        ctx.model = model
    return setup


def hostile_model(name: str) -> Callable[[Ctx], None]:
    """Item 5: a model from tests/hostile/models with a spec that matches its bytes (the sha256 proves nothing more)."""
    def setup(ctx: Ctx) -> None:
        from ferlite.edge.contract.spec import ModelSpec, write_spec

        model = ctx.root / name
        model.write_bytes((HOSTILE_MODELS / name).read_bytes())
        write_spec(model, ModelSpec(quantization="float32"))
        ctx.model = model
    return setup


def _white_png() -> bytes:
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".png", np.full((96, 96), 255, np.uint8))
    return data.tobytes()


def big_video(ctx: Ctx) -> None:
    """Item 7: a 12000x12000 MJPEG video (3 frames); its header alone says it is over max_image_pixels."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(ctx.root / "big.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (12000, 12000))
    frame = np.zeros((12000, 12000, 3), np.uint8)
    for _ in range(3):
        writer.write(frame)
    writer.release()


API_THREADS = """
import threading, cv2
from ferlite.edge import Recognizer, DEMO_DIR
photo = cv2.imread(str(DEMO_DIR / "astronaut.jpg"))
rec = Recognizer(threads=1)
def work():
    for _ in range(5):
        rec.process(photo)
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print("ok")
"""


def flapper_drive(ctx: Ctx) -> str | None:
    """Item 15: a client connects and disconnects as fast as it can while an honest reader connects."""
    sock_path = str(ctx.root / "feed.sock")
    deadline = time.monotonic() + 20
    while not os.path.exists(sock_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop = threading.Event()

    def flap() -> None:
        while not stop.is_set():
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(sock_path)
            except OSError:
                pass

    flappers = [threading.Thread(target=flap, daemon=True) for _ in range(2)]
    [t.start() for t in flappers]
    time.sleep(1.0)
    started = time.monotonic()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as reader:
            reader.connect(sock_path)  # blocking, as an honest reader does: a timeout makes a full backlog EAGAIN
            reader.settimeout(5)
            got = reader.recv(65536)
    except OSError as e:
        got, problem = b"", f"the honest reader failed: {e}"
    else:
        problem = None if got else "the honest reader got nothing"
    waited = time.monotonic() - started
    stop.set()
    ctx.notes.append(f"reader served in {waited:.2f} s")
    ctx.terminate()
    return problem or (f"the honest reader waited {waited:.1f} s" if waited > 3 else None)


CASES: list[Case] = [
    # item 1: --annotate onto its own source
    Case("edge-annotate-own-video", 1, edge("--source", "c2.avi", "--annotate", "c2.avi", "--no-stdout"), (2,),
         setup=make_clip, check=clip_intact),
    Case("edge-annotate-own-video-by-link", 1, edge("--source", "c2.avi", "--annotate", "link.avi", "--no-stdout"),
         (2,), setup=lambda ctx: (make_clip(ctx), os.symlink("c2.avi", ctx.root / "link.avi")), check=clip_intact),
    # item 2: a name OpenCV cannot take
    Case("edge-annotate-name-not-utf8", 2, lambda ctx: edge("--source", "c2.avi", "--no-stdout")(ctx)
         + ["--annotate", os.fsdecode(b"o\xff.avi")], (2,), setup=make_clip),
    # items 3 and 12: a feed line that is not a message
    Case("mqtt-feed-200000-deep-json", 3, mqtt(), (0,),
         setup=lambda ctx: raw_feed(ctx, [frame_line(1), DEEP, frame_line(6)]), drive=until_fed(1.0),
         check=stderr_has("skipped a line nested more than 32 deep", "1 feed messages skipped")),
    Case("mqtt-feed-400-digit-ts-and-score", 3, mqtt(), (0,),
         setup=lambda ctx: raw_feed(ctx, [frame_line(1), BIG_TS, BIG_SCORE, frame_line(6)]), drive=until_fed(1.0),
         check=stderr_has("2 feed messages skipped")),
    Case("mqtt-feed-400MB-line", 3, mqtt(), (0,), setup=lambda ctx: raw_feed(ctx, huge_line()),
         drive=until_fed(1.0), check=stderr_has("skipped a line longer than"), max_rss_mib=150),
    Case("mqtt-prefix-70000-chars", 3, mqtt(prefix="p" * 70_000), (2,), check=one_line),
    Case("mqtt-feed-timeout-inf", 3, mqtt(feed_timeout_s="inf"), (0, 2), drive=after(2.0)),
    Case("mqtt-feed-timeout-1e10", 3, mqtt(feed_timeout_s=1e10), (0, 2), drive=after(2.0)),
    # item 6: a directory where a file was expected
    Case("edge-config-dir", 6, edge("--config", "{root}"), (2,), check=one_line),
    Case("mqtt-config-dir", 6, lambda ctx: tool("fer-mqtt") + ["--config", str(ctx.root)], (2,), check=one_line),
    Case("preview-config-dir", 6, lambda ctx: tool("fer-preview") + ["--config", str(ctx.root)], (2,),
         check=one_line),
    # item 8: fer-mqtt's files
    Case("mqtt-password-file-fifo-check-config", 8,
         lambda ctx: mqtt(username="u", password_file=str(ctx.root / "pw"))(ctx) + ["--check-config"], (2,),
         setup=fifo("pw"), limit=5),
    Case("mqtt-password-file-dev-zero", 8, mqtt(username="u", password_file="/dev/zero"), (2,), limit=5,
         max_rss_mib=200),
    # item 9: settings accepted but broken
    Case("mqtt-reconnect-initial-nan", 9, mqtt(reconnect_initial_s="nan"), (2,), check=one_line),
    Case("mqtt-device-id-newline", 9, mqtt(device_id="kitchen\n"), (2,), check=one_line),
    Case("mqtt-host-nul", 9, mqtt(host="127.0.0.1\u0000evil"), (2,), check=one_line),
    Case("mqtt-prefix-$SYS", 9, mqtt(prefix="$SYS"), (2,), check=one_line),
    # item 10: a broker that accepts TCP and never answers
    Case("mqtt-silent-broker", 10, lambda ctx: tool("fer-mqtt") + ["--config", mqtt_toml(ctx, port=ctx.port)], (0,),
         setup=lambda ctx: setattr(ctx, "port", silent_port(ctx)), drive=silent_broker_drive),
    # item 11: a spec with an infinite size
    Case("edge-spec-input-size-1e999", 11, edge("--source", "demo", "--no-stdout"), (2,),
         setup=spec_with({"input_size": ["__INF__", 84]}), check=one_line),
    Case("preview-spec-input-size-1e999", 11,
         lambda ctx: tool("fer-preview") + ["--model", str(ctx.model), "--source", "demo", "--bind", "127.0.0.1:0"],
         (2,), setup=spec_with({"input_size": ["__INF__", 84]}), check=one_line),
    # item 12: fer-watch
    Case("watch-invalid-utf8-garbage-deep", 12, watch(), (0,),
         setup=lambda ctx: raw_feed(ctx, [frame_line(1), NOT_UTF8, GARBAGE, DEEP, frame_line(2)], hold=False),
         check=stderr_has("3 line(s) skipped")),
    Case("watch-summary-wrong-shapes", 12, watch("--summary"), (0,),
         setup=lambda ctx: raw_feed(ctx, [WRONG_SHAPES, frame_line(2)], hold=False),
         check=stderr_has("5 line(s) skipped")),
    Case("watch-400MB-line", 12, watch("--count", "1"), (0,), setup=lambda ctx: raw_feed(ctx, huge_line()),
         max_rss_mib=150),
    Case("watch-socket-path-108-bytes", 12, lambda ctx: tool("fer-watch") + ["--socket", "/tmp/" + "s" * 103], (2,),
         check=one_line),
    Case("watch-socket-path-empty", 12, lambda ctx: tool("fer-watch") + ["--socket", ""], (2,), check=one_line),
    Case("watch-silent-feed-timeout", 12, watch("--timeout", "1"), (1,),
         setup=lambda ctx: raw_feed(ctx, [frame_line(1)]), limit=5, check=one_line),
    Case("watch-silent-feed-sigterm", 12, watch(), (0,), setup=lambda ctx: raw_feed(ctx, [frame_line(1)]),
         drive=after(1.0)),
    # item 13: fer-preview's HTTP server
    Case("preview-100-resets", 13, preview_argv("127.0.0.1:PORT"), (0,), setup=with_port, drive=preview_resets),
    Case("preview-8-stream-nonreaders", 13, preview_argv("127.0.0.1:PORT"), (0,), setup=with_port,
         drive=preview_nonreaders),
    Case("preview-200-connects", 13, preview_argv("127.0.0.1:PORT"), (0,), setup=with_port, drive=preview_burst),
    Case("preview-bind-127.1", 13, preview_argv("127.1:PORT"), (0,), setup=with_port,
         drive=preview_host_check("127.0.0.1")),
    Case("preview-bind-0x7f000001", 13, preview_argv("0x7f000001:PORT"), (0,), setup=with_port,
         drive=preview_host_check("127.0.0.1")),
    Case("preview-bind-ipv4-mapped", 13, preview_argv("[::ffff:127.0.0.1]:PORT"), (0,), setup=with_port,
         drive=preview_host_check("::ffff:127.0.0.1")),
    Case("preview-port-arabic-3", 13, preview_argv("127.0.0.1:\u0663"), (2,), check=one_line),
    Case("preview-http-0.9", 13, preview_argv("127.0.0.1:PORT"), (0,), setup=with_port, drive=preview_http09),
    Case("preview-sigterm-under-load", 13, preview_argv("127.0.0.1:PORT"), (0,), setup=with_port,
         drive=preview_load),
    # item 14: smaller ones
    Case("edge-source-20-digit-camera", 14, edge("--source", "99999999999999999999", "--no-stdout"), (2,),
         check=one_line),
    Case("edge-toml-source-nul", 14, edge("--config", "{root}/edge.toml"), (2,),
         setup=lambda ctx: write(ctx, "edge.toml", 'source = "a\\u0000b"\n'), check=one_line),
    Case("edge-opencv-threads-abc", 14, lambda ctx: ["env", "OPENCV_FOR_THREADS_NUM=abc"]
         + edge("--source", "demo", "--no-stdout")(ctx), (2,), check=one_line),
    # item 4: one Recognizer from 8 threads
    Case("api-recognizer-8-threads", 4, lambda ctx: [PYTHON, "-c", API_THREADS], (0,), limit=60),
    # item 5: models whose sha256 matches and that are hostile (tile_huge under an address-space limit)
    *[Case(f"edge-model-{name.removesuffix('.tflite')}", 5, edge("--source", "demo", "--no-stdout"), (2,),
           setup=hostile_model(name), check=one_line) for name in (
        "gather_out_of_range.tflite", "infinite_output.tflite", "int32_output.tflite", "nan_output.tflite",
        "negative_output.tflite", "not_summing_to_one.tflite", "scalar_output.tflite", "seven_outputs.tflite",
        "two_inputs.tflite")],
    Case("edge-model-tile-huge", 5, lambda ctx: ["prlimit", "--as=6000000000", "--"]
         + edge("--source", "demo", "--no-stdout")(ctx), (2,), setup=hostile_model("tile_huge.tflite"),
         check=one_line, max_rss_mib=1024),
    Case("edge-model-nan-on-bright-frames", 5, edge("--source", "{root}/white.png", "--whole-frame", "--no-stdout"),
         (0, 2), setup=lambda ctx: (hostile_model("nan_on_bright_frames.tflite")(ctx),
                                    write(ctx, "white.png", _white_png())), check=stderr_has("not finite")),
    # item 7: one pixel cap for every source
    Case("edge-video-12000x12000", 7, edge("--source", "big.avi", "--no-stdout"), (2,), setup=big_video,
         check=one_line, max_rss_mib=600, limit=60),
    # item 15: a connect/disconnect flapper does not starve an honest reader
    Case("edge-socket-flapper", 15, edge("--source", "demo", "--loop", "--fps-limit", "10", "--no-stdout",
                                         "--socket", "{root}/feed.sock"), (0,), drive=flapper_drive, limit=40),
]


# --- the runner ----------------------------------------------------------------------------------------------


@dataclass
class Row:
    case: str
    item: int
    rc: int | None = None
    seconds: float | None = None
    term_s: float | None = None
    traceback: bool = False
    rss_mib: float | None = None
    verdict: str = "ok"
    note: str = ""


def run_case(case: Case, model: Path) -> Row:
    row = Row(case.name, case.item)
    with tempfile.TemporaryDirectory(prefix="fer-hostile-") as tmp:
        ctx = Ctx(Path(tmp), model)
        try:
            if case.setup is not None:
                case.setup(ctx)
            argv = case.argv(ctx)
        except Skip as e:
            row.verdict, row.note = "skipped", str(e)
            return row
        problems: list[str] = []
        try:
            _run(case, ctx, argv, row, problems)
        finally:
            for close in ctx.closers:
                try:
                    close()
                except OSError:
                    pass
        stderr = ctx.stderr()
        row.traceback = any(mark in stderr for mark in FATAL_MARKS)
        if row.rc is not None and row.rc < 0 and row.verdict != "hang":
            problems.insert(0, f"crash (signal {-row.rc})")
        if row.traceback:
            problems.append("traceback on stderr")
        if row.rc is not None and row.rc >= 0 and row.rc not in case.expect:
            problems.append(f"rc {row.rc}, expected {'/'.join(map(str, case.expect))}")
        if row.term_s is not None and row.term_s > TERM_LIMIT_S:
            problems.append(f"SIGTERM took {row.term_s:.2f} s")
        if case.max_rss_mib is not None and row.rss_mib is not None and row.rss_mib > case.max_rss_mib:
            problems.append(f"RSS {row.rss_mib:.0f} MiB over {case.max_rss_mib:g}")
        if case.check is not None and not problems:
            found = case.check(ctx)
            if found:
                problems.append(found)
        if problems:
            if row.verdict == "ok":
                row.verdict = "FAIL"
            row.note = "; ".join(problems)
        else:
            row.note = "; ".join(ctx.notes)
        if row.verdict != "ok" and stderr.strip():
            row.note += f" | stderr: {stderr.strip().splitlines()[-1][:120]}"
    return row


def _run(case: Case, ctx: Ctx, argv: list[str], row: Row, problems: list[str]) -> None:
    with (ctx.root / "stdout").open("wb") as out, (ctx.root / "stderr").open("wb") as err:
        started = time.monotonic()
        ctx.proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ctx.root)
        driver = None
        if case.drive is not None:
            def drive() -> None:
                try:
                    found = case.drive(ctx)  # type: ignore[misc]
                except Exception as e:  # noqa: BLE001 - the probe's own failure is reported, not raised
                    found = f"drive failed: {type(e).__name__}: {e}"
                if found:
                    problems.append(found)
                ctx.terminate()  # still running after the drive: SIGTERM, timed
            driver = threading.Thread(target=drive, daemon=True)
            driver.start()
        status, peak_kib, hung = _wait(ctx, started, case.limit, driven=driver is not None)
        ended = time.monotonic()
    if driver is not None:
        driver.join(timeout=KILL_AFTER_S)
    row.rc = os.waitstatus_to_exitcode(status)
    row.seconds = round(ended - started, 2)
    row.term_s = round(ended - ctx.term_sent, 2) if ctx.term_sent is not None else None
    row.rss_mib = round(peak_kib / 1024, 1) if peak_kib else None
    if hung:
        row.verdict = "hang"
        problems.append(hung)


def _hwm_kib(pid: int) -> int:
    """The process's peak RSS so far (VmHWM, KiB); 0 when it cannot be read (gone, a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else 0


def _wait(ctx: Ctx, started: float, limit: float, driven: bool) -> tuple[int, int, str | None]:
    """Reap the process, following its peak RSS (VmHWM every 10 ms: wait4's ru_maxrss would start from this
    script's own RSS at fork); SIGTERM at `limit`, SIGKILL KILL_AFTER_S after SIGTERM."""
    assert ctx.proc is not None
    hung = None
    peak = 0
    while True:
        peak = max(peak, _hwm_kib(ctx.proc.pid))
        pid, status, _ = os.wait4(ctx.proc.pid, os.WNOHANG)
        if pid:
            ctx.proc.returncode = os.waitstatus_to_exitcode(status)
            return status, peak, hung
        now = time.monotonic()
        if now - started > limit and ctx.term_sent is None:
            if not driven:
                hung = f"still running after {limit:g} s"
            ctx.terminate()
        if ctx.term_sent is not None and now - ctx.term_sent > KILL_AFTER_S:
            hung = f"still running {KILL_AFTER_S:g} s after SIGTERM (killed)"
            ctx.proc.kill()
            pid, status, _ = os.wait4(ctx.proc.pid, 0)
            ctx.proc.returncode = os.waitstatus_to_exitcode(status)
            return status, peak, hung
        time.sleep(0.01)


def table(rows: Sequence[Row]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value)

    head = ["case", "item", "rc", "seconds", "term_s", "traceback?", "max RSS MiB", "verdict", "note"]
    body = [[r.case, r.item, r.rc, r.seconds, r.term_s, r.traceback, r.rss_mib, r.verdict, r.note] for r in rows]
    cells = [head] + [[cell(v) for v in line] for line in body]
    widths = [max(len(line[i]) for line in cells) for i in range(len(head) - 1)]
    lines = []
    for n, line in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", action="append", default=[], help="run the cases whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--model", type=Path, default=MODEL, help="the model fer-edge and fer-preview load")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if not args.only or any(word in c.name for word in args.only)]
    if args.list:
        for case in cases:
            print(f"{case.item:>2}  {case.name}")
        return 0
    rows = []
    for case in cases:
        row = run_case(case, args.model)
        rows.append(row)
        print(f"{row.verdict:>7}  {row.case}  ({row.seconds} s)", file=sys.stderr, flush=True)
    print(table(rows))
    bad = [r for r in rows if r.verdict not in ("ok", "skipped")]
    print(f"\n{len(rows)} cases: {len(rows) - len(bad)} ok or skipped, {len(bad)} not "
          f"({sum(r.verdict == 'hang' for r in rows)} hangs, {sum(r.traceback for r in rows)} tracebacks, "
          f"{sum(1 for r in rows if r.rc is not None and r.rc < 0)} crashes)")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1) + "\n")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
