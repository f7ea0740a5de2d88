"""The in-process API (ferlite.edge.Recognizer, ferlite.edge.recognize) against the daemon's own output."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import ROOT, place_face, read_video, write_face_video

import ferlite.edge
from ferlite.edge import FrameResult, InputError, Recognizer, frame_to_json
from ferlite.edge.algorithm.pipeline import FaceResult, TrackEvent
from ferlite.edge.contract import LABELS
from ferlite.edge.contract.errors import FerliteError
from ferlite.edge.runtime.config import ConfigError, EdgeConfig
from ferlite.edge.runtime.loop import encode, run_loop
from ferlite.edge.runtime.testing import ReplaySource

EDGE = [sys.executable, "-m", "ferlite.edge.apps.cli"]


def run_edge(args: list[str]) -> list[dict]:
    out = subprocess.run(EDGE + args, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- api-example -->\s*```python\n(.*?)```\s*<!-- /api-example -->", text, re.S)
    assert match, "README.md has no <!-- api-example --> python block"
    return match.group(1)


def test_readme_example_prints_labels_for_a_photo_from_any_folder(tmp_path):
    """The README's example works where a user runs it after `pip install`: not in the checkout."""
    code = readme_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 5
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines, "the example printed nothing"
    assert lines[0].split()[0] in LABELS, lines


def test_demo_photos_are_reachable_from_any_folder(tmp_path):
    code = ("from ferlite.edge import DEMO_DIR, demo_photos\n"
            "print(DEMO_DIR.is_absolute(), DEMO_DIR.is_dir())\n"
            "print(*[p.name for p in demo_photos() if p.is_file() and p.parent == DEMO_DIR])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr
    first, names = out.stdout.splitlines()
    assert first == "True True"
    assert names.split() == ["astronaut.jpg", "astronaut_640x480_1.jpg", "astronaut_640x480_2.jpg",
                             "astronaut_640x480_3.jpg"]  # sorted, as fer-edge --source demo reads them
    faces = ferlite.edge.recognize(ferlite.edge.demo_photos()[0])
    assert faces and faces[0].label in LABELS


def test_process_gives_exactly_the_daemons_feed_for_a_video(tmp_path, tiny_model, astronaut):
    video = write_face_video(tmp_path / "clip.avi", astronaut)
    messages = run_edge(["--source", str(video), "--model", str(tiny_model), "--threads", "1"])
    frames = read_video(video)
    assert len(messages) == len(frames) == 12
    with Recognizer(tiny_model, threads=1) as recognizer:
        ours = [recognizer.process(frame) for frame in frames]
        # The file ends with the last frame: so do its tracks, as reset() says.
        ours[-1] = dataclasses.replace(ours[-1], events=ours[-1].events + recognizer.reset())
    tracks = set()
    for index, (message, result) in enumerate(zip(messages, ours, strict=True)):
        mine = frame_to_json(result, frame=index, ts=message["ts"], source=message["source"], pos_ms=message["pos_ms"])
        mine = json.loads(encode(mine))  # through the feed's own encoder
        assert list(mine) == list(message)  # same keys, same order
        message.pop("timing_ms")
        mine.pop("timing_ms")
        assert mine == message
        tracks |= {face["track"] for face in message["faces"]}
    assert len(tracks) == 1  # one face, tracked all along
    assert messages[0]["events"] == [{"type": "new", "track": tracks.pop()}]


def test_recognize_gives_the_daemons_faces_for_photos(tmp_path, tiny_model, astronaut):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.jpg"), place_face(astronaut, 40 + 120 * i, 30, scale=0.5 + 0.1 * i))
    messages = run_edge(["--source", str(folder), "--model", str(tiny_model), "--threads", "1"])
    with Recognizer(tiny_model, threads=1) as recognizer:
        for message in messages:
            faces = recognizer.recognize(folder / message["file"])  # a path works as well as an array
            assert [face.to_json() for face in faces] == message["faces"]
            assert faces and all(face.track is None for face in faces)


def test_the_daemon_builds_its_messages_with_frame_to_json(monkeypatch):
    result = FrameResult(
        faces=(FaceResult((1, 2, 3, 4), "Happy", 0.91234, dict.fromkeys(LABELS, 1 / 6), track=7),),
        timing_ms={"detect": 1.0, "classify": 0.5, "total": 1.5},
        size=(640, 480),
        events=(TrackEvent("new", 7),),
    )

    class Fixed:
        def process(self, image):
            return result

    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs["frame"])
        return frame_to_json(*args, **kwargs)

    monkeypatch.setattr("ferlite.edge.runtime.loop.frame_to_json", counting)
    lines: list[bytes] = []
    frames = [np.zeros((480, 640, 3), np.uint8)] * 3
    run_loop(ReplaySource(frames, name="fixed"), Fixed(), [lines.append])  # type: ignore[arg-type]
    assert calls == [0, 1, 2]
    message = json.loads(lines[1])
    assert message == frame_to_json(result, frame=1, ts=message["ts"], source="fixed")
    assert message["faces"][0] == {"box": [1, 2, 3, 4], "label": "Happy", "score": 0.9123,
                                   "scores": dict.fromkeys(LABELS, 0.1667), "track": 7}
    assert message["events"] == [{"type": "new", "track": 7}]


