"""One settings kernel (ferlite.edge.contract.settings) for fer-edge, fer-mqtt and fer-train: every setting of
every config is checked the same way, so a fault planted in any of them is refused, naming it, in one line.

The parametrised tests enumerate the configs' fields: a setting added later is covered without editing them."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
from helpers import needs_training

from ferlite.edge.apps.mqtt import config as mqtt_config
from ferlite.edge.apps.mqtt.config import MqttConfig
from ferlite.edge.contract import settings as kernel
from ferlite.edge.contract.errors import ConfigError, MqttConfigError
from ferlite.edge.runtime import config as edge_config
from ferlite.edge.runtime.config import EdgeConfig
from ferlite.train import config as train_config
from ferlite.train.config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

LOADERS = {EdgeConfig: edge_config.load_config, MqttConfig: mqtt_config.load_config,
           TrainConfig: train_config.load_config}
COMMANDS = {EdgeConfig: "ferlite.edge.apps.cli", MqttConfig: "ferlite.edge.apps.mqtt", TrainConfig: "ferlite.train.cli"}
PROGS = {EdgeConfig: "fer-edge", MqttConfig: "fer-mqtt", TrainConfig: "fer-train"}


def _settings(kind: type) -> list[tuple[type, str]]:
    """(config, setting) for every setting of every config whose type (None aside) is `kind`."""
    found = []
    for cls in LOADERS:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            hint = hints[field.name]
            if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None, Optional[X]
                hint = next(a for a in typing.get_args(hint) if a is not type(None))
            if hint is kind or (kind is tuple and typing.get_origin(hint) is tuple):
                found.append((cls, field.name))
    return found


def _ids(case: tuple[type, str]) -> str:
    return f"{case[0].__name__}.{case[1]}"


def _toml(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


NUMBERS = _settings(float) + _settings(int)
TEXTS = _settings(str) + _settings(Path)
LISTS = [(cls, name) for cls, name in _settings(tuple) if "str" in str(typing.get_type_hints(cls)[name])]


def test_the_parametrisation_sees_every_kind_of_setting():
    names = {name for _, name in NUMBERS}
    assert {"summary_rate", "feed_timeout_s", "scale_factor", "learning_rate", "threads", "port"} <= names
    assert {"host", "client_id", "source", "socket", "out", "test_subjects"} <= {name for _, name in TEXTS}
    assert {"data", "repeat"} <= {name for _, name in LISTS}


# --- planted faults: NaN, infinity, NUL, unknown keys -------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("case", NUMBERS, ids=_ids)
def test_a_non_finite_number_in_any_numeric_setting_is_refused_naming_it(tmp_path, case, value):
    cls, name = case
    path = _toml(tmp_path, f"{name} = {value}\n")
    with pytest.raises(ConfigError, match=name) as info:
        LOADERS[cls](path, {})
    assert "cfg.toml" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("case", [c for c in NUMBERS if typing.get_type_hints(c[0])[c[1]] in (float, float | None)],
                         ids=_ids)
def test_a_nan_typed_on_the_command_line_is_refused_too(case):
    cls, name = case
    with pytest.raises(ConfigError, match=f"command line: {name}"):
        LOADERS[cls](None, {name: math.nan})


@pytest.mark.parametrize("case", TEXTS + LISTS, ids=_ids)
def test_a_nul_in_any_string_or_path_setting_is_refused_naming_it(tmp_path, case):
    """A NUL reaches os.stat, socket.bind or a C library later as a traceback or a truncated name."""
    cls, name = case
    path = _toml(tmp_path, f'{name} = "a\\u0000b"\n')
    with pytest.raises(ConfigError, match=name) as info:
        LOADERS[cls](path, {})
    assert "NUL" in str(info.value) and "cfg.toml" in str(info.value)


@pytest.mark.parametrize("cls", list(LOADERS), ids=lambda c: c.__name__)
def test_unknown_keys_are_refused_in_one_short_line_by_every_config(tmp_path, cls):
    path = _toml(tmp_path, "".join(f"key_{i} = 1\n" for i in range(2000)))
    with pytest.raises(ConfigError) as info:
        LOADERS[cls](path, {})
    message = str(info.value)
    assert len(message) < 400 and "and 1990 more" in message and "cfg.toml" in message, message[:500]


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"reconnect_initial_s": 1e-300}, "reconnect_initial_s"),  # a busy loop with the broker down
        ({"reconnect_max_s": 1e300}, "reconnect_max_s"),
        ({"feed_timeout_s": 1e10}, "feed_timeout_s"),  # Event.wait(1e10): OverflowError in a thread
        ({"device_id": "kitchen\n"}, "device_id"),  # `$` matched before the newline
        ({"client_id": "a\u0000b"}, "client_id"),
        ({"client_id": "a\nb"}, "client_id"),
        ({"host": "127.0.0.1\u0000evil"}, "host"),  # connected to 127.0.0.1
        ({"host": "broker lan"}, "host"),
        ({"prefix": "$SYS"}, "prefix"),  # the broker drops what a client publishes there
        ({"discovery_prefix": "$share/x"}, "discovery_prefix"),
        ({"prefix": "p" * 70_000}, "prefix"),  # struct.error in the broker thread
        ({"prefix": "a\nb"}, "prefix"),
        ({"username": "u\u0000"}, "username"),
        ({"device_name": "Kitchen\r\nX"}, "device_name"),
        ({"socket": "/tmp/" + "s" * 200}, "socket"),  # longer than a Unix socket path can be
    ],
)
def test_mqtt_values_that_would_break_the_bridge_are_refused(values, setting):
    with pytest.raises(MqttConfigError, match=f"where: {setting} must"):
        mqtt_config.make_config(values, where="where")


def test_every_construction_is_checked_not_only_the_toml():
    with pytest.raises(ConfigError, match="threads must be int"):
        EdgeConfig(threads="2")  # type: ignore[arg-type]
    with pytest.raises(MqttConfigError, match="summary_rate must be a finite number"):
        MqttConfig(summary_rate=math.nan)
    with pytest.raises(ConfigError, match="width must be a finite number"):
        dataclasses.replace(TrainConfig(), width=math.inf)


# --- files: one hardened reader -----------------------------------------------------------------------------


def _run(cls: type, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", COMMANDS[cls], *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def _refused(out: subprocess.CompletedProcess[str], cls: type, *says: str) -> str:
    """Exit 2, no traceback, and one line from the command saying each of `says`."""
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith(f"{PROGS[cls]}: ")]
    assert lines and all(s in lines[-1] for s in says), out.stderr[-2000:]
    return lines[-1]


# What each command needs besides the file, so that the file is what it stops on.
_BASE: dict[type, dict[str, Any]] = {EdgeConfig: {}, MqttConfig: {"username": "u", "tls": True, "cert_file": "{cert}"},
                                     TrainConfig: {}}
_ARGS = {EdgeConfig: ["--check-config"], MqttConfig: ["--check-config"], TrainConfig: ["--out", "{run}"]}
FILES = [(cls, name) for cls in LOADERS for name in kernel.file_settings(cls)]


def _needs(cls: type) -> list[pytest.MarkDecorator]:
    return [needs_training] if cls is TrainConfig else []


@pytest.mark.parametrize("case", [pytest.param(c, id=_ids(c), marks=_needs(c[0])) for c in FILES]
                         + [pytest.param((cls, "--config"), id=f"{cls.__name__}.--config", marks=_needs(cls))
                            for cls in LOADERS])
def test_a_fifo_as_any_file_a_config_names_is_refused_without_hanging(tmp_path, case):
    """A FIFO with no writer blocks open() and read() forever: refused at start, even by --check-config."""
    cls, name = case
    fifo = tmp_path / "named.pipe"
    os.mkfifo(fifo)
    cert = _toml(tmp_path, "not checked here\n", "cert.pem")
    args = [a.format(run=tmp_path / "run") for a in _ARGS[cls]]
    if name == "--config":
        config = fifo
    else:
        values = {**_BASE[cls], name: str(fifo)}
        text = "".join(f"{key} = {kernel.toml_value(value)}\n" for key, value in values.items())
        config = _toml(tmp_path, text.format(cert=cert))
    line = _refused(_run(cls, "--config", str(config), *args, timeout=60), cls, str(fifo))
    if name != "--config":
        assert name in line or cls is EdgeConfig, line  # fer-edge's model loader names the file only


def test_the_files_configs_name_are_known_to_the_kernel():
    assert set(FILES) >= {(MqttConfig, "password_file"), (MqttConfig, "ca_file"), (MqttConfig, "cert_file"),
                          (MqttConfig, "key_file"), (EdgeConfig, "model"), (TrainConfig, "test_subjects"),
                          (TrainConfig, "init"), (TrainConfig, "from_pack")}


@pytest.mark.parametrize("cls", [pytest.param(c, id=c.__name__, marks=_needs(c)) for c in LOADERS]
                         + [pytest.param(None, id="fer-preview")])
def test_config_that_is_a_directory_exits_2_with_one_line(tmp_path, cls):
    if cls is None:
        out = subprocess.run([sys.executable, "-m", "ferlite.edge.apps.preview", "--config", str(tmp_path)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert out.stderr.startswith("fer-preview: ") and "directory" in out.stderr
        return
    args = [a.format(run=tmp_path / "run") for a in _ARGS[cls]]
    _refused(_run(cls, "--config", str(tmp_path), *args), cls, str(tmp_path), "directory")


def test_password_file_that_is_a_device_is_refused_not_read_until_memory_runs_out(tmp_path):
    config = _toml(tmp_path, 'username = "u"\npassword_file = "/dev/zero"\n')
    _refused(_run(MqttConfig, "--config", str(config), "--check-config", timeout=30), MqttConfig,
             "password_file /dev/zero", "regular file")


def test_password_file_readable_by_others_is_warned_about(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    config = _toml(tmp_path, f'username = "u"\npassword_file = "{secret}"\n')
    secret.chmod(0o640)
    out = _run(MqttConfig, "--config", str(config), "--check-config", timeout=30)
    assert out.returncode == 0, out.stderr
    assert "password_file" in out.stderr and "chmod 600" in out.stderr and "hunter2" not in out.stderr + out.stdout
    secret.chmod(0o600)
    out = _run(MqttConfig, "--config", str(config), "--check-config", timeout=30)
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_password_file_too_big_is_refused(tmp_path):
    secret = tmp_path / "pw"
    secret.write_bytes(b"x" * (mqtt_config.MAX_PASSWORD_BYTES + 1))
    secret.chmod(0o600)
    config = MqttConfig(username="u", password_file=str(secret))
    with pytest.raises(MqttConfigError, match=f"password_file {secret}: .*more than"):
        mqtt_config.read_password(config)


# --- the kernel itself --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tiny(kernel.Settings):
    old: Optional[int] = kernel.setting(None, "an Optional[int]", low=1, high=5)  # noqa: UP045
    new: int | None = kernel.setting(None, "an int | None", low=1, high=5)
    share: float = kernel.setting(0.5, "a fraction", low=0.0, high=1.0)
    names: tuple[str, ...] = kernel.setting((), "a list", adds=True)


@pytest.mark.parametrize("name", ["old", "new"])
def test_optional_types_are_read_from_the_type_hints_not_the_annotation_text(name):
    assert getattr(kernel.make(Tiny, {name: 3}), name) == 3
    assert getattr(kernel.make(Tiny, {}), name) is None
    with pytest.raises(ConfigError, match=f"x: {name} must be int, got 'a'"):
        kernel.make(Tiny, {name: "a"}, "x")
    with pytest.raises(ConfigError, match=f"{name} must be at most 5"):
        kernel.make(Tiny, {name: 6})


def test_ranges_are_inclusive_and_ints_count_as_floats():
    assert kernel.make(Tiny, {"share": 1}).share == 1.0
    assert Tiny(share=0).share == 0
    with pytest.raises(ConfigError, match=r"share must be at least 0.0 \(within 0.0..1.0\), got -0.1"):
        Tiny(share=-0.1)
    with pytest.raises(ConfigError, match="share must be float, got True"):
        Tiny(share=True)  # a bool is not a number


def test_list_settings_typed_on_the_command_line_add_to_the_files(tmp_path):
    config = kernel.load(Tiny, _toml(tmp_path, 'names = ["a"]\nshare = 0.2\n'), {"names": ["b"], "new": 2})
    assert (config.names, config.share, config.new) == (("a", "b"), 0.2, 2)


@pytest.mark.parametrize("cls", list(LOADERS), ids=lambda c: c.__name__)
def test_every_setting_says_in_one_line_what_it_is(cls):
    for field in dataclasses.fields(cls):
        doc = kernel.rule_of(field).doc
        assert doc and "\n" not in doc, f"{cls.__name__}.{field.name} has no one-line doc"


@pytest.mark.parametrize("case", NUMBERS, ids=_ids)
def test_every_numeric_setting_has_bounds(case):
    """No number reaches a sleep, a deque or a C int unbounded: a range, a set of choices or its own check."""
    cls, name = case
    rule = kernel.rule_of(next(f for f in dataclasses.fields(cls) if f.name == name))
    assert (rule.low is not None and rule.high is not None) or rule.choices or rule.check, name


def _round_trip(config: Any) -> Any:
    text = kernel.describe(config)
    values = tomllib.loads(text)
    return kernel.make(type(config), values)


def test_describe_prints_toml_that_loads_back_to_the_same_config():
    edge = EdgeConfig(source='C:\\cams\\"front" 1', socket="/tmp/f.sock", socket_mode=0o640, threads=2,
                      margin=0.25, fps_limit=12.5, annotate="out é.mp4")
    assert _round_trip(edge) == edge
    mqtt = MqttConfig(device_name='Kitchen "A" \\ B', prefix="home/ferlite", qos=0, summary_rate=0.5)
    assert _round_trip(mqtt) == mqtt
    train = TrainConfig(data=("crops:a=/x", 'folder="b"'), filters=(4, 4, 8, 8, 8), out=Path("runs/a b"),
                        learning_rate=1e-5, seed=7)
    assert _round_trip(train) == train
    assert "# threads = " not in kernel.describe(edge) and "# model = (default)" in kernel.describe(edge)


def test_describe_prints_grouped_tables_that_load_back_from_a_file(tmp_path):
    """Issue 23: --check-config prints the grouped form; read back as a file it is the same config, and
    the grouped settings sit in their tables, not at the top."""
    edge = EdgeConfig(source="demo", threads=2, min_size=64, max_faces=3, socket="/tmp/f.sock", socket_mode=0o640,
                      frame_width=320, track_margin=0.5, fps_limit=12.5)
    text = kernel.describe(edge)
    values = tomllib.loads(text)
    assert {"input", "detect", "track", "feed"} <= set(values)
    assert values["detect"]["min_size"] == 64 and values["track"]["max_faces"] == 3
    assert values["feed"]["socket_mode"] == "640" and values["input"]["frame_width"] == 320
    assert "min_size" not in values and values["threads"] == 2
    assert kernel.load(EdgeConfig, _toml(tmp_path, text), {}) == edge
    # Groups are per field: fer-mqtt and fer-train declare none, and describe them flat as before.
    for config in (MqttConfig(), TrainConfig()):
        assert not any(isinstance(v, dict) for v in tomllib.loads(kernel.describe(config)).values())


def test_a_group_named_like_a_setting_is_refused_when_declared():
    @dataclasses.dataclass(frozen=True)
    class Clash(kernel.Settings):
        source: str = kernel.setting("a", "x")
        width: int = kernel.setting(1, "x", low=1, high=2, group="source")

    with pytest.raises(TypeError, match="source"):
        kernel.make(Clash, {})
