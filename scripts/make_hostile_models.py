#!/usr/bin/env python3
"""Build the hostile model corpus (tests/hostile/models/): small TFLite models that load, whose spec
would match their bytes, and that are nonetheless unfit: each names what the edge must refuse at load,
or what it must catch per frame. tests/test_hostile_edge.py writes a matching spec for each (the sha256
check passes) and expects the refusal written in tests/hostile/models/cases.json.

    python scripts/make_hostile_models.py [--out tests/hostile/models]

Needs TensorFlow (the training extra); the committed files are what the tests read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "hostile" / "models"
SIDE = 84  # INPUT_SIZE


def build(tf, name: str) -> list[Callable]:
    image = tf.TensorSpec([1, SIDE, SIDE, 1], tf.float32)
    weights = tf.constant([[0.5, -0.2, 0.1, 0.3, -0.1, 0.2]], tf.float32)

    def probabilities(x):  # a valid softmax over 6, from the picture's mean
        mean = tf.reduce_mean(x, axis=[1, 2])  # (1, 1)
        return tf.nn.softmax(mean / 255.0 * weights * 4.0)

    def tile_huge(x):  # 84x84 tiled 600x600: a 50,400^2 float tensor (10 GB) from a few hundred bytes
        big = tf.tile(x, [1, 600, 600, 1])
        return tf.nn.softmax(tf.reduce_mean(big, axis=[1, 2]) * weights)

    def gather_out_of_range(x):  # index 0 for a black picture, the brightest pixel for anything else
        index = tf.cast(tf.reduce_max(x), tf.int32)
        table = tf.eye(6, dtype=tf.float32)
        return tf.reshape(tf.gather(table, index), [1, 6])

    def scalar_output(x):
        return tf.reduce_mean(x)

    def nan_output(x):
        zero = x - x
        return tf.reshape(tf.reduce_mean(zero / zero, axis=[1, 2, 3]), [1, 1]) * tf.ones([1, 6])

    def infinite_output(x):
        return tf.exp(tf.reduce_mean(x, axis=[1, 2]) * 0.0 + 1000.0) * tf.ones([1, 6])

    def negative_output(x):
        return -probabilities(x)

    def not_summing_to_one(x):
        return probabilities(x) * 0.0 + 0.5

    def int32_output(x):
        return tf.cast(probabilities(x) * 100.0, tf.int32)

    def seven_outputs(x):
        return tf.nn.softmax(tf.reduce_mean(x, axis=[1, 2]) * tf.ones([1, 7]))

    def nan_on_bright_frames(x):  # fine on black and mid-gray pictures; NaN where the mean is above 250
        mean = tf.reduce_mean(x, axis=[1, 2])
        return probabilities(x) + tf.sqrt(250.0 - mean) * 0.0

    functions = {
        "tile_huge": (tile_huge, [image]),
        "gather_out_of_range": (gather_out_of_range, [image]),
        "scalar_output": (scalar_output, [image]),
        "nan_output": (nan_output, [image]),
        "infinite_output": (infinite_output, [image]),
        "negative_output": (negative_output, [image]),
        "not_summing_to_one": (not_summing_to_one, [image]),
        "int32_output": (int32_output, [image]),
        "seven_outputs": (seven_outputs, [image]),
        "nan_on_bright_frames": (nan_on_bright_frames, [image]),
        "two_inputs": (lambda x, y: probabilities(x + y), [image, image]),
    }
    if name:
        functions = {name: functions[name]}
    return functions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", default="", help="build this one model only")
    args = parser.parse_args(argv)

    import tensorflow as tf

    args.out.mkdir(parents=True, exist_ok=True)
    for name, (function, signature) in build(tf, args.only).items():
        concrete = tf.function(function, input_signature=signature).get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        data = converter.convert()
        (args.out / f"{name}.tflite").write_bytes(data)
        print(f"{name}: {len(data):,} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
