"""fer-mqtt's settings: one frozen dataclass, its rules on its fields (see settings.py), loaded from TOML
with unknown keys refused, like fer-edge's; the password and TLS files read through the same hardened reader."""

from __future__ import annotations

import json
import logging
import os
import re
import socket as socket_module
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ...contract import settings
from ...contract.errors import MqttConfigError
from ...contract.settings import LOG_LEVELS, setting
from ...runtime.feed import MAX_PATH_BYTES

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/run/ferlite/feed.sock"
MAX_PASSWORD_BYTES = 64 * 1024  # an MQTT password is at most 65,535 bytes
MAX_TOPIC_PREFIX = 200  # characters; a whole topic must stay far below MQTT's 65,535 bytes
_NO_CONTROL = r"[^\x00-\x1f\x7f]"
# Topic levels separated by '/': no wildcard, no empty level, not starting with '$' (the broker's own topics,
# such as $SYS: a broker drops what a client publishes there).
_TOPIC_PREFIX = rf"(?=.{{1,{MAX_TOPIC_PREFIX}}}\Z)(?!\$)[^/+#\x00-\x1f\x7f]+(?:/[^/+#\x00-\x1f\x7f]+)*"
_TOPIC_PREFIX_SAYS = (f"topic levels separated by '/', without '+', '#', control characters or empty levels, not "
                      f"starting with '$', at most {MAX_TOPIC_PREFIX} characters")
# Home Assistant entities by object id (ha.py gives each its component); `disabled_entities` names them.
HA_ENTITIES = ("expression", "faces", "someone", "face")
MAX_SPEC_BYTES = 1 << 20  # a model spec is a few KB


@dataclass(frozen=True)
class MqttConfig(settings.Settings):
    error: ClassVar[type[MqttConfigError]] = MqttConfigError
    key_hints: ClassVar[Mapping[str, str]] = {"password": " (give the password in password_file)"}

    socket: str = setting(DEFAULT_SOCKET, "the fer-edge feed to read", non_empty=True, max_bytes=MAX_PATH_BYTES)
    host: str = setting("localhost", "the MQTT broker", pattern=r"[^\x00-\x20\x7f/\\@#?]{1,253}",
                        says="a host name or address (1-253 characters, no spaces, control characters, / \\ @ # ?)")
    port: int = setting(1883, "the broker's port (8883 is the usual port for TLS)", low=1, high=65535)
    device_id: str | None = setting(None, "topic and Home Assistant id (default: this machine's host name, "
                                    "characters outside A-Z a-z 0-9 _ - as _)", pattern=r"[A-Za-z0-9_-]{1,64}",
                                    says="1-64 of A-Z a-z 0-9 _ -")
    device_name: str | None = setting(None, "Home Assistant's device name (default: ferlite <device_id>)",
                                      pattern=f"{_NO_CONTROL}{{1,128}}", says="1-128 characters, no control characters")
    prefix: str = setting("ferlite", "topics are <prefix>/<device_id>/...", pattern=_TOPIC_PREFIX,
                          says=_TOPIC_PREFIX_SAYS)
    discovery: bool = setting(True, "publish Home Assistant discovery configs")
    discovery_prefix: str = setting("homeassistant", "Home Assistant's discovery prefix", pattern=_TOPIC_PREFIX,
                                    says=_TOPIC_PREFIX_SAYS)
    summary_rate: float = setting(1.0, "frame summaries per second at most (0: none)", low=0.0, high=1000.0)
    state_interval_s: float = setting(1.0, "the retained state is published on change, at most once per interval",
                                      low=0.0, high=86400.0)
    hold_s: float = setting(2.0, "a new dominant expression must lead for this long before the state changes",
                            low=0.0, high=3600.0)
    hold_margin: float = setting(0.1, "how far a new dominant expression must lead: its mean score over the "
                                 "faces in view minus the current one's",
                                 low=0.0, high=1.0)
    none_after_s: float = setting(5.0, "no face seen for this long: the expression is none and nobody is in view",
                                  low=0.0, high=3600.0)
    heartbeat_s: float = setting(60.0, "the state is published again this often without a change; Home Assistant "
                                 "marks its sensors unavailable after 3 heartbeats without one", low=1.0, high=3600.0)
    attributes_interval_s: float = setting(5.0, "the Expression sensor's attributes (scores, faces, tracks, model) "
                                           "on change, at most once per interval", low=0.1, high=3600.0)
    disabled_entities: tuple[str, ...] = setting((), "Home Assistant entities not to create (removed if they exist): "
                                                 + ", ".join(HA_ENTITIES), pattern="|".join(HA_ENTITIES),
                                                 says="one of " + ", ".join(HA_ENTITIES))
    model_spec: str | None = setting(None, "the spec (<model>.spec.json) of the model fer-edge runs: its name and "
                                     "sha256 go to the attributes", reads=True)
    qos: int = setting(1, "MQTT quality of service", choices=(0, 1, 2))
    keepalive: int = setting(30, "seconds between pings while idle", low=5, high=65535)
    client_id: str | None = setting(None, "MQTT client id (default: ferlite-<device_id>)",
                                    pattern=f"{_NO_CONTROL}{{1,128}}", says="1-128 characters, no control characters")
    username: str | None = setting(None, "broker user name", pattern=f"{_NO_CONTROL}{{1,256}}",
                                   says="1-256 characters, no control characters")
    password_file: str | None = setting(None, "the password is this file's first line (never given on the "
                                        "command line)", reads=True)
    tls: bool = setting(False, "connect with TLS")
    ca_file: str | None = setting(None, "with tls: the CA that signed the broker's certificate (default: the "
                                  "system's CAs)", reads=True)
    cert_file: str | None = setting(None, "with tls: a client certificate (PEM), for brokers that require one",
                                    reads=True)
    key_file: str | None = setting(None, "its private key, when not inside cert_file", reads=True)
    buffer_summaries: int = setting(100, "frame summaries kept while the broker is away (oldest dropped first)",
                                    low=0, high=1_000_000)
    buffer_events: int = setting(1000, "new/end events kept while the broker is away (oldest dropped first)",
                                 low=0, high=1_000_000)
    reconnect_initial_s: float = setting(0.5, "first wait before reconnecting (broker or feed), doubled up to the "
                                         "max", low=0.01, high=3600.0)
    reconnect_max_s: float = setting(30.0, "longest wait before reconnecting", low=0.01, high=3600.0)
    restart_probe_s: float = setting(1.0, "while the broker's port or the feed socket refuses connections (restarting"
                                     "), try again at least this often", low=0.05, high=3600.0)
    feed_timeout_s: float = setting(60.0, "no message from the feed for this long: reconnect to it",
                                    low=0.1, high=86400.0)
    log_level: str = setting("INFO", "how much is logged on stderr", choices=LOG_LEVELS, fold_case=True)

    def check_relations(self) -> None:
        if self.password_file is not None and self.username is None:
            raise MqttConfigError("password_file needs a username")
        for name in ("ca_file", "cert_file", "key_file"):
            if getattr(self, name) is not None and not self.tls:
                raise MqttConfigError(f"{name} is set but tls is false; set tls = true")
        if self.key_file is not None and self.cert_file is None:
            raise MqttConfigError("key_file needs a cert_file")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise MqttConfigError("reconnect_initial_s must be <= reconnect_max_s")

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


