"""The model spec: what a .tflite expects, written beside it as `<name>.spec.json`.

Every model the project makes carries one. It is checked at load: a missing, broken or
mismatched spec (other labels, input size, preprocessing version, or a spec written for
other model bytes) is refused with a one-line error naming the file.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .contract import DEFAULT_MARGIN, INPUT_SIZE, LABELS, PREPROCESS_VERSION

SPEC_FORMAT = 1


class ModelSpecError(ValueError):
    """A model's spec is missing, unreadable or does not match this ferlite."""


@dataclass(frozen=True)
class ModelSpec:
    labels: tuple[str, ...] = LABELS
    input_size: tuple[int, int] = INPUT_SIZE
    preprocess_version: int = PREPROCESS_VERSION
    margin: float = DEFAULT_MARGIN
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
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ModelSpecError(f"unknown keys {sorted(unknown)}")
        kwargs = dict(data)
        if "labels" in kwargs:
            kwargs["labels"] = tuple(kwargs["labels"])
        if "input_size" in kwargs:
            kwargs["input_size"] = tuple(int(v) for v in kwargs["input_size"])
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
    digest = _sha256_factory()()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    import tempfile  # only writers need it; the daemon never writes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_spec(model_path: str | os.PathLike[str], spec: ModelSpec) -> Path:
    """Write the spec beside the model, stamped with the model file's sha256."""
    stamped = ModelSpec(**{**asdict(spec), "sha256": file_sha256(model_path)})
    target = spec_path_for(model_path)
    atomic_write_bytes(target, stamped.to_json().encode())
    return target


def read_spec(model_path: str | os.PathLike[str]) -> ModelSpec:
    """Read and check a model's spec; raise ModelSpecError with a one-line message if unusable."""
    target = spec_path_for(model_path)
    try:
        data = json.loads(target.read_text())
    except FileNotFoundError as e:
        raise ModelSpecError(f"{model_path}: model spec {target} is missing") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelSpecError(f"{target}: unreadable model spec ({e})") from e
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
        raise ModelSpecError(f"{where}: labels {list(spec.labels)} do not match {list(LABELS)}")
    if spec.preprocess_version != PREPROCESS_VERSION:
        raise ModelSpecError(
            f"{where}: preprocessing version {spec.preprocess_version}, "
            f"this ferlite uses {PREPROCESS_VERSION}"
        )
    if len(spec.input_size) != 2 or min(spec.input_size) < 8:
        raise ModelSpecError(f"{where}: bad input_size {list(spec.input_size)}")
    if spec.sha256 and spec.sha256 != file_sha256(model_path):
        raise ModelSpecError(f"{where}: spec was written for other model bytes than {model_path}")
