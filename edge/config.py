"""Runtime configuration: one frozen dataclass, loaded from TOML, unknown keys rejected."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import sys
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .detector import DEFAULT_MIN_NEIGHBORS, DEFAULT_MIN_SIZE, DEFAULT_SCALE_FACTOR
from .errors import ConfigError
from .sweep import DEFAULT_BUDGET, DEFAULT_COOLDOWN, DEFAULT_REFRESH_EVERY
from .tracking import DEFAULT_TRACK_MARGIN

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


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
    scale_factor: float = DEFAULT_SCALE_FACTOR
    min_neighbors: int = DEFAULT_MIN_NEIGHBORS
    min_size: int = DEFAULT_MIN_SIZE  # pixels of the frame the user gave (Haar sees 24 px at best on the detect frame)
    # Detect on the frame scaled to this width (0: as given). Shrinking pays only when min_size >= ~96:
    # below twice the cascade's 24 px window OpenCV steps 2 px at a time, and small faces are lost.
    detect_width: int = 0
    # Video: a region that keeps changing is searched for new faces at most every N frames (known faces
    # are followed every frame). The name is kept from when it spaced whole-frame searches.
    full_detect_every: int = DEFAULT_COOLDOWN
    search_budget: float = DEFAULT_BUDGET  # at most this share of a whole-frame search per frame for new faces
    refresh_every: int = DEFAULT_REFRESH_EVERY  # video: every N frames all of the picture is searched again
    track_margin: float = DEFAULT_TRACK_MARGIN  # ROI around a known face, as a fraction of its size
    smooth_window: int = 5  # frames of scores averaged for a face's label
    max_faces: int = 8
    # None: the model spec's framing (measured on its training faces). A number overrides it.
    margin: float | None = None
    # Test-time flip: average each face with its mirror image. +0.85 points on FER+ validation with the shipped
    # model, but one more inference per face: off by default to keep the speed bar (docs/model.md).
    flip: bool = False
    reopen_initial_s: float = 0.5  # first wait before reopening a failed camera
    reopen_max_s: float = 10.0
    status_every_s: float = 5.0
    # Image sources: a file whose header says it holds more pixels than this is skipped unread.
    max_image_pixels: int = 40_000_000
    # Also write annotated frames here: a video file (cameras, videos) or a folder of images (stills).
    annotate: str | None = None
    # Results on stdout: "json" (one JSON object per frame) or "csv" (a header, then one row per face).
    # The socket always carries JSON lines.
    format: str = "json"

    def __post_init__(self) -> None:
        _check_ranges(self)


# Inclusive ranges. Past them a setting is a typo or a hostile value that would crash or stall
# the daemon later (OpenCV takes C ints, a deque or sleep takes the value as given).
_INT_RANGES: dict[str, tuple[int, int]] = {
    "threads": (1, 256),
    "max_frames": (1, 2**62),
    "socket_buffer": (1024, 1 << 30),
    "frame_width": (16, 16384),
    "frame_height": (16, 16384),
    "min_neighbors": (1, 100),
    "min_size": (1, 16384),
    "detect_width": (0, 16384),
    "full_detect_every": (1, 10_000),
    "refresh_every": (1, 1_000_000),
    "smooth_window": (1, 1000),
    "max_faces": (1, 256),
    "max_image_pixels": (64, 1 << 30),
}
_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "scale_factor": (1.0, 3.0),  # above 1.0: a factor of 1.0 never leaves the first scale
    "track_margin": (0.0, 4.0),
    "search_budget": (0.005, 1.0),
    "margin": (0.0, 1.0),
    "fps_limit": (0.01, 1000.0),
    "reopen_initial_s": (0.001, 3600.0),
    "reopen_max_s": (0.001, 3600.0),
    "status_every_s": (0.1, 86400.0),
}
_NON_EMPTY = ("source", "model", "socket", "annotate")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("json", "csv")  # EdgeConfig.format
# Owner read/write required; group read/write allowed; nothing for others, no execute or special bits.
SOCKET_MODE_REQUIRED = 0o600
SOCKET_MODE_ALLOWED = 0o660
_MAX_LISTED = 10  # unknown keys named in an error; the rest are counted
_MAX_SHOWN = 60  # characters of a bad value shown in an error


def short(value: Any) -> str:
    """repr() of a value, cut to a length that fits one error line."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _check_ranges(config: EdgeConfig) -> None:
    for name, (low, high) in _INT_RANGES.items():
        value = getattr(config, name)
        if value is not None and value < low:
            raise ConfigError(f"{name} must be at least {low}, got {short(value)}")
        if value is not None and value > high:
            raise ConfigError(f"{name} must be at most {high}, got {short(value)}")
    for name, (flow, fhigh) in _FLOAT_RANGES.items():
        number = getattr(config, name)
        if number is None:
            continue
        too_low = number <= flow if name == "scale_factor" else number < flow
        if not math.isfinite(number) or too_low or number > fhigh:
            bound = f"above {flow} and at most {fhigh}" if name == "scale_factor" else f"within {flow}..{fhigh}"
            raise ConfigError(f"{name} must be {bound} (a finite number), got {short(number)}")
    for name in _NON_EMPTY:
        value = getattr(config, name)
        if value is not None and not value.strip():
            raise ConfigError(f"{name} must not be empty (leave it out for the default)")
    if config.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(_LOG_LEVELS)}")
    if config.format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {short(config.format)}")
    if config.reopen_max_s < config.reopen_initial_s:
        raise ConfigError("reopen_initial_s must be <= reopen_max_s")
    mode = config.socket_mode
    if mode & ~SOCKET_MODE_ALLOWED or mode & SOCKET_MODE_REQUIRED != SOCKET_MODE_REQUIRED:
        raise ConfigError(
            f"socket_mode must be within 600..660 octal (owner rw, group at most rw, nothing for "
            f"others), got {mode:o}"
        )


