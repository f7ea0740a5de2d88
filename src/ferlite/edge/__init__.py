"""ferlite.edge: the contract (labels, preprocessing, model spec), the edge runtime and the in-process API.

Never imports TensorFlow: it runs on a Raspberry Pi with only numpy, OpenCV and LiteRT.

    from ferlite.edge import recognize
    for face in recognize(image):           # BGR, gray or a YUV420 Y plane (uint8), or a file path
        print(face.label, face.score, face.box)

Photos to try it on ship inside the package: `DEMO_DIR / "astronaut.jpg"`, or all of them, `demo_photos()`.
`__version__` is the installed distribution's version (`ferlite` itself is a namespace package of three
folders and has none; see ferlite.edge.contract.version).

Every name that needs numpy or OpenCV (Recognizer, recognize, draw_result, the result types,
preprocess_face(s)) loads on first use (a module `__getattr__`, as rich does), so that `import ferlite.edge`
and the commands that only read the feed (fer-watch, fer-mqtt) never load OpenCV (~330 ms, ~30 MB on a Pi);
tests/test_light_imports.py holds that.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contract import DEFAULT_MARGIN, DEMO_DIR, INPUT_SIZE, LABELS, PREPROCESS_VERSION

if TYPE_CHECKING:  # what mypy sees; at run time __getattr__ imports each on first use
    from .algorithm.pipeline import FaceResult, FrameResult, TrackEvent, frame_to_json
    from .apps.annotate import draw_result
    from .contract.errors import FerliteError, InputError
    from .contract.preprocess import preprocess_face, preprocess_faces
    from .runtime.api import Recognizer, recognize
    from .runtime.feed import iterate_messages

    __version__: str

_LAZY = {  # name -> the module (under this package) that defines it
    "preprocess_face": "contract.preprocess",
    "preprocess_faces": "contract.preprocess",
    "Recognizer": "runtime.api",
    "recognize": "runtime.api",
    "draw_result": "apps.annotate",
    "FaceResult": "algorithm.pipeline",
    "FrameResult": "algorithm.pipeline",
    "TrackEvent": "algorithm.pipeline",
    "frame_to_json": "algorithm.pipeline",
    "FerliteError": "contract.errors",
    "InputError": "contract.errors",
    "iterate_messages": "runtime.feed",
}


_DEMO_SUFFIXES = (".jpg", ".png")


def demo_photos() -> list[Path]:
    """The demo photos shipped inside the package, sorted by name (`fer-edge --source demo` reads the same).

    Works from any folder: the paths are absolute, inside the installed package.
    """
    return sorted(path for path in DEMO_DIR.iterdir() if path.suffix.lower() in _DEMO_SUFFIXES)


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed metadata on first use (importlib.metadata costs ms)
        from .contract.version import package_version

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
    "iterate_messages",
    "preprocess_face",
    "preprocess_faces",
    "recognize",
]
