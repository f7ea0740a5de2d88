"""Decode images into model-ready faces, once: results are cached on disk as one .npy per source.

The cache key holds the source folder, how faces are found (whole image or Haar), the
preprocessing version and the input size; each entry is checked against the file's size and
mtime, so changed files are decoded again and a second run decodes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferlite.edge.algorithm.detector import HaarDetector
from ferlite.edge.contract import DEFAULT_MARGIN, INPUT_SIZE, PREPROCESS_VERSION
from ferlite.edge.contract.atomic import atomic_write
from ferlite.edge.contract.preprocess import preprocess_face

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
UNREADABLE = "unreadable"
NO_FACE = "no face"


class FaceError(Exception):
    """One image could not be turned into a face; the message says why."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status


@dataclass
class Faces:
    """Faces decoded for a list of paths: rows[i] is the row of faces for path i, or -1."""

    faces: np.ndarray
    rows: np.ndarray
    hashes: list[str | None]
    skipped: Counter[str] = field(default_factory=Counter)
    statuses: list[str] = field(default_factory=list)


def read_image(path: Path) -> np.ndarray:
    """BGR image (as the edge sees camera frames); FaceError if missing or undecodable."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise FaceError(UNREADABLE, f"{path}: {e}") from e
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as e:
        raise FaceError(UNREADABLE, f"{path}: {e}") from e
    if image is None:
        raise FaceError(UNREADABLE, f"{path}: not a decodable image")
    return image


def largest(boxes: Sequence[Sequence[int]]) -> Sequence[int]:
    return max(boxes, key=lambda b: int(b[2]) * int(b[3]))


class FaceDecoder:
    """Image file -> (h, w) uint8 face through ferlite.edge's preprocessing (thread-safe)."""

    def __init__(self, whole: bool, margin: float = DEFAULT_MARGIN) -> None:
        self.whole = whole
        self.margin = margin
        self._local = threading.local()

    def _detector(self) -> HaarDetector:
        if not hasattr(self._local, "detector"):
            self._local.detector = HaarDetector()
        return self._local.detector

    def __call__(self, path: Path) -> np.ndarray:
        image = read_image(path)
        box = None
        if not self.whole:
            boxes = self._detector().detect(image)
            if not boxes:
                raise FaceError(NO_FACE, f"{path}: no face found")
            box = largest(boxes)
        return preprocess_face(image, box, margin=self.margin, size=INPUT_SIZE)

    def describe(self) -> dict[str, Any]:
        return {"whole": self.whole, "margin": self.margin, "detector": "haar-default"}


def face_hash(face: np.ndarray) -> str:
    return hashlib.blake2b(face.tobytes(), digest_size=12).hexdigest()


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class FaceCache:
    """One cache file pair (`<key>.npy`, `<key>.json`) for one source folder."""

    def __init__(self, folder: Path, root: Path, decoder: FaceDecoder) -> None:
        identity = {
            "format": CACHE_FORMAT, "root": str(root.resolve()),
            "preprocess_version": PREPROCESS_VERSION, "input_size": list(INPUT_SIZE),
            **decoder.describe(),
        }
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
        self.identity = identity
        self.root = root
        self.folder = folder
        self.key = key
        self.index_path = folder / f"{key}.json"

    def load(self) -> tuple[dict[str, Any], np.ndarray | None]:
        try:
            index = json.loads(self.index_path.read_text())
            if index.get("identity") != self.identity:
                return {}, None
            array = np.load(self.folder / index["array"], mmap_mode="r")
        except FileNotFoundError:
            return {}, None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("face cache %s unreadable, rebuilding (%s)", self.index_path, e)
            return {}, None
        return index.get("entries", {}), array

    def save(self, entries: dict[str, Any], faces: np.ndarray) -> None:
        """Array first (under a new name), then the index that points at it, then old arrays go."""
        array_name = f"{self.key}.{uuid.uuid4().hex[:8]}.npy"
        atomic_write(self.folder / array_name, lambda tmp: np.save(tmp, faces))
        index = {"identity": self.identity, "array": array_name, "entries": entries}
        atomic_write(self.index_path, json.dumps(index).encode())
        for old in self.folder.glob(f"{self.key}.*.npy"):
            if old.name != array_name:
                old.unlink(missing_ok=True)


def _decode_all(
    decoder: FaceDecoder, paths: list[Path], workers: int
) -> list[np.ndarray | FaceError]:
    def one(path: Path) -> np.ndarray | FaceError:
        try:
            return decoder(path)
        except FaceError as e:
            return e

    if not paths:
        return []
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        return list(pool.map(one, paths, chunksize=64))
    finally:
        # Stopped (Ctrl-C), the images still queued are dropped, not decoded first as a with-block would.
        pool.shutdown(wait=True, cancel_futures=True)


def load_faces(
    paths: Sequence[Path], root: Path, decoder: FaceDecoder, cache_dir: Path | None,
    workers: int | None = None,
) -> Faces:
    """Faces for `paths` (all under `root`), from the cache where it is fresh, else decoded."""
    cache = FaceCache(cache_dir, root, decoder) if cache_dir else None
    entries, cached = cache.load() if cache else ({}, None)
    keys = [os.path.relpath(p, root) for p in paths]
    stamps = [_stamp(p) for p in paths]
    todo = [i for i, (k, s) in enumerate(zip(keys, stamps, strict=True))
            if s is None or entries.get(k, {}).get("stamp") != s]
    log.info("%s: %d images, %d from cache, %d to decode", root, len(paths),
             len(paths) - len(todo), len(todo))
    decoded = dict(zip(todo, _decode_all(decoder, [paths[i] for i in todo],
                                         workers or os.cpu_count() or 1), strict=True))
    faces: list[np.ndarray] = []
    new_entries: dict[str, Any] = {}
    out = Faces(np.empty(0), np.full(len(paths), -1), [None] * len(paths))
    for i, key in enumerate(keys):
        status, face = _resolve(i, decoded, entries.get(key, {}), cached)
        out.statuses.append(status)
        new_entries[key] = {"stamp": stamps[i], "status": status,
                            "row": len(faces) if face is not None else None}
        if face is None:
            out.skipped[status] += 1
            continue
        out.rows[i] = len(faces)
        out.hashes[i] = face_hash(face)
        faces.append(face)
    out.faces = np.stack(faces) if faces else np.zeros((0, *INPUT_SIZE), np.uint8)
    if cache and (todo or len(new_entries) != len(entries)):
        cache.save(new_entries, out.faces)
    return out


def _resolve(
    i: int, decoded: dict[int, np.ndarray | FaceError], entry: dict[str, Any],
    cached: np.ndarray | None,
) -> tuple[str, np.ndarray | None]:
    if i in decoded:
        result = decoded[i]
        if isinstance(result, FaceError):
            log.debug("skipped: %s", result)
            return result.status, None
        return "ok", result
    if entry.get("row") is None or cached is None:
        return entry.get("status", UNREADABLE), None
    return "ok", np.asarray(cached[entry["row"]])
