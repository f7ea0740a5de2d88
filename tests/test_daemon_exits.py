"""How fer-edge exits when it cannot do its job: exit 2 and the reason in one line, never a traceback.

Subprocess tests, with timeouts: a hang is a failure, not a stuck test run.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest
from helpers import gray_images, one_error_line, run_edge


def test_stdout_that_is_dev_full_exits_2(tmp_path, tiny_model):
    folder = gray_images(tmp_path / "f", 2)
    with open("/dev/full", "wb") as full:
        out = run_edge(["--source", str(folder), "--model", str(tiny_model), "--whole-frame"], stdout=full)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == "fer-edge: stdout: cannot write results (No space left on device)"


def test_check_config_to_dev_full_exits_2(tiny_model):
    with open("/dev/full", "wb") as full:
        out = run_edge(["--model", str(tiny_model), "--check-config"], stdout=full)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr
    assert "stdout" in out.stderr.strip().splitlines()[-1]


def test_closed_stdout_exits_2(tmp_path, tiny_model):
    folder = gray_images(tmp_path / "f", 2)
    out = run_edge(["--source", str(folder), "--model", str(tiny_model)], stdout=None,
               preexec_fn=lambda: os.close(1))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "stdout is closed" in out.stderr.strip().splitlines()[-1]


def _empty_video(path: Path, fourcc: str) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    writer.release()
    return path


@pytest.mark.parametrize(("name", "fourcc"), [("empty.avi", "MJPG"), ("empty.mp4", "mp4v")])
def test_video_without_frames_exits_2(tmp_path, tiny_model, name, fourcc):
    path = _empty_video(tmp_path / name, fourcc)
    line = one_error_line(run_edge(["--source", str(path), "--model", str(tiny_model)]))
    assert name in line


def test_folder_of_only_corrupt_images_exits_2(tmp_path, tiny_model):
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(b"\xff\xd8\xff broken")
    line = one_error_line(run_edge(["--source", str(folder), "--model", str(tiny_model)]))
    assert "bad" in line and "no readable frame" in line and "3" in line
