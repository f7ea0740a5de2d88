"""The root of every exception ferlite raises on purpose, FerliteError, and the edge's own errors.

A caller that only wants "did ferlite refuse this?" catches FerliteError; the subclasses say what
was refused, for callers that act differently on each. Each package owns its errors under this one
root: the edge's are here (with the settings errors every command shares), training's in
`ferlite.train.errors`, conversion's in `ferlite.convert.errors`.
"""

from __future__ import annotations


class FerliteError(Exception):
    """The root of every error ferlite raises on purpose (bad input, a refused model, ...)."""


class InputError(FerliteError, ValueError):
    """The in-process API was given something it cannot take: an empty array, a dtype other than
    uint8, a shape that is neither gray (H, W), (H, W, 1) nor colour (H, W, 3 BGR / 4 BGRA), an
    unreadable image file, or a call on a closed Recognizer. The message says which, and what
    was expected."""


class ConfigError(FerliteError, ValueError):
    """A setting (TOML file or flag) is unknown, of the wrong type, or out of range."""


class UsageError(FerliteError, ValueError):
    """A command was given a bad combination of options or a missing input file or folder."""


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



class FileRefusedError(FerliteError):
    """A file ferlite reads itself (a config, a model spec, an image) was not read: it cannot be opened or
    read, is not a regular file, or is larger than its reader takes (ferlite.edge.contract.files.read_bytes).

    str() says why in a few words, without the path ("cannot open (No such file or directory)", "a FIFO,
    not a regular file", "2000000 bytes, more than 1048576"); the attributes let each reader word it for its
    file."""

    def __init__(self, why: str, *, strerror: str | None = None, errno: int | None = None, opening: bool = False,
                 kind: str | None = None, size: int | None = None, limit: int | None = None) -> None:
        super().__init__(why)
        self.strerror = strerror  # the OS's words, when the OS refused
        self.errno = errno  # and its error number (None for a NUL in the name)
        self.opening = opening  # refused when opening, not while reading
        self.kind = kind  # what the file is when it is not a regular file ("a FIFO", "a directory", ...)
        self.size = size  # its size in bytes when larger than `limit` (None: it grew while being read)
        self.limit = limit  # the most bytes the reader takes, when the file is larger
