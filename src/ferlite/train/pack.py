"""Faces that travel: the decoded, split faces of a run in one compact file, to train from elsewhere.

`fer-train --data ... --pack faces.ferpack` writes what `prepare` made (every face as the model sees
it, labels, FER+ votes, subjects, sides, the statuses the manifest lists and the dropped counts);
`fer-train --from-pack faces.ferpack` trains from it on a machine without the image folders (a GPU box).

Compact: a face whose image was a crop (a `whole` data set such as FER+ or CK+ crops) is stored at the
resolution the preprocessing upscales from (48x48 for FER+: 2,304 bytes instead of 84x84's 7,056), and
only where upscaling it again gives the very same face (checked at packing; any other face is stored
as it is); all pixels as row deltas (each pixel minus its left neighbour, mod 256: neighbours are
alike, so deltas are near 0), the whole file xz-compressed. File paths are stored relative to their
data set's folder, so no machine path travels.
"""

from __future__ import annotations

import io
import json
import logging
import lzma
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferlite.edge.contract import INPUT_SIZE, LABELS, PREPROCESS_VERSION
from ferlite.edge.contract.atomic import atomic_write
from ferlite.edge.contract.errors import FileRefusedError
from ferlite.edge.contract.files import read_bytes
from ferlite.edge.contract.preprocess import resize_face, shrink_to_face_size, to_gray

from .data import DataSource, Sample
from .errors import DataError
from .faces import FaceError, read_image
from .prepare import Prepared

log = logging.getLogger(__name__)

FORMAT = 1
MAGIC = "ferlite-faces"
# A pack is read whole into memory: refuse what cannot be one (FER+ packs to well under 0.1 GB, and
# unpacks to 0.25 GB).
MAX_PACK_BYTES = 4 << 30
MAX_UNPACKED_BYTES = 16 << 30


def row_delta(faces: np.ndarray) -> np.ndarray:
    """Each pixel minus its left neighbour, mod 256 (uint8 wraps); the first column as it is."""
    return np.diff(faces, axis=-1, prepend=np.zeros_like(faces[..., :1]))


def undo_row_delta(deltas: np.ndarray) -> np.ndarray:
    return np.cumsum(deltas, axis=-1, dtype=np.uint8)


def _relative(sample: Sample, roots: dict[str, Path]) -> str:
    root = roots.get(sample.dataset)
    try:
        return sample.path.relative_to(root).as_posix() if root else sample.path.name
    except ValueError:
        return sample.path.name


def _small_faces(prepared: Prepared, whole: set[str]) -> dict[int, np.ndarray]:
    """{row: the face at the resolution it was upscaled from} for the faces of `whole` data sets whose
    image, read again, gives back exactly the face `prepare` made."""
    small: dict[int, np.ndarray] = {}
    for sample, row in zip(prepared.samples, prepared.rows, strict=True):
        if row < 0 or sample.dataset not in whole or row in small:
            continue
        try:
            gray = shrink_to_face_size(to_gray(read_image(sample.path)))
        except (FaceError, ValueError):
            continue
        if gray.size < prepared.faces[row].size and np.array_equal(resize_face(gray), prepared.faces[row]):
            small[int(row)] = gray
    return small


@dataclass(frozen=True)
class Pack:
    prepared: Prepared  # the faces as `prepare` made them
    options: dict[str, Any]  # the fer-train options they were made with
    framing: dict[str, Any]  # fer-train's framing measurement on their training side


