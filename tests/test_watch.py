"""fer-watch and iterate_messages against hostile feeds (issue 22, item 12; the line bound of item 3).

The feed here is a plain Unix socket that writes whatever a test gives it, byte for byte: what a broken or
hostile writer could put on the socket, not only what fer-edge writes. fer-watch runs as its own process.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferlite.edge.apps.watch import summary_line
from ferlite.edge.contract.errors import FeedError, InputError
from ferlite.edge.runtime.feed import iterate_messages

WATCH = [sys.executable, "-m", "ferlite.edge.apps.watch"]
FRAME = {"frame": 7, "ts": 1.5, "faces": [{"box": [1, 2, 3, 4], "label": "Happy", "score": 0.9, "track": 3}]}
GOOD = (json.dumps(FRAME) + "\n").encode()

# Each line is something a broken or hostile writer could send; every one is skipped and counted.
HOSTILE_LINES = {
    "invalid UTF-8": b'{"frame": 1, "x": "\xff\xfe"}\n',
    "garbage": b"\x00\x01garbage that is not JSON\n",
    "200000 deep": b'{"faces": ' + b"[" * 200_000 + b"\n",
    "deep but parseable": b'{"faces": ' + b"[" * 500 + b"]" * 500 + b"}\n",
    "400-digit ts": b'{"frame": 1, "ts": ' + b"9" * 400 + b"}\n",
    "1e999 score": b'{"frame": 1, "faces": [{"label": "Happy", "score": 1e999}]}\n',
    "NaN": b'{"frame": 1, "ts": NaN}\n',
    "a list": b"[1, 2, 3]\n",
    "a string": b'"hello"\n',
}


class RawFeed:
    """A Unix socket that, for its first reader, sends `data` and then stays open (hold) or closes."""

    def __init__(self, path: Path, data: bytes | Iterator[bytes] = b"", hold: bool = False) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.data = data
        self.hold = hold
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        try:
            chunks = [self.data] if isinstance(self.data, bytes) else self.data
            for chunk in chunks:
                conn.sendall(chunk)
            if self.hold:
                self.done.wait(60)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.done.set()
        self.server.close()


@pytest.fixture
def raw_feeds() -> Iterator[list[RawFeed]]:
    made: list[RawFeed] = []
    yield made
    for feed in made:
        feed.close()


def _watch(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(WATCH + list(args), capture_output=True, text=True, timeout=timeout)


def test_watch_skips_and_counts_every_hostile_line_and_prints_the_good_ones(tmp_path, raw_feeds):
    path = tmp_path / "feed.sock"
    raw_feeds.append(RawFeed(path, GOOD + b"".join(HOSTILE_LINES.values()) + GOOD))
    done = _watch("--socket", str(path))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [FRAME, FRAME]
    assert f"fer-watch: {len(HOSTILE_LINES)} line(s) skipped" in done.stderr, done.stderr
    assert "skipped a line that is not valid UTF-8 (1 skipped so far)" in done.stderr


WRONG_SHAPES = [
    {"faces": []},  # no frame number
    {"frame": "x", "faces": []},
    {"frame": 1},  # no faces
    {"frame": 1, "faces": {"label": "Happy"}},
    {"frame": 1, "faces": [1, 2]},
    {"frame": 1, "faces": [{"score": 0.5}]},
    {"frame": 1, "faces": [{"label": "Happy"}]},
    {"frame": 1, "faces": [{"label": "Happy", "score": "high"}]},
    {"frame": 1, "faces": [{"label": "Happy", "score": True}]},
    {"frame": 1, "faces": [{"label": ["Happy"], "score": 0.5}]},
]


def test_watch_summary_skips_messages_of_the_wrong_shape(tmp_path, raw_feeds):
    path = tmp_path / "feed.sock"
    lines = b"".join((json.dumps(m) + "\n").encode() for m in WRONG_SHAPES)
    raw_feeds.append(RawFeed(path, lines + GOOD))
    done = _watch("--socket", str(path), "--summary")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == "frame 7: #3 Happy 0.90\n"
    assert f"fer-watch: {len(WRONG_SHAPES)} line(s) skipped" in done.stderr, done.stderr


def test_summary_line_escapes_control_characters_and_big_numbers():
    message = {"frame": 2, "faces": [{"label": "Ha\x1b[2Jppy\n", "score": 10**30}]}
    assert summary_line(message) == "frame 2: Ha\\x1b[2Jppy\\n 1000000000000000019884624838656.00"
    with pytest.raises(ValueError, match="finite"):
        summary_line({"frame": 2, "faces": [{"label": "x", "score": 10**400}]})
    with pytest.raises(ValueError, match="finite"):
        summary_line({"frame": 2, "faces": [{"label": "x", "score": math.nan}]})


@pytest.mark.parametrize(("path", "said"), [
    ("", "socket path is empty"),
    ("/tmp/" + "s" * 120 + ".sock", "socket path is 130 bytes, the limit is 107"),
])
def test_watch_refuses_a_path_no_socket_can_have_in_one_line(path, said):
    done = _watch("--socket", path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and said in done.stderr and done.stderr.startswith("fer-watch: ")


def test_watch_bad_flags_exit_2_in_one_line():
    for args in (["--timeout", "nan"], ["--timeout", "0"], ["--timeout", "-1"], ["--timeout", "inf"],
                 ["--count", "0"], ["--count", "x"]):
        done = _watch(*args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)
        assert done.stderr.strip().splitlines()[-1].startswith("fer-watch: error: argument"), done.stderr


def test_watch_timeout_ends_a_silent_feed_with_exit_1(tmp_path, raw_feeds):
    path = tmp_path / "feed.sock"
    raw_feeds.append(RawFeed(path, GOOD, hold=True))  # one frame, then silence
    started = time.monotonic()
    done = _watch("--socket", str(path), "--timeout", "1")
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert done.stdout.count("\n") == 1
    assert done.stderr == f"fer-watch: {path}: no line for 1 s\n"
    assert elapsed < 10


def test_watch_stops_at_once_on_sigterm_while_the_feed_is_silent(tmp_path, raw_feeds):
    path = tmp_path / "feed.sock"
    raw_feeds.append(RawFeed(path, GOOD, hold=True))
    proc = subprocess.Popen(WATCH + ["--socket", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline()) == FRAME  # connected and waiting
    time.sleep(0.3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert time.monotonic() - sent <= 0.5
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_iterate_messages_skips_hostile_lines_and_reads_on(tmp_path, raw_feeds):
    path = tmp_path / "feed.sock"
    raw_feeds.append(RawFeed(path, b"".join(HOSTILE_LINES.values()) + GOOD + b"\n\n" + GOOD[:-1]))
    skipped: list[str] = []
    got = list(iterate_messages(path, timeout=10, on_skip=skipped.append))
    assert got == [FRAME, FRAME]  # the last line has no newline: the feed ended after it, it still counts
    assert len(skipped) == len(HOSTILE_LINES), skipped
    assert skipped[:3] == ["a line that is not valid UTF-8", "a line that is not JSON (Expecting value)",
                           "a line nested more than 32 deep"]


def test_iterate_messages_rejects_bad_paths_and_timeouts(tmp_path):
    with pytest.raises(FeedError, match="empty"):
        next(iterate_messages(""))
    with pytest.raises(FeedError, match="the limit is 107"):
        next(iterate_messages(tmp_path / ("x" * 200)))
    with pytest.raises(FeedError, match="NUL"):  # the kernel would connect to the part before it
        next(iterate_messages(str(tmp_path / "feed.sock") + "\0evil"))
    for bad in (math.nan, 0, -1.0):
        with pytest.raises(InputError, match="timeout must be"):
            next(iterate_messages(tmp_path / "feed.sock", timeout=bad))


def test_iterate_messages_takes_an_infinite_timeout_and_should_stop(tmp_path, raw_feeds):
    path = tmp_path / "feed.sock"
    raw_feeds.append(RawFeed(path, GOOD, hold=True))
    stop = threading.Event()
    got = []
    started = time.monotonic()
    for message in iterate_messages(path, timeout=math.inf, should_stop=stop.is_set):
        got.append(message)
        threading.Timer(0.2, stop.set).start()
    assert got == [FRAME] and time.monotonic() - started < 1.0


LINE_PROBE = """
import json, logging, sys
from ferlite.edge.runtime.feed import iterate_messages
logging.basicConfig(level=logging.WARNING)
try:
    got, error = len(list(iterate_messages(sys.argv[1], timeout=30))), None
except Exception as e:
    got, error = 0, repr(e)[:200]
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would count the parent (pytest) at fork.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"got": got, "error": error, "rss_mib": hwm // 1024}))
"""


def test_a_line_of_400_mb_without_a_newline_keeps_memory_bounded(tmp_path, raw_feeds):
    path = tmp_path / "feed.sock"
    block = b"x" * (4 << 20)
    raw_feeds.append(RawFeed(path, iter([*([block] * 100), b"\n", GOOD])))  # 400 MiB, then a good line
    done = subprocess.run([sys.executable, "-c", LINE_PROBE, str(path)], capture_output=True, text=True,
                          timeout=120)
    result = json.loads(done.stdout)
    assert result["rss_mib"] < 150, f"max RSS {result['rss_mib']} MiB reading a 400 MiB line"
    assert result == {"got": 1, "error": None, "rss_mib": result["rss_mib"]}
    assert "skipped a line longer than 1048576 bytes (1 skipped so far)" in done.stderr, done.stderr
