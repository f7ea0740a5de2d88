"""Put this folder on PYTHONPATH and Python starts as on a GPU box with PyTorch or JAX and no TensorFlow: the
installed tensorflow (and the TFLite runtimes) cannot be found, as if never installed (find_spec gives None and
`import tensorflow` raises ModuleNotFoundError; nothing is put in sys.modules, which Keras reads as "TF loaded").
Used by tests/test_train_backends.py to run the GPU recipe the way the GPU box runs it."""

from __future__ import annotations

import importlib.machinery

# tensorboard stays: GPU boxes often have it without TensorFlow (and Keras then needs TensorFlow to write logs).
HIDDEN = ("tensorflow", "ai_edge_litert", "tflite_runtime", "tf_keras")
_find_spec = importlib.machinery.PathFinder.find_spec


def _hiding_find_spec(fullname, path=None, target=None):  # type: ignore[no-untyped-def]
    if fullname.split(".")[0] in HIDDEN:
        return None
    return _find_spec(fullname, path, target)


importlib.machinery.PathFinder.find_spec = _hiding_find_spec  # type: ignore[method-assign]
