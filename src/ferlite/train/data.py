"""Readers that list labelled images of a data set in its own layout.

Readers only walk folders and read label files; decoding and face cropping happen in
`faces.py`, once, with the result cached. Every reader returns a `ReadResult`: the samples
plus counts of what was dropped (classes with no target, unreadable label files).
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ferlite.edge.contract import IMAGE_SUFFIXES, LABELS  # one set: what fer-edge reads, training reads

from .errors import DataError
from .labels import CKPLUS_CODES, LabelMapper

log = logging.getLogger(__name__)

CKPLUS_SUBJECT_REGEX = r"^(S\d{3})_"
# FER2013's usage column, kept in file names as `<Split>_<id>.jpg`.
NAME_SPLITS = {"training": "train", "publictest": "val", "privatetest": "test"}
_NAME_SPLIT_RE = re.compile(r"^(Training|PublicTest|PrivateTest)_", re.IGNORECASE)
# A folder-per-class set may also hold its split as top folders: train/<class>/..., test/<class>/...
DIR_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val",
              "validation": "val", "test": "test", "testing": "test"}
KINDS = ("ckplus", "ferg", "ferplus", "folder", "crops", "synthetic")
# FERPlus's own layout: one folder per FER2013 usage, each with a label.csv of 10 vote counts.
FERPLUS_FOLDERS = {"FER2013Train": "train", "FER2013Valid": "val", "FER2013Test": "test"}
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "nf")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into LABELS
    dataset: str
    subject: str | None = None  # person (CK+ subject, FERG-DB character); None if unknown
    split: str | None = None  # 'train' / 'val' / 'test' if the data set carries one
    # Crowd votes over LABELS (FER+), renormalised to sum 1; None for single-label data sets.
    votes: tuple[float, ...] | None = None


@dataclass
class ReadResult:
    samples: list[Sample] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> count


@dataclass(frozen=True)
class DataSource:
    """One --data entry: KIND[:NAME]=PATH plus its per-set options."""

    kind: str
    name: str
    path: Path
    whole: bool  # True: every image is already a face crop (only resized); False: Haar
    subject_regex: str | None = None

    @classmethod
    def parse(cls, text: str) -> DataSource:
        head, sep, path = text.partition("=")
        kind, _, name = head.partition(":")
        kind = kind.strip().lower()
        if kind == "synthetic" and not sep:  # the quick try's generated set: no path to give
            return cls(kind, name.strip() or kind, Path(), True, CKPLUS_SUBJECT_REGEX)
        if not sep or not path:
            raise DataError(f"bad --data {text!r}: expected KIND[:NAME]=PATH")
        if kind not in KINDS:
            raise DataError(f"bad --data {text!r}: KIND must be one of {', '.join(KINDS)}")
        name = name.strip() or (kind if kind in ("ckplus", "ferg", "ferplus") else Path(path).name)
        whole = kind in ("ferg", "ferplus", "crops", "synthetic")
        regex = CKPLUS_SUBJECT_REGEX if kind in ("folder", "crops", "synthetic") else None
        return cls(kind, name, Path(path).expanduser(), whole, regex)


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image(p))


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def name_split(filename: str) -> str | None:
    match = _NAME_SPLIT_RE.match(filename)
    return NAME_SPLITS[match.group(1).lower()] if match else None


def read_folder(
    root: Path, dataset: str, mapper: LabelMapper, subject_regex: str | None = None
) -> ReadResult:
    """`<class>/<image>` (or `<split>/<class>/<image>`); class names through the mapper."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    pattern = re.compile(subject_regex) if subject_regex else None
    result = ReadResult()
    tops = _subdirs(root)
    split_dirs = [d for d in tops if d.name.lower() in DIR_SPLITS and not mapper.known(d.name)]
    if split_dirs and len(split_dirs) == len(tops):
        for split_dir in split_dirs:
            _read_class_dirs(split_dir, dataset, mapper, pattern, DIR_SPLITS[split_dir.name.lower()],
                             result)
    else:
        _read_class_dirs(root, dataset, mapper, pattern, None, result)
    if not result.samples:
        raise DataError(f"{root}: no labelled images in <class>/<image> folders")
    return result


