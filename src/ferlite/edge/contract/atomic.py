"""Atomic file writing, the one way ferlite writes a file that someone may be reading.

The content goes to a temp file in the target's folder (same file system), is flushed to disk and
renamed over the target: a reader sees the old file or the new one, never half of one. The temp file
gets the mode a plain `open()` would give (mkstemp makes 0600), and is removed if anything fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

Writer = Callable[[Path], None]  # writes the content to the path it is given (np.save, model.save, ...)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_path_for(path: str | os.PathLike[str]) -> Path:
    """A new empty file beside `path`, hidden, with the same suffix (Keras and NumPy look at it)."""
    import tempfile  # only writers need it; the daemon never writes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    os.chmod(name, 0o666 & ~_current_umask())
    return Path(name)


def atomic_write(path: str | os.PathLike[str], content: bytes | Writer) -> None:
    """Write `content` (bytes, or a function that writes to the temp path it is given) to `path`
    atomically.

    Raises:
        OSError: the folder cannot be written (nothing is left behind).
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        if isinstance(content, bytes):
            with open(tmp, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            content(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
