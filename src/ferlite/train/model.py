"""The hybrid CNN: five 3x3 conv blocks (conv -> BN -> ReLU -> 2x2 max pool), three dense layers.

Input: raw pixel values 0..255 as float, shape (84, 84, 1); the 1/255 rescaling is inside the
model, so the int8 input scale is about 1 and the edge runner feeds raw pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import keras

from ferlite.edge.contract import INPUT_SIZE, LABELS

from .config import DEFAULTS

DEFAULT_FILTERS = (32, 64, 128, 128, 256)
DEFAULT_DENSE = (256, 128)  # two hidden dense layers; the third is the 6-way softmax
DEFAULT_DROPOUT: float = DEFAULTS["dropout"]  # fer-train's --dropout default, written once there


@dataclass(frozen=True)
class Architecture:
    filters: tuple[int, ...] = DEFAULT_FILTERS
    dense: tuple[int, ...] = DEFAULT_DENSE
    dropout: float = DEFAULT_DROPOUT
    bn_momentum: float = 0.9  # 0.99 lags badly in short CPU runs (validation collapses early)

    @classmethod
    def scaled(
        cls, width: float = 1.0, filters: Sequence[int] | None = None,
        dense: Sequence[int] | None = None, dropout: float = DEFAULT_DROPOUT,
    ) -> Architecture:
        """Defaults times `width`; explicit filter / dense lists win over the multiplier."""
        def scale(values: Sequence[int]) -> tuple[int, ...]:
            return tuple(max(1, round(v * width)) for v in values)

        return cls(
            tuple(filters) if filters else scale(DEFAULT_FILTERS),
            tuple(dense) if dense else scale(DEFAULT_DENSE),
            dropout,
        )

    def to_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@keras.saving.register_keras_serializable(package="ferlite")
class FlattenAnyBatch(keras.layers.Layer):
    """Flatten as reshape(-1, features): no batch size is baked in, so an int8 model exported
    with batch 1 still runs batches of faces on the edge."""

    def call(self, inputs: Any) -> Any:
        features = math.prod(int(d) for d in inputs.shape[1:])
        return keras.ops.reshape(inputs, (-1, features))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], math.prod(int(d) for d in input_shape[1:]))


def build_model(arch: Architecture = Architecture(), name: str = "ferlite_hybrid_cnn") -> keras.Model:
    if len(arch.filters) != 5:
        raise ValueError(f"the hybrid CNN has five conv blocks, got {len(arch.filters)} filter sizes")
    if len(arch.dense) != 2:
        raise ValueError(f"two hidden dense layers expected (the third is the softmax), got {arch.dense}")
    height, width = INPUT_SIZE
    inputs = keras.Input((height, width, 1), name="face")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for i, filters in enumerate(arch.filters, start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=arch.bn_momentum, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = FlattenAnyBatch(name="flatten")(x)
    for i, units in enumerate(arch.dense, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"dense{i}")(x)
        x = keras.layers.Dropout(arch.dropout, name=f"dropout{i}")(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", dtype="float32",
                                 name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)
