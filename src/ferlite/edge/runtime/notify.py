"""The systemd notify protocol, with the standard library only.

``Type=notify`` services tell systemd how they are doing by sending datagrams such as
``READY=1`` or ``WATCHDOG=1`` to the AF_UNIX socket named in ``$NOTIFY_SOCKET`` (a name that
starts with ``@`` lives in the abstract namespace). Outside systemd the variable is unset and
every method here is a cheap no-op, so the daemon calls them unconditionally.
(Socket activation is not used: see docs/raspberry-pi.md.)
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _positive_int(value: str | None) -> int | None:
    """``WATCHDOG_USEC``/``WATCHDOG_PID``/``LISTEN_PID`` as systemd writes them; else None."""
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None


def _socket_address(name: str) -> str | None:
    """The address to ``sendto()`` for a ``$NOTIFY_SOCKET`` value, or None if unusable."""
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    # systemd >= 254 may also hand out "vsock:CID:PORT" (VMs); not something a Pi daemon sees.
    return None


class SystemdNotifier:
    """Talks to systemd's notify socket; silently does nothing when not run by systemd.

    ``watchdog()`` may be called every frame: it sends ``WATCHDOG=1`` at most once per
    :meth:`watchdog_interval` (half of ``$WATCHDOG_USEC`` by default, as sd_watchdog_enabled(3)
    recommends). Send failures are logged once as a warning, then at DEBUG, and never raised:
    losing a notification must not take the camera loop down.
    """

    def __init__(
        self,
        notify_socket: str | None = None,
        watchdog_usec: int | None = None,
        watchdog_pid: int | None = None,
        *,
        watchdog_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._address = _socket_address(notify_socket) if notify_socket else None
        if notify_socket and self._address is None:
            log.warning("NOTIFY_SOCKET=%s is not a Unix socket path; not notifying", notify_socket)
        self._sock: socket.socket | None = None
        self._clock = clock
        self._warned = False
        self._last_ping: float | None = None
        # WATCHDOG_PID names the process that must ping; another PID means "not us".
        if watchdog_pid is not None and watchdog_pid != os.getpid():
            watchdog_usec = None
        self._interval: float | None = None
        if watchdog_usec is not None:
            half = watchdog_usec / 2e6
            if watchdog_interval is not None and watchdog_interval > half:
                log.warning(
                    "watchdog interval %.3fs is longer than half of WatchdogSec (%.3fs); using %.3fs",
                    watchdog_interval, watchdog_usec / 1e6, half,
                )
            self._interval = (
                min(watchdog_interval, half)
                if watchdog_interval is not None and watchdog_interval > 0
                else half
            )

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        watchdog_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> SystemdNotifier:
        """Build from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``."""
        env = os.environ if env is None else env
        return cls(
            env.get("NOTIFY_SOCKET") or None,
            _positive_int(env.get("WATCHDOG_USEC")),
            _positive_int(env.get("WATCHDOG_PID")),
            watchdog_interval=watchdog_interval,
            clock=clock,
        )

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to talk to."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings, or None when systemd runs no watchdog for us."""
        if self._address is None:
            return None
        return self._interval

    def notify(self, *fields: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; True if it was sent."""
        if self._address is None or not fields:
            return False
        payload = "\n".join(fields).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto(payload, self._address)
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self._display_address(), e)
            else:
                log.debug("cannot notify systemd at %s: %s", self._display_address(), e)
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        """``READY=1`` (and an optional ``STATUS=``): start-up is complete."""
        fields = ["READY=1"]
        if status is not None:
            fields.append(_status_field(status))
        self.notify(*fields)

    def status(self, text: str) -> None:
        """``STATUS=``: one line shown by ``systemctl status``."""
        self.notify(_status_field(text))

    def watchdog(self) -> None:
        """``WATCHDOG=1``, rate-limited: cheap enough to call on every frame."""
        if self._interval is None or self._address is None:
            return
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < self._interval:
            return
        # Count a failed send as an attempt too: a broken socket is not retried every frame.
        self._last_ping = now
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        """``STOPPING=1``: shutdown has begun."""
        self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _display_address(self) -> str:
        assert self._address is not None
        return "@" + self._address[1:] if self._address.startswith("\0") else self._address


def _status_field(text: str) -> str:
    # A newline would start a new KEY=VALUE field.
    return "STATUS=" + " ".join(text.splitlines())
