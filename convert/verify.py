"""Compare the written TFLite model (run through ferlite.edge's runner) with the Keras model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferlite.edge.runner import ModelRunner

from .tflite import model_input


@dataclass(frozen=True)
class Verification:
    faces: int
    agreement: float  # top-1 agreement, TFLite vs Keras
    max_prob_diff: float
    float_accuracy: float | None
    tflite_accuracy: float | None
    batchable: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runner_probabilities(runner: ModelRunner, faces: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([runner.classify(faces[i : i + batch])
                           for i in range(0, len(faces), batch)])


def verify(
    model: Any, tflite_path: Path, faces: np.ndarray, labels: np.ndarray | None, threads: int = 0
) -> Verification:
    runner = ModelRunner(tflite_path, threads or None)
    lite = runner_probabilities(runner, faces)
    ref = np.asarray(model.predict(model_input(faces), batch_size=64, verbose=0))
    lite_top, ref_top = lite.argmax(axis=1), ref.argmax(axis=1)
    return Verification(
        faces=len(faces),
        agreement=float(np.mean(lite_top == ref_top)),
        max_prob_diff=float(np.max(np.abs(lite - ref))),
        float_accuracy=float(np.mean(ref_top == labels)) if labels is not None else None,
        tflite_accuracy=float(np.mean(lite_top == labels)) if labels is not None else None,
        batchable=runner.batchable,
    )
