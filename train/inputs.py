"""tf.data input pipelines from in-memory faces; augmentation runs here, never in the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf


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


def _uniform(n: tf.Tensor, limit: float) -> tf.Tensor:
    return tf.random.uniform([n], -limit, limit)


def affine_params(n: tf.Tensor, aug: Augmentation, height: int, width: int) -> tf.Tensor:
    """(n, 8) projective transforms (output pixel -> input pixel) for random flip, rotation,
    shear, zoom and shift about the image centre, all fused into one matrix per image."""
    theta = _uniform(n, np.deg2rad(aug.rotation_degrees))
    cos, sin = tf.cos(theta), tf.sin(theta)
    shear_x, shear_y = _uniform(n, aug.shear), _uniform(n, aug.shear)
    zoom_x, zoom_y = 1.0 + _uniform(n, aug.zoom), 1.0 + _uniform(n, aug.zoom)
    flip = tf.where(tf.random.uniform([n]) < 0.5, -1.0, 1.0) if aug.flip else tf.ones([n])
    # A = rotation @ shear @ zoom @ flip, written out.
    s00, s01, s10, s11 = zoom_x * flip, shear_x * zoom_y, shear_y * zoom_x * flip, zoom_y
    a00, a01 = cos * s00 - sin * s10, cos * s01 - sin * s11
    a10, a11 = sin * s00 + cos * s10, sin * s01 + cos * s11
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    tx, ty = _uniform(n, aug.shift * width), _uniform(n, aug.shift * height)
    a02 = cx - a00 * cx - a01 * cy + tx
    a12 = cy - a10 * cx - a11 * cy + ty
    zeros = tf.zeros([n])
    return tf.stack([a00, a01, a02, a10, a11, a12, zeros, zeros], axis=1)


def augment(images: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    """Random affine augmentation of a float batch (n, h, w, 1): one resampling per image."""
    height, width = images.shape[1], images.shape[2]
    transforms = affine_params(tf.shape(images)[0], aug, height, width)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.constant([height, width]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST",
    )


def _as_input(faces: tf.Tensor) -> tf.Tensor:
    return tf.cast(faces[..., tf.newaxis], tf.float32)


def train_dataset(
    faces: np.ndarray, targets: np.ndarray, batch_size: int, seed: int,
    aug: Augmentation | None = Augmentation(), weights: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Shuffled every epoch, batched, augmented in parallel, prefetched. `targets` is (n, classes)
    (one-hot or a vote distribution); `weights` optional per-face loss weights."""
    columns: tuple[np.ndarray, ...] = (faces, targets.astype(np.float32))
    if weights is not None:
        columns += (weights.astype(np.float32),)
    ds = tf.data.Dataset.from_tensor_slices(columns)
    ds = ds.shuffle(len(faces), seed=seed, reshuffle_each_iteration=True).batch(batch_size)

    def prepare(x: tf.Tensor, *rest: tf.Tensor) -> tuple[tf.Tensor, ...]:
        x = _as_input(x)
        if aug is not None:
            x = augment(x, aug)
        return (x, *rest)

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def eval_dataset(faces: np.ndarray, targets: np.ndarray | None, batch_size: int) -> tf.data.Dataset:
    """In order, no augmentation; `targets` (n, classes) floats, or None for prediction only."""
    if targets is None:
        ds = tf.data.Dataset.from_tensor_slices(faces).batch(batch_size).map(_as_input)
    else:
        ds = tf.data.Dataset.from_tensor_slices((faces, targets.astype(np.float32))).batch(batch_size)
        ds = ds.map(lambda x, y: (_as_input(x), y))
    return ds.prefetch(tf.data.AUTOTUNE)


def class_weights(labels: np.ndarray, classes: int, power: float = 1.0) -> dict[int, float]:
    """Balanced weights (n / (k * count)) ** power: 1 fully balanced, 0.5 the square root (a rare
    class counts more without being over-called); classes absent from training get weight 0."""
    counts = np.bincount(labels, minlength=classes)
    present = counts > 0
    total, k = counts.sum(), int(present.sum())
    return {c: float(total / (k * counts[c])) ** power if present[c] else 0.0 for c in range(classes)}


def sample_weights(labels: np.ndarray, weights: dict[int, float]) -> np.ndarray:
    return np.array([weights[int(label)] for label in labels], dtype=np.float32)