@pytest.fixture(scope="module")
def recognizer(tiny_model):
    with Recognizer(tiny_model, threads=1) as rec:
        yield rec


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (None, "is None"),
        ([[1, 2], [3, 4]], "is a list"),
        (np.zeros((0, 0, 3), np.uint8), "empty"),
        (np.zeros((0,), np.uint8), "empty"),
        (np.zeros((48, 48), np.float32), "dtype float32"),
        (np.zeros((48, 48, 3), np.int16), "dtype int16"),
        (np.zeros((48, 48, 2), np.uint8), "shape (48, 48, 2)"),
        (np.zeros((2, 48, 48, 3), np.uint8), "shape (2, 48, 48, 3)"),
        (np.zeros(48, np.uint8), "shape (48,)"),
    ],
)
def test_bad_frames_raise_one_documented_error(recognizer, bad, says):
    empty = FrameResult(faces=(), timing_ms={}, size=(48, 48))
    for call in (recognizer.process, recognizer.recognize, lambda image: ferlite.edge.draw_result(image, empty)):
        with pytest.raises(InputError, match=re.escape(says)) as caught:
            call(bad)
        assert isinstance(caught.value, FerliteError)
        assert isinstance(caught.value, ValueError)
        assert "uint8" in str(caught.value)  # and what was expected


def test_unreadable_image_file_and_closed_recognizer_raise_input_error(tiny_model, tmp_path):
    rec = Recognizer(tiny_model, threads=1)
    with pytest.raises(InputError, match="missing.jpg: cannot open"):
        rec.recognize(tmp_path / "missing.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(InputError, match="text.jpg: not a JPEG"):
        rec.recognize(str(tmp_path / "text.jpg"))
    with rec:
        pass
    assert rec.closed
    frame = np.zeros((48, 48), np.uint8)
    for call in (rec.process, rec.recognize):
        with pytest.raises(InputError, match="closed"):
            call(frame)
    with pytest.raises(InputError, match="closed"):
        rec.reset()
    rec.close()  # twice is harmless


def _one_box(faces):
    assert len(faces) == 1, faces
    return np.array(faces[0].box)


def test_gray_bgra_and_yuv420_y_plane_frames_find_the_bgr_face(recognizer, astronaut):
    bgr = place_face(astronaut, 100, 40, scale=0.6)
    box = _one_box(recognizer.recognize(bgr))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)  # (480 * 3 / 2, 640), as picamera2's lores stream
    padded = np.zeros((720, 704), np.uint8)  # a stride wider than the picture: a non-contiguous view
    padded[:, :640] = yuv
    frames = {
        "gray": gray,
        "gray (h, w, 1)": gray[:, :, None],
        "bgra": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "y plane": yuv[:480],
        "padded y plane": padded[:480, :640],
        "mirrored view": bgr[:, ::-1][:, ::-1],
    }
    for name, frame in frames.items():
        found = _one_box(recognizer.recognize(frame))
        assert np.abs(found - box).max() <= 4, (name, found, box)


