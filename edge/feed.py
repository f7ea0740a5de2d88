"""The local feed: a Unix stream socket that many readers share, one JSON object per line.

Everything runs in the caller's thread without blocking: each publish() accepts waiting
readers, queues the line for every reader and sends what each socket takes now. A reader
whose queue grows past its budget has stopped reading and is dropped; it never slows the
pipeline.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import FeedError

log = logging.getLogger(__name__)

# New readers taken per message; the listen backlog holds the rest. Without a bound, a client that
# connects and disconnects in a tight loop makes every publish accept thousands of sockets.
MAX_ACCEPTS_PER_PUBLISH = 4
# Connections that were closed before they were taken in (a client that connects and disconnects in a
# loop) are discarded without counting against MAX_ACCEPTS_PER_PUBLISH, up to this many per publish:
# they must not keep live readers waiting behind them in the backlog.
MAX_ACCEPT_CALLS_PER_PUBLISH = 32
# Connections the kernel holds until they are accepted: a burst of readers that connect at once (120 and
# more) waits there instead of being refused with EAGAIN. Not more: a flapping client could fill a
# larger backlog faster than it drains, and live readers wait behind whatever is queued.
LISTEN_BACKLOG = 256
# sockaddr_un.sun_path is 108 bytes with its terminating NUL.
MAX_PATH_BYTES = 107


class _Reader:
    __slots__ = ("sock", "pending")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()


def _remove_stale(path: Path) -> None:
    """Replace a socket file left by a crash; refuse to touch anything else or a live daemon."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FeedError(f"{path}: exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        pass
    except PermissionError as e:
        raise FeedError(f"{path}: cannot replace the socket there (Permission denied)") from e
    except OSError as e:
        raise FeedError(f"{path}: cannot check the socket there ({e.strerror or e})") from e
    else:
        raise FeedError(f"{path}: another process is serving this socket")
    finally:
        probe.close()
    log.info("removing stale socket %s", path)
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        raise FeedError(f"{path}: cannot remove the stale socket ({e.strerror})") from e


def _closed_by_peer(conn: socket.socket) -> bool:
    """True when the client already hung up (readers never send, so EOF is all there is to see)."""
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class SocketFeed:
    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: int = 0o660,
        buffer_limit: int = 256 * 1024,
    ) -> None:
        """Bind `path` (a stale socket file is replaced; a live one or another file is refused)."""
        self.path = Path(path)
        self.buffer_limit = buffer_limit
        self.dropped = 0
        self._readers: list[_Reader] = []
        self._owns_path = True
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket file we made
        self._listener = self._bind(mode)
        self._listener.setblocking(False)

    def _bind(self, mode: int) -> socket.socket:
        size = len(os.fsencode(self.path))
        if size > MAX_PATH_BYTES:
            raise FeedError(f"{self.path}: socket path is {size} bytes, the limit is {MAX_PATH_BYTES}")
        _remove_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # bind() creates the file with 0777 & ~umask: under this umask it gets exactly `mode`, with
        # no chmod afterwards (a chmod by path could be redirected by a symlink swapped in).
        old_umask = os.umask(0o777 & ~mode)
        try:
            sock.bind(str(self.path))
        except OSError as e:
            sock.close()
            raise FeedError(f"{self.path}: cannot create socket ({e.strerror or e})") from e
        finally:
            os.umask(old_umask)
        try:
            info = os.lstat(self.path)
            sock.listen(LISTEN_BACKLOG)
        except OSError as e:
            sock.close()
            raise FeedError(f"{self.path}: cannot create socket ({e.strerror or e})") from e
        self._identity = (info.st_dev, info.st_ino)
        if stat.S_IMODE(info.st_mode) != mode:  # a default ACL on the folder overrides the umask
            sock.close()
            self._remove_own()
            raise FeedError(
                f"{self.path}: the socket got mode {stat.S_IMODE(info.st_mode):o}, not {mode:o} "
                "(a default ACL on the folder?)"
            )
        return sock

    def _remove_own(self) -> None:
        """Remove the socket file, but only if it is still the one this feed created."""
        if self._identity is None:
            return
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("feed: cannot check %s before removing it: %s", self.path, e.strerror)
            return
        if (info.st_dev, info.st_ino) != self._identity:
            log.warning("feed: %s was replaced since start-up; left in place", self.path)
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("feed: cannot remove %s: %s", self.path, e.strerror)

    @property
    def reader_count(self) -> int:
        return len(self._readers)

    def _accept(self) -> None:
        taken = 0
        for _ in range(MAX_ACCEPT_CALLS_PER_PUBLISH):
            if taken >= MAX_ACCEPTS_PER_PUBLISH:
                return
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    log.warning("feed: out of file descriptors, not accepting readers")
                    return
                raise
            conn.setblocking(False)
            if _closed_by_peer(conn):
                conn.close()
                continue
            taken += 1
            self._readers.append(_Reader(conn))
            log.debug("feed: reader connected (%d now)", len(self._readers))

    def publish(self, line: bytes) -> None:
        """Queue one message (ending in a newline) for every reader and send what fits now."""
        self._accept()
        keep = []
        for reader in self._readers:
            reader.pending += line
            if self._flush(reader):
                keep.append(reader)
            else:
                reader.sock.close()
        self._readers = keep

    def _flush(self, reader: _Reader) -> bool:
        """Send what the socket takes; False when the reader is gone or too far behind."""
        try:
            sent = reader.sock.send(reader.pending)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the reader went away (EPIPE, ECONNRESET, ...)
            log.debug("feed: reader disconnected (%d left)", len(self._readers) - 1)
            return False
        del reader.pending[:sent]
        if len(reader.pending) > self.buffer_limit:
            self.dropped += 1
            log.warning("feed: reader stopped reading, dropped (%d dropped so far)", self.dropped)
            return False
        return True

    def close(self) -> None:
        for reader in self._readers:
            reader.sock.close()
        self._readers = []
        self._listener.close()
        if self._owns_path:
            self._remove_own()
            self._identity = None

    def __enter__(self) -> SocketFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iterate_messages(path: str | os.PathLike[str], timeout: float | None = None) -> Iterator[dict[str, Any]]:
    """Connect to a ferlite feed and yield its messages as dicts until the daemon closes it.

    For your own programs:

        from ferlite.edge.feed import iterate_messages
        for message in iterate_messages("/run/ferlite/feed.sock"):
            for face in message["faces"]:
                print(face["label"], face["score"])
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        _connect(sock, path, timeout)
        with sock.makefile("rb") as stream:
            for line in stream:
                if line.strip():
                    yield json.loads(line)


def _connect(sock: socket.socket, path: str | os.PathLike[str], timeout: float | None) -> None:
    """connect(), retried while the daemon's listen backlog is full (EAGAIN): with a timeout the
    socket does not block in connect(), so a burst of readers would fail instead of waiting."""
    deadline = time.monotonic() + (timeout if timeout is not None else 10.0)
    delay = 0.005
    while True:
        try:
            sock.connect(str(path))
        except BlockingIOError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            continue
        return
