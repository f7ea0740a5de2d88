"""Short runs of the benchmarks (tests/bench/): their correctness parts, never their timings."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))

import bench_pipeline  # noqa: E402
import scenes  # noqa: E402
import soak  # noqa: E402

from ferlite.edge.runtime.config import EdgeConfig  # noqa: E402


def test_scenes_put_real_faces_where_they_say():
    rng = np.random.default_rng(0)
    photos = scenes.face_photos(fer_limit=0)
    frames = list(scenes.scene("multi", 3, photos, rng)) + list(scenes.scene("empty", 2, photos, rng))
    assert [len(f.truth) for f in frames] == [3, 3, 3, 0, 0]
    assert all(f.image.shape == (480, 640, 3) for f in frames)
    appear = list(scenes.scene("appear", 12, photos, rng))
    new = [i for i, f in enumerate(appear) if f.new_face is not None]
    assert len(new) == 1 and len(appear[new[0]].truth) == 2 and len(appear[new[0] - 1].truth) == 1


def test_bench_pipeline_finds_what_the_baseline_finds(tiny_model, tmp_path):
    argv = ["--frames", "12", "--scenes", "1", "--fer-faces", "0", "--model", str(tiny_model)]
    args = bench_pipeline.parse_args(argv)
    sets = bench_pipeline.make_scenes(args, tmp_path)
    assert set(sets) == {"clean", "video"} and not list(tmp_path.iterdir())  # the videos are read back, removed
    for frames in sets["video"]:
        assert frames[0].image.shape == (480, 640, 3) and frames[0].scene.endswith("/video")
    for name, scenes_of_set in sets.items():
        run = bench_pipeline.run_threads(scenes_of_set, tiny_model, 1, EdgeConfig())
        assert run["counts"]["truth"] > 12 + 3 * 12 + 12, name  # single, multi, empty, appear (one face, later two)
        assert run["baseline_ms"]["n"] == run["ferlite_ms"]["n"] == 48
        assert run["recall_baseline"] >= 0.95
        assert run["recall_ferlite"] >= run["recall_baseline"] - 0.05
        assert run["counts"]["ferlite_duplicate"] == 0
        assert run["new_face_worst"] is not None and run["new_face_worst"] <= run["new_face_bound"]



def test_bench_pipeline_measures_each_detector_beside_the_default_on_the_same_frames(tiny_model, tmp_path):
    from ferlite.edge.algorithm.detector import DETECTORS

    args = bench_pipeline.parse_args(["--frames", "12", "--scenes", "1", "--fer-faces", "0"])
    clean = bench_pipeline.make_scenes(args, tmp_path)["clean"]
    run = bench_pipeline.run_threads(clean, tiny_model, 1, EdgeConfig(), detectors=list(DETECTORS))
    rows = run["detectors"]
    assert list(rows) == list(DETECTORS)  # the default first, then the others
    default = rows["haar"]
    assert default["ms"] == run["ferlite_ms"] and default["recall"] == run["recall_ferlite"]
    assert default["counts"]["false"] == run["counts"]["ferlite_false"]
    for name, row in rows.items():
        assert row["ms"]["n"] == 48 and row["recall"] >= 0.9 and row["counts"]["duplicate"] == 0, name


@pytest.mark.slow
def test_soak_short_no_message_lost_daemon_survives_camera_failures(tiny_model):
    args = soak.parse_args([
        "--model", str(tiny_model), "--frames", "300", "--block", "60", "--readers", "6",
        "--fail-every", "70", "--scene-frames", "6", "--no-pin",
    ])
    report = soak.run(args)
    daemon = report["daemon"]
    assert daemon["frames"] == 300 and report["daemon_exit_code"] == 0
    assert not report["daemon_exited_early"]
    assert daemon["reopens"] >= 4  # 300 reads with a failure every 70
    assert report["probe"]["last"] == 299 and report["probe"]["missing"] == 0
    assert report["reader_sessions"] >= 2 * 5  # two 'with' blocks of 5 live readers
    assert report["sessions_missing"] == 0 and report["sessions_out_of_order"] == 0
    assert report["sessions_min_messages"] > 0
    assert report["flapper_connections"] > 0
    assert daemon["dropped"] <= 1  # only the reader that stopped reading may be dropped
