"""Native libraries' own stderr lines (TensorFlow Lite's "Created TensorFlow Lite XNNPACK delegate", TensorFlow's
cuInit errors) sent to the log at DEBUG instead of the terminal: they bypass Python's logging and would print
at any --log-level."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_to_log(log: logging.Logger) -> Iterator[None]:
    """For the duration, file descriptor 2 goes to a temp file; its lines are logged at DEBUG after."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                if line.strip():
                    log.debug("native: %s", line)
