"""The local feed: a Unix stream socket that many readers share, one JSON object per line.

Everything runs in the caller's thread without blocking: each publish() accepts waiting
readers, queues the line for every reader and sends what each socket takes now. A reader
whose queue grows past its budget has stopped reading and is dropped; it never slows the
pipeline.

FeedSettings (the [feed] table of fer-edge's config) are the socket's settings, beside the code that reads
them; EdgeConfig derives from them.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract import settings
from ..contract.errors import ConfigError, FeedError, InputError
from ..contract.settings import setting, short
from .backoff import Backoff

log = logging.getLogger(__name__)

# Connections the kernel holds until they are accepted: a burst of readers that connect at once (120 and
# more) waits there instead of being refused with EAGAIN. Not more: a flapping client could fill a
# larger backlog faster than it drains, and live readers wait behind whatever is queued.
LISTEN_BACKLOG = 256
# New readers taken per message; the listen backlog holds the rest until the next message.
MAX_ACCEPTS_PER_PUBLISH = 16
# accept() calls per message, live or not. A client that connects and disconnects as fast as it can (millions
# of times) keeps the backlog full of connections closed before they were taken in; each is discarded at the
# cost of three system calls. Most messages make at most MAX_ACCEPT_CALLS_PER_PUBLISH calls (the soak: 9 %
# fewer frames with 50 readers and such a client, 5 % of them the readers'); at most every FULL_DRAIN_EVERY_S
# one message goes through the whole backlog (FULL_DRAIN_CALLS), so a reader queued behind a full backlog of
# dead connections is taken within FULL_DRAIN_EVERY_S and a message, never starved. Going through the whole
# backlog on every message cost 35 % of the frames at 200 fps.
MAX_ACCEPT_CALLS_PER_PUBLISH = 2 * MAX_ACCEPTS_PER_PUBLISH
FULL_DRAIN_CALLS = LISTEN_BACKLOG + MAX_ACCEPTS_PER_PUBLISH
FULL_DRAIN_EVERY_S = 0.25
# sockaddr_un.sun_path is 108 bytes with its terminating NUL.
MAX_PATH_BYTES = 107
# The feed's defaults, here once: fer-edge's socket_mode and socket_buffer settings take them as theirs, and
# the readers (fer-watch, fer-mqtt) connect to DEFAULT_SOCKET, where the systemd unit has fer-edge serve.
DEFAULT_SOCKET = "/run/ferlite/feed.sock"
DEFAULT_SOCKET_MODE = 0o660  # owner and group read and write
DEFAULT_SOCKET_BUFFER = 256 * 1024  # bytes queued per reader before it is dropped
# Owner read/write required; group read/write allowed; nothing for others, no execute or special bits.
SOCKET_MODE_REQUIRED = 0o600
SOCKET_MODE_ALLOWED = 0o660
_OCTAL = re.compile(r"(?:0o?)?([0-7]{3,4})")


def parse_socket_mode(value: Any) -> int:
    """A TOML socket_mode: an octal string such as "660". A TOML integer is refused: 660 would be
    read as decimal (mode 1224)."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ConfigError(f'socket_mode must be an octal string such as "660", got {short(value)}')
    match = _OCTAL.fullmatch(value.strip())
    if match is None:
        raise ConfigError(f'socket_mode must be an octal string such as "660", got {short(value)}')
    return int(match.group(1), 8)


def _socket_mode_problem(mode: int) -> str | None:
    if mode & ~SOCKET_MODE_ALLOWED or mode & SOCKET_MODE_REQUIRED != SOCKET_MODE_REQUIRED:
        return f"must be within 600..660 octal (owner rw, group at most rw, nothing for others), got {mode:o}"
    return None


