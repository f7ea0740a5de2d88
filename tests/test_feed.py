from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time

import pytest

from ferlite.edge.feed import FeedError, SocketFeed, iterate_messages


def _line(i: int, pad: int = 0) -> bytes:
    return (json.dumps({"frame": i, "pad": "x" * pad}) + "\n").encode()


def _reader(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    return sock


def _read_lines(sock, count, timeout=5.0):
    sock.settimeout(timeout)
    buf = b""
    while buf.count(b"\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return [json.loads(x) for x in buf.splitlines()]


def test_socket_mode_and_cleanup(tmp_path):
    path = tmp_path / "feed.sock"
    with SocketFeed(path, mode=0o660):
        st = path.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
    assert not path.exists()


def test_readers_get_every_message_from_connect_on(tmp_path):
    path = tmp_path / "feed.sock"
    with SocketFeed(path) as feed:
        early = _reader(path)
        feed.publish(_line(0))
        late = _reader(path)
        for i in range(1, 50):
            feed.publish(_line(i))
        assert feed.reader_count == 2
        assert [m["frame"] for m in _read_lines(early, 50)] == list(range(50))
        assert [m["frame"] for m in _read_lines(late, 49)] == list(range(1, 50))


def test_stalled_reader_dropped_without_slowing_others(tmp_path):
    path = tmp_path / "feed.sock"
    with SocketFeed(path, buffer_limit=64 * 1024) as feed:
        stalled = _reader(path)  # never reads
        live = [_reader(path) for _ in range(3)]
        received: dict[int, list[int]] = {i: [] for i in range(3)}

        def drain(i, sock):
            received[i] = [m["frame"] for m in _read_lines(sock, 400, timeout=10)]

        threads = [threading.Thread(target=drain, args=(i, s)) for i, s in enumerate(live)]
        for t in threads:
            t.start()
        slowest = 0.0
        for i in range(400):
            start = time.perf_counter()
            feed.publish(_line(i, pad=2000))
            slowest = max(slowest, time.perf_counter() - start)
            time.sleep(0.001)
        for t in threads:
            t.join(timeout=15)
        assert feed.dropped == 1
        assert feed.reader_count == 3
        for i in range(3):
            assert received[i] == list(range(400))  # none missing, none out of order
        assert slowest < 0.5  # publish never waited on the stalled reader
        stalled.close()


def test_disconnecting_reader_is_forgotten(tmp_path):
    path = tmp_path / "feed.sock"
    with SocketFeed(path) as feed:
        gone = _reader(path)
        feed.publish(_line(0))
        gone.close()
        for i in range(1, 5):
            feed.publish(_line(i))
        assert feed.reader_count == 0


def test_stale_socket_replaced(tmp_path):
    path = tmp_path / "feed.sock"
    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(str(path))
    crashed.close()  # the file stays behind, nobody listens: as after a crash
    with SocketFeed(path) as feed:
        reader = _reader(path)
        feed.publish(_line(7))
        assert _read_lines(reader, 1)[0]["frame"] == 7


def test_live_socket_and_plain_files_not_replaced(tmp_path):
    path = tmp_path / "feed.sock"
    with SocketFeed(path):
        with pytest.raises(FeedError, match="another process"):
            SocketFeed(path)
    plain = tmp_path / "important.txt"
    plain.write_text("keep me")
    with pytest.raises(FeedError, match="not a socket"):
        SocketFeed(plain)
    assert plain.read_text() == "keep me"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FeedError, match="cannot create socket"):
        SocketFeed(tmp_path / "no" / "such" / "feed.sock")


def test_client_iterates_messages(tmp_path):
    path = tmp_path / "feed.sock"
    feed = SocketFeed(path)
    got = []

    def consume():
        for message in iterate_messages(path, timeout=5):
            got.append(message["frame"])

    # The client must be connected before the first publish to see every message.
    t = threading.Thread(target=consume)
    t.start()
    deadline = time.time() + 5
    while feed.reader_count == 0 and time.time() < deadline:
        feed._accept()
        time.sleep(0.01)
    for i in range(10):
        feed.publish(_line(i))
    feed.close()
    t.join(timeout=5)
    assert got == list(range(10))
    assert not os.path.exists(path)
