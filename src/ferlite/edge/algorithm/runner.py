"""The model runner: one interpreter, built once, that turns face crops into probabilities.

A model is refused at load (ModelLoadError, one line naming the file) unless it is what the edge
can run: one input (batch, height, width, 1) of the spec's size, float32/int8/uint8; one output
(batch, 6), float32/int8/uint8; tensors that fit MAX_TENSOR_BYTES; and probabilities (finite,
within 0..1, summing to 1) for a black picture, a face-like picture and noise. The sha256 in the
spec proves only that spec and bytes belong together, not that the model is sane.

At run time a batch whose outputs are not probabilities (or that the interpreter fails on) raises
ModelOutputError: an error for that frame, never a result.
"""

from __future__ import annotations

import importlib
import logging
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import LABELS
from ..contract.errors import ModelLoadError, ModelOutputError
from ..contract.spec import ModelSpec, ModelSpecError, read_spec
from .native import native_stderr_to_log

log = logging.getLogger(__name__)

_INTEGER_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}
TENSOR_DTYPES = (np.dtype(np.float32), *_INTEGER_RANGES)
# All tensors of the interpreter together (its arena, the weights, inputs and outputs), at any batch:
# the shipped model needs ~1.4 MB at batch 1, ~5 MB at batch 512. A model past this is refused at load
# (a few hundred bytes can ask for a 50,400^2 tile, ~10 GB), and batches are cut to fit it.
MAX_TENSOR_BYTES = 256 << 20
# Outputs are probabilities: each within 0..1 and, per face, summing to 1 (TFLite's int8 softmax
# rounds each of the six to 1/256; 0.1 leaves room for that and nothing a broken model gives).
PROBABILITY_SLACK = 0.01
SUM_TOLERANCE = 0.1


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


def tensor_bytes(details: Sequence[dict[str, Any]]) -> int:
    """Bytes all these tensors take at their current shapes (Python ints: no overflow)."""
    total = 0
    for detail in details:
        count = 1
        for side in detail["shape"]:
            count *= max(0, int(side))
        total += count * np.dtype(detail["dtype"]).itemsize
    return total


def face_like(height: int, width: int) -> np.ndarray:
    """A gray picture laid out like a face crop (no real face): mid-gray background, a lighter oval,
    dark brows, eyes and mouth, soft edges; the load-time probe runs the model on it, as on a frame.
    Drawn with numpy only: OpenCV's drawing and blurring cost ~0.6 MB of RSS that nothing else in the
    daemon pays."""
    size = 168
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)

    def oval(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        return np.asarray(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0)

    canvas = np.full((size, size), 95, np.float32)
    canvas[oval(84, 88, 52, 66)] = 185
    for cx in (62, 106):
        canvas[oval(cx, 70, 13, 6)] = 45  # eyes
        canvas[oval(cx, 54, 15, 2)] = 60  # brows
    canvas[oval(82, 94, 2, 14)] = 140  # nose
    canvas[oval(84, 125, 22, 9) & (y >= 125)] = 55  # mouth
    # Soft edges and the model's size in one step: the mean of each block of pixels (area resampling).
    rows = np.linspace(0, size, height + 1).astype(int)
    cols = np.linspace(0, size, width + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(canvas, rows[:-1], axis=0), cols[:-1], axis=1)
    counts = np.outer(np.diff(rows), np.diff(cols))
    return np.asarray(np.round(sums / counts), dtype=np.uint8)


def probe_inputs(height: int, width: int) -> np.ndarray:
    """The pictures a model must give probabilities for at load: black, face-like, noise (seeded)."""
    # Seeded noise from an integer hash, not numpy.random: importing numpy.random loads its generators
    # and, through secrets/hmac, hashlib and OpenSSL: ~6.5 MB of RSS in fer-edge for this one picture.
    x = np.arange(1, height * width + 1, dtype=np.uint32) * np.uint32(0x9E3779B9)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x85EBCA6B)
    x ^= x >> np.uint32(13)
    x *= np.uint32(0xC2B2AE35)
    x ^= x >> np.uint32(16)
    noise = (x >> np.uint32(24)).astype(np.uint8).reshape(height, width)
    return np.stack([np.zeros((height, width), np.uint8), face_like(height, width), noise])


