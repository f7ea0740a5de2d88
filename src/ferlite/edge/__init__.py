"""ferlite.edge: the contract (labels, preprocessing, model spec), the edge runtime and the in-process API.

Never imports TensorFlow: it runs on a Raspberry Pi with only numpy, OpenCV and LiteRT.

    from ferlite.edge import recognize
    for face in recognize(image):           # BGR, gray or a YUV420 Y plane (uint8), or a file path
        print(face.label, face.score, face.box)

Photos to try it on ship inside the package: `DEMO_DIR / "astronaut.jpg"`, or all of them, `demo_photos()`.
`__version__` is the installed distribution's version (`ferlite` itself is a namespace package of three
folders and has none; see ferlite.edge.version).

The API names (Recognizer, recognize, draw_result, the result types, InputError) load on first use,
so that `import ferlite.edge.contract` stays as light as it was.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contract import DEFAULT_MARGIN, INPUT_SIZE, LABELS, PREPROCESS_VERSION
from .preprocess import preprocess_face, preprocess_faces

if TYPE_CHECKING:
    from .annotate import draw_result
    from .api import Recognizer, recognize
    from .errors import FerliteError, InputError
    from .pipeline import FaceResult, FrameResult, TrackEvent, frame_to_json

_LAZY = {
    "Recognizer": "api",
    "recognize": "api",
    "draw_result": "annotate",
    "FaceResult": "pipeline",
    "FrameResult": "pipeline",
    "TrackEvent": "pipeline",
    "frame_to_json": "pipeline",
    "FerliteError": "errors",
    "InputError": "errors",
}


# The photos shipped inside the package (package data, so they are there after any `pip install`).
DEMO_DIR = Path(__file__).resolve().parent / "demo"
_DEMO_SUFFIXES = (".jpg", ".png")


def demo_photos() -> list[Path]:
    """The demo photos shipped inside the package, sorted by name (`fer-edge --source demo` reads the same).

    Works from any folder: the paths are absolute, inside the installed package.
    """
    return sorted(path for path in DEMO_DIR.iterdir() if path.suffix.lower() in _DEMO_SUFFIXES)


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed metadata on first use (importlib.metadata costs ms)
        from .version import package_version

        value: Any = package_version()
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MARGIN",
    "DEMO_DIR",
    "INPUT_SIZE",
    "LABELS",
    "PREPROCESS_VERSION",
    "FaceResult",
    "FerliteError",
    "FrameResult",
    "InputError",
    "Recognizer",
    "TrackEvent",
    "demo_photos",
    "draw_result",
    "frame_to_json",
    "preprocess_face",
    "preprocess_faces",
    "recognize",
]
