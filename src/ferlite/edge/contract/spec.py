"""The model spec: what a .tflite expects, written beside it as `<name>.spec.json`.

Every model the project makes carries one. It is checked at load: a missing, broken or
mismatched spec (other labels, input size, preprocessing version, or a spec written for
other model bytes) is refused with a one-line error naming the file.
"""

from __future__ import annotations

import errno
import importlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import DEFAULT_MARGIN, FACE_SIZE, INPUT_SIZE, LABELS, PREPROCESS_VERSION
from .atomic import atomic_write
from .errors import FileRefusedError, ModelSpecError
from .files import open_regular, read_bytes

SPEC_FORMAT = 1
# What each quantization feeds the model: full-integer models take int8 (or uint8) inputs, float16
# models keep float32 inputs and outputs.
INPUT_DTYPES: dict[str, tuple[str, ...]] = {
    "int8": ("int8", "uint8"),
    "float16": ("float32",),
    "float32": ("float32",),
}
MAX_SPEC_BYTES = 1 << 20
MAX_INPUT_SIDE = 1024
MAX_LISTED = 10  # unknown keys named in an error line; the rest are counted
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ModelSpec:
    labels: tuple[str, ...] = LABELS
    input_size: tuple[int, int] = INPUT_SIZE
    preprocess_version: int = PREPROCESS_VERSION
    margin: float = DEFAULT_MARGIN  # growth per side of a detector box that frames faces as in training
    # The detector (edge.algorithm.detector.DETECTORS) the margin was measured with; specs before it: Haar's.
    framing_detector: str = "haar"
    face_size: int = FACE_SIZE  # faces shrink to this resolution before input_size (0: never)
    quantization: str = "int8"
    sha256: str = ""
    source: dict[str, Any] = field(default_factory=dict)  # where it came from: run, data, commands
    format: int = SPEC_FORMAT

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["input_size"] = list(self.input_size)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """A spec from its JSON object; ModelSpecError (one short line) for an unknown key or a value
        of the wrong JSON type. Ranges are check_spec()'s."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(str(key) for key in set(data) - known)
        if unknown:
            listed = ", ".join(_short(key) for key in unknown[:MAX_LISTED])
            more = f" and {len(unknown) - MAX_LISTED} more" if len(unknown) > MAX_LISTED else ""
            raise ModelSpecError(f"unknown keys {listed}{more}")
        kwargs = dict(data)
        if "labels" in kwargs:
            labels = kwargs["labels"]
            if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
                raise ModelSpecError(f"labels must be a list of names, got {_short(labels)}")
            kwargs["labels"] = tuple(labels)
        if "input_size" in kwargs:
            size = kwargs["input_size"]
            if not isinstance(size, list) or len(size) != 2 or not all(_whole(side) for side in size):
                raise ModelSpecError(f"input_size must be [height, width] in whole pixels, got {_short(size)}")
            kwargs["input_size"] = tuple(size)
        for name in ("preprocess_version", "format"):
            if name in kwargs and not _whole(kwargs[name]):
                raise ModelSpecError(f"{name} must be a whole number, got {_short(kwargs[name])}")
        if "source" in kwargs and not isinstance(kwargs["source"], dict):
            raise ModelSpecError(f"source must be an object, got {_short(kwargs['source'])}")
        return cls(**kwargs)


def spec_path_for(model_path: str | os.PathLike[str]) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".spec.json")


def _sha256_factory() -> Callable[[], Any]:
    """The builtin SHA-256 (_sha2 on 3.12+, _sha256 before): hashlib would load OpenSSL, ~4 MB of RSS."""
    for name in ("_sha2", "_sha256"):
        try:
            return importlib.import_module(name).sha256
        except ImportError:
            continue
    import hashlib

    return hashlib.sha256


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a regular file's bytes, streamed (a model can be large); FileRefusedError when it is
    not a regular file this process can open (files.open_regular: a FIFO is refused, not waited on),
    OSError when reading it fails."""
    digest = _sha256_factory()()
    fd, _ = open_regular(path)
    with open(fd, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_spec(model_path: str | os.PathLike[str], spec: ModelSpec) -> Path:
    """Write the spec beside the model, stamped with the model file's sha256."""
    stamped = ModelSpec(**{**asdict(spec), "sha256": file_sha256(model_path)})
    target = spec_path_for(model_path)
    atomic_write(target, stamped.to_json().encode())
    return target


def read_spec(model_path: str | os.PathLike[str]) -> ModelSpec:
    """Read and check a model's spec; raise ModelSpecError with a one-line message if unusable."""
    target = spec_path_for(model_path)
    try:
        raw, _ = read_bytes(target, MAX_SPEC_BYTES)
    except FileRefusedError as e:
        if e.errno == errno.ENOENT:
            raise ModelSpecError(f"{model_path}: model spec {target} is missing") from e
        raise ModelSpecError(f"{target}: unreadable model spec ({_why(e)})") from e
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as e:  # not UTF-8, not JSON, or an integer past Python's 4300 digits
        raise ModelSpecError(f"{target}: unreadable model spec ({_short_text(str(e))})") from e
    except RecursionError as e:
        raise ModelSpecError(f"{target}: unreadable model spec (nested too deeply)") from e
    if not isinstance(data, dict):
        raise ModelSpecError(f"{target}: model spec must be a JSON object")
    try:
        spec = ModelSpec.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ModelSpecError(f"{target}: bad model spec ({e})") from e
    check_spec(spec, model_path, target)
    return spec


def check_spec(spec: ModelSpec, model_path: str | os.PathLike[str], where: Path) -> None:
    if spec.format != SPEC_FORMAT:
        raise ModelSpecError(f"{where}: spec format {spec.format}, this ferlite reads {SPEC_FORMAT}")
    if spec.labels != LABELS:
        raise ModelSpecError(f"{where}: labels {_short(list(spec.labels))} do not match {list(LABELS)}")
    if spec.preprocess_version != PREPROCESS_VERSION:
        raise ModelSpecError(
            f"{where}: preprocessing version {spec.preprocess_version}, "
            f"this ferlite uses {PREPROCESS_VERSION}"
        )
    if len(spec.input_size) != 2 or not all(8 <= side <= MAX_INPUT_SIDE for side in spec.input_size):
        raise ModelSpecError(f"{where}: bad input_size {_short(list(spec.input_size))}")
    margin = spec.margin
    # Compared before any float(): math.isfinite of a 400-digit integer raises OverflowError.
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (
        0.0 <= margin <= 1.0 and math.isfinite(margin)
    ):
        raise ModelSpecError(f"{where}: margin must be within 0..1, got {_short(margin)}")
    # Any detector's name (one this ferlite lacks is warned about at load, not refused).
    name = spec.framing_detector
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,39}", name):
        raise ModelSpecError(f"{where}: framing_detector must be a detector's name, got {_short(name)}")
    if isinstance(spec.face_size, bool) or not isinstance(spec.face_size, int) or not (
        0 <= spec.face_size <= MAX_INPUT_SIDE
    ):
        raise ModelSpecError(f"{where}: face_size must be 0 or a size in pixels, got {_short(spec.face_size)}")
    if spec.quantization not in INPUT_DTYPES:
        raise ModelSpecError(
            f"{where}: quantization must be one of {', '.join(INPUT_DTYPES)}, got {_short(spec.quantization)}"
        )
    # Without the model's sha256 anything could sit beside the spec: a spec must name its model.
    if not isinstance(spec.sha256, str) or not _SHA256.fullmatch(spec.sha256):
        raise ModelSpecError(
            f"{where}: no valid sha256 of the model bytes (64 hex digits); rewrite the spec with "
            "ferlite.edge.contract.spec.write_spec"
        )
    try:
        actual = file_sha256(model_path)
    except FileRefusedError as e:
        raise ModelSpecError(f"{model_path}: cannot read model ({_why(e)})") from e
    except OSError as e:
        raise ModelSpecError(f"{model_path}: cannot read model ({e.strerror})") from e
    if spec.sha256 != actual:
        raise ModelSpecError(f"{where}: spec was written for other model bytes than {model_path}")


def check_model_input(spec: ModelSpec, input_dtype: str, where: str | os.PathLike[str]) -> None:
    """The model's input tensor type must be what the spec's quantization feeds it."""
    if input_dtype not in INPUT_DTYPES.get(spec.quantization, ()):
        raise ModelSpecError(
            f"{where}: spec says quantization {spec.quantization}, but the model takes {input_dtype} input"
        )


def _why(e: FileRefusedError) -> str:
    """A refused file's reason for the parentheses of an error line: the OS's words, or what it is."""
    return e.strerror or str(e)


def _whole(value: Any) -> bool:
    """A JSON integer (not a float such as 84.9 or 1e999, not true/false)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _short_text(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value: Any) -> str:
    """repr() of a value cut to 60 characters (a huge integer is not turned into digits at all)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, (list, dict)) and len(value) > 60:
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