def make_config(values: Mapping[str, Any], where: str = "config") -> MqttConfig:
    """Build a config from a mapping; unknown keys and wrong types are refused."""
    return settings.make(MqttConfig, values, where)


def load_config(path: str | os.PathLike[str] | None, overrides: Mapping[str, Any]) -> MqttConfig:
    """The TOML file (if any) first, then only the settings typed on the command line."""
    return settings.load(MqttConfig, path, overrides)


def read_password(config: MqttConfig) -> str | None:
    """The password from password_file: its first line, without the line ending."""
    if config.password_file is None:
        return None
    text, _ = _password_file(config.password_file)
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise MqttConfigError(f"password_file {config.password_file}: empty")
    return lines[0]


def _password_file(path: str) -> tuple[str, os.stat_result]:
    """The password file's text and stat, through the one hardened reader."""
    label = f"password_file {path}"
    data, info = settings.read_file(path, MqttConfigError, label, "", MAX_PASSWORD_BYTES)
    try:
        return data.decode("utf-8"), info
    except UnicodeDecodeError as e:
        raise MqttConfigError(f"{label}: not UTF-8 text") from e


def read_model(config: MqttConfig) -> dict[str, str] | None:
    """The model named by model_spec: its name (the file name without .spec.json) and version (the first 12
    hex digits of its sha256, and its quantization); None without model_spec. MqttConfigError when the file
    is not a spec."""
    if config.model_spec is None:
        return None
    label = f"model_spec {config.model_spec}"
    data, _ = settings.read_file(config.model_spec, MqttConfigError, label, "", MAX_SPEC_BYTES)
    try:
        spec = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise MqttConfigError(f"{label}: not a JSON model spec ({str(e)[:80]})") from e
    sha256 = spec.get("sha256") if isinstance(spec, dict) else None
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise MqttConfigError(f"{label}: not a model spec (no sha256 of 64 hex digits)")
    name = os.path.basename(config.model_spec).removesuffix(".json").removesuffix(".spec")
    quantization = spec.get("quantization")
    version = sha256[:12] + (f" {quantization}" if isinstance(quantization, str) and len(quantization) <= 16 else "")
    return {"name": name[:64], "version": version}


def check_files(config: MqttConfig) -> None:
    """Fail at start-up, with the setting and the file's name, when a file the config names cannot be read
    (a FIFO or device is refused, not waited on); warn when others than its owner may read the password."""
    settings.check_files(config)
    if config.password_file is not None:
        _, info = _password_file(config.password_file)
        if info.st_mode & 0o077:
            log.warning("fer-mqtt: warning: password_file %s can be read by others than its owner (mode %o); "
                        "chmod 600 it", config.password_file, info.st_mode & 0o777)


def describe(config: MqttConfig) -> str:
    """The effective config as TOML, for --check-config, and the topics and client id it gives."""
    return (settings.describe(config)
            + f"\n# topics: {config.base_topic}/...  client id: {config.effective_client_id}")
