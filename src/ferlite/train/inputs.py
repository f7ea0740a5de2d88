"""Training input on any Keras backend (TensorFlow, JAX, PyTorch).

The faces stay uint8 in host memory and go to the device batch by batch through Keras's own array
adapter (no `tf.data`, no per-image Python work). The random affine augmentation runs on the device,
inside jit, as the first layer of a training-only wrapper around the model (`training_model`): it is
written in `keras.ops`, so every backend applies the same transform, and the saved model never holds it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random transforms (fractions of the image size; rotation in degrees)."""

    shift: float = 0.1
    rotation_degrees: float = 10.0
    shear: float = 0.1
    zoom: float = 0.1
    flip: bool = True

    def scaled(self, factor: float) -> Augmentation | None:
        """All ranges times `factor` (flip kept); None for factor 0 (no augmentation)."""
        if factor <= 0:
            return None
        return Augmentation(self.shift * factor, self.rotation_degrees * factor,
                            self.shear * factor, self.zoom * factor, self.flip)


@dataclass(frozen=True)
class AffineDraw:
    """One batch's random draws, (n,) each: rotation (radians), shear, zoom, flip (+1/-1), shift (pixels)."""

    theta: Any
    shear_x: Any
    shear_y: Any
    zoom_x: Any
    zoom_y: Any
    flip: Any
    shift_x: Any
    shift_y: Any


def draw(n: Any, aug: Augmentation, height: int, width: int, seed: Any = None) -> AffineDraw:
    """Uniform draws within `aug`'s ranges (keras.random: the backend's generator, seeded by `seed`)."""
    def uniform(limit: float) -> Any:
        return keras.random.uniform((n,), -limit, limit, seed=seed)

    flip = (keras.ops.where(keras.random.uniform((n,), seed=seed) < 0.5, -1.0, 1.0) if aug.flip
            else keras.ops.ones((n,)))
    return AffineDraw(uniform(float(np.deg2rad(aug.rotation_degrees))), uniform(aug.shear), uniform(aug.shear),
                      1.0 + uniform(aug.zoom), 1.0 + uniform(aug.zoom), flip,
                      uniform(aug.shift * width), uniform(aug.shift * height))


def affine_params(d: AffineDraw, height: int, width: int) -> Any:
    """(n, 8) projective transforms (output pixel -> input pixel) for flip, rotation, shear, zoom and
    shift about the image centre, all fused into one matrix per image."""
    ops = keras.ops
    cos, sin = ops.cos(d.theta), ops.sin(d.theta)
    # A = rotation @ shear @ zoom @ flip, written out.
    s00, s01 = d.zoom_x * d.flip, d.shear_x * d.zoom_y
    s10, s11 = d.shear_y * d.zoom_x * d.flip, d.zoom_y
    a00, a01 = cos * s00 - sin * s10, cos * s01 - sin * s11
    a10, a11 = sin * s00 + cos * s10, sin * s01 + cos * s11
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    a02 = cx - a00 * cx - a01 * cy + d.shift_x
    a12 = cy - a10 * cx - a11 * cy + d.shift_y
    zeros = ops.zeros_like(a00)
    return ops.stack([a00, a01, a02, a10, a11, a12, zeros, zeros], axis=1)


def apply_affine(images: Any, transforms: Any) -> Any:
    """One bilinear resampling per image of a float batch (n, h, w, 1); edge pixels extend outwards.

    TensorFlow has a native kernel for exactly this (ImageProjectiveTransformV3, 8,300 images/s here
    against 2,900 for the gathers); JAX's and PyTorch's `affine_transform` are slower than four gathers
    (JAX 2,900 vs 16,200 images/s on this CPU, PyTorch 1,600 vs 3,200): each backend takes its faster
    one. tests/test_train_backends.py checks both against one numpy reference on every backend."""
    if keras.backend.backend() == "tensorflow":
        return keras.ops.image.affine_transform(images, transforms, interpolation="bilinear",
                                                fill_mode="nearest", data_format="channels_last")
    return gather_affine(images, transforms)