def _read_class_dirs(
    root: Path, dataset: str, mapper: LabelMapper, pattern: re.Pattern[str] | None,
    split: str | None, result: ReadResult,
) -> None:
    for class_dir in _subdirs(root):
        images = _images(class_dir)
        label = mapper.index(class_dir.name)
        if label is None:
            reason = "class " + class_dir.name.lower()
            if not mapper.known(class_dir.name):
                log.warning("%s: unknown class folder %r dropped (map it with --class-map %s=LABEL)",
                            class_dir, class_dir.name, class_dir.name)
            result.dropped[reason] += len(images)
            continue
        for path in images:
            match = pattern.search(path.name) if pattern else None
            subject = match.group(1) if match else None
            result.samples.append(
                Sample(path, label, dataset, subject, split or name_split(path.name))
            )


def _ckplus_dirs(root: Path) -> tuple[Path, Path]:
    for base in (root, root.parent):
        images, emotions = base / "cohn-kanade-images", base / "Emotion"
        if images.is_dir() and emotions.is_dir():
            return images, emotions
    raise DataError(f"{root}: expected cohn-kanade-images/ and Emotion/ (the CK+ layout)")


def read_ckplus_code(path: Path) -> int:
    """An Emotion/*_emotion.txt file holds one float such as '   3.0000000e+00'."""
    try:
        value = float(path.read_text().strip())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: unreadable CK+ emotion file ({e})") from e
    if not value.is_integer() or int(value) not in CKPLUS_CODES:
        raise DataError(f"{path}: CK+ emotion code {value} outside 0..7")
    return int(value)


def read_ckplus(root: Path, dataset: str, mapper: LabelMapper) -> ReadResult:
    """CK+: the first frame of every sequence is Neutral; the last frame of a labelled one is its peak."""
    images_root, emotion_root = _ckplus_dirs(root)
    result = ReadResult()
    neutral = mapper.index("neutral")
    for subject_dir in _subdirs(images_root):
        for sequence_dir in _subdirs(subject_dir):
            frames = _images(sequence_dir)
            if not frames:
                continue
            subject = subject_dir.name
            if neutral is not None:
                result.samples.append(Sample(frames[0], neutral, dataset, subject))
            _ckplus_peak(emotion_root / subject / sequence_dir.name, frames, dataset, subject,
                         mapper, result)
    if not result.samples:
        raise DataError(f"{root}: no CK+ sequences under {images_root}")
    return result


def _ckplus_peak(
    emotion_dir: Path, frames: list[Path], dataset: str, subject: str, mapper: LabelMapper,
    result: ReadResult,
) -> None:
    label_files = sorted(emotion_dir.glob("*_emotion.txt")) if emotion_dir.is_dir() else []
    if not label_files or len(frames) < 2:
        return
    try:
        code = read_ckplus_code(label_files[0])
    except DataError as e:
        log.warning("%s", e)
        result.dropped["bad emotion file"] += 1
        return
    label = mapper.index(CKPLUS_CODES[code])
    if label is None:
        result.dropped["class " + CKPLUS_CODES[code]] += 1
        return
    result.samples.append(Sample(frames[-1], label, dataset, subject))


def read_ferg(root: Path, dataset: str, mapper: LabelMapper) -> ReadResult:
    """FERG-DB: `<character>/<character>_<expression>/<character>_<expression>_<n>.png`."""
    if (root / "FERG_DB_256").is_dir():
        root = root / "FERG_DB_256"
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    result = ReadResult()
    for character_dir in _subdirs(root):
        character = character_dir.name
        for expression_dir in _subdirs(character_dir):
            prefix = character + "_"
            if not expression_dir.name.startswith(prefix):
                continue
            expression = expression_dir.name[len(prefix):]
            images = _images(expression_dir)
            label = mapper.index(expression)
            if label is None:
                result.dropped["class " + expression.lower()] += len(images)
                continue
            result.samples += [
                Sample(p, label, dataset, "ferg:" + character) for p in images
            ]
    if not result.samples:
        raise DataError(f"{root}: no FERG-DB images in <character>/<character>_<expression>/")
    return result


