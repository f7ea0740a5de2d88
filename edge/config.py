"""Runtime configuration: one frozen dataclass, loaded from TOML, unknown keys rejected."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .contract import DEFAULT_MARGIN


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type, or out of range."""


@dataclass(frozen=True)
class EdgeConfig:
    source: str = "auto"
    model: str | None = None  # None: the model shipped inside the package
    threads: int | None = None  # None: all cores
    max_frames: int | None = None
    loop: bool = False
    whole_frame: bool = False
    socket: str | None = None
    socket_mode: int = 0o660
    socket_buffer: int = 256 * 1024  # bytes queued per reader before it is dropped
    stdout: bool = True
    log_level: str = "INFO"
    frame_width: int = 640  # camera sources only
    frame_height: int = 480
    fps_limit: float | None = None  # image/video sources: pace to this rate (None: as fast as possible)
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 48  # pixels of the frame the user gave (Haar sees 24 px at best on the detect frame)
    # Detect on the frame scaled to this width (0: as given). Shrinking pays only when min_size >= ~96:
    # below twice the cascade's 24 px window OpenCV steps 2 px at a time, and small faces are lost.
    detect_width: int = 0
    full_detect_every: int = 5  # full-frame search at least every N frames; tracked ROIs between
    track_margin: float = 0.5  # ROI around a known face, as a fraction of its size
    smooth_window: int = 5  # frames of scores averaged for a face's label
    max_faces: int = 8
    margin: float = DEFAULT_MARGIN
    reopen_initial_s: float = 0.5  # first wait before reopening a failed camera
    reopen_max_s: float = 10.0
    status_every_s: float = 5.0

    def __post_init__(self) -> None:
        _check_ranges(self)


_POSITIVE_INTS = ("socket_buffer", "frame_width", "frame_height", "min_neighbors",
                  "full_detect_every", "smooth_window", "max_faces", "min_size")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _check_ranges(config: EdgeConfig) -> None:
    for name in _POSITIVE_INTS:
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(config, name)}")
    if config.threads is not None and config.threads < 1:
        raise ConfigError(f"threads must be at least 1, got {config.threads}")
    if config.max_frames is not None and config.max_frames < 1:
        raise ConfigError(f"max_frames must be at least 1, got {config.max_frames}")
    if config.scale_factor <= 1.0:
        raise ConfigError(f"scale_factor must be above 1.0, got {config.scale_factor}")
    if config.detect_width < 0:
        raise ConfigError(f"detect_width must be 0 (off) or a width, got {config.detect_width}")
    if not 0.0 <= config.margin <= 1.0:
        raise ConfigError(f"margin must be within 0..1, got {config.margin}")
    if config.track_margin < 0:
        raise ConfigError(f"track_margin must not be negative, got {config.track_margin}")
    if config.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(_LOG_LEVELS)}")
    if config.reopen_initial_s <= 0 or config.reopen_max_s < config.reopen_initial_s:
        raise ConfigError("reopen_initial_s must be > 0 and <= reopen_max_s")
    if config.fps_limit is not None and config.fps_limit <= 0:
        raise ConfigError(f"fps_limit must be positive, got {config.fps_limit}")


def _coerce(name: str, value: Any, annotation: str) -> Any:
    """Check a TOML value against the field's annotation (as a string, PEP 563)."""
    optional = "None" in annotation
    if value is None and optional:
        return None
    base = annotation.replace("| None", "").strip()
    if base == "bool":
        ok = isinstance(value, bool)
    elif base == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{name} must be {base}, got {value!r}")
    return value


def make_config(values: Mapping[str, Any], where: str = "config") -> EdgeConfig:
    """Build a config from a mapping; unknown keys and wrong types are refused."""
    by_name = {f.name: f for f in fields(EdgeConfig)}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    checked = {}
    for name, value in values.items():
        try:
            checked[name] = _coerce(name, value, str(by_name[name].type))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from e
    try:
        return EdgeConfig(**checked)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e


def load_config(path: str | os.PathLike[str] | None, overrides: Mapping[str, Any]) -> EdgeConfig:
    """TOML file (if any) first, then only the settings the user gave on the command line."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as handle:
                values = tomllib.load(handle)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror})") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML ({e})") from e
        if isinstance(values.get("socket_mode"), str):
            values["socket_mode"] = int(values["socket_mode"], 8)
    config = make_config(values, where=str(path) if path else "config")
    try:
        return dataclasses.replace(config, **overrides)
    except ConfigError as e:
        raise ConfigError(f"command line: {e}") from e


def describe(config: EdgeConfig) -> str:
    """TOML-ish listing of the effective config, for --check-config."""
    lines = []
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "socket_mode":
            lines.append(f'{f.name} = "{value:o}"')
        elif value is None:
            lines.append(f"# {f.name} = (default)")
        elif isinstance(value, bool):
            lines.append(f"{f.name} = {str(value).lower()}")
        elif isinstance(value, str):
            lines.append(f'{f.name} = "{value}"')
        else:
            lines.append(f"{f.name} = {value}")
    return "\n".join(lines)


def default_model_path() -> Path:
    return Path(__file__).resolve().parent / "models" / "ferlite_int8.tflite"


def resolve_model(config: EdgeConfig) -> Path:
    return Path(config.model) if config.model else default_model_path()