def test_process_tracks_and_smooths_recognize_does_not(tiny_model, astronaut):
    frames = [place_face(astronaut, 30 + 6 * i, 20, scale=0.6) for i in range(6)]
    with Recognizer(tiny_model, threads=1, smooth_window=3) as rec:
        results = [rec.process(frame) for frame in frames]
        assert results[0].events == (TrackEvent("new", results[0].faces[0].track),)
        tracks = {face.track for result in results for face in result.faces}
        assert len(tracks) == 1 and None not in tracks
        last = results[-1].faces[0]
        raw = np.mean([[r.faces[0].scores[k] for k in LABELS] for r in results[-3:]], axis=0)
        assert last.label == LABELS[int(np.argmax(raw))]  # smoothed over the last 3 frames
        assert last.score == pytest.approx(float(raw.max()), abs=1e-5)
        stills = rec.recognize(frames[-1])
        assert [face.track for face in stills] == [None]
        assert stills[0].score == pytest.approx(max(stills[0].scores.values()))
        rec.reset()
        again = rec.process(frames[0])  # far from the last box, but a new video: no "end", a fresh "new"
        assert again.events == (TrackEvent("new", again.faces[0].track),)


def test_settings_by_keyword_or_config_and_bad_ones_refused(tiny_model):
    with Recognizer(config=EdgeConfig(min_size=60, model=str(tiny_model)), smooth_window=1, flip=True) as rec:
        assert rec.config.min_size == 60 and rec.config.smooth_window == 1
        assert rec.model_path == tiny_model
        settings = rec._video.settings  # the pipeline it built
        assert settings.temporal and settings.flip and settings.detect.min_size == 60
        assert settings.margin == rec.spec.margin and settings.face_size == rec.spec.face_size
        assert not rec._stills.settings.temporal
    with Recognizer(tiny_model, margin=0.3) as rec:
        assert rec._video.settings.margin == 0.3  # the config overrides the spec
    with pytest.raises(ConfigError, match="unknown setting"):
        Recognizer(tiny_model, colour="blue")
    with pytest.raises(ConfigError, match="min_size must be int"):
        Recognizer(tiny_model, min_size="big")
    with pytest.raises(ConfigError, match="smooth_window must be at least 1"):
        Recognizer(tiny_model, smooth_window=0)


def test_results_are_frozen_and_typed(recognizer, astronaut):
    result = recognizer.process(place_face(astronaut, 60, 20, scale=0.6))
    assert isinstance(result.faces, tuple) and isinstance(result.events, tuple)
    face = result.faces[0]
    assert isinstance(face.box, tuple) and all(isinstance(v, int) for v in face.box)
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.label = "Sad"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.faces = ()  # type: ignore[misc]
    assert result.to_json() == frame_to_json(result)
    assert list(result.to_json()) == ["size", "faces", "events", "timing_ms"]


def test_module_level_names():
    from ferlite.edge.algorithm import pipeline
    from ferlite.edge.runtime import api

    assert ferlite.edge.recognize is api.recognize
    assert ferlite.edge.Recognizer is api.Recognizer
    assert ferlite.edge.FaceResult is pipeline.FaceResult
    with pytest.raises(AttributeError):
        ferlite.edge.no_such_name  # noqa: B018
    for function in (Recognizer.process, Recognizer.recognize, ferlite.edge.recognize, ferlite.edge.draw_result):
        doc = function.__doc__ or ""
        assert "Args:" in doc and "Returns:" in doc and "Raises:" in doc and "InputError" in doc, function
    doc = Recognizer.__init__.__doc__ or ""
    assert "Args:" in doc and "Raises:" in doc and "ModelLoadError" in doc
