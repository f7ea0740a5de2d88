"""The contract shared by training, conversion and the edge: labels, input size, versions."""

from __future__ import annotations

from pathlib import Path

# Fixed order: index i of every model output is LABELS[i].
LABELS: tuple[str, ...] = ("Angry", "Disgust", "Happy", "Neutral", "Sad", "Surprise")
INPUT_SIZE: tuple[int, int] = (84, 84)  # (height, width) of the grayscale face the model sees
# Bump whenever preprocess_face() changes what it produces, so that stale caches and
# models built on the old preprocessing are refused instead of silently skewed.
# 2: faces pass through FACE_SIZE before INPUT_SIZE; the margin comes from the model's spec.
PREPROCESS_VERSION = 2
# Training faces are 48x48 crops (FER2013/FER+, CK+) upscaled to INPUT_SIZE. A face cropped from a
# camera frame is first shrunk to the same 48x48, so the model sees the detail it was trained on.
FACE_SIZE = 48
# Growth of a Haar box on each side (fraction of its size) that frames a face the way the training
# crops are framed: measured by `ferlite.train.framing` (the Haar box is ~84% of a FER+/CK+ crop).
# A model's spec carries its own measured value; this is the default for models without one.
DEFAULT_MARGIN = 0.1
# Image files every part reads (fer-edge's photo sources, training data sets, calibration folders).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"})
# What ships inside the package (package data, there after any `pip install`): the pretrained int8 model with
# its spec, and the demo photos `--source demo` reads.
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # ferlite/edge
SHIPPED_MODEL = PACKAGE_DIR / "models" / "ferlite_int8.tflite"
DEMO_DIR = PACKAGE_DIR / "demo"