def ferplus_target(votes: Sequence[int], columns: Sequence[int | None]) -> tuple[int, tuple[float, ...]] | str:
    """One face's FER+ votes -> (majority label, vote distribution over LABELS), or why it is dropped.

    `columns[i]` is the label index of FERPLUS_COLUMNS[i], None for fear/contempt/unknown/not-a-face.
    Dropped: faces whose most-voted column is not one of the six (a tie with one counts too), and
    ties for the top among the six (no majority label to score against). A column with a single
    vote is treated as noise before renormalising, as FERPlus's own reader does.
    """
    top = max(votes)
    if top <= 0:
        return "no votes"
    leaders = [i for i, v in enumerate(votes) if v == top]
    outside = [FERPLUS_COLUMNS[i] for i in leaders if columns[i] is None]
    if outside:
        return "majority " + outside[0]
    if len(leaders) > 1:
        return "tie"
    label = columns[leaders[0]]
    assert label is not None
    mass = [0.0] * len(LABELS)
    for i, count in enumerate(votes):
        index = columns[i]
        if index is not None and count > 1:
            mass[index] += count
    total = sum(mass) or 1.0
    return label, tuple(m / total for m in mass)


def _ferplus_rows(label_file: Path) -> list[list[str]]:
    try:
        with label_file.open(newline="") as handle:
            return [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{label_file}: unreadable FER+ label file ({e})") from e


def read_ferplus(root: Path, dataset: str, mapper: LabelMapper,
                 sides: Collection[str] | None = None) -> ReadResult:
    """FER+ (FERPlus's layout): `FER2013{Train,Valid,Test}/label.csv` beside the PNGs; the folders
    are the train/val/test sides (only `sides`, if given). Each row: `name,box,` then 10 vote
    counts in FERPLUS_COLUMNS order."""
    folders = [(root / name, split) for name, split in FERPLUS_FOLDERS.items()
               if (root / name / "label.csv").is_file() and (sides is None or split in sides)]
    if not folders:
        raise DataError(f"{root}: expected FER2013Train/label.csv (and Valid/Test), the FERPlus layout")
    columns = [mapper.index(name) for name in FERPLUS_COLUMNS]
    result = ReadResult()
    for folder, split in folders:
        for row in _ferplus_rows(folder / "label.csv"):
            try:
                votes = [int(float(v)) for v in row[2:12]]
            except ValueError:
                votes = []
            if len(votes) != len(FERPLUS_COLUMNS):
                result.dropped["bad label row"] += 1
                continue
            target = ferplus_target(votes, columns)
            if isinstance(target, str):
                result.dropped[target] += 1
                continue
            label, distribution = target
            result.samples.append(Sample(folder / row[0], label, dataset, None, split, distribution))
    if not result.samples:
        raise DataError(f"{root}: no FER+ faces with a majority among the six labels")
    return result


def read_source(source: DataSource, mapper: LabelMapper) -> ReadResult:
    if source.kind != "synthetic" and not source.path.exists():
        raise DataError(f"--data {source.kind}:{source.name}={source.path}: no such folder "
                        f"(where each data set comes from: docs/training.md, Data sets)")
    if source.kind == "ferplus":
        return read_ferplus(source.path, source.name, mapper)
    if source.kind == "ckplus":
        return read_ckplus(source.path, source.name, mapper)
    if source.kind == "ferg":
        return read_ferg(source.path, source.name, mapper)
    return read_folder(source.path, source.name, mapper, source.subject_regex)