def probability_problem(probs: np.ndarray) -> str | None:
    """Why a (n, 6) output is not probabilities, or None when it is."""
    if probs.ndim != 2 or probs.shape[1] != len(LABELS):
        return f"an output of shape {list(probs.shape)}, not (faces, {len(LABELS)})"
    if not np.isfinite(probs).all():
        return "outputs that are not finite (NaN or infinite)"
    if (probs < -PROBABILITY_SLACK).any() or (probs > 1 + PROBABILITY_SLACK).any():
        return f"outputs outside 0..1 (from {float(probs.min()):.3g} to {float(probs.max()):.3g})"
    sums = probs.sum(axis=1)
    if (np.abs(sums - 1.0) > SUM_TOLERANCE).any():
        worst = float(sums[np.argmax(np.abs(sums - 1.0))])
        return f"outputs that do not sum to 1 (a face's sum to {worst:.3g})"
    return None


def _say(error: BaseException) -> str:
    """An interpreter's error as part of one line: its lines joined, cut to 200 characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _check_model_file(path: Path) -> None:
    """ModelLoadError unless `path` names a regular file (saying what it is otherwise)."""
    shown = ascii(os.fspath(path)) if "\0" in os.fspath(path) else os.fspath(path)
    if "\0" in os.fspath(path):
        raise ModelLoadError(f"{shown}: the model's file name holds a NUL byte")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as e:
        raise ModelLoadError(f"{shown}: model file not found") from e
    except OSError as e:
        raise ModelLoadError(f"{shown}: cannot read the model file ({e.strerror})") from e
    if not stat.S_ISREG(mode):
        raise ModelLoadError(f"{shown}: {_kind(mode)}, not a model file")


class ModelRunner:
    """Classifies batches of preprocessed faces (n, h, w) uint8 into (n, len(LABELS)) probabilities.

    Not thread-safe (one interpreter): Recognizer serialises its calls.
    """

    def __init__(self, model_path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = Path(model_path)
        _check_model_file(self.path)
        self.spec: ModelSpec = read_spec(self.path)
        factory, self.backend = _interpreter_factory()
        try:
            with native_stderr_to_log(log):  # "Created TensorFlow Lite XNNPACK delegate" at any log level
                self._interp = factory(model_path=str(self.path), num_threads=threads or default_threads())
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{self.path}: not a loadable TFLite model ({_say(e)})") from e
        self._check_tensors()
        self._check_memory("as written")  # before anything is allocated
        try:
            with native_stderr_to_log(log):
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError, MemoryError) as e:
            raise ModelLoadError(f"{self.path}: not a loadable TFLite model ({_say(e)})") from e
        self._refresh()
        self._check_memory("once allocated")  # shapes worked out at allocation (a file may understate them)
        self._batch = 1
        self.max_batch = 1
        with native_stderr_to_log(log):  # the delegate is made at the first invoke
            self._probe()
            self.batchable = self._probe_batching()
        log.info(
            "model %s loaded with %s (%s input, batching %s)",
            self.path, self.backend, self.input_dtype.name, "on" if self.batchable else "off",
        )

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def _refresh(self) -> None:
        self._input = self._interp.get_input_details()[0]
        self._output = self._interp.get_output_details()[0]

    def _check_tensors(self) -> None:
        """One input (1, h, w, 1) of the spec's size and one output (1, 6), each float32, int8 or uint8
        (a quantized one with a usable scale)."""
        inputs = self._interp.get_input_details()
        outputs = self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(
                f"{self.path}: {len(inputs)} input(s) and {len(outputs)} output(s); a face model has one of each"
            )
        self._input, self._output = inputs[0], outputs[0]
        height, width = self.spec.input_size
        shape = [int(v) for v in self._input["shape"]]
        if len(shape) != 4 or shape[0] != 1 or shape[1:] != [height, width, 1]:
            raise ModelLoadError(
                f"{self.path}: input shape {shape[:8]} does not match spec input {height}x{width}x1 "
                "(expected [1, height, width, 1])"
            )
        out_shape = [int(v) for v in self._output["shape"]]
        if len(out_shape) != 2 or out_shape[0] != 1:
            raise ModelLoadError(
                f"{self.path}: output shape {out_shape[:8]}, expected [1, {len(LABELS)}] (a batch of probabilities)"
            )
        if out_shape[-1] != len(LABELS):
            raise ModelLoadError(f"{self.path}: {out_shape[-1]} outputs, spec has {len(LABELS)} labels")
        for role, detail in (("input", self._input), ("output", self._output)):
            dtype = np.dtype(detail["dtype"])
            if dtype not in TENSOR_DTYPES:
                raise ModelLoadError(
                    f"{self.path}: unsupported {role} type {dtype} (float32, int8 or uint8)"
                )
            if dtype in _INTEGER_RANGES:
                scale, zero_point = detail["quantization"]
                low, high = _INTEGER_RANGES[dtype]
                if not (np.isfinite(scale) and scale > 0 and low <= zero_point <= high):
                    raise ModelLoadError(
                        f"{self.path}: {role} quantization scale {scale!r}, zero point {zero_point!r} "
                        "cannot be used"
                    )

    def _check_memory(self, when: str) -> None:
        """ModelLoadError when the interpreter's tensors take more than MAX_TENSOR_BYTES."""
        need = tensor_bytes(self._interp.get_tensor_details())
        if need > MAX_TENSOR_BYTES:
            raise ModelLoadError(
                f"{self.path}: its tensors take {need / 2**20:,.0f} MiB {when}, more than the "
                f"{MAX_TENSOR_BYTES >> 20} MiB a model may use; refused"
            )

    def _resize(self, batch: int) -> None:
        height, width = self.spec.input_size
        self._interp.resize_tensor_input(self._input["index"], [batch, height, width, 1])
        self._interp.allocate_tensors()
        self._refresh()
        self._batch = batch

    def _probe(self) -> None:
        """Run the model on probe_inputs() (black, face-like, noise) one at a time: it must give
        probabilities for each.

        A black picture alone is not enough: a model may index a table with a pixel value and fail
        only on a real face.
        """
        height, width = self.spec.input_size
        for picture in probe_inputs(height, width):
            try:
                probs = self._invoke(picture[np.newaxis])
            except (ValueError, RuntimeError) as e:
                raise ModelLoadError(f"{self.path}: fails on the load-time probe ({_say(e)}); refused") from e
            problem = probability_problem(probs)
            if problem is not None:
                raise ModelLoadError(f"{self.path}: gives {problem} on the load-time probe (black, face-like and noise "
                                     "pictures); refused")

    def _probe_batching(self) -> bool:
        """Models exported with a fixed batch of 1 may still run batches; find out once, at load, and
        how many faces a batch may hold within MAX_TENSOR_BYTES."""
        height, width = self.spec.input_size
        single = tensor_bytes(self._interp.get_tensor_details())
        try:
            self._resize(2)
            double = tensor_bytes(self._interp.get_tensor_details())
            ok = double <= MAX_TENSOR_BYTES
            if ok:
                self._invoke(np.zeros((2, height, width), dtype=np.uint8))
                ok = self._interp.get_tensor(self._output["index"]).shape[0] == 2
        except (ValueError, RuntimeError, MemoryError):
            ok = False
        self._resize(1)
        if ok:
            per_face = max(1, double - single)
            self.max_batch = max(1, min(1024, (MAX_TENSOR_BYTES - single) // per_face))
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
        """faces: (n, h, w) uint8 gray crops from preprocess_faces(); returns (n, 6) probabilities.

        Raises:
            ModelOutputError: the interpreter failed on these faces, or gave something that is not
                probabilities (not finite, outside 0..1, not summing to 1): an error for this batch.
        """
        count = len(faces)
        if count == 0:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        try:
            probs = self._classify(faces)
        except (ValueError, RuntimeError, MemoryError) as e:
            raise ModelOutputError(f"{self.path}: the model failed on {count} face(s) ({_say(e)})") from e
        problem = probability_problem(probs)
        if problem is None and len(probs) != count:
            problem = f"{len(probs)} results for {count} faces"
        if problem is not None:
            raise ModelOutputError(f"{self.path}: the model gave {problem}")
        return probs

    def _classify(self, faces: np.ndarray) -> np.ndarray:
        count = len(faces)
        if self.batchable:
            if count > self.max_batch:  # cut to what fits MAX_TENSOR_BYTES
                return np.concatenate([self._classify(faces[i : i + self.max_batch])
                                       for i in range(0, count, self.max_batch)])
            if count != self._batch:
                self._resize(count)
                if tensor_bytes(self._interp.get_tensor_details()) > MAX_TENSOR_BYTES:  # grew faster than linearly
                    log.warning("%s: a batch of %d faces takes more than %d MiB; classifying one face at a time",
                                self.path, count, MAX_TENSOR_BYTES >> 20)
                    self.batchable = False
                    self._resize(1)
                    return self._classify(faces)
            return self._invoke(faces)
        if self._batch != 1:
            self._resize(1)
        return np.concatenate([self._invoke(faces[i : i + 1]) for i in range(count)])


__all__ = ["ModelLoadError", "ModelOutputError", "ModelRunner", "ModelSpecError", "dequantize", "quantize"]
