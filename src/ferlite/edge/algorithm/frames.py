"""The check every frame given to the in-process API passes: what it must be, and what it says when not."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..contract.errors import InputError

EXPECTED = "a uint8 numpy array: BGR (H, W, 3), BGRA (H, W, 4), gray (H, W) or a YUV420 Y plane (H, W)"


def check_frame(image: Any, what: str = "frame", max_pixels: int | None = None) -> np.ndarray:
    """Return `image` as the pipeline takes it (C-contiguous), or raise InputError saying why not.

    Args:
        image: the frame to check.
        what: the argument's name, for the message.
        max_pixels: the most pixels (width x height) taken (the `max_image_pixels` setting); None:
            no limit.

    Returns:
        The same array, or a contiguous copy of a strided view (a flipped or padded one).

    Raises:
        InputError: None, not an array, an empty array, a dtype other than uint8, a shape that
            is neither gray nor BGR/BGRA, or more pixels than max_pixels.
    """
    if image is None:
        raise InputError(f"{what} is None, expected {EXPECTED} (cv2.imread returns None for a file it cannot read)")
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what} is a {type(image).__name__}, expected {EXPECTED}")
    if image.size == 0:
        raise InputError(f"{what} is empty (shape {image.shape}), expected {EXPECTED}")
    if image.dtype != np.uint8:
        raise InputError(
            f"{what} has dtype {image.dtype}, expected uint8 (0..255); e.g. "
            f"np.clip(image * 255, 0, 255).astype(np.uint8) for floats in 0..1"
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise InputError(f"{what} has shape {image.shape}, expected {EXPECTED}")
    if max_pixels is not None and image.shape[0] * image.shape[1] > max_pixels:
        raise InputError(
            f"{what} is {image.shape[1]}x{image.shape[0]} pixels, more than max_image_pixels ({max_pixels}); "
            "shrink it (cv2.resize) or raise max_image_pixels"
        )
    if not image.flags.c_contiguous:
        image = np.ascontiguousarray(image)
    return image
