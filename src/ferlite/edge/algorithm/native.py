"""Native libraries' own stderr lines (TensorFlow Lite's "Created TensorFlow Lite XNNPACK delegate", TensorFlow's
cuInit errors) sent to the log at DEBUG instead of the terminal: they bypass Python's logging and would print
at any --log-level. Also the process-wide settings native code reads: its standard descriptors and OpenCV's
thread count."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

from ..contract.errors import ConfigError

# OpenCV reads this on its first parallel call and throws (cv2.error "stoull") on anything but a plain
# number, from then on at every detection.
OPENCV_THREADS_ENV = "OPENCV_FOR_THREADS_NUM"
_DECIMAL = re.compile(r"[0-9]{1,9}")


def _flush_stderr() -> None:
    stream = sys.stderr
    if stream is None:  # fd 2 was closed when Python started (`2>&-`)
        return
    try:
        stream.flush()
    except (OSError, ValueError):
        pass


@contextlib.contextmanager
def native_stderr_to_log(log: logging.Logger) -> Iterator[None]:
    """For the duration, file descriptor 2 goes to a temp file; its lines are logged at DEBUG after.

    Without a descriptor 2 (closed), nothing is redirected: there is no terminal to keep clean.
    """
    _flush_stderr()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                if line.strip():
                    log.debug("native: %s", line)


def open_closed_stderr() -> None:
    """Point file descriptor 2 at /dev/null when it is closed (`2>&-`).

    Otherwise the next file the process opens (the model, a socket, an annotated video) would get
    descriptor 2, and every native library's error line would be written into it. Call it first
    thing in a command's main (fer-edge, fer-preview).
    """
    try:
        os.fstat(2)
    except OSError:
        null = os.open(os.devnull, os.O_WRONLY)
        if null != 2:
            os.dup2(null, 2)
            os.close(null)
    if sys.stderr is None:  # Python found no fd 2 at start: logging and print() get /dev/null, not None
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)


def check_opencv_environment() -> None:
    """ConfigError when OPENCV_FOR_THREADS_NUM is set to anything but a plain number of threads:
    OpenCV would fail every detection with cv2.error "stoull"."""
    value = os.environ.get(OPENCV_THREADS_ENV)
    if value is not None and not _DECIMAL.fullmatch(value):
        raise ConfigError(
            f"environment: {OPENCV_THREADS_ENV}={value[:40]!r} is not a number of threads; "
            "unset it or give a whole number"
        )


def set_opencv_threads(threads: int | None) -> None:
    """OpenCV's thread count for the process: `threads`, or all cores (None).

    Raises:
        ConfigError: OpenCV's settings in the environment are unusable (check_opencv_environment()).
    """
    import cv2

    check_opencv_environment()
    try:
        # OpenCV reads 0 as "no threading" and a negative number as "its default (all cores)".
        cv2.setNumThreads(threads or -1)
    except cv2.error as e:
        message = str(e).strip().splitlines()[-1] if str(e).strip() else "cv2.error"
        raise ConfigError(f"environment: OpenCV refused its settings ({message[:200]})") from e