_OCTAL = re.compile(r"(?:0o?)?([0-7]{3,4})")


def parse_socket_mode(value: Any) -> int:
    """A TOML socket_mode: an octal string such as "660". A TOML integer is refused: 660 would be
    read as decimal (mode 1224)."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ConfigError(f'socket_mode must be an octal string such as "660", got {short(value)}')
    match = _OCTAL.fullmatch(value.strip())
    if match is None:
        raise ConfigError(f'socket_mode must be an octal string such as "660", got {short(value)}')
    return int(match.group(1), 8)


def coerce_value(name: str, value: Any, annotation: str, error: type[ConfigError] = ConfigError) -> Any:
    """Check a TOML value against a config field's annotation (as a string, PEP 563); `error` is the
    ConfigError subclass to raise (fer-mqtt's config uses this too)."""
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
        if ok:
            try:
                value = float(value)
            except OverflowError as e:  # a TOML integer of hundreds of digits
                raise error(f"{name} must be a finite number, got {short(value)}") from e
    else:
        ok = isinstance(value, str)
    if not ok:
        raise error(f"{name} must be {base}, got {short(value)}")
    return value


def refuse_unknown(names: Iterable[str], known: Container[str], where: str,
                   error: type[ConfigError] = ConfigError) -> None:
    """`error` with one line naming the names that are not `known` (at most 10, then `and N more`),
    if there are any (fer-train's config uses this too)."""
    unknown = sorted(name for name in set(names) if name not in known)
    if unknown:
        listed = ", ".join(short(name).strip("'\"") for name in unknown[:_MAX_LISTED])
        more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
        raise error(f"{where}: unknown setting(s) {listed}{more}")


def make_config(values: Mapping[str, Any], where: str = "config") -> EdgeConfig:
    """Build a config from a mapping; unknown keys and wrong types are refused."""
    by_name = {f.name: f for f in fields(EdgeConfig)}
    refuse_unknown(values, by_name, where)
    checked: dict[str, Any] = {}
    for name, value in values.items():
        try:
            if name == "socket_mode":
                checked[name] = parse_socket_mode(value)
                continue
            checked[name] = coerce_value(name, value, str(by_name[name].type))
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
        values = read_toml(path)
    config = make_config(values, where=str(path) if path else "config")
    try:
        return dataclasses.replace(config, **overrides)
    except ConfigError as e:
        raise ConfigError(f"command line: {e}") from e


MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; anything near this is not one


def read_toml(path: str | os.PathLike[str], error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A config file's TOML: a regular file of at most MAX_CONFIG_BYTES, UTF-8; `error` (a ConfigError
    subclass) with one line naming the file otherwise."""
    try:
        # O_NONBLOCK: a FIFO without a writer would block open() forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise error(f"{path}: cannot read config ({e.strerror})") from e
    with open(fd, "rb") as handle:
        try:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise error(f"{path}: config must be a regular file")
            if info.st_size > MAX_CONFIG_BYTES:
                raise error(f"{path}: config is {info.st_size} bytes, more than {MAX_CONFIG_BYTES}")
            data = handle.read(MAX_CONFIG_BYTES + 1)
        except OSError as e:
            raise error(f"{path}: cannot read config ({e.strerror})") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not valid UTF-8 (byte {e.start})") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML ({e})") from e
    except RecursionError as e:
        raise error(f"{path}: not valid TOML (nested too deeply)") from e


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
