"""Annotated output: draw_result, and fer-edge --annotate writing a video or image files."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import place_face, read_video, write_face_video

from ferlite.edge import InputError, draw_result
from ferlite.edge.algorithm.pipeline import FaceResult, FrameResult
from ferlite.edge.apps import annotate
from ferlite.edge.apps.annotate import COLOURS, VideoAnnotator
from ferlite.edge.contract import LABELS

EDGE = [sys.executable, "-m", "ferlite.edge.apps.cli"]
TIMEOUT = 120


def _result(box=(50, 60, 80, 80), label="Happy", track: int | None = 3) -> FrameResult:
    face = FaceResult(box, label, 0.93, dict.fromkeys(LABELS, 0.1), track)
    return FrameResult(faces=(face,), timing_ms={}, size=(320, 240))


def _near(pixel, colour, tolerance=40) -> bool:
    return bool(np.abs(np.asarray(pixel, int) - np.asarray(colour, int)).max() <= tolerance)


def test_draw_result_draws_a_box_and_caption_in_the_labels_colour():
    frame = np.full((240, 320, 3), 100, np.uint8)
    before = frame.copy()
    out = draw_result(frame, _result())
    np.testing.assert_array_equal(frame, before)  # a copy by default
    x, y, w, h = 50, 60, 80, 80
    for px, py in ((x, y + h // 2), (x + w - 1, y + h // 2), (x + w // 2, y), (x + w // 2, y + h - 1)):
        assert _near(out[py, px], COLOURS["Happy"], 5), (px, py, out[py, px])
    assert (out[y + 10 : y + h - 10, x + 10 : x + w - 10] == 100).all()  # the face itself is left alone
    caption = out[max(0, y - 25) : y, x : x + w]
    assert (np.abs(caption.astype(int) - COLOURS["Happy"]).max(axis=2) <= 5).sum() > 100  # the label's box
    assert (caption.max(axis=2) < 60).sum() > 20  # its black text
    assert not (out != frame).any(axis=2)[:, 200:].any()  # nothing far from the face


def test_draw_result_takes_gray_and_draws_in_place_on_request():
    gray = np.full((240, 320), 100, np.uint8)
    out = draw_result(gray, _result(track=None))
    assert out.shape == (240, 320, 3) and out.dtype == np.uint8
    assert _near(out[100, 50], COLOURS["Happy"], 5)
    bgr = np.full((240, 320, 3), 100, np.uint8)
    assert draw_result(bgr, _result(), copy=False) is bgr
    assert _near(bgr[100, 50], COLOURS["Happy"], 5)
    with pytest.raises(InputError, match="dtype float64"):
        draw_result(np.zeros((10, 10)), _result())


def _luminance(bgr) -> float:
    """WCAG 2 relative luminance of an sRGB colour given as BGR 0..255."""
    channels = np.asarray(bgr, float)[::-1] / 255.0
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


def _contrast(a, b) -> float:
    """WCAG 2 contrast ratio, 1 (none) to 21 (black on white)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("background", [255, 235, 128, 20, 0])
def test_every_labels_box_and_caption_stand_out_on_light_and_dark(label, background):
    """WCAG's 3:1 for graphics: on a white wall, a pale face or a dark room, some line of the box and of
    its caption has at least 3:1 against the picture; the caption's text 4.5:1 against its box."""
    for size in ((320, 240), (640, 480), (1920, 1080)):  # lines 1, 2 and 4-5 px thick
        frame = np.full((size[1], size[0], 3), background, np.uint8)
        x, y, w, h = size[0] // 3, size[1] // 3, size[1] // 3, size[1] // 3
        face = FaceResult((x, y, w, h), label, 0.93, dict.fromkeys(LABELS, 0.1), 3)
        out = draw_result(frame, FrameResult(faces=(face,), timing_ms={}, size=size))
        across_side = out[y + h // 2, x - 8 : x + 9]  # a row across the box's left line
        best = max(_contrast(pixel, (background,) * 3) for pixel in across_side)
        assert best >= 3.0, (label, background, size, best, across_side.tolist())
        above = out[: y - 1, x : x + w]  # the caption, above the box
        best = max(_contrast(pixel, (background,) * 3) for pixel in above.reshape(-1, 3)[::7])
        assert best >= 3.0, (label, background, size, best)
    assert _contrast(COLOURS[label], (0, 0, 0)) >= 4.5  # black caption text on the label's colour


class _FakeWriter:
    """cv2.VideoWriter as far as VideoAnnotator uses it; opens only for the codecs in `available`."""

    def __init__(self, available, made):
        self.available, self.made = available, made

    def __call__(self, path, fourcc, fps, size):
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4))
        self.made.append(codec)
        self.codec, self.frames = codec, 0
        return self

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.codec in self.available

    def write(self, image):
        self.frames += 1

    def release(self):
        pass


def _write_one(path, available, made):
    annotator = VideoAnnotator(path, 10.0, writer_factory=_FakeWriter(available, made))
    frame = annotate.Frame(image=np.full((48, 64, 3), 100, np.uint8))
    annotator(frame, FrameResult(faces=(), timing_ms={}, size=(64, 48)))
    annotator.close()
    return annotator


