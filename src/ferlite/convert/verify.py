"""Compare the written TFLite model (run through ferlite.edge's runner) with the Keras model.

The gate must say the same thing on every CPU a user converts on. Two things could make it depend
on the machine rather than on the model:

- the float reference: Keras's float32 kernels differ between CPUs (oneDNN or Eigen on x86, ACL on
  Arm: other summation orders, FMA or not). Measured on the test fixture, oneDNN on vs off moved
  probabilities by at most 6.3e-7 and changed no decision; a float TFLite through XNNPACK by 7.8e-7.
  Reduced precision (bfloat16 fast math on Arm, TF32 on a GPU) would move them by ~1e-2, so the
  reference is computed on the CPU, and fer-convert asks oneDNN for strict float32 (cli.py).
- faces too close to call: where the float model's top two probabilities are nearly equal, which
  one wins is decided by rounding, not by the model: on another CPU (or by the int8 output's last
  step) it may go the other way. Such faces are counted and left out of the agreement, so a
  conversion is neither refused nor passed by which way a tie fell on this machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferlite.edge.algorithm.runner import ModelRunner

from .tflite import model_input

# Float32 probabilities of one model differ between CPUs' kernels by under 1e-6 (measured above);
# a top-2 gap below 100x that is a tie as far as any CPU can tell.
FLOAT_NOISE = 1e-4
# A quantised output moves by up to one step per score between kernels (XNNPACK on x86 or Arm,
# TFLite's reference kernels), so a float decision closer than two steps may be taken either way by
# the same file on different CPUs; for an int8 softmax that is 2/256.
OUTPUT_STEPS = 2


@dataclass(frozen=True)
class Verification:
    faces: int
    agreement: float | None  # top-1 agreement, TFLite vs Keras, on the faces with a clear float decision (None: none)
    max_prob_diff: float
    float_accuracy: float | None
    tflite_accuracy: float | None
    batchable: bool
    too_close: int = 0  # faces whose float top-2 gap is under tie_tolerance (not in `agreement`)
    tie_tolerance: float = FLOAT_NOISE
    agreement_all: float | None = None  # top-1 agreement on every face, ties included (for reference)

    @property
    def decided(self) -> int:
        return self.faces - self.too_close

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runner_probabilities(runner: ModelRunner, faces: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([runner.classify(faces[i : i + batch])
                           for i in range(0, len(faces), batch)])


def reference_probabilities(model: Any, faces: np.ndarray) -> np.ndarray:
    """Keras float32 probabilities, computed on the CPU: a GPU would use TF32 (10-bit mantissas)
    for the matrix products unless told otherwise, which moves probabilities by ~1e-3."""
    import keras

    with keras.device("cpu:0"):
        return np.asarray(model.predict(model_input(faces), batch_size=64, verbose=0), dtype=np.float32)


def output_step(tflite_path: Path) -> float:
    """The smallest difference the converted model's output can express: its quantisation scale
    (1/256 for TFLite's int8 softmax), 0 for a float output."""
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_path=str(tflite_path)).get_output_details()[0]
    if np.dtype(detail["dtype"]) == np.float32:
        return 0.0
    return float(detail["quantization"][0])


def tie_tolerance(tflite_path: Path) -> float:
    return max(FLOAT_NOISE, OUTPUT_STEPS * output_step(tflite_path))


def top2_gap(probabilities: np.ndarray) -> np.ndarray:
    ranked = np.sort(probabilities, axis=1)
    return ranked[:, -1] - ranked[:, -2]


def verify(
    model: Any, tflite_path: Path, faces: np.ndarray, labels: np.ndarray | None, threads: int = 0
) -> Verification:
    runner = ModelRunner(tflite_path, threads or None)
    lite = runner_probabilities(runner, faces)
    ref = reference_probabilities(model, faces)
    tolerance = tie_tolerance(tflite_path)
    clear = top2_gap(ref) >= tolerance
    same = lite.argmax(axis=1) == ref.argmax(axis=1)
    return Verification(
        faces=len(faces),
        # None when no face is clear (an untrained model): nothing to judge the converted model by
        agreement=float(np.mean(same[clear])) if clear.any() else None,
        max_prob_diff=float(np.max(np.abs(lite - ref))),
        float_accuracy=float(np.mean(ref.argmax(axis=1) == labels)) if labels is not None else None,
        tflite_accuracy=float(np.mean(lite.argmax(axis=1) == labels)) if labels is not None else None,
        batchable=runner.batchable,
        too_close=int((~clear).sum()),
        tie_tolerance=tolerance,
        agreement_all=float(np.mean(same)),
    )
