"""The socket feed: the socket file (its mode, who removes it), its readers, and the client that reads it."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import threading
import time

import pytest
from helpers import EDGE, as_nobody, gray_images, one_error_line, run_edge

from ferlite.edge.runtime.feed import FeedError, SocketFeed, iterate_messages


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


def test_socket_gets_its_mode_at_bind_without_a_chmod(tmp_path, monkeypatch):
    import ferlite.edge.runtime.feed as feed_module

    def no_chmod(*args, **kwargs):
        raise AssertionError("chmod by path after bind: a swapped-in symlink would be followed")

    monkeypatch.setattr(feed_module.os, "chmod", no_chmod)
    for mode in (0o660, 0o640, 0o600):
        path = tmp_path / f"feed{mode:o}.sock"
        with feed_module.SocketFeed(path, mode=mode):
            assert stat.S_IMODE(os.lstat(path).st_mode) == mode


def test_socket_replaced_while_running_is_left_in_place(tmp_path):
    from ferlite.edge.runtime.feed import SocketFeed

    path = tmp_path / "feed.sock"
    feed = SocketFeed(path)
    path.unlink()
    path.write_text("someone else's file")
    feed.close()
    assert path.read_text() == "someone else's file"

    other = tmp_path / "other.sock"
    feed = SocketFeed(other)
    other.unlink()
    second = SocketFeed(other)  # another daemon took the path
    feed.close()
    assert stat.S_ISSOCK(os.lstat(other).st_mode)
    second.close()
    assert not other.exists()


def test_120_readers_connecting_at_once_all_get_in_and_are_served(tmp_path):
    from ferlite.edge.runtime.feed import MAX_ACCEPTS_PER_PUBLISH

    path = tmp_path / "feed.sock"
    with SocketFeed(path) as feed:
        clients = []
        try:
            for _ in range(120):  # nobody accepts yet: all wait in the listen backlog
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.settimeout(2)
                clients.append(client)
                client.connect(str(path))
            messages = -(-120 // MAX_ACCEPTS_PER_PUBLISH) + 1  # each message takes in a few; the last one is for all
            for i in range(messages):
                feed.publish(_line(i))
            assert feed.reader_count == 120
            last = messages - 1
            for client in clients:
                buf = b""
                while not buf.endswith(_line(last)):
                    chunk = client.recv(65536)
                    assert chunk, "feed closed"
                    buf += chunk
                frames = [json.loads(line)["frame"] for line in buf.splitlines()]
                assert frames == list(range(frames[0], messages))  # served from its accept on, nothing lost
        finally:
            for client in clients:
                client.close()


def test_client_retries_while_the_backlog_is_full(tmp_path):
    from ferlite.edge.runtime.feed import iterate_messages

    path = tmp_path / "tiny.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(0)
    fillers = []
    while True:  # fill the backlog until connect() says EAGAIN
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filler.setblocking(False)
        try:
            filler.connect(str(path))
        except BlockingIOError:
            filler.close()
            break
        fillers.append(filler)
        assert len(fillers) < 100
    got: list[object] = []
    client = threading.Thread(target=lambda: got.extend(iterate_messages(path, timeout=5)))
    client.start()
    time.sleep(0.3)
    accepted = []
    deadline = time.monotonic() + 5
    while len(accepted) < len(fillers) + 1 and time.monotonic() < deadline:
        server.settimeout(0.5)
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        accepted.append(conn)
    for conn in accepted:
        try:
            conn.sendall(b'{"frame": 1}\n')
        except OSError:
            pass
        conn.close()
    client.join(timeout=10)
    for filler in fillers:
        filler.close()
    server.close()
    assert got == [{"frame": 1}]


def test_socket_path_longer_than_the_limit_exits_2(tmp_path, tiny_model):
    folder = gray_images(tmp_path / "f", 1)
    path = tmp_path / ("s" * 120 + ".sock")
    line = one_error_line(run_edge(["--source", str(folder), "--model", str(tiny_model), "--socket", str(path)]))
    assert "107" in line and "None" not in line


def test_socket_owned_by_someone_else_exits_2_for_a_non_root_user(shared_dir, tiny_model):
    prefix = as_nobody()
    gray_images(shared_dir / "f", 1)
    path = shared_dir / "feed.sock"
    taken = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        taken.bind(str(path))  # a stale socket of another user, mode 0600
    finally:
        os.umask(old)
    taken.close()
    shared_dir.chmod(0o777 | stat.S_ISVTX)  # the folder is writable, like /tmp
    out = subprocess.run(prefix + EDGE + ["--source", str(shared_dir / "f"), "--model", str(tiny_model),
                                          "--socket", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    line = one_error_line(out)
    assert "feed.sock" in line and "Permission denied" in line
    assert stat.S_ISSOCK(os.lstat(path).st_mode)  # not removed
