"""Every exception ferlite raises on purpose, in one place, under one root: FerliteError.

A caller that only wants "did ferlite refuse this?" catches FerliteError; the subclasses say what
was refused, for callers that act differently on each.
"""

from __future__ import annotations


class FerliteError(Exception):
    """The root of every error ferlite raises on purpose (bad input, a refused model, ...)."""


class ConversionError(FerliteError):
    """The TFLite converter refused the model."""


class InputError(FerliteError, ValueError):
    """The in-process API was given something it cannot take: an empty array, a dtype other than
    uint8, a shape that is neither gray (H, W), (H, W, 1) nor colour (H, W, 3 BGR / 4 BGRA), an
    unreadable image file, or a call on a closed Recognizer. The message says which, and what
    was expected."""


class ConfigError(FerliteError, ValueError):
    """A setting (TOML file or flag) is unknown, of the wrong type, or out of range."""


class UsageError(FerliteError, ValueError):
    """A command was given a bad combination of options or a missing input file or folder."""


class DataError(FerliteError, ValueError):
    """A data set is missing, empty or not in the layout its kind expects."""


class SplitError(FerliteError, ValueError):
    """A subject list or split setting is unusable."""


class ClassMapError(FerliteError, ValueError):
    """A --class-map entry is malformed or names no known label."""


class ResumeError(ConfigError):
    """--resume was asked for but the run folder has no usable checkpoint."""


class InitError(UsageError):
    """The --init model cannot be loaded or has another architecture."""


class AgreementError(FerliteError):
    """The converted model disagrees with the Keras model too often; nothing was written."""


# The edge: model, camera, feed, start-up.


class ModelSpecError(FerliteError, ValueError):
    """A model's spec is missing, unreadable or does not match this ferlite (or the model's bytes)."""


class ModelLoadError(FerliteError, RuntimeError):
    """The model file is missing, broken, or its tensors do not match its spec."""


class ModelOutputError(FerliteError, RuntimeError):
    """The model failed on a frame or gave no probabilities for it (not finite, outside 0..1, not
    summing to 1): an error for that frame only, never written as a result."""


class DetectorError(FerliteError, RuntimeError):
    """The Haar cascade could not be found or loaded."""


class SourceError(FerliteError, RuntimeError):
    """A frame could not be read (the source may come back)."""


class SourceOpenError(SourceError):
    """The source cannot be opened at all (bad path, no camera, nothing to read)."""


class FeedError(FerliteError, RuntimeError):
    """The feed socket cannot be created."""


class OutputError(FerliteError):
    """stdout cannot take results at all (not open, disk full): a one-line error, exit 2."""


class StartupError(FerliteError):
    """Anything that stops a daemon (fer-edge, fer-preview) from starting: one line on stderr, exit 2."""


class AnnotateError(FerliteError):
    """The annotated output cannot be written where it was asked for."""


class MqttConfigError(ConfigError):
    """A fer-mqtt setting is unknown, of the wrong type, out of range, or names a file that cannot be read."""
