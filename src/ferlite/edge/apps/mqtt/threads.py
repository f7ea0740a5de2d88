"""What fer-mqtt's two threads share: a thread that reports its own death, and when to reconnect."""

from __future__ import annotations

import logging
import os
import threading
import traceback

from ...runtime.backoff import Backoff
from .config import MqttConfig

log = logging.getLogger("ferlite.mqtt")


def describe_failure(error: BaseException) -> str:
    """One line for an unexpected exception: its type, message (cut short) and the innermost place it came
    from, e.g. `struct.error: 'H' format requires 0 <= number <= 65535 (at client.py:1234 in _pack_str16)`."""
    where = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    text = str(error)
    text = text if len(text) <= 200 else text[:200] + "..."
    kind = type(error).__qualname__
    module = type(error).__module__
    if module not in ("builtins", "__main__"):
        kind = f"{module}.{kind}"
    place = f" (at {os.path.basename(where[0].filename)}:{where[0].lineno} in {where[0].name})" if where else ""
    return f"{kind}: {text}{place}"


class Worker(threading.Thread):
    """A thread that reports its own unexpected death in one line (the traceback at DEBUG) and records it
    in `failure`; `run()` then stops fer-mqtt with EXIT_CRASHED, so that systemd's Restart= starts it again
    instead of it staying up with a dead half."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.failure: str | None = None

    def run(self) -> None:
        try:
            self.work()
        except Exception as e:  # noqa: BLE001 - any failure ends the process (below), said in one line
            self.failure = describe_failure(e)
            log.critical("the %s thread failed: %s", self.name, self.failure)
            log.debug("the %s thread failed", self.name, exc_info=True)

    def work(self) -> None:
        raise NotImplementedError


class Reconnects:
    """When to try the broker (or the feed) again: the one exponential backoff (reconnect_initial_s doubling up to
    reconnect_max_s), but at most restart_probe_s after a refusal (the host is up and nothing listens: the broker or
    fer-edge is restarting, and a refused attempt costs nothing), so it is found within about restart_probe_s of
    its return."""

    def __init__(self, config: MqttConfig) -> None:
        self.backoff = Backoff(config.reconnect_initial_s, config.reconnect_max_s)
        self.probe_s = config.restart_probe_s

    def reset(self) -> None:
        self.backoff.reset()

    def wait(self, refused: bool) -> float:
        delay = self.backoff.next_delay()
        return min(delay, self.probe_s) if refused else delay
