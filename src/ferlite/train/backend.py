"""Which Keras backend fer-train runs on, on which devices, and each backend's own engine for several.

`KERAS_BACKEND=tensorflow|jax|torch` (or `backend` in Keras's own keras.json) picks the backend, as
everywhere in Keras; nothing else in fer-train depends on it. On several GPUs TensorFlow uses
`tf.distribute.MirroredStrategy` and JAX `keras.distribution.DataParallel`; PyTorch trains on one
device (Keras's torch backend has no multi-device fit). Mixed precision on a GPU: bfloat16 where the
GPU computes in it (compute capability 8.0 and newer), else float16 with loss scaling; the saved
model is float32 either way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BACKENDS = ("tensorflow", "jax", "torch")


def configured_backend() -> str:
    """The backend Keras will load, read the way Keras reads it (its environment variable, then
    keras.json), without importing Keras (importing it starts the backend)."""
    name = os.environ.get("KERAS_BACKEND")
    if not name:
        home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
        with contextlib.suppress(OSError, ValueError, AttributeError):
            name = json.loads((home / "keras.json").read_text()).get("backend")
    return str(name or "tensorflow")


def missing_module(backend: str) -> str | None:
    """The first module fer-train needs on `backend` that is not installed, else None."""
    import importlib.util

    module = "tensorflow" if backend not in BACKENDS else backend
    return next((m for m in ("keras", module) if importlib.util.find_spec(m) is None), None)


@dataclass(frozen=True)
class Devices:
    """What trains: the backend, the kind of device and each device's name."""

    backend: str
    kind: str  # "gpu", "tpu" or "cpu"
    names: tuple[str, ...]
    bfloat16: bool = False  # the accelerator computes in bfloat16 natively

    @property
    def accelerated(self) -> bool:
        return self.kind != "cpu"

    @property
    def precision(self) -> str:
        """The Keras dtype policy to train with."""
        if not self.accelerated:
            return "float32"
        return "mixed_bfloat16" if self.bfloat16 else "mixed_float16"

    def describe(self) -> str:
        if not self.accelerated:
            return f"{self.backend} on the CPU (no GPU found)"
        plural = "s" if len(self.names) > 1 else ""
        return f"{self.backend} on {len(self.names)} {self.kind.upper()}{plural} ({', '.join(self.names)})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "names": list(self.names), "precision": self.precision}


def find_devices() -> Devices:
    """The devices of the backend Keras loaded (call after importing keras)."""
    import keras

    backend = keras.backend.backend()
    finder = {"tensorflow": _tensorflow_devices, "jax": _jax_devices, "torch": _torch_devices}.get(backend)
    if finder is None:
        return Devices(backend, "cpu", ("cpu",))
    return finder()


def _tensorflow_devices() -> Devices:
    from . import tf_runtime

    gpus = tf_runtime.gpus()
    if not gpus:
        return Devices("tensorflow", "cpu", ("cpu",))
    tf = tf_runtime.tensorflow()
    details = [tf.config.experimental.get_device_details(gpu) for gpu in gpus]
    names = tuple(str(d.get("device_name", gpu.name)) for d, gpu in zip(details, gpus, strict=True))
    # TensorFlow's float16 path (with loss scaling) is its tested one on every GPU.
    return Devices("tensorflow", "gpu", names, bfloat16=False)


def _jax_devices() -> Devices:
    import jax

    devices = jax.devices()
    # JAX names a CUDA or ROCm device's platform "gpu"; a PJRT plugin may give its own name.
    kind = {"gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}.get(str(devices[0].platform).lower(), "cpu")
    if kind == "cpu":
        return Devices("jax", "cpu", ("cpu",))
    capability = str(getattr(devices[0], "compute_capability", "8.0"))
    bf16 = kind == "tpu" or _major(capability) >= 8
    return Devices("jax", kind, tuple(str(d.device_kind) for d in devices), bfloat16=bf16)


def _torch_devices() -> Devices:
    import torch

    if not torch.cuda.is_available():
        return Devices("torch", "cpu", ("cpu",))
    # Keras's torch backend fits on one device: name the one it uses, whatever else is there.
    return Devices("torch", "gpu", (torch.cuda.get_device_name(0),), bfloat16=torch.cuda.is_bf16_supported())


def _major(capability: str) -> int:
    try:
        return int(capability.split(".")[0])
    except ValueError:
        return 0


@contextlib.contextmanager
def distribution(devices: Devices) -> Iterator[None]:
    """Build and compile the model inside this: the backend's own engine for several devices."""
    if devices.backend == "tensorflow":
        from . import tf_runtime

        tf = tf_runtime.tensorflow()
        strategy = tf.distribute.MirroredStrategy() if len(devices.names) > 1 else tf.distribute.get_strategy()
        with strategy.scope():
            yield
        return
    if devices.backend == "jax" and len(devices.names) > 1:
        import keras

        keras.distribution.set_distribution(keras.distribution.DataParallel())
        try:
            yield
        finally:
            keras.distribution.set_distribution(None)
        return
    yield


def engine(devices: Devices) -> str:
    """How several devices are used, in words (logged and written to run.json)."""
    if len(devices.names) < 2 or not devices.accelerated:
        return "one device"
    return {"tensorflow": "tf.distribute.MirroredStrategy", "jax": "keras.distribution.DataParallel"}.get(
        devices.backend, "one device (Keras's torch backend trains on one)")