@dataclass(frozen=True)
class FeedSettings(settings.Settings):
    """The Unix socket the feed is served on, if any."""

    socket: str | None = setting(None, "also serve the feed on this Unix socket", non_empty=True,
                                 max_bytes=MAX_PATH_BYTES, group="feed")
    socket_mode: int = setting(DEFAULT_SOCKET_MODE, "the socket's permissions, octal (600..660)",
                               parse=parse_socket_mode, check=_socket_mode_problem, show=lambda mode: f'"{mode:o}"',
                               group="feed")
    socket_buffer: int = setting(DEFAULT_SOCKET_BUFFER, "bytes queued per reader before it is dropped", low=1024,
                                 high=1 << 30, group="feed")


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
        mode: int = DEFAULT_SOCKET_MODE,
        buffer_limit: int = DEFAULT_SOCKET_BUFFER,
    ) -> None:
        """Bind `path` (a stale socket file is replaced; a live one or another file is refused)."""
        self.path = Path(path)
        self.buffer_limit = buffer_limit
        self.dropped = 0
        self._readers: list[_Reader] = []
        self._next_full_drain = 0.0  # time.monotonic() after which a message goes through the whole backlog
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
        calls = MAX_ACCEPT_CALLS_PER_PUBLISH
        now = time.monotonic()
        if now >= self._next_full_drain:
            calls, self._next_full_drain = FULL_DRAIN_CALLS, now + FULL_DRAIN_EVERY_S
        for _ in range(calls):
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


# A feed line is read into memory up to this many bytes; a longer one is skipped up to its newline (and
# counted), so memory stays bounded whatever comes down the socket. fer-edge's lines are a few hundred bytes
# per face (at most max_faces, 256) plus the source's name.
MAX_LINE_BYTES = 1024 * 1024
# fer-edge's messages nest 4 deep (message, faces, face, box); anything much deeper is not one.
MAX_DEPTH = 32
# Integers beyond 64 bits are no ferlite message's (and break float() and most JSON readers).
_MAX_INT = 2**63 - 1
# The longest single wait in recv(): should_stop and the timeout are checked this often.
_READ_SLICE_S = 0.25
_CONNECT_S = 10.0  # connect() is retried this long while the listen backlog is full (without a timeout)
_CONNECT_RETRY_S = (0.005, 0.1)  # first and longest wait between those tries


def check_socket_path(path: str | os.PathLike[str]) -> str:
    """The path as a str, or FeedError when it cannot name a Unix socket (empty, a NUL, over 107 bytes)."""
    text = os.fspath(path)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    size = len(os.fsencode(text))
    if size == 0:
        raise FeedError("socket path is empty")
    if "\0" in text:
        raise FeedError(f"{text!r}: socket path contains a NUL byte")
    if size > MAX_PATH_BYTES:
        raise FeedError(f"{text[:60]}...: socket path is {size} bytes, the limit is {MAX_PATH_BYTES}")
    return text


