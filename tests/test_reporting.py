"""fer-edge says what it did not find, and reports in the shape asked for (issue 21, part 3):

* a photo without a face (or with only faces below min_size): one log line, a count in the status line, a note on
  its annotated copy, and a summary at the end;
* --format csv: a header, one row per face, one row with empty face columns for a frame without one;
* video files: `pos_ms` (the position in the video) beside `ts`, and `end` events for the tracks still in view when
  the file ends.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import place_face, write_face_video

from ferlite.edge import Recognizer
from ferlite.edge.apps.table import COLUMNS
from ferlite.edge.contract import LABELS
from ferlite.edge.runtime.sources import VideoCaptureSource

EDGE = [sys.executable, "-m", "ferlite.edge.apps.cli"]
TIMEOUT = 120


def _run(args, **kwargs):
    return subprocess.run(EDGE + args, capture_output=True, timeout=TIMEOUT, check=False, **kwargs)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut) -> Path:
    """A face, no face, a face below min_size (about 33 px), and a file that is no image."""
    folder = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(folder / "a_face.jpg"), place_face(astronaut, 100, 50, scale=0.8))
    cv2.imwrite(str(folder / "b_empty.jpg"), np.full((480, 640, 3), 90, np.uint8))
    cv2.imwrite(str(folder / "c_small.jpg"), place_face(astronaut, 100, 50, scale=0.35))
    (folder / "d_broken.jpg").write_bytes(b"not an image")
    return folder


def _log_lines(stderr: bytes, text: str) -> list[str]:
    return [line for line in stderr.decode(errors="replace").splitlines() if text in line]


# ---------------------------------------------------------------- what was not found


def test_photos_without_a_face_get_a_line_each_a_summary_and_a_mark(photos, tiny_model, tmp_path):
    annotated = tmp_path / "annotated"
    out = _run(["--source", str(photos), "--model", str(tiny_model), "--threads", "1", "--annotate", str(annotated)])
    assert out.returncode == 0, out.stderr
    messages = [json.loads(line) for line in out.stdout.splitlines()]  # stdout: results only
    assert [len(m["faces"]) for m in messages] == [1, 0, 0]
    assert len(_log_lines(out.stderr, "b_empty.jpg: no face found (640x480)")) == 1
    small = _log_lines(out.stderr, "c_small.jpg: no face of min_size (48 px); 1 smaller face(s)")
    assert len(small) == 1 and "a_face.jpg" not in out.stderr.decode()
    summary = _log_lines(out.stderr, f"{photos}: 3 photos")
    assert len(summary) == 1, out.stderr
    assert ("3 photos, 1 faces, 1 with no face, 1 with only faces below min_size (48 px), 1 unreadable skipped"
            in summary[0])
    assert out.stderr.decode().splitlines()[-1] == summary[0]  # the last word of the run
    # The annotated copies: a note, white on black, at the top left of the photos without a face; none on the other.
    for name, note in (("a_face.jpg", False), ("b_empty.jpg", True), ("c_small.jpg", True)):
        corner = cv2.imread(str(annotated / name))[:20, :60]
        original = cv2.imread(str(photos / name))[:20, :60]
        if note:
            assert (corner.max(axis=2) < 30).mean() > 0.5 and (corner.min(axis=2) > 200).sum() > 20, name
        else:
            assert np.abs(corner.astype(int) - original).max() < 40, name


def test_status_line_counts_photos_without_a_face_and_a_looping_folder_says_each_once(photos, tiny_model, tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text("status_every_s = 0.2\n")
    out = _run(["--config", str(config), "--source", str(photos), "--loop", "--max-frames", "24",
                "--fps-limit", "20", "--model", str(tiny_model), "--threads", "1", "--no-stdout"])
    assert out.returncode == 0, out.stderr
    status = _log_lines(out.stderr, " fps, ")
    assert status and all(" photos with no face, " in line and " with faces below min_size" in line
                          for line in status), out.stderr
    counts = [int(line.split(" photos with no face")[0].rsplit(", ", 1)[1]) for line in status]
    assert counts == sorted(counts) and counts[-1] >= 2  # counted as the photos go by
    assert len(_log_lines(out.stderr, "b_empty.jpg: no face found")) == 1  # 8 passes, one line: the first pass
    assert "24 photos, 8 faces, 8 with no face, 8 with only faces below min_size" in out.stderr.decode()


def test_whole_frame_photos_are_each_one_face_in_the_summary(tmp_path, tiny_model):
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((48, 48), 90, np.uint8))
    out = _run(["--source", str(tmp_path), "--whole-frame", "--model", str(tiny_model)])
    assert out.returncode == 0, out.stderr
    assert not _log_lines(out.stderr, ": no face")
    assert _log_lines(out.stderr, "2 photos, 2 faces, 0 with no face, 0 with only faces below min_size")


# ---------------------------------------------------------------- --format csv


def _csv(stdout: bytes) -> list[dict[str, str]]:
    text = stdout.decode("utf-8")  # always UTF-8, whatever the file names
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == COLUMNS
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]]


def test_csv_for_a_folder_has_a_row_per_face_and_a_row_per_photo_without_one(photos, tiny_model):
    assert COLUMNS == ("file", "frame", "ts", "pos_ms", "track", "x", "y", "w", "h", "label", "score", *LABELS)
    common = ["--source", str(photos), "--model", str(tiny_model), "--threads", "1"]
    as_json = [json.loads(line) for line in _run(common).stdout.splitlines()]
    out = _run([*common, "--format", "csv"])
    assert out.returncode == 0, out.stderr
    rows = _csv(out.stdout)
    assert [row["file"] for row in rows] == ["a_face.jpg", "b_empty.jpg", "c_small.jpg"]
    face, message = rows[0], as_json[0]["faces"][0]
    assert [int(face[k]) for k in "xywh"] == message["box"]
    assert face["label"] == message["label"] and float(face["score"]) == message["score"]
    assert {label: float(face[label]) for label in LABELS} == message["scores"]
    assert face["frame"] == "0" and float(face["ts"]) > 1e9 and face["track"] == face["pos_ms"] == ""
    for row in rows[1:]:  # every photo appears: its face columns empty
        assert all(row[k] == "" for k in COLUMNS[3:]) and row["frame"] and row["ts"], row


def test_csv_for_a_video_has_tracks_and_positions(tmp_path, tiny_model, astronaut):
    clip = write_face_video(tmp_path / "clip.avi", astronaut, frames=6, fps=10.0)
    out = _run(["--source", str(clip), "--model", str(tiny_model), "--threads", "1", "--format", "csv"])
    assert out.returncode == 0, out.stderr
    rows = _csv(out.stdout)
    assert [row["frame"] for row in rows] == [str(i) for i in range(6)]
    assert [float(row["pos_ms"]) for row in rows] == [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]
    assert {row["track"] for row in rows} == {"1"} and all(row["file"] == "" for row in rows)


def test_csv_file_names_are_escaped_safely(tmp_path, tiny_model):
    folder = tmp_path / "odd"
    folder.mkdir()
    image = cv2.imencode(".png", np.full((40, 40), 90, np.uint8))[1].tobytes()
    names = [b"\xff\xfename.png", b'comma, "quote"\nnewline.png', b"=HYPERLINK(1).png", b"plain.png"]
    for name in names:
        with open(os.path.join(os.fsencode(folder), name), "wb") as handle:
            handle.write(image)
    out = _run(["--source", str(folder), "--model", str(tiny_model), "--format", "csv"])
    assert out.returncode == 0, out.stderr
    files = sorted(row["file"] for row in _csv(out.stdout))
    # Not UTF-8: escaped as the JSON feed escapes it (\udcff); a formula: shown as text; the rest as it is.
    assert files == sorted(["\\udcff\\udcfename.png", 'comma, "quote"\nnewline.png', "'=HYPERLINK(1).png",
                            "plain.png"])


@pytest.mark.parametrize(("how", "value"), [("flag", "xml"), ("toml", '"xml"'), ("toml", "1"), ("flag", "CSV ")])
def test_an_unknown_format_is_refused_in_one_line_naming_the_setting(tmp_path, tiny_model, how, value):
    args = ["--source", "demo", "--model", str(tiny_model), "--check-config"]
    if how == "flag":
        args += ["--format", value]
    else:
        config = tmp_path / "edge.toml"
        config.write_text(f"format = {value}\n")
        args += ["--config", str(config)]
    out = _run(args, text=True)
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("fer-edge: ") and "format must be" in line, out.stderr


def test_format_is_a_config_key(tmp_path, tiny_model):
    config = tmp_path / "edge.toml"
    config.write_text('format = "csv"\n')
    out = _run(["--config", str(config), "--model", str(tiny_model), "--check-config"], text=True)
    assert out.returncode == 0, out.stderr
    assert 'format = "csv"' in out.stdout.splitlines()


# ---------------------------------------------------------------- video files: pos_ms, end events


def test_video_results_carry_their_position_and_tracks_end_with_the_file(tmp_path, tiny_model, astronaut):
    clip = write_face_video(tmp_path / "clip.avi", astronaut, frames=8, fps=20.0)
    out = _run(["--source", str(clip), "--model", str(tiny_model), "--threads", "1"])
    assert out.returncode == 0, out.stderr
    messages = [json.loads(line) for line in out.stdout.splitlines()]
    assert [m["pos_ms"] for m in messages] == [50.0 * i for i in range(8)]
    assert list(messages[0])[:4] == ["frame", "ts", "pos_ms", "source"]
    events = [(m["frame"], e["type"], e["track"]) for m in messages for e in m.get("events", [])]
    track = messages[0]["faces"][0]["track"]
    assert events == [(0, "new", track), (7, "end", track)]  # in view to the end: it ends with the file
    assert [f["track"] for f in messages[-1]["faces"]] == [track]


def test_a_looping_video_restarts_its_position_and_ends_nothing(tmp_path, tiny_model, astronaut):
    clip = write_face_video(tmp_path / "clip.avi", astronaut, frames=3, fps=10.0)
    out = _run(["--source", str(clip), "--loop", "--max-frames", "7", "--model", str(tiny_model), "--threads", "1"])
    assert out.returncode == 0, out.stderr
    messages = [json.loads(line) for line in out.stdout.splitlines()]
    assert [m["pos_ms"] for m in messages] == [0.0, 100.0, 200.0] * 2 + [0.0]


class _Capture:
    """A video file's VideoCapture that says nothing of positions (POS_MSEC 0), as some backends do."""

    def __init__(self, target, frames=3, fps=25.0):
        self.left = frames
        self.fps = fps

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return True

    def grab(self):
        self.left -= 1
        return self.left >= 0

    def retrieve(self):
        return True, np.zeros((4, 4, 3), np.uint8)

    def get(self, prop):
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def set(self, prop, value):
        return False

    def release(self):
        pass


def test_video_position_falls_back_to_frame_index_and_frame_rate():
    source = VideoCaptureSource("clip.mp4", live=False, capture_factory=_Capture)
    frames = [source.read() for _ in range(4)]
    assert [f.pos_ms for f in frames[:3]] == [0.0, 40.0, 80.0]
    assert [f.last for f in frames[:3]] == [False, False, True]
    assert frames[3] is None
    no_rate = VideoCaptureSource("clip.mp4", live=False, capture_factory=lambda t: _Capture(t, fps=0.0))
    assert [no_rate.read().pos_ms for _ in range(2)] == [0.0, None]


def test_recognizer_reset_ends_the_tracks_it_forgets(tiny_model, astronaut):
    frame = place_face(astronaut, 60, 40, scale=0.6)
    with Recognizer(tiny_model, threads=1) as recognizer:
        result = recognizer.process(frame)
        track = result.faces[0].track
        assert [e.to_json() for e in recognizer.reset()] == [{"type": "end", "track": track}]
        assert recognizer.reset() == ()
