"""fer-mqtt's broker thread: owns the paho client, connects with backoff (never giving up; a refusing broker
is probed every `restart_probe_s`), drains the outbox while connected, and re-sends the retained topics after
every reconnect and when Home Assistant announces itself on <discovery_prefix>/status."""

from __future__ import annotations

import logging
import math
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import MqttConfig, MqttConfigError, read_password
from .ha import Topics, dumps, status_topic
from .outbox import Outbox
from .threads import Reconnects, Worker

log = logging.getLogger("ferlite.mqtt")

STATS_EVERY_S = 60.0  # the retained bridge topic is refreshed this often (and on every change of link)
LOOP_TIMEOUT_S = 0.05  # the broker thread's longest wait between draining the outbox
CONNECT_TIMEOUT_S = 5.0  # TCP (and TLS) connect to the broker
CONNACK_TIMEOUT_S = 5.0  # from the TCP connection to the broker's CONNACK (brokers answer in milliseconds)
SHUTDOWN_FLUSH_S = 2.0  # on SIGTERM: time allowed to deliver what is buffered before disconnecting


class BrokerLink(Worker):
    """Owns the paho client: connect with backoff forever, drain the outbox while connected."""

    def __init__(self, config: MqttConfig, outbox: Outbox, stop: threading.Event, feed_up: Callable[[], bool],
                 skipped: Callable[[], int] = lambda: 0) -> None:
        super().__init__("broker")
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.config = config
        self.outbox = outbox
        self.stop = stop
        self.feed_up = feed_up
        self.skipped = skipped
        self.topics = Topics(config.base_topic)
        self.published = 0
        self.connects = 0
        self.refusals = 0
        self.connected = threading.Event()
        self._connack_ok = False
        self._down_since: float | None = time.monotonic()
        self._dropped_at_down = (0, 0)
        self._stats_due = 0.0
        self._stats_feed: bool | None = None  # the feed as the bridge topic last said it
        self._attempts = 0  # failed connection attempts since the last connection
        self._last_error: str | None = None
        self._logged_at = -math.inf
        self._status_topic = status_topic(config) if config.discovery else None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.effective_client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.max_inflight_messages_set(20)
        client.max_queued_messages_set(200)
        client.will_set(self.topics.availability, "offline", qos=config.qos, retain=True)
        if config.username is not None:
            client.username_pw_set(config.username, read_password(config))
        if config.tls:
            try:
                client.tls_set(ca_certs=config.ca_file, certfile=config.cert_file, keyfile=config.key_file,
                               cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
                raise MqttConfigError(f"tls: cannot use ca_file/cert_file/key_file ({e})") from e
        self.client = client

    # callbacks (run in this thread, inside client.loop)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.refusals += 1
            hint = " (check username and password_file)" if "authori" in str(reason).lower() or \
                "password" in str(reason).lower() else ""
            log.error("broker %s:%d refused the connection: %s%s; retrying", self.config.host, self.config.port,
                      reason, hint)
            return
        self._connack_ok = True
        self.connects += 1
        summaries, events = self.outbox.sizes()
        dropped = (self.outbox.dropped_summaries - self._dropped_at_down[0],
                   self.outbox.dropped_events - self._dropped_at_down[1])
        if self.connects == 1:
            log.info("connected to broker %s:%d as %s; topics under %s/", self.config.host, self.config.port,
                     self.config.effective_client_id, self.config.base_topic)
        else:
            outage = time.monotonic() - self._down_since if self._down_since is not None else 0.0
            log.warning("reconnected to broker %s:%d after %.1f s; sending %d buffered events and %d frame "
                        "summaries; dropped while away: %d frame summaries, %d events (totals %d, %d)",
                        self.config.host, self.config.port, outage, events, summaries, dropped[0], dropped[1],
                        self.outbox.dropped_summaries, self.outbox.dropped_events)
        self._down_since = None
        self.connected.set()
        self.outbox.resync()
        self._put_stats()
        if self._status_topic is not None:
            client.subscribe(self._status_topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        """Home Assistant announces `online` on <discovery_prefix>/status when it starts: it is sent every
        config (and the retained topics) again. A retained copy, replayed on subscribing, is no restart."""
        if message.topic == self._status_topic and message.payload == b"online" and not message.retain:
            log.info("Home Assistant is online (%s): sending discovery and the retained topics again",
                     message.topic)
            self.outbox.resync()

    def _put_stats(self) -> None:
        """The retained bridge topic: on every connect, when the feed comes or goes, and every STATS_EVERY_S."""
        self._stats_due = time.monotonic() + STATS_EVERY_S
        self._stats_feed = self.feed_up()
        stats = {"connects": self.connects, "published": self.published, "feed": "up" if self._stats_feed else "down",
                 "dropped_summaries": self.outbox.dropped_summaries, "dropped_events": self.outbox.dropped_events,
                 "skipped_messages": self.skipped(), "ts": round(time.time(), 3)}
        self.outbox.put_retained(self.topics.bridge, dumps(stats))

    # the thread
    def work(self) -> None:
        backoff = Reconnects(self.config)
        while not self.stop.is_set():
            refused = False
            try:
                self.client.connect(self.config.host, self.config.port, self.config.keepalive)
            except (OSError, ValueError) as e:  # refused, unreachable, DNS, TLS (ssl.SSLError), timeout
                error: str | None = f"unreachable ({str(e) or type(e).__name__})"
                refused = isinstance(e, ConnectionRefusedError)
            else:
                error = self._serve()
            if self.stop.is_set():
                break
            if self._connack_ok:
                backoff.reset()
                self._lost(backoff.wait(False))
            elif error is not None:
                wait = backoff.wait(refused)
                self._log_failure(error, wait)
                self.stop.wait(wait)
            else:
                self.stop.wait(backoff.wait(False))
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass

    def _lost(self, wait: float) -> None:
        """An established connection dropped: buffer from now on, and reconnect after `wait`."""
        self._connack_ok = False
        self._attempts = 0
        self._last_error = None
        self.connected.clear()
        self._down_since = time.monotonic()
        self._dropped_at_down = (self.outbox.dropped_summaries, self.outbox.dropped_events)
        log.warning("lost the broker %s:%d; buffering (at most %d frame summaries, %d events) and reconnecting in "
                    "%.1f s", self.config.host, self.config.port, self.outbox.max_summaries, self.outbox.max_events,
                    wait)
        self.stop.wait(wait)

    def _log_failure(self, error: str, wait: float) -> None:
        """A failed attempt: a warning when the reason is new, then at most one line per reconnect_max_s (the
        rest at DEBUG: a restarting broker is probed every restart_probe_s)."""
        self._attempts += 1
        now = time.monotonic()
        if error != self._last_error:
            level = logging.WARNING
        elif now - self._logged_at >= self.config.reconnect_max_s:
            level = logging.INFO
        else:
            level = logging.DEBUG
        if level > logging.DEBUG:
            self._logged_at = now
        log.log(level, "broker %s:%d %s; retrying in %.1f s (attempt %d)", self.config.host, self.config.port,
                error, wait, self._attempts)
        self._last_error = error

    def _serve(self) -> str | None:
        """Run the connection until it drops; on stop, say offline and flush briefly, then disconnect.

        Returns why the broker did not accept the connection (None when it did, when the refusal was
        already logged, or on stop). A broker that takes the TCP connection but sends no CONNACK within
        CONNACK_TIMEOUT_S (not an MQTT broker, or one that hangs) is left, and tried again later."""
        mqtt = self.mqtt
        connack_due = time.monotonic() + CONNACK_TIMEOUT_S
        while True:
            rc = self.client.loop(timeout=LOOP_TIMEOUT_S)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                if rc != mqtt.MQTT_ERR_CONN_REFUSED and not self._connack_ok:
                    return f"closed the connection before accepting it ({mqtt.error_string(rc)})"
                return None
            if not self._connack_ok:
                if self.stop.is_set():
                    return None
                if time.monotonic() >= connack_due:
                    self.client.disconnect()
                    return (f"took the TCP connection but sent no MQTT reply (CONNACK) in {CONNACK_TIMEOUT_S:g} s: "
                            "not an MQTT broker at that port, or a broker that hangs")
                continue
            if time.monotonic() >= self._stats_due or self.feed_up() != self._stats_feed:
                self._put_stats()
            self._drain()
            if self.stop.is_set():
                self._say_goodbye()
                return None

    def _drain(self) -> None:
        while True:
            item = self.outbox.pop()
            if item is None:
                return
            info = self.client.publish(item.topic, item.payload, qos=self.config.qos, retain=item.retain)
            if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
                self.outbox.unpop(item)  # the client's queue is full or the link just dropped: later
                return
            self.published += 1

    def _say_goodbye(self) -> None:
        self.outbox.put_retained(self.topics.availability, "offline")
        self._put_stats()
        deadline = time.monotonic() + SHUTDOWN_FLUSH_S
        while time.monotonic() < deadline:
            self._drain()
            if self.outbox.empty() and not self.client.want_write() and self._unacked() == 0:
                break
            if self.client.loop(timeout=LOOP_TIMEOUT_S) != self.mqtt.MQTT_ERR_SUCCESS:
                return
        self.client.disconnect()
        self.client.loop(timeout=LOOP_TIMEOUT_S)

    def _unacked(self) -> int:
        return len(getattr(self.client, "_out_messages", {}))
