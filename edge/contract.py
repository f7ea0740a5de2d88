"""The contract shared by training, conversion and the edge: labels, input size, versions."""

from __future__ import annotations

# Fixed order: index i of every model output is LABELS[i].
LABELS: tuple[str, ...] = ("Angry", "Disgust", "Happy", "Neutral", "Sad", "Surprise")
INPUT_SIZE: tuple[int, int] = (84, 84)  # (height, width) of the grayscale face the model sees
# Bump whenever preprocess_face() changes what it produces, so that stale caches and
# models built on the old preprocessing are refused instead of silently skewed.
PREPROCESS_VERSION = 1
DEFAULT_MARGIN = 0.0
