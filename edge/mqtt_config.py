"""fer-mqtt's settings: one frozen dataclass, loaded from TOML, unknown keys refused (like fer-edge's)."""

from __future__ import annotations

import dataclasses
import os
import re
import socket as socket_module
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .config import coerce_value, read_toml
from .errors import MqttConfigError

DEFAULT_SOCKET = "/run/ferlite/feed.sock"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class MqttConfig:
    socket: str = DEFAULT_SOCKET  # the fer-edge feed to read
    host: str = "localhost"  # the MQTT broker
    port: int = 1883  # 8883 is the usual port for TLS
    device_id: str | None = None  # None: this machine's host name (characters outside A-Z a-z 0-9 _ - become _)
    device_name: str | None = None  # Home Assistant's device name; None: "ferlite <device_id>"
    prefix: str = "ferlite"  # topics are <prefix>/<device_id>/...
    discovery: bool = True  # publish Home Assistant discovery configs
    discovery_prefix: str = "homeassistant"
    summary_rate: float = 1.0  # frame summaries per second at most (0: none)
    state_interval_s: float = 1.0  # the retained state is published on change, at most once per interval
    qos: int = 1
    keepalive: int = 30  # seconds
    client_id: str | None = None  # None: "ferlite-<device_id>"
    username: str | None = None
    password_file: str | None = None  # the password, read from this file (never given on the command line)
    tls: bool = False
    ca_file: str | None = None  # with tls: the CA that signed the broker's certificate (None: the system's CAs)
    cert_file: str | None = None  # with tls: a client certificate (PEM), for brokers that require one
    key_file: str | None = None  # its private key, when not inside cert_file
    buffer_summaries: int = 100  # frame summaries kept while the broker is away (oldest dropped first)
    buffer_events: int = 1000  # new/end events kept while the broker is away (oldest dropped first)
    reconnect_initial_s: float = 0.5  # first wait before reconnecting (broker or feed), doubled up to the max
    reconnect_max_s: float = 30.0
    feed_timeout_s: float = 60.0  # no message from the feed for this long: reconnect to it
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        _check(self)

    @property
    def effective_device_id(self) -> str:
        return self.device_id if self.device_id is not None else hostname_id()

    @property
    def effective_client_id(self) -> str:
        return self.client_id if self.client_id is not None else f"ferlite-{self.effective_device_id}"

    @property
    def effective_device_name(self) -> str:
        return self.device_name if self.device_name is not None else f"ferlite {self.effective_device_id}"

    @property
    def base_topic(self) -> str:
        return f"{self.prefix}/{self.effective_device_id}"


