"""fer-edge's settings: one frozen dataclass, its rules on its fields (see settings.py), loaded from TOML
with unknown keys refused; flags override only what was typed."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..algorithm.detector import (
    DEFAULT_DETECTOR,
    DEFAULT_MIN_NEIGHBORS,
    DEFAULT_MIN_SIZE,
    DEFAULT_SCALE_FACTOR,
    DETECTORS,
)
from ..algorithm.sweep import DEFAULT_BUDGET, DEFAULT_COOLDOWN, DEFAULT_REFRESH_EVERY
from ..algorithm.tracking import DEFAULT_MAX_FACES, DEFAULT_TRACK_MARGIN
from ..contract import settings
from ..contract.errors import ConfigError
from ..contract.settings import LOG_LEVELS, MAX_CONFIG_BYTES, read_toml, refuse_unknown, setting, short
from .feed import DEFAULT_SOCKET_BUFFER, DEFAULT_SOCKET_MODE, MAX_PATH_BYTES
from .sources import DEFAULT_FRAME_SIZE, DEFAULT_MAX_PIXELS, DEFAULT_REOPEN_S

__all__ = ["FORMATS", "MAX_CONFIG_BYTES", "ConfigError", "EdgeConfig", "default_model_path", "describe",
           "load_config", "make_config", "parse_socket_mode", "read_toml", "refuse_unknown", "resolve_model",
           "short"]

FORMATS = ("json", "csv")  # EdgeConfig.format
# Owner read/write required; group read/write allowed; nothing for others, no execute or special bits.
SOCKET_MODE_REQUIRED = 0o600
SOCKET_MODE_ALLOWED = 0o660
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


def _socket_mode_problem(mode: int) -> str | None:
    if mode & ~SOCKET_MODE_ALLOWED or mode & SOCKET_MODE_REQUIRED != SOCKET_MODE_REQUIRED:
        return f"must be within 600..660 octal (owner rw, group at most rw, nothing for others), got {mode:o}"
    return None


# Groups: the TOML tables a setting may be given in ([input] how the source is read, [detect], [track],
# [feed] the socket); the rest stay at the top level. Flat keys keep working (settings.ungroup).
# Ranges are inclusive. Past them a setting is a typo or a hostile value that would crash or stall the
# daemon later (OpenCV takes C ints, a deque or sleep takes the value as given).
@dataclass(frozen=True)
class EdgeConfig(settings.Settings):
    source: str = setting("auto", "auto | demo | picamera2 | /dev/videoN | N | VIDEO | IMAGE | FOLDER",
                          non_empty=True)
    model: str | None = setting(None, "int8 .tflite beside its .spec.json (default: the shipped model)",
                                non_empty=True, reads=True)
    threads: int | None = setting(None, "interpreter and OpenCV threads (default: all cores)", low=1, high=256)
    max_frames: int | None = setting(None, "stop after this many frames", low=1, high=2**62, group="input")
    loop: bool = setting(False, "replay a folder or video forever", group="input")
    whole_frame: bool = setting(False, "no detection: the whole frame is one face", group="detect")
    socket: str | None = setting(None, "also serve the feed on this Unix socket", non_empty=True,
                                 max_bytes=MAX_PATH_BYTES, group="feed")
    socket_mode: int = setting(DEFAULT_SOCKET_MODE, "the socket's permissions, octal (600..660)",
                               parse=parse_socket_mode, check=_socket_mode_problem, show=lambda mode: f'"{mode:o}"',
                               group="feed")
    socket_buffer: int = setting(DEFAULT_SOCKET_BUFFER, "bytes queued per reader before it is dropped", low=1024,
                                 high=1 << 30, group="feed")
    stdout: bool = setting(True, "results on stdout")
    log_level: str = setting("INFO", "how much is logged on stderr", choices=LOG_LEVELS, fold_case=True)
    frame_width: int = setting(DEFAULT_FRAME_SIZE[0], "camera sources only: frame width asked for", low=16,
                               high=16384, group="input")
    frame_height: int = setting(DEFAULT_FRAME_SIZE[1], "camera sources only: frame height asked for", low=16,
                                high=16384, group="input")
    fps_limit: float | None = setting(None, "image/video sources: pace to this rate (default: as fast as possible)",
                                      low=0.01, high=1000.0, group="input")
    detector: str = setting(DEFAULT_DETECTOR, "face detector (a model's spec names the one its framing was measured "
                            "with)", choices=tuple(DETECTORS), group="detect")
    scale_factor: float = setting(DEFAULT_SCALE_FACTOR, "Haar pyramid step (a factor of 1.0 never leaves the "
                                  "first scale)", low=1.0, above=True, high=3.0, group="detect")
    min_neighbors: int = setting(DEFAULT_MIN_NEIGHBORS, "Haar hits needed to call a face", low=1, high=100,
                                 group="detect")
    # Pixels of the frame the user gave (Haar sees 24 px at best on the detect frame).
    min_size: int = setting(DEFAULT_MIN_SIZE, "smallest face looked for, in pixels", low=1, high=16384,
                            group="detect")
    # Shrinking pays only when min_size >= ~96: below twice the cascade's 24 px window OpenCV steps 2 px at a
    # time, and small faces are lost.
    detect_width: int = setting(0, "detect on the frame scaled to this width (0: as given)", low=0, high=16384,
                                group="detect")
    # Known faces are followed every frame. The name is kept from when it spaced whole-frame searches.
    full_detect_every: int = setting(DEFAULT_COOLDOWN, "video: a region that keeps changing is searched for new "
                                     "faces at most every N frames", low=1, high=10_000, group="detect")
    search_budget: float = setting(DEFAULT_BUDGET, "at most this share of a whole-frame search per frame for new "
                                   "faces", low=0.005, high=1.0,  # 0: a frame could never search anything
                                   group="detect")
    refresh_every: int = setting(DEFAULT_REFRESH_EVERY, "video: every N frames all of the picture is searched "
                                 "again", low=1, high=1_000_000, group="detect")
    track_margin: float = setting(DEFAULT_TRACK_MARGIN, "ROI around a known face, as a fraction of its size",
                                  low=0.0, high=4.0, group="track")
    smooth_window: int = setting(5, "frames of scores averaged for a face's label (1: none)", low=1, high=1000,
                                 group="track")
    max_faces: int = setting(DEFAULT_MAX_FACES, "most faces classified per frame", low=1, high=256, group="track")
    margin: float | None = setting(None, "face crop growth (default: the model spec's framing, measured on its "
                                   "training faces)", low=0.0, high=1.0)
    # +0.85 points on FER+ validation with the shipped model, but one more inference per face: off by default
    # to keep the speed bar (docs/model.md).
    flip: bool = setting(False, "test-time flip: average each face with its mirror image")
    reopen_initial_s: float = setting(DEFAULT_REOPEN_S[0], "first wait before reopening a failed camera",
                                      low=0.001, high=3600.0, group="input")
    reopen_max_s: float = setting(DEFAULT_REOPEN_S[1], "longest wait between reopening attempts", low=0.001,
                                  high=3600.0, group="input")
    status_every_s: float = setting(5.0, "seconds between status log lines", low=0.1, high=86400.0)
    max_image_pixels: int = setting(DEFAULT_MAX_PIXELS, "image sources: a file whose header says it holds more "
                                    "pixels is skipped unread", low=64, high=1 << 30, group="input")
    annotate: str | None = setting(None, "also write annotated frames here: a video file (cameras, videos) or a "
                                   "folder of images (stills)", non_empty=True)
    format: str = setting("json", "results on stdout: one JSON object per frame, or a CSV row per face (the socket "
                          "always carries JSON lines)", choices=FORMATS)

    def check_relations(self) -> None:
        if self.reopen_max_s < self.reopen_initial_s:
            raise ConfigError("reopen_initial_s must be <= reopen_max_s")


def make_config(values: Mapping[str, Any], where: str = "config") -> EdgeConfig:
    """Build a config from a mapping; unknown keys and wrong types are refused."""
    return settings.make(EdgeConfig, values, where)


def load_config(path: str | os.PathLike[str] | None, overrides: Mapping[str, Any]) -> EdgeConfig:
    """TOML file (if any) first, then only the settings the user gave on the command line."""
    return settings.load(EdgeConfig, path, overrides)


def describe(config: EdgeConfig) -> str:
    """The effective config as TOML, for --check-config."""
    return settings.describe(config)


def default_model_path() -> Path:
    return Path(__file__).resolve().parents[1] / "models" / "ferlite_int8.tflite"


def resolve_model(config: EdgeConfig) -> Path:
    return Path(config.model) if config.model else default_model_path()
