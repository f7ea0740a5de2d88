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


def augmenter(aug: Augmentation, seed: int):  # type: ignore[no-untyped-def]
    """A Keras preprocessing stack applied to float batches (n, h, w, 1) of raw pixels."""
    import keras

    layers = []
    if aug.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if aug.rotation_degrees:
        layers.append(keras.layers.RandomRotation(aug.rotation_degrees / 360.0, fill_mode="nearest",
                                                  seed=seed + 1))
    if aug.shear:
        layers.append(keras.layers.RandomShear(aug.shear, aug.shear, fill_mode="nearest",
                                               seed=seed + 2))
    if aug.zoom:
        layers.append(keras.layers.RandomZoom(aug.zoom, aug.zoom, fill_mode="nearest",
                                              seed=seed + 3))
    if aug.shift:
        layers.append(keras.layers.RandomTranslation(aug.shift, aug.shift, fill_mode="nearest",
                                                     seed=seed + 4))
    return keras.Sequential(layers, name="augmentation")


def _as_input(faces: tf.Tensor) -> tf.Tensor:
    return tf.cast(faces[..., tf.newaxis], tf.float32)


def train_dataset(
    faces: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
    aug: Augmentation | None = Augmentation(),
) -> tf.data.Dataset:
    """Shuffled every epoch, batched, augmented in parallel, prefetched."""
    ds = tf.data.Dataset.from_tensor_slices((faces, labels.astype(np.int32)))
    ds = ds.shuffle(len(faces), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    stack = augmenter(aug, seed) if aug else None

    def prepare(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = _as_input(x)
        if stack is not None:
            x = tf.clip_by_value(stack(x, training=True), 0.0, 255.0)
        return x, y

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def eval_dataset(faces: np.ndarray, labels: np.ndarray | None, batch_size: int) -> tf.data.Dataset:
    """In order, no augmentation."""
    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices(faces).batch(batch_size).map(_as_input)
    else:
        ds = tf.data.Dataset.from_tensor_slices((faces, labels.astype(np.int32))).batch(batch_size)
        ds = ds.map(lambda x, y: (_as_input(x), y))
    return ds.prefetch(tf.data.AUTOTUNE)


def class_weights(labels: np.ndarray, classes: int) -> dict[int, float]:
    """Balanced weights n / (k * count); classes absent from training get weight 0."""
    counts = np.bincount(labels, minlength=classes)
    present = counts > 0
    total, k = counts.sum(), int(present.sum())
    return {c: float(total / (k * counts[c])) if present[c] else 0.0 for c in range(classes)}