def gather_affine(images: Any, transforms: Any) -> Any:
    """`apply_affine` as four gathers: output pixel (x, y) samples the input at
    (a0 x + a1 y + a2, b0 x + b1 y + b2), clamped to the image, weighted bilinearly."""
    ops = keras.ops
    n, height, width = ops.shape(images)[0], int(images.shape[1]), int(images.shape[2])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs, ys = ops.convert_to_tensor(xs.reshape(1, -1)), ops.convert_to_tensor(ys.reshape(1, -1))
    x = ops.clip(transforms[:, 0:1] * xs + transforms[:, 1:2] * ys + transforms[:, 2:3], 0.0, width - 1.0)
    y = ops.clip(transforms[:, 3:4] * xs + transforms[:, 4:5] * ys + transforms[:, 5:6], 0.0, height - 1.0)
    x0, y0 = ops.floor(x), ops.floor(y)
    fx, fy = x - x0, y - y0
    left, top = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    right, bottom = ops.minimum(left + 1, width - 1), ops.minimum(top + 1, height - 1)
    flat = ops.reshape(images, (n, height * width))

    def at(row: Any, column: Any) -> Any:
        return ops.take_along_axis(flat, row * width + column, axis=1)

    upper = at(top, left) * (1 - fx) + at(top, right) * fx
    lower = at(bottom, left) * (1 - fx) + at(bottom, right) * fx
    return ops.reshape(upper * (1 - fy) + lower * fy, (n, height, width, 1))


def augment(images: Any, aug: Augmentation, seed: Any = None) -> Any:
    """Random affine augmentation of a float batch (n, h, w, 1): one resampling per image."""
    height, width = int(images.shape[1]), int(images.shape[2])
    d = draw(keras.ops.shape(images)[0], aug, height, width, seed)
    return apply_affine(images, affine_params(d, height, width))


@keras.saving.register_keras_serializable(package="ferlite")
class RandomAffine(keras.layers.Layer):
    """`augment` while training, the identity (as float32) otherwise. Lives only in the training
    wrapper and its checkpoints, never in model.keras."""

    def __init__(self, augmentation: dict[str, Any] | None = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")  # resampling stays float32 under mixed precision
        super().__init__(**kwargs)
        self.augmentation = Augmentation(**(augmentation or {}))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        images = keras.ops.cast(inputs, "float32")
        if not training:
            return images
        return augment(images, self.augmentation, self.seed_generator)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "augmentation": asdict(self.augmentation), "seed": self.seed}


def training_model(model: keras.Model, aug: Augmentation | None, seed: int | None = None) -> keras.Model:
    """What fit() trains: `model` behind the on-device augmentation (the same layers, so `model`'s
    weights are the trained ones); `model` itself when there is no augmentation."""
    if aug is None:
        return model
    face = keras.Input(model.input_shape[1:], name="face")
    augmented = RandomAffine(asdict(aug), seed, name="augment")(face)
    return keras.Model(face, model(augmented), name="ferlite_training")


def core_model(model: keras.Model) -> keras.Model:
    """The model inside a training wrapper (a checkpoint), else `model`."""
    if any(isinstance(layer, RandomAffine) for layer in model.layers):
        return next(layer for layer in model.layers if isinstance(layer, keras.Model))
    return model


def as_input(faces: np.ndarray) -> np.ndarray:
    """(n, h, w) uint8 faces -> (n, h, w, 1), still uint8 (a view): the model casts on the device."""
    return faces[..., np.newaxis]


def class_weights(labels: np.ndarray, classes: int, power: float = 1.0) -> dict[int, float]:
    """Balanced weights (n / (k * count)) ** power: 1 fully balanced, 0.5 the square root (a rare
    class counts more without being over-called); classes absent from training get weight 0."""
    counts = np.bincount(labels, minlength=classes)
    present = counts > 0
    total, k = counts.sum(), int(present.sum())
    return {c: float(total / (k * counts[c])) ** power if present[c] else 0.0 for c in range(classes)}


def sample_weights(labels: np.ndarray, weights: dict[int, float]) -> np.ndarray:
    return np.array([weights[int(label)] for label in labels], dtype=np.float32)
