"""Import TensorFlow without its native start-up chatter.

On a machine without a GPU, TensorFlow's C++ side prints `cuInit` errors, `cudart_stub` notes and an
absl warning straight to file descriptor 2, whatever TF_CPP_MIN_LOG_LEVEL says. None of it is
actionable: the import and the first device query run with fd 2 sent to a temp file, and what was
caught is logged at DEBUG (`--log-level debug` shows it). The result is said once, in plain words.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

from ferlite.edge.algorithm.native import native_stderr_to_log

log = logging.getLogger(__name__)

_gpus: list[Any] | None = None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Python's stdout, Python warnings and the native fd 2 of TensorFlow's converter and runtime
    go to the debug log for the duration."""
    buffer = io.StringIO()
    with native_stderr_to_log(log), contextlib.redirect_stdout(buffer), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    for line in buffer.getvalue().splitlines():
        if line.strip():
            log.debug("tensorflow: %s", line)


def tensorflow() -> Any:
    """The tensorflow module, imported quietly, with its GPUs listed once (and said in one line)."""
    global _gpus
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_to_log(log):
        import tensorflow as tf

        if _gpus is None:
            _gpus = tf.config.list_physical_devices("GPU")
    return tf


def gpus() -> list[Any]:
    tensorflow()
    assert _gpus is not None
    return _gpus
