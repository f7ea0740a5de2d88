"""The model runner: one interpreter, built once, that turns face crops into probabilities."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .contract import LABELS
from .errors import ModelLoadError
from .native import native_stderr_to_log
from .spec import ModelSpec, ModelSpecError, read_spec

log = logging.getLogger(__name__)

_INTEGER_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


def _interpreter_factory() -> tuple[Callable[..., Any], str]:
    """ai-edge-litert first, then tflite-runtime, then TensorFlow's own (imported only as a last resort)."""
    for module_name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter, module_name.split(".")[0]
    try:
        tf = importlib.import_module("tensorflow")
    except ImportError as e:
        raise ModelLoadError("no TFLite interpreter: install ai-edge-litert (pip install 'ferlite[edge]')") from e
    return tf.lite.Interpreter, "tensorflow.lite"


def default_threads() -> int:
    return os.cpu_count() or 1


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Float -> integer tensor with the interpreter's own parameters: round, then clip."""
    low, high = _INTEGER_RANGES[np.dtype(dtype)]
    q = np.round(values.astype(np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, low, high).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


class ModelRunner:
    """Classifies batches of preprocessed faces (n, h, w) uint8 into (n, len(LABELS)) probabilities."""

    def __init__(self, model_path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: model file not found")
        self.spec: ModelSpec = read_spec(self.path)
        factory, self.backend = _interpreter_factory()
        try:
            with native_stderr_to_log(log):  # "Created TensorFlow Lite XNNPACK delegate" at any log level
                self._interp = factory(
                    model_path=str(self.path), num_threads=threads or default_threads()
                )
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{self.path}: not a loadable TFLite model ({e})") from e
        self._input = self._interp.get_input_details()[0]
        self._output = self._interp.get_output_details()[0]
        self._check_tensors()
        self._batch = 1
        with native_stderr_to_log(log):  # the delegate is made at the first invoke
            self.batchable = self._probe_batching()
        log.info(
            "model %s loaded with %s (%s input, batching %s)",
            self.path, self.backend, self.input_dtype.name, "on" if self.batchable else "off",
        )

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def _check_tensors(self) -> None:
        height, width = self.spec.input_size
        shape = tuple(int(v) for v in self._input["shape"])
        if shape[1:] != (height, width, 1):
            raise ModelLoadError(
                f"{self.path}: input shape {list(shape)} does not match spec input "
                f"{height}x{width}x1"
            )
        out_shape = tuple(int(v) for v in self._output["shape"])
        if out_shape[-1] != len(LABELS):
            raise ModelLoadError(
                f"{self.path}: {out_shape[-1]} outputs, spec has {len(LABELS)} labels"
            )
        if self.input_dtype not in (np.dtype(np.float32), *_INTEGER_RANGES):
            raise ModelLoadError(f"{self.path}: unsupported input type {self.input_dtype}")

    def _resize(self, batch: int) -> None:
        height, width = self.spec.input_size
        self._interp.resize_tensor_input(self._input["index"], [batch, height, width, 1])
        self._interp.allocate_tensors()
        self._input = self._interp.get_input_details()[0]
        self._output = self._interp.get_output_details()[0]
        self._batch = batch

    def _probe_batching(self) -> bool:
        """Models exported with a fixed batch of 1 may still run batches; find out once, at load."""
        height, width = self.spec.input_size
        try:
            self._resize(2)
            self._invoke(np.zeros((2, height, width), dtype=np.uint8))
            ok = self._interp.get_tensor(self._output["index"]).shape[0] == 2
        except (ValueError, RuntimeError):
            ok = False
        self._resize(1)
        return ok

    def _invoke(self, faces: np.ndarray) -> np.ndarray:
        batch = faces[..., np.newaxis].astype(np.float32)
        if self.input_dtype != np.dtype(np.float32):
            scale, zero_point = self._input["quantization"]
            batch = quantize(batch, scale, zero_point, self.input_dtype)
        self._interp.set_tensor(self._input["index"], batch)
        self._interp.invoke()
        raw = self._interp.get_tensor(self._output["index"])
        if raw.dtype == np.float32:
            return raw.copy()
        scale, zero_point = self._output["quantization"]
        return dequantize(raw, scale, zero_point)

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """faces: (n, h, w) uint8 gray crops from preprocess_faces(); returns (n, 6) probabilities."""
        count = len(faces)
        if count == 0:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        if self.batchable:
            if count != self._batch:
                self._resize(count)
            return self._invoke(faces)
        if self._batch != 1:
            self._resize(1)
        return np.concatenate([self._invoke(faces[i : i + 1]) for i in range(count)])


__all__ = ["ModelLoadError", "ModelRunner", "ModelSpecError", "dequantize", "quantize"]
