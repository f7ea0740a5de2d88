"""fer-edge --format csv: the feed's messages as CSV rows, for people who want a table.

One header row, then one row per face; a frame without a face gives one row whose face columns are empty, so that
every photo (and every video frame) appears. Events and timings are JSON-only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from ..contract import LABELS

COLUMNS: tuple[str, ...] = ("file", "frame", "ts", "pos_ms", "track", "x", "y", "w", "h", "label", "score", *LABELS)
# A cell starting with one of these is a formula to a spreadsheet (CSV injection): a file name is
# written with a leading apostrophe instead, which spreadsheets show as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _cell(value: Any) -> Any:
    return "" if value is None else value


def csv_rows(message: dict[str, Any]) -> list[list[Any]]:
    """The rows of one feed message (see COLUMNS): one per face, or one with empty face columns."""
    head = [_text(message.get("file") or ""), message.get("frame"), message.get("ts"), message.get("pos_ms")]
    head = [_cell(value) for value in head]
    faces = message.get("faces") or []
    if not faces:
        return [head + [""] * (len(COLUMNS) - len(head))]
    rows = []
    for face in faces:
        scores = face.get("scores", {})
        rows.append(head + [_cell(face.get("track")), *face["box"], face["label"], face["score"],
                            *(_cell(scores.get(label)) for label in LABELS)])
    return rows


class CsvLines:
    """A message sink of the frame loop: each message's rows to a bytes sink (stdout), in one write,
    the header before the first. File names that are not UTF-8 are escaped as in the JSON feed
    (a byte 0xff of the name reads \\udcff); the output is always UTF-8."""

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self.sink = sink
        self.header_written = False

    def __call__(self, message: dict[str, Any]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if not self.header_written:
            writer.writerow(COLUMNS)
        writer.writerows(csv_rows(message))
        self.sink(buffer.getvalue().encode("utf-8", "backslashreplace"))
        self.header_written = True