def hostname_id() -> str:
    """This machine's host name as a topic-safe id."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", socket_module.gethostname().split(".")[0])[:64]
    return name or "ferlite"


def _check_topic_prefix(name: str, value: str) -> None:
    levels = value.split("/")
    if not value or any(not level for level in levels) or any(c in value for c in "+#\0"):
        raise MqttConfigError(f"{name} must be topic levels separated by '/', without '+', '#' or empty levels, "
                              f"got {value!r}")


def _check(config: MqttConfig) -> None:
    if not config.socket:
        raise MqttConfigError("socket must name the fer-edge feed socket")
    if not config.host:
        raise MqttConfigError("host must name the MQTT broker")
    if not 1 <= config.port <= 65535:
        raise MqttConfigError(f"port must be within 1..65535, got {config.port}")
    if config.device_id is not None and not _ID_RE.match(config.device_id):
        raise MqttConfigError(f"device_id must be 1-64 of A-Z a-z 0-9 _ -, got {config.device_id!r}")
    _check_topic_prefix("prefix", config.prefix)
    _check_topic_prefix("discovery_prefix", config.discovery_prefix)
    if config.summary_rate < 0:
        raise MqttConfigError(f"summary_rate must be 0 (off) or positive, got {config.summary_rate}")
    if config.state_interval_s < 0:
        raise MqttConfigError(f"state_interval_s must not be negative, got {config.state_interval_s}")
    if config.qos not in (0, 1, 2):
        raise MqttConfigError(f"qos must be 0, 1 or 2, got {config.qos}")
    if not 5 <= config.keepalive <= 65535:
        raise MqttConfigError(f"keepalive must be within 5..65535 seconds, got {config.keepalive}")
    if config.client_id is not None and not 1 <= len(config.client_id) <= 128:
        raise MqttConfigError("client_id must be 1-128 characters")
    if config.password_file is not None and config.username is None:
        raise MqttConfigError("password_file needs a username")
    for name in ("ca_file", "cert_file", "key_file"):
        if getattr(config, name) is not None and not config.tls:
            raise MqttConfigError(f"{name} is set but tls is false; set tls = true")
    if config.key_file is not None and config.cert_file is None:
        raise MqttConfigError("key_file needs a cert_file")
    if config.buffer_summaries < 0 or config.buffer_events < 0:
        raise MqttConfigError("buffer_summaries and buffer_events must not be negative")
    if config.reconnect_initial_s <= 0 or config.reconnect_max_s < config.reconnect_initial_s:
        raise MqttConfigError("reconnect_initial_s must be > 0 and <= reconnect_max_s")
    if config.feed_timeout_s <= 0:
        raise MqttConfigError(f"feed_timeout_s must be positive, got {config.feed_timeout_s}")
    if config.log_level.upper() not in _LOG_LEVELS:
        raise MqttConfigError(f"log_level must be one of {', '.join(_LOG_LEVELS)}")


def make_config(values: Mapping[str, Any], where: str = "config") -> MqttConfig:
    """Build a config from a mapping; unknown keys and wrong types are refused."""
    by_name = {f.name: f for f in fields(MqttConfig)}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        hint = " (give the password in password_file)" if "password" in unknown else ""
        raise MqttConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}{hint}")
    try:
        checked = {name: coerce_value(name, value, str(by_name[name].type), MqttConfigError)
                   for name, value in values.items()}
        return MqttConfig(**checked)
    except MqttConfigError as e:
        raise MqttConfigError(f"{where}: {e}") from e


def load_config(path: str | os.PathLike[str] | None, overrides: Mapping[str, Any]) -> MqttConfig:
    """The TOML file (if any) first, then only the settings typed on the command line."""
    values: dict[str, Any] = {}
    if path is not None:
        values = read_toml(path, MqttConfigError)  # the same hardened reader as fer-edge's config
    config = make_config(values, where=str(path) if path else "config")
    try:
        return dataclasses.replace(config, **overrides)
    except MqttConfigError as e:
        raise MqttConfigError(f"command line: {e}") from e


def read_password(config: MqttConfig) -> str | None:
    """The password from password_file: its first line, without the line ending."""
    if config.password_file is None:
        return None
    try:
        with open(config.password_file, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as e:
        raise MqttConfigError(f"password_file {config.password_file}: cannot read ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise MqttConfigError(f"password_file {config.password_file}: not UTF-8 text") from e
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise MqttConfigError(f"password_file {config.password_file}: empty")
    return lines[0]


def check_files(config: MqttConfig) -> None:
    """Fail at start-up, with the file's name, when a TLS file cannot be read."""
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(config, name)
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise MqttConfigError(f"{name} {path}: cannot read ({e.strerror})") from e


def describe(config: MqttConfig) -> str:
    """TOML-ish listing of the effective config, for --check-config."""
    lines = []
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None:
            lines.append(f"# {f.name} = (default)")
        elif isinstance(value, bool):
            lines.append(f"{f.name} = {str(value).lower()}")
        elif isinstance(value, str):
            lines.append(f'{f.name} = "{value}"')
        else:
            lines.append(f"{f.name} = {value}")
    lines.append(f"# topics: {config.base_topic}/...  client id: {config.effective_client_id}")
    return "\n".join(lines)
