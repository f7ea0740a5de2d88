"""fer-edge's settings: EdgeConfig, composed of the parts that live beside the code reading them
(InputSettings in sources/base.py, DetectSettings in the detector, FeedSettings in the feed, TrackSettings in
tracking) and its own few; their rules are on their fields (see contract/settings.py). Loaded from TOML with
unknown keys refused; flags override only what was typed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..algorithm.detector import DetectSettings
from ..algorithm.pipeline import DEFAULT_FLIP
from ..algorithm.tracking import TrackSettings
from ..contract import SHIPPED_MODEL, settings
from ..contract.errors import ConfigError
from ..contract.settings import LOG_LEVELS, MAX_CONFIG_BYTES, read_toml, refuse_unknown, setting, short
from .feed import FeedSettings, parse_socket_mode
from .sources import InputSettings

__all__ = ["FORMATS", "MAX_CONFIG_BYTES", "ConfigError", "DetectSettings", "EdgeConfig", "FeedSettings",
           "InputSettings", "TrackSettings", "default_model_path", "describe", "load_config", "make_config",
           "parse_socket_mode", "read_toml", "refuse_unknown", "resolve_model", "short"]

FORMATS = ("json", "csv")  # EdgeConfig.format


# The parts' fields come first, in the order of the TOML tables --check-config prints ([input], [detect],
# [feed], [track]: a dataclass takes its bases' fields from the last base up); EdgeConfig's own stay at the
# top level. Flat keys keep working (settings.ungroup). Ranges are inclusive: past them a setting is a typo
# or a hostile value that would crash or stall the daemon later.
@dataclass(frozen=True)
class EdgeConfig(TrackSettings, FeedSettings, DetectSettings, InputSettings):
    source: str = setting("auto", "auto | demo | picamera2 | /dev/videoN | N | VIDEO | IMAGE | FOLDER",
                          non_empty=True)
    model: str | None = setting(None, "int8 .tflite beside its .spec.json (default: the shipped model)",
                                non_empty=True, reads=True)
    threads: int | None = setting(None, "interpreter and OpenCV threads (default: all cores)", low=1, high=256)
    stdout: bool = setting(True, "results on stdout")
    log_level: str = setting("INFO", "how much is logged on stderr", choices=LOG_LEVELS, fold_case=True)
    margin: float | None = setting(None, "face crop growth (default: the model spec's framing, measured on its "
                                   "training faces)", low=0.0, high=1.0)
    # On by default: more right on every validation set with the shipped model, and with the face and its mirror
    # run as one batch the bench's frames stay ~15x cheaper than full-frame Haar, over the 10x bar (docs/model.md).
    flip: bool = setting(DEFAULT_FLIP, "test-time flip: average each face with its mirror image")
    status_every_s: float = setting(5.0, "seconds between status log lines", low=0.1, high=86400.0)
    annotate: str | None = setting(None, "also write annotated frames here: a video file (cameras, videos) or a "
                                   "folder of images (stills)", non_empty=True)
    format: str = setting("json", "results on stdout: one JSON object per frame, or a CSV row per face (the socket "
                          "always carries JSON lines)", choices=FORMATS)


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
    return SHIPPED_MODEL


def resolve_model(config: EdgeConfig) -> Path:
    return Path(config.model) if config.model else default_model_path()
