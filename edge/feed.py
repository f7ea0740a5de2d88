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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# New readers taken per message; the listen backlog holds the rest. Without a bound, a client that
# connects and disconnects in a tight loop makes every publish accept thousands of sockets.
MAX_ACCEPTS_PER_PUBLISH = 4


class FeedError(RuntimeError):
    """The feed socket cannot be created."""


class _Reader:
    __slots__ = ("sock", "pending", "sent_messages")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()
        self.sent_messages = 0


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
        log.info("removing stale socket %s", path)
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise FeedError(f"{path}: another process is serving this socket")


class SocketFeed:
    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: int = 0o660,
        buffer_limit: int = 256 * 1024,
        listener: socket.socket | None = None,
    ) -> None:
        """Bind `path` (or adopt `listener`, e.g. from systemd socket activation)."""
        self.path = Path(path)
        self.buffer_limit = buffer_limit
        self.dropped = 0
        self._readers: list[_Reader] = []
        self._owns_path = listener is None
        self._listener = listener if listener is not None else self._bind(mode)
        self._listener.setblocking(False)

    def _bind(self, mode: int) -> socket.socket:
        _remove_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bind under a umask that never grants more than `mode`, so there is no window in
        # which the socket is open to everyone; then set the exact mode.
        old_umask = os.umask(0o777 & ~mode)
        try:
            sock.bind(str(self.path))
        except OSError as e:
            sock.close()
            raise FeedError(f"{self.path}: cannot create socket ({e.strerror})") from e
        finally:
            os.umask(old_umask)
        os.chmod(self.path, mode)
        sock.listen(64)
        return sock

    @property
    def reader_count(self) -> int:
        return len(self._readers)

    def _accept(self) -> None:
        for _ in range(MAX_ACCEPTS_PER_PUBLISH):
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
            self.path.unlink(missing_ok=True)

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
        sock.connect(str(path))
        with sock.makefile("rb") as stream:
            for line in stream:
                if line.strip():
                    yield json.loads(line)
