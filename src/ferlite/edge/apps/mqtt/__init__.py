"""fer-mqtt: read fer-edge's socket feed and publish it to an MQTT broker, with Home Assistant discovery.

Three threads, one owner each:
  feed    reads the socket with `iterate_messages` (reconnecting with backoff) and turns each frame into
          messages (`Translator`, under a lock) that go into the bounded `Outbox`;
  broker  owns the paho client: connects (with backoff, never giving up; a refusing broker is probed every
          `restart_probe_s`), drains the outbox while connected, and re-sends the retained topics after
          every reconnect and when Home Assistant announces itself on <discovery_prefix>/status;
  main    waits for SIGTERM/SIGINT and ticks the translator (a change held back by `state_interval_s` or
          `attributes_interval_s` is published when the interval ends, the expression becomes none after
          `none_after_s` without a face, the state's heartbeat), even if no frame comes.

The modules, one responsibility each:
  outbox.py     the bounded outbox shared by the two threads
  translate.py  feed messages (frames) -> topics and payloads (Translator)
  threads.py    Worker (a thread that reports its own death) and Reconnects (when to try again)
  broker.py     the broker thread (BrokerLink, the paho client)
  feed.py       the feed thread (FeedReader, the socket reader)
  app.py        the command: flags, the checks at start, run() and the exit status
  config.py     the settings (MqttConfig)
  ha.py         Home Assistant's side: topics, discovery payloads, the calm expression, the throttles

While the broker is away the outbox keeps at most `buffer_summaries` frame summaries and `buffer_events`
events, dropping the oldest of each and counting what it dropped; retained topics keep only their latest
value. Settings, topics and payloads: docs/mqtt.md.
"""

from __future__ import annotations

from .app import EXIT_BAD_CONFIG, EXIT_CRASHED, EXIT_OK, check_limits, main, run
from .broker import BrokerLink
from .feed import FeedReader
from .ha import discovery_messages
from .outbox import Outbox, Outgoing
from .threads import Reconnects, Worker, describe_failure
from .translate import Translator, dominant_label

__all__ = [
    "EXIT_BAD_CONFIG",
    "EXIT_CRASHED",
    "EXIT_OK",
    "BrokerLink",
    "FeedReader",
    "Outbox",
    "Outgoing",
    "Reconnects",
    "Translator",
    "Worker",
    "check_limits",
    "describe_failure",
    "discovery_messages",
    "dominant_label",
    "main",
    "run",
]
