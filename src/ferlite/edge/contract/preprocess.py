"""One preprocessing path for training, calibration and the edge (no train/serve skew).

face box -> crop (with margin) -> grayscale -> shrink to FACE_SIZE (the training faces' resolution)
-> resize to the model's input size.
Quantisation to the model's dtype happens in the runner, with the interpreter's own
scale and zero point.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from . import DEFAULT_MARGIN, FACE_SIZE, INPUT_SIZE

Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grayscale view of a BGR, BGRA or single-channel image (a YUV420 Y plane is already gray)."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"unsupported image shape {image.shape}")


def expand_box(box: Sequence[int], margin: float, frame_shape: Sequence[int]) -> Box:
    """Grow a box by `margin` (fraction of its size) on each side, clipped to the frame."""
    x, y, w, h = (int(v) for v in box)
    dx, dy = round(w * margin), round(h * margin)
    frame_h, frame_w = int(frame_shape[0]), int(frame_shape[1])
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(frame_w, x + w + dx), min(frame_h, y + h + dy)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {tuple(box)} lies outside a frame of shape {tuple(frame_shape)}")
    return x0, y0, x1 - x0, y1 - y0


def shrink_to_face_size(gray: np.ndarray, face_size: int = FACE_SIZE) -> np.ndarray:
    """A crop larger than `face_size` shrunk to face_size x face_size (0: never), else as it is: the
    face at the resolution the model sees before the upscale to its input size."""
    if face_size and (gray.shape[0] > face_size or gray.shape[1] > face_size):
        return cv2.resize(gray, (face_size, face_size), interpolation=cv2.INTER_AREA)
    return gray


def resize_face(gray: np.ndarray, size: tuple[int, int] = INPUT_SIZE, face_size: int = FACE_SIZE) -> np.ndarray:
    """Resize a grayscale face crop to (height, width) = size, as uint8.

    A crop larger than `face_size` is first shrunk to face_size x face_size (0: never): the model
    learnt from faces of that resolution, upscaled, and a sharper camera face would look unlike them.
    """
    gray = shrink_to_face_size(gray, face_size)
    out_h, out_w = size
    if gray.shape[:2] == (out_h, out_w):
        return np.ascontiguousarray(gray, dtype=np.uint8)
    shrinking = gray.shape[0] > out_h or gray.shape[1] > out_w
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (out_w, out_h), interpolation=interpolation).astype(np.uint8, copy=False)


def preprocess_face(
    frame: np.ndarray,
    box: Sequence[int] | None = None,
    *,
    margin: float = DEFAULT_MARGIN,
    size: tuple[int, int] = INPUT_SIZE,
    face_size: int = FACE_SIZE,
) -> np.ndarray:
    """Crop one face from a frame and return it as a (height, width) uint8 gray image.

    `box=None` means the whole frame is the face (pre-cropped data sets, --whole-frame).
    The crop is taken before the colour conversion so that only face pixels are converted.
    """
    if box is not None:
        x, y, w, h = expand_box(box, margin, frame.shape)
        frame = frame[y : y + h, x : x + w]
    return resize_face(to_gray(frame), size, face_size)


def preprocess_faces(
    frame: np.ndarray,
    boxes: Sequence[Sequence[int]],
    *,
    margin: float = DEFAULT_MARGIN,
    size: tuple[int, int] = INPUT_SIZE,
    face_size: int = FACE_SIZE,
) -> np.ndarray:
    """Batch of faces, shape (n, height, width), uint8."""
    out = np.empty((len(boxes), size[0], size[1]), dtype=np.uint8)
    for i, box in enumerate(boxes):
        out[i] = preprocess_face(frame, box, margin=margin, size=size, face_size=face_size)
    return out
