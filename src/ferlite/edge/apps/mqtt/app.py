"""fer-mqtt as a command: its flags, the checks at start, and `run` (the two threads, signals, exit status)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ...contract.errors import FeedError
from ...contract.version import VersionAction
from ...runtime.feed import check_socket_path
from .broker import SHUTDOWN_FLUSH_S, BrokerLink
from .config import (
    MqttConfig,
    MqttConfigError,
    check_files,
    describe,
    load_config,
    read_model,
    read_password,
)
from .feed import FeedReader
from .ha import Topics, discovery_messages
from .outbox import Outbox
from .threads import describe_failure
from .translate import Translator

log = logging.getLogger("ferlite.mqtt")

EXIT_OK = 0
EXIT_CRASHED = 1  # a thread died: systemd's Restart=on-failure starts fer-mqtt again
EXIT_BAD_CONFIG = 2  # a bad setting: RestartPreventExitStatus=2, no restart
MAX_MQTT_STRING = 65535  # bytes in a topic, client id, user name or password (a 16-bit length on the wire)
STOP_JOIN_S = 0.2  # on SIGTERM without a broker connection: what the broker thread is given to finish


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-mqtt",
        description="Publish fer-edge's socket feed to an MQTT broker, with Home Assistant discovery. "
        "Settings come from --config (TOML); flags override only what you type. "
        "The password is read from password_file, never from the command line.",
    )
    p.add_argument("--config", dest="config_file", metavar="FILE", help="TOML settings (see systemd/mqtt.toml)")
    p.add_argument("--check-config", action="store_true", help="check the settings, print them, exit")
    p.add_argument("--socket", help="the fer-edge feed socket (default /run/ferlite/feed.sock)")
    p.add_argument("--host", help="MQTT broker host (default localhost)")
    p.add_argument("--port", type=int, help="MQTT broker port (default 1883)")
    p.add_argument("--device-id", help="topic and Home Assistant id of this device (default: host name)")
    p.add_argument("--prefix", help="topic prefix (default ferlite)")
    p.add_argument("--summary-rate", type=float, help="frame summaries per second at most (0: none)")
    p.add_argument("--qos", type=int, help="MQTT QoS 0, 1 or 2 (default 1)")
    p.add_argument("--log-level", help="DEBUG | INFO | WARNING | ERROR")
    p.add_argument("--version", action=VersionAction, prog="fer-mqtt")
    return p


_FLAGS = ("socket", "host", "port", "device_id", "prefix", "summary_rate", "qos", "log_level")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {name: getattr(args, name) for name in _FLAGS if getattr(args, name) is not None}
    try:
        config = load_config(args.config_file, overrides)
        check_files(config)
        check_limits(config, read_password(config))
        read_model(config)
    except MqttConfigError as e:
        print(f"fer-mqtt: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.check_config:
        print(describe(config))
        return 0
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        print("fer-mqtt: paho-mqtt is not installed (pip install 'ferlite[mqtt]')", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return run(config)


def check_limits(config: MqttConfig, password: str | None = None) -> None:
    """MqttConfigError for what MQTT cannot carry: a topic (prefix, discovery_prefix, device_id), client id,
    user name or password that is not UTF-8 or over 65535 bytes (paho would fail at its first connect or
    publish, inside the broker thread), or a feed socket path no Unix socket can have."""
    try:
        check_socket_path(config.socket)
    except FeedError as e:
        raise MqttConfigError(f"socket: {e}") from e
    topics = Topics(config.base_topic)
    strings = {"a topic under prefix": topics.availability, "client_id": config.effective_client_id}
    if config.discovery:
        strings["a discovery topic under discovery_prefix"] = max(discovery_messages(config), key=len)
    if config.username is not None:
        strings["username"] = config.username
    if password is not None:
        strings["the password in password_file"] = password
    for what, text in strings.items():
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise MqttConfigError(f"{what} is not valid UTF-8 (byte {e.object[e.start]!r})") from e
        if size > MAX_MQTT_STRING:
            raise MqttConfigError(f"{what} is {size} bytes long; MQTT carries at most {MAX_MQTT_STRING}")


def run(config: MqttConfig, stop: threading.Event | None = None) -> int:
    """Bridge until `stop` is set (by SIGTERM/SIGINT when run from the command line)."""
    stop = stop if stop is not None else threading.Event()
    outbox = Outbox(config.buffer_summaries, config.buffer_events)
    outbox.on_first_drop = lambda kind: log.warning(
        "broker away or slow: %s buffer full, dropping the oldest (counted; reported on reconnect)",
        "event" if kind == "event" else "frame summary")
    try:
        translator = Translator(config, outbox, model=read_model(config))
        reader = FeedReader(config, translator, stop)
        link = BrokerLink(config, outbox, stop, lambda: translator.feed_up, lambda: reader.bad_messages)
    except MqttConfigError as e:
        print(f"fer-mqtt: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: publishing offline and stopping", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    link.start()
    reader.start()
    status = EXIT_OK
    while not stop.wait(0.1):
        failed = _failed(link, reader, translator)
        if failed is not None:
            log.critical("fer-mqtt cannot go on without its %s; exiting with status %d (systemd restarts it)",
                         failed, EXIT_CRASHED)
            status = EXIT_CRASHED
            stop.set()
    # Connected: the broker thread says offline and flushes (at most SHUTDOWN_FLUSH_S). Not connected (the
    # broker down, silent, or a TCP/TLS connect under way): nothing to say, the process does not wait for it.
    link.join(timeout=SHUTDOWN_FLUSH_S + 0.5 if link.connected.is_set() else STOP_JOIN_S)
    log.info("stopped: %d messages published, %d frames read, %d feed messages skipped; dropped %d frame "
             "summaries, %d events", link.published, translator.frames, reader.bad_messages,
             outbox.dropped_summaries, outbox.dropped_events)
    return status


def _failed(link: BrokerLink, reader: FeedReader, translator: Translator) -> str | None:
    """Which part is gone (a thread that died, or the state tick failing); None while all are working."""
    for thread in (link, reader):
        if not thread.is_alive():
            return f"{thread.name} thread ({thread.failure or 'ended'})"
    try:
        with translator.lock:
            translator.tick()
    except Exception as e:  # noqa: BLE001 - said in one line, and the process ends
        return f"state timer ({describe_failure(e)})"
    return None