def test_annotated_mp4_is_h264_where_opencv_has_it_else_mp4v_said_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(annotate, "_warned_codecs", set())
    caplog.set_level(logging.INFO, logger="ferlite.edge.apps.annotate")
    made: list[str] = []
    assert _write_one(tmp_path / "a.mp4", {"avc1", "mp4v"}, made).codec == "avc1"  # plays in a browser
    assert made == ["avc1"] and "browsers" not in caplog.text
    made.clear()
    first = _write_one(tmp_path / "b.mp4", {"mp4v", "MJPG"}, made)  # pip's OpenCV: no H.264 encoder
    assert first.codec == "mp4v" and first.frames == 1 and made == ["avc1", "mp4v"]
    assert _write_one(tmp_path / "c.mov", {"mp4v"}, made).codec == "mp4v"
    said = [r for r in caplog.records if "browsers may not" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING  # once per process, not per file
    assert "avc1" in said[0].getMessage() and "mp4v" in said[0].getMessage()
    made.clear()
    assert _write_one(tmp_path / "d.avi", {"mp4v", "MJPG"}, made).codec == "MJPG" and made == ["MJPG"]
    nothing = _write_one(tmp_path / "e.mp4", set(), made)  # no encoder at all: an error, no output
    assert nothing.frames == 0 and "cannot write avc1 or mp4v" in caplog.text


def test_annotated_mp4_with_this_machines_opencv_reads_back(tmp_path):
    """Whatever codec this OpenCV has, the file written is a video OpenCV can read."""
    annotator = VideoAnnotator(tmp_path / "real.mp4", 10.0)
    for _ in range(3):
        annotator(annotate.Frame(image=np.full((48, 64, 3), 100, np.uint8)), _result())
    annotator.close()
    assert annotator.codec in ("avc1", "mp4v") and annotator.frames == 3
    assert len(read_video(tmp_path / "real.mp4")) == 3


def _run(args):
    return subprocess.run(EDGE + args, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def test_fer_edge_annotate_writes_a_video_of_the_video(tmp_path, tiny_model, astronaut):
    clip = write_face_video(tmp_path / "clip.avi", astronaut, frames=12, fps=10.0)
    target = tmp_path / "out" / "annotated.mp4"
    target.parent.mkdir()
    out = _run(["--source", str(clip), "--model", str(tiny_model), "--threads", "1", "--annotate", str(target)])
    assert out.returncode == 0, out.stderr
    messages = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(messages) == 12  # the feed is unchanged
    capture = cv2.VideoCapture(str(target))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0, abs=0.1)  # the clip's own rate
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    assert len(frames) == 12
    for image, message in zip(frames, messages, strict=True):
        assert image.shape == (480, 640, 3)
        face = message["faces"][0]
        x, y, w, h = face["box"]
        assert _near(image[y + h // 2, x], COLOURS[face["label"]], 60), (face, image[y + h // 2, x])


def test_fer_edge_annotate_writes_one_image_per_photo(tmp_path, tiny_model, astronaut):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        cv2.imwrite(str(photos / f"p{i}.png"), place_face(astronaut, 40 + 100 * i, 30, scale=0.6))
    target = tmp_path / "annotated"  # made by fer-edge
    out = _run(["--source", str(photos), "--model", str(tiny_model), "--threads", "1", "--annotate", str(target)])
    assert out.returncode == 0, out.stderr
    messages = {m["file"]: m for m in map(json.loads, out.stdout.splitlines())}
    assert sorted(p.name for p in target.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    for name, message in messages.items():
        image = cv2.imread(str(target / name))
        face = message["faces"][0]
        assert "track" not in face
        x, y, w, h = face["box"]
        assert _near(image[y + h // 2, x], COLOURS[face["label"]], 5)
        original = cv2.imread(str(photos / name))
        assert (image != original).any(axis=2).sum() < 0.1 * image.shape[0] * image.shape[1]  # only the marks


@pytest.mark.parametrize(
    ("source", "target", "says"),
    [
        ("video", "out.txt", "needs a video file"),
        ("video", "missing/out.mp4", "no such folder"),
        ("photos", "photos", "the source folder itself"),
    ],
)
def test_fer_edge_annotate_refuses_a_path_it_cannot_use(tmp_path, tiny_model, astronaut, source, target, says):
    write_face_video(tmp_path / "video.avi", astronaut, frames=2)
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "p.png"), astronaut)
    src = tmp_path / ("video.avi" if source == "video" else "photos")
    out = _run(["--source", str(src), "--model", str(tiny_model), "--annotate", str(tmp_path / target)])
    assert out.returncode == 2, out.stderr
    assert says in out.stderr and out.stderr.count("\n") <= 3
    assert out.stdout == ""


def test_annotation_off_costs_nothing_not_even_an_import(tiny_model):
    code = (
        "import sys\n"
        "from ferlite.edge.apps.cli import main\n"
        f"rc = main(['--source', 'demo', '--max-frames', '2', '--model', {str(tiny_model)!r}, '--threads', '1',"
        " '--no-stdout', '--log-level', 'WARNING'] + sys.argv[1:])\n"
        "print(rc, 'ferlite.edge.apps.annotate' in sys.modules)\n"
    )
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert off.stdout.split() == ["0", "False"], off.stderr


def test_open_annotator_refuses_the_source_folder_by_any_name(tmp_path):
    """The Python API's own check (open_annotator(..., source_folder=)) compares files the way fer-edge's
    refuse_own_source does: another name of the folder (a symbolic link, a path with ..) is the folder."""
    from ferlite.edge.contract.errors import AnnotateError

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(photos)
    for name in (photos, tmp_path / "link", photos / "sub" / ".."):
        with pytest.raises(AnnotateError, match="the source folder itself"):
            annotate.open_annotator(name, stills=True, source_folder=photos)
    fresh = annotate.open_annotator(tmp_path / "out", stills=True, source_folder=photos)
    assert (tmp_path / "out").is_dir() and fresh.frames == 0
