"""TFLiteConverter on a fixed batch-1 concrete function, full-integer int8 by default."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from ferlite.edge.contract import INPUT_SIZE

from .errors import ConversionError

log = logging.getLogger(__name__)

QUANTIZATIONS = ("int8", "float16", "float32")


def model_input(faces: np.ndarray) -> np.ndarray:
    """(n, h, w) uint8 faces -> (n, h, w, 1) float32 raw pixels, as the model and the runner expect."""
    return faces[..., np.newaxis].astype(np.float32)


def fixed_batch(model: Any) -> Any:
    """The model behind an input of batch 1, so the converter adds no dynamic-shape ops."""
    import keras

    height, width = INPUT_SIZE
    face = keras.Input((height, width, 1), batch_size=1, name="face")
    return keras.Model(face, model(face, training=False), name=model.name)


FLOOR_MARGIN = 2.0  # logits below (lowest runner-up logit seen in calibration - this) are floored


def logit_floor(model: Any, calibration: np.ndarray, margin: float = FLOOR_MARGIN) -> tuple[Any, float | None]:
    """The model with its softmax layer split into dense -> ReLU(logits - floor) -> softmax.

    Softmax ignores a common shift, and a logit far below the runner-up never decides the top-1,
    so flooring them changes no decision; but the int8 logit tensor then spans
    [floor, max] instead of [min, max], a finer step, and fewer close top-2 pairs collapse to
    the same int8 value (the main source of int8/float disagreement). The floor is the lowest
    second-highest logit over the calibration faces minus `margin`.
    Returns (model, floor); (model, None) when the last layer is not a softmax dense layer.
    """
    import keras

    last = model.layers[-1]
    if not isinstance(last, keras.layers.Dense) or last.activation is not keras.activations.softmax:
        log.info("last layer is not a softmax dense layer: no logit floor")
        return model, None
    features = keras.Model(model.inputs, last.input)
    kernel, bias = last.get_weights()
    hidden = features.predict(model_input(calibration), batch_size=64, verbose=0)
    logits = hidden @ kernel + bias
    floor = float(np.sort(logits, axis=1)[:, -2].min() - margin)
    log.info("logits over calibration %.2f..%.2f; floor at %.2f", logits.min(), logits.max(), floor)
    dense = keras.layers.Dense(kernel.shape[1], activation="relu", name="logits_floored")
    x = features(model.inputs[0])
    out = keras.layers.Softmax(name="probabilities")(dense(x))
    floored = keras.Model(model.inputs, out, name=model.name)
    dense.set_weights([kernel, bias - floor])
    return floored, floor


def convert(model: Any, quantization: str = "int8", calibration: np.ndarray | None = None) -> bytes:
    """TFLite flatbuffer bytes; int8 needs `calibration` faces (n, h, w) uint8."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed_batch(model))
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 conversion needs calibration faces")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        return bytes(converter.convert())
    except Exception as e:  # the converter raises ConverterError, ValueError, RuntimeError...
        raise ConversionError(f"TFLite conversion ({quantization}) failed: {e}") from e


def _representative(faces: np.ndarray) -> Iterator[list[np.ndarray]]:
    for face in faces:
        yield [model_input(face[np.newaxis])]
