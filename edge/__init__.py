"""ferlite.edge: the contract (labels, preprocessing, model spec) and the edge runtime.

Never imports TensorFlow: it runs on a Raspberry Pi with only numpy, OpenCV and LiteRT.
"""

from .contract import DEFAULT_MARGIN, INPUT_SIZE, LABELS, PREPROCESS_VERSION
from .preprocess import preprocess_face, preprocess_faces

__all__ = [
    "DEFAULT_MARGIN",
    "INPUT_SIZE",
    "LABELS",
    "PREPROCESS_VERSION",
    "preprocess_face",
    "preprocess_faces",
]
