"""fer-mqtt's feed thread: reads fer-edge's socket (reconnecting with backoff) into the translator."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ...runtime.feed import iterate_messages
from .config import MqttConfig
from .threads import Reconnects, Worker
from .translate import Translator

log = logging.getLogger("ferlite.mqtt")


class FeedReader(Worker):
    """Read fer-edge's socket with `iterate_messages`; reconnect with backoff whenever it goes away.

    A line that is not a message (iterate_messages skips it) or a message that is not a frame (the
    translator refuses it) is skipped and counted in `bad_messages`; the feed goes on."""

    def __init__(self, config: MqttConfig, translator: Translator, stop: threading.Event) -> None:
        super().__init__("feed")
        self.config = config
        self.translator = translator
        self.stop = stop
        self.connections = 0
        self.bad_messages = 0
        self._lost_at: float | None = None  # when a feed that was read went away

    def work(self) -> None:
        backoff = Reconnects(self.config)
        last_reason = None
        while not self.stop.is_set():
            up, reason, refused = self._read()
            if self.stop.is_set():
                return
            if up:
                backoff.reset()
                last_reason = None
                self._lost_at = time.monotonic()
                with self.translator.lock:
                    self.translator.feed_lost()
                log.warning("feed %s lost: %s; reconnecting", self.config.socket, reason)
            wait = backoff.wait(refused)
            if not up and reason != last_reason:
                log.warning("feed %s: %s; retrying in %.1f s (backing off to %g s)", self.config.socket, reason, wait,
                            self.config.reconnect_max_s)
            last_reason = reason
            self.stop.wait(wait)

    def _read(self) -> tuple[bool, str, bool]:
        """Read the feed until it ends: whether a message came, why it ended, and whether the connection was
        refused (no socket, or nobody listening on it: fer-edge is restarting)."""
        up = False
        try:
            for message in iterate_messages(self.config.socket, timeout=self.config.feed_timeout_s,
                                            should_stop=self.stop.is_set, on_skip=self._skip):
                if self.stop.is_set():
                    break
                with self.translator.lock:
                    if not up:
                        up = True
                        self._connected()
                    self._handle(message)
            return up, "the daemon closed the feed", False
        except TimeoutError:
            return up, f"no message for {self.config.feed_timeout_s:g} s", False
        except (FileNotFoundError, ConnectionRefusedError) as e:
            return up, f"no fer-edge feed there ({e.strerror})", True
        except PermissionError:
            return up, "permission denied (the reader needs the group 'fer')", False
        except OSError as e:
            return up, str(e), False

    def _connected(self) -> None:
        self.connections += 1
        if self._lost_at is None:
            log.info("reading the feed %s", self.config.socket)
        else:
            log.warning("feed %s back after %.1f s", self.config.socket, time.monotonic() - self._lost_at)
            self._lost_at = None
        self.translator.feed_connected()

    def _handle(self, message: Any) -> None:
        try:
            self.translator.handle(message)
        except (LookupError, TypeError, ValueError, ArithmeticError, RecursionError) as e:
            self._skip(f"a message that is not a frame ({e})")

    def _skip(self, reason: str) -> None:
        self.bad_messages += 1
        if self.bad_messages in (1, 10, 100) or self.bad_messages % 1000 == 0:
            log.warning("feed %s: skipped %s; %d skipped so far", self.config.socket, reason, self.bad_messages)