def write_pack(path: Path, prepared: Prepared, sources: Sequence[DataSource], options: dict[str, Any],
               framing: dict[str, Any]) -> int:
    """Write `prepared` and its `framing` to `path` (atomically); returns the file's size in bytes."""
    roots = {s.name: s.path for s in sources}
    small = _small_faces(prepared, {s.name for s in sources if s.whole})
    arrays: dict[str, np.ndarray] = {"rows": prepared.rows.astype(np.int64)}
    used = set(prepared.rows[prepared.rows >= 0].tolist())  # a face only a dropped duplicate had is not kept
    full = np.array([r for r in sorted(used) if r not in small], np.int64)
    arrays["full_rows"], arrays["full"] = full, row_delta(prepared.faces[full])
    shapes = sorted({face.shape for face in small.values()})
    for h, w in shapes:
        rows = np.array([r for r, face in small.items() if face.shape == (h, w)], np.int64)
        arrays[f"rows_{h}x{w}"], arrays[f"faces_{h}x{w}"] = rows, row_delta(np.stack([small[r] for r in rows]))
    meta = {
        "magic": MAGIC, "format": FORMAT, "labels": list(LABELS), "input_size": list(INPUT_SIZE),
        "preprocess_version": PREPROCESS_VERSION, "options": options, "framing": framing,
        "faces": len(prepared.faces),
        "small_shapes": [list(shape) for shape in shapes],
        "samples": [[_relative(s, roots), s.label, s.dataset, s.subject, s.split,
                     list(s.votes) if s.votes is not None else None] for s in prepared.samples],
        "sides": prepared.sides, "statuses": prepared.statuses, "dropped": dict(prepared.dropped),
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    data = lzma.compress(buffer.getvalue(), preset=6)
    try:
        atomic_write(path, data)
    except OSError as e:
        raise DataError(f"{path}: cannot write the face pack ({e.strerror or e})") from e
    log.info("pack: %d of %d faces stored at their source resolution; %s bytes", len(small),
             len(prepared.faces), f"{len(data):,}")
    return len(data)


def read_pack(path: Path) -> Pack:
    """The pack in `path`; DataError naming the file when it is not a readable pack of this contract
    (labels, input size, preprocessing)."""
    meta, faces, rows = _load(path)
    for key, ours in (("labels", list(LABELS)), ("input_size", list(INPUT_SIZE)),
                      ("preprocess_version", PREPROCESS_VERSION)):
        if meta.get(key) != ours:
            raise DataError(f"{path}: faces made for {key} {meta.get(key)!r}, this ferlite has {ours!r}")
    try:
        samples = [Sample(Path(p), int(label), str(dataset), subject, split,
                          tuple(float(v) for v in votes) if votes is not None else None)
                   for p, label, dataset, subject, split, votes in meta["samples"]]
        prepared = Prepared(samples, faces, rows, list(meta["sides"]), list(meta["statuses"]),
                            Counter(meta["dropped"]))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: not a ferlite face pack ({e})") from e
    if not (len(samples) == len(prepared.sides) == len(prepared.statuses) == len(rows)) \
            or faces.shape[1:] != INPUT_SIZE or rows.max(initial=-1) >= len(faces):
        raise DataError(f"{path}: not a ferlite face pack (its parts do not match)")
    return Pack(prepared, dict(meta.get("options") or {}), dict(meta.get("framing") or {}))


def _load(path: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    try:  # the one hardened read: a FIFO, a folder or an oversize file is refused, never waited on
        packed, _ = read_bytes(path, MAX_PACK_BYTES)
    except FileRefusedError as e:
        raise DataError(f"{path}: cannot read the face pack ({e})") from e
    try:
        unpacker = lzma.LZMADecompressor()
        data = unpacker.decompress(packed, max_length=MAX_UNPACKED_BYTES)
        if not unpacker.eof:
            raise EOFError(f"truncated, or unpacks to more than {MAX_UNPACKED_BYTES:,} bytes")
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        meta = json.loads(arrays["meta"].tobytes())
        faces = _unpack_faces(arrays, meta)
        rows = arrays["rows"]
    except (lzma.LZMAError, ValueError, KeyError, EOFError, TypeError, IndexError, cv2.error) as e:
        raise DataError(f"{path}: not a ferlite face pack ({e})") from e
    if not isinstance(meta, dict) or meta.get("magic") != MAGIC or meta.get("format") != FORMAT:
        raise DataError(f"{path}: not a ferlite face pack (format {FORMAT})")
    if rows.ndim != 1:
        raise DataError(f"{path}: not a ferlite face pack (bad arrays)")
    return meta, faces, rows


def _unpack_faces(arrays: Any, meta: dict[str, Any]) -> np.ndarray:
    """Every face at the input size: the stored ones as they are, the small ones upscaled by the
    edge's own resize (which gave the same pixels when the pack was written)."""
    faces = np.zeros((int(meta["faces"]), *INPUT_SIZE), np.uint8)  # rows no sample uses stay blank
    full = undo_row_delta(arrays["full"])
    faces[arrays["full_rows"]] = full.reshape(len(full), *INPUT_SIZE)
    for h, w in meta["small_shapes"]:
        small = undo_row_delta(arrays[f"faces_{h}x{w}"])
        for row, face in zip(arrays[f"rows_{h}x{w}"], small, strict=True):
            faces[row] = resize_face(face)
    return faces
