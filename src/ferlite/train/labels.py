"""Class names found in data sets -> the contract's six labels (or dropped)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ferlite.edge.contract import LABELS

from .errors import ClassMapError

DROP = "drop"

# Lower-case source class names -> label (or DROP). Folder names, FERG-DB expressions and
# CK+ codes all go through this table; --class-map adds to it or overrides it.
ALIASES: dict[str, str] = {
    "angry": "Angry", "anger": "Angry", "an": "Angry", "mad": "Angry",
    "disgust": "Disgust", "disgusted": "Disgust", "di": "Disgust",
    "happy": "Happy", "happiness": "Happy", "joy": "Happy", "ha": "Happy",
    "neutral": "Neutral", "ne": "Neutral",
    "sad": "Sad", "sadness": "Sad", "sa": "Sad",
    "surprise": "Surprise", "surprised": "Surprise", "su": "Surprise",
    "fear": DROP, "fearful": DROP, "afraid": DROP, "scared": DROP, "fe": DROP,
    "contempt": DROP, "co": DROP,
    "unknown": DROP, "nf": DROP,  # FER+ "unknown" and "not a face" votes
}

# CK+ Emotion/*_emotion.txt codes.
CKPLUS_CODES: dict[int, str] = {
    0: "neutral", 1: "anger", 2: "contempt", 3: "disgust",
    4: "fear", 5: "happy", 6: "sadness", 7: "surprise",
}


def _canonical_label(value: str) -> str:
    for label in LABELS:
        if label.lower() == value.strip().lower():
            return label
    if value.strip().lower() == DROP:
        return DROP
    raise ClassMapError(f"unknown label {value!r}: use one of {', '.join(LABELS)} or {DROP!r}")


def parse_class_map(entries: Iterable[str]) -> dict[str, str]:
    """'SOURCE=LABEL' entries (LABEL may be 'drop') -> {source lower-case: label}."""
    mapping: dict[str, str] = {}
    for entry in entries:
        source, sep, label = entry.partition("=")
        if not sep or not source.strip():
            raise ClassMapError(f"bad --class-map entry {entry!r}: expected SOURCE=LABEL")
        mapping[source.strip().lower()] = _canonical_label(label)
    return mapping


class LabelMapper:
    """Maps source class names to label indices; None means 'dropped' (fear, contempt, unknown)."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.table = {**ALIASES, **(overrides or {})}

    def index(self, name: str) -> int | None:
        label = self.table.get(name.strip().lower())
        if label is None or label == DROP:
            return None
        return LABELS.index(label)

    def known(self, name: str) -> bool:
        return name.strip().lower() in self.table
