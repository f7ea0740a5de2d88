"""fer-train's errors, under ferlite's one root (ferlite.edge.contract.errors.FerliteError)."""

from __future__ import annotations

from ferlite.edge.contract.errors import ConfigError, FerliteError, UsageError


class DataError(FerliteError, ValueError):
    """A data set is missing, empty or not in the layout its kind expects (or a face pack is broken)."""


class SplitError(FerliteError, ValueError):
    """A subject list or split setting is unusable."""


class ClassMapError(FerliteError, ValueError):
    """A --class-map entry is malformed or names no known label."""


class ResumeError(ConfigError):
    """--resume was asked for but the run folder has no usable checkpoint."""


class InitError(UsageError):
    """The --init model cannot be loaded or has another architecture."""