def iterate_messages(
    path: str | os.PathLike[str],
    timeout: float | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_skip: Callable[[str], None] | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[dict[str, Any]]:
    """Connect to a ferlite feed and yield its messages as dicts until the daemon closes it.

    For your own programs:

        from ferlite.edge.runtime.feed import DEFAULT_SOCKET, iterate_messages
        for message in iterate_messages(DEFAULT_SOCKET):
            for face in message["faces"]:
                print(face["label"], face["score"])

    A line that is not a message (not UTF-8, not JSON, not a JSON object, NaN or a number out of range,
    nested more than MAX_DEPTH deep, or longer than `max_line_bytes`, which is never held in memory) is
    skipped: `on_skip(reason)` is called (by default the skip is logged, at most a few times) and reading
    goes on. `timeout`: seconds without a line before TimeoutError (None or inf: no limit). `should_stop`
    is asked at least every 0.25 s; True ends the iteration. Raises FeedError for a path that cannot name
    a socket, InputError for a bad timeout, OSError (FileNotFoundError, ConnectionRefusedError,
    PermissionError, ...) when connecting fails or the connection breaks.
    """
    text = check_socket_path(path)
    if timeout is not None and not timeout > 0:  # also NaN
        raise InputError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if on_skip is None:
        on_skip = _log_skips(text)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        _connect(sock, text, timeout, should_stop)
        yield from _messages(sock, timeout, should_stop, on_skip, max_line_bytes)


def _messages(
    sock: socket.socket,
    timeout: float | None,
    should_stop: Callable[[], bool] | None,
    on_skip: Callable[[str], None],
    max_line_bytes: int,
) -> Iterator[dict[str, Any]]:
    buf = bytearray()
    skipping = False  # inside a line over max_line_bytes: dropped up to its newline
    last_line = time.monotonic()
    while True:
        if should_stop is not None and should_stop():
            return
        wait = _READ_SLICE_S
        if timeout is not None and timeout != float("inf"):
            left = last_line + timeout - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no message for {timeout:g} s")
            wait = min(wait, left)
        sock.settimeout(wait)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:  # the daemon closed the feed; a last line without its newline still counts
            if buf and not skipping:
                message = _decode(bytes(buf), on_skip)
                if message is not None:
                    yield message
            return
        buf += chunk
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            line = bytes(buf[start:end])
            start = end + 1
            last_line = time.monotonic()
            if skipping:  # the end of a line too long to keep
                skipping = False
                continue
            message = _decode(line, on_skip)
            if message is not None:
                yield message
                last_line = time.monotonic()  # the caller's time is not the feed's silence
        del buf[:start]
        if len(buf) > max_line_bytes:
            if not skipping:
                on_skip(f"a line longer than {max_line_bytes} bytes")
                skipping = True
            buf.clear()


def _decode(line: bytes, on_skip: Callable[[str], None]) -> dict[str, Any] | None:
    """One line as a message; None (after on_skip, unless the line is blank) when it is not one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        on_skip("a line that is not valid UTF-8")
        return None
    if not text.strip():
        return None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:
        on_skip(f"a line nested more than {MAX_DEPTH} deep")
        return None
    except ValueError as e:  # JSONDecodeError, a number out of range, NaN/Infinity
        reason = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        on_skip(f"a line that is not JSON ({reason})")
        return None
    if not isinstance(value, dict):
        on_skip(f"a line that is not a JSON object (a {type(value).__name__})")
        return None
    if _too_deep(value):
        on_skip(f"a line nested more than {MAX_DEPTH} deep")
        return None
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("a number out of range")
    return value


def _bounded_int(text: str) -> int:
    value = int(text) if len(text) <= 20 else _MAX_INT + 1
    if abs(value) > _MAX_INT:
        raise ValueError("an integer out of range")
    return value


def finite_number(value: Any) -> float | None:
    """A number read from a feed message as a finite float; None for anything else (a bool, NaN, inf, an
    integer too big for a float): what fer-watch and fer-mqtt take from a message's fields."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _too_deep(value: Any) -> bool:
    """True when containers nest more than MAX_DEPTH deep (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _log_skips(path: str) -> Callable[[str], None]:
    """The default on_skip: a warning for the 1st, 10th, 100th and every 1000th skipped line."""
    count = 0

    def on_skip(reason: str) -> None:
        nonlocal count
        count += 1
        if count in (1, 10, 100) or count % 1000 == 0:
            log.warning("feed %s: skipped %s (%d skipped so far)", path, reason, count)

    return on_skip


def _connect(
    sock: socket.socket, path: str, timeout: float | None, should_stop: Callable[[], bool] | None
) -> None:
    """connect(), retried while the daemon's listen backlog is full (EAGAIN): the socket has a timeout, so
    connect() does not block, and a burst of readers would fail instead of waiting."""
    limit = timeout if timeout is not None and timeout != float("inf") else _CONNECT_S
    deadline = time.monotonic() + limit
    backoff = Backoff(*_CONNECT_RETRY_S)
    sock.settimeout(min(limit, _READ_SLICE_S))
    while True:
        try:
            sock.connect(path)
        except BlockingIOError:
            if time.monotonic() + backoff.delay > deadline or backoff.wait(should_stop):
                raise
            continue
        return
