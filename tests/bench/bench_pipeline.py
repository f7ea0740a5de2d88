"""Benchmark: ferlite's pipeline against full-frame Haar, as every peer does it, on the same frames.

    .venv/bin/python tests/bench/bench_pipeline.py --threads 1 --no-peer --out tests/bench/bench_pipeline.json

Baseline: BGR -> gray -> Haar on the full 640x480 frame (scaleFactor 1.1, minNeighbors 5,
minSize 50x50) -> classify the faces. ferlite: Pipeline with every default of EdgeConfig.
Both run on each frame, one after the other (order alternating), so machine noise hits both.

Two sets of the same scenes: "clean" (the rendered frames, light smooth noise) and "video"
(Gaussian noise of sigma 2, 4 or 6 grey levels per pixel, then through a real video codec and
back, as a camera or a video file gives them). Per set: mean, median and p95 per frame, recall,
duplicate and false faces, and how many frames a face that appears waits to be reported.

Every registered detector (--detectors) runs the same pipeline on the same frames, interleaved with
the default and the baseline: its ms/frame, recall, false and duplicate faces side by side with the
default's ("detectors" in each run). A short run of them:

    .venv/bin/python tests/bench/bench_pipeline.py --threads 1 --frames 60 --scenes 2 --startup-runs 0 --no-peer
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import scenes
from measure import (
    MATCH_IOU,
    default_model,
    fer_edge,
    repo_relative,
    spawn_until_first_line,
    stats_ms,
    unmatched,
)

from ferlite.edge.algorithm.detector import DETECTORS, DetectSettings, HaarDetector, make_detector
from ferlite.edge.algorithm.runner import ModelRunner
from ferlite.edge.algorithm.sweep import new_face_bound
from ferlite.edge.algorithm.tracking import iou
from ferlite.edge.contract.preprocess import Box, preprocess_faces
from ferlite.edge.runtime.api import build_pipeline
from ferlite.edge.runtime.config import EdgeConfig

log = logging.getLogger(__name__)

KINDS = ("single", "multi", "empty", "appear")
BASELINE = {"scale_factor": 1.1, "min_neighbors": 5, "min_size": 50, "width": 640}


class Baseline:
    """Full-frame Haar at 640x480 plus classification of every face found."""

    def __init__(self, runner: ModelRunner) -> None:
        self.detector = HaarDetector(1.1, 5, 50)  # as BASELINE says
        self.runner = runner

    def process(self, image: np.ndarray) -> list[Box]:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes = self.detector.detect(gray)
        faces = preprocess_faces(gray, boxes, margin=self.runner.spec.margin, size=self.runner.spec.input_size,
                                 face_size=self.runner.spec.face_size)
        if len(faces):
            self.runner.classify(faces)
        return boxes


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


SIGMAS = (2.0, 4.0, 6.0)  # sensor noise of the video scenes, grey levels per pixel, in turn


def make_scenes(args: argparse.Namespace, folder: Path) -> dict[str, list[list[scenes.Frame]]]:
    """{"clean": scenes, "video": the same scenes with noise, through a video codec}."""
    rng = np.random.default_rng(args.seed)
    photos = scenes.face_photos(fer_limit=args.fer_faces)
    clean = [
        list(scenes.scene(kind, args.frames, photos, rng))
        for _ in range(args.scenes)
        for kind in KINDS
    ]
    video = [scenes.through_codec(frames, SIGMAS[i % len(SIGMAS)], rng, folder) for i, frames in enumerate(clean)]
    return {"clean": clean, "video": video}


def run_threads(
    all_scenes: list[list[scenes.Frame]], model: Path, threads: int, config: EdgeConfig,
    detectors: Sequence[str] = (),
) -> dict[str, Any]:
    """Interleaved latencies, detection agreement and time to new face for one thread count.

    `config.detector` is "ferlite" (the keys of the report); each name in `detectors` runs the same
    pipeline with that detector on the same frames, interleaved with the others (the order rotates
    every frame), its figures under "detectors" beside the default's."""
    cv2.setNumThreads(threads)
    runner = ModelRunner(model, threads=threads)
    baseline = Baseline(runner)
    names = [config.detector, *(d for d in detectors if d != config.detector)]
    configs = {name: dataclasses.replace(config, detector=name) for name in names}
    times: dict[str, list[float]] = {"baseline": [], **{name: [] for name in names}}
    counts = {"truth": 0, "baseline_hit": 0, "baseline_false": 0, "baseline_duplicate": 0}
    per = {name: {"hit": 0, "only": 0, "baseline_only": 0, "false": 0, "duplicate": 0} for name in names}
    new_face_frames: dict[str, list[int | None]] = {name: [] for name in names}
    by_kind: dict[str, dict[str, list[float]]] = {}
    for frames in all_scenes:
        kind = by_kind.setdefault(frames[0].scene, {"baseline": [], "ferlite": []})
        # As fer-edge builds it for a camera.
        pipelines = {name: build_pipeline(c, runner, make_detector(DetectSettings.of(c)), temporal=True)
                     for name, c in configs.items()}
        waiting: dict[str, tuple[Box, int] | None] = dict.fromkeys(names)
        for index, frame in enumerate(frames):
            turn = index % (len(names) + 1)
            everyone = ["baseline", *names]
            found: dict[str, list[Box]] = {}
            for name in everyone[turn:] + everyone[:turn]:
                if name == "baseline":
                    seconds, found[name] = _timed(lambda f=frame: baseline.process(f.image))
                else:
                    seconds, result = _timed(lambda f=frame, p=pipelines[name]: p.process(f.image))
                    found[name] = [face.box for face in result.faces]
                times[name].append(seconds)
                if name in ("baseline", config.detector):
                    kind["baseline" if name == "baseline" else "ferlite"].append(seconds)
            _count_baseline(counts, frame.truth, found["baseline"])
            for name in names:
                _count(per[name], frame.truth, found["baseline"], found[name])
                waiting[name] = _wait_for_new_face(frame, found[name], waiting[name], new_face_frames[name])
        for name in names:
            if waiting[name] is not None:
                new_face_frames[name].append(None)
    main = config.detector
    counts |= {"ferlite_hit": per[main]["hit"], "baseline_only": per[main]["baseline_only"],
               "ferlite_only": per[main]["only"], "ferlite_false": per[main]["false"],
               "ferlite_duplicate": per[main]["duplicate"]}
    summary = _summary({"baseline": times["baseline"], "ferlite": times[main]}, counts, new_face_frames[main],
                       config, threads, runner.backend)
    summary["by_scene"] = {name: _scene_summary(t) for name, t in by_kind.items()}
    summary["detectors"] = {name: _detector_summary(times[name], times["baseline"], per[name], counts["truth"],
                                                    new_face_frames[name]) for name in names}
    return summary


def _wait_for_new_face(frame: scenes.Frame, found: list[Box], waiting: tuple[Box, int] | None,
                       record: list[int | None]) -> tuple[Box, int] | None:
    """Follow a face that appeared until `found` holds it: the frames it waited go to `record`."""
    if frame.new_face is not None:
        waiting = (frame.truth[frame.new_face], 0)
    if waiting is None:
        return None
    box = max(frame.truth, key=lambda t, b=waiting[0]: iou(t, b))  # the new face, moved
    waiting = (box, waiting[1] + 1)
    if not unmatched([box], found):
        record.append(waiting[1])
        return None
    return waiting


def _detector_summary(times: list[float], baseline: list[float], counts: dict[str, int], truth: int,
                      new_face: list[int | None]) -> dict[str, Any]:
    ms, base = stats_ms(times), stats_ms(baseline)
    seen = [n for n in new_face if n is not None]
    return {"ms": ms, "ratio_mean": round(base["mean"] / ms["mean"], 2),
            "ratio_median": round(base["median"] / ms["median"], 2),
            "recall": round(counts["hit"] / max(1, truth), 4), "counts": dict(counts),
            "new_face_worst": max(seen) if seen and len(seen) == len(new_face) else None}


def _scene_summary(times: dict[str, list[float]]) -> dict[str, float]:
    base, fer = stats_ms(times["baseline"]), stats_ms(times["ferlite"])
    return {"baseline_mean_ms": base["mean"], "ferlite_mean_ms": fer["mean"], "ferlite_median_ms": fer["median"],
            "ferlite_p95_ms": fer["p95"], "ratio_mean": round(base["mean"] / fer["mean"], 2),
            "ferlite_p95_over_median": round(fer["p95"] / fer["median"], 2)}


def _count_baseline(counts: dict[str, int], truth: list[Box], base: list[Box]) -> None:
    counts["truth"] += len(truth)
    counts["baseline_hit"] += len(truth) - len(unmatched(truth, base))
    counts["baseline_false"] += len(unmatched(base, truth))
    counts["baseline_duplicate"] += _duplicates(truth, base)


def _count(counts: dict[str, int], truth: list[Box], base: list[Box], found: list[Box]) -> None:
    """One detector's hits, false and duplicate faces, and its disagreements with the baseline."""
    counts["hit"] += len(truth) - len(unmatched(truth, found))
    counts["baseline_only"] += len(unmatched(base, found))
    counts["only"] += len(unmatched(found, base))
    counts["false"] += len(unmatched(found, truth))
    counts["duplicate"] += _duplicates(truth, found)


def _duplicates(truth: list[Box], found: list[Box]) -> int:
    """Boxes beyond the first on one true face (one person reported twice)."""
    return sum(max(0, sum(iou(t, b) >= MATCH_IOU for b in found) - 1) for t in truth)


def _summary(
    times: dict[str, list[float]], counts: dict[str, int], new_face: list[int | None], config: EdgeConfig,
    threads: int, backend: str,
) -> dict[str, Any]:
    base, fer = stats_ms(times["baseline"]), stats_ms(times["ferlite"])
    truth = max(1, counts["truth"])
    seen = [n for n in new_face if n is not None]
    return {
        "threads": threads,
        "backend": backend,
        "baseline_ms": base,
        "ferlite_ms": fer,
        "ratio_median": round(base["median"] / fer["median"], 2),
        "ratio_mean": round(base["mean"] / fer["mean"], 2),
        "ferlite_p95_over_median": round(fer["p95"] / fer["median"], 2),
        "recall_baseline": round(counts["baseline_hit"] / truth, 4),
        "recall_ferlite": round(counts["ferlite_hit"] / truth, 4),
        "counts": counts,
        "new_face_frames": new_face,
        "new_face_worst": max(seen) if seen and len(seen) == len(new_face) else None,
        "new_face_bound": new_face_bound(config.full_detect_every, config.search_budget),
    }


def peak_rss_of_imports(modules: Sequence[str]) -> dict[str, int]:
    """VmHWM (kB) of a fresh interpreter that imports each module alone ("" = nothing)."""
    out = {}
    for module in modules:
        code = (f"import {module}\n" if module else "") + (
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out[module or "python"] = int(done.stdout.split()[-1])
    return out


def daemon_startup(model: Path, runs: int, source: Path) -> dict[str, Any]:
    """fer-edge on a folder of frames or a video file, looping: time to its first result and its
    peak RSS after 100 results."""
    argv = [fer_edge(), "--source", str(source), "--loop", "--model", str(model), "--threads", "1"]
    firsts, peaks = [], []
    for _ in range(runs):
        first, peak = spawn_until_first_line(argv, lines=100)
        firsts.append(first)
        peaks.append(peak or 0)
    return {"argv": argv, "first_result_s": firsts, "peak_rss_kb": peaks,
            "first_result_median_s": round(float(np.median(firsts)), 3), "peak_rss_max_mb": round(max(peaks) / 1024, 1)}


PEER_BUILD = """
import os, sys; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
inp = keras.Input((84, 84, 1)); x = keras.layers.Rescaling(1 / 255.0)(inp)
for f in (32, 64, 128):
    x = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(x); x = keras.layers.MaxPooling2D()(x)
x = keras.layers.Flatten()(x); out = keras.layers.Dense(6, activation="softmax")(x)
keras.Model(inp, out).save(sys.argv[1])
"""
PEER_RUN = """
import os, sys; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
model = tf.keras.models.load_model(sys.argv[1])
model.predict(np.zeros((1, 84, 84, 1), np.float32), verbose=0)
print("first result", flush=True)
sys.stdin.read()
"""


def tensorflow_peer(runs: int, workdir: Path) -> dict[str, Any] | None:
    """What a TensorFlow-based peer pays: import TF, load a Keras model, one prediction."""
    path = workdir / "peer.keras"
    try:
        subprocess.run([sys.executable, "-c", PEER_BUILD, str(path)], check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        log.warning("no TensorFlow peer measured: %s", e.stderr.decode()[-300:])
        return None
    firsts, peaks = [], []
    for _ in range(runs):
        first, peak = spawn_until_first_line([sys.executable, "-c", PEER_RUN, str(path)])
        firsts.append(first)
        peaks.append(peak or 0)
    return {"first_result_s": firsts, "peak_rss_kb": peaks,
            "first_result_median_s": round(float(np.median(firsts)), 3), "peak_rss_max_mb": round(max(peaks) / 1024, 1)}


def write_frames(frames: Sequence[scenes.Frame], folder: Path) -> Path:
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"frame_{i:03d}.jpg"), frame.image)
    return folder


def print_tables(report: dict[str, Any]) -> None:
    print(f"\nferlite detect_width {report['detect_width']}, {report['frames']} frames a set, model {report['model']}")
    print("\nper-frame cost, same run, baseline and ferlite interleaved (ms; video = noise sigma 2-6 + mp4v codec)")
    print("| scenes | threads | baseline mean | baseline median | baseline p95 | ferlite mean | ferlite median "
          "| ferlite p95 | ratio (mean) | ratio (median) | ferlite p95 / median |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in report["runs"]:
        b, f = r["baseline_ms"], r["ferlite_ms"]
        print(f"| {r['scenes']} | {r['threads']} | {b['mean']:.2f} | {b['median']:.2f} | {b['p95']:.2f} "
              f"| {f['mean']:.2f} | {f['median']:.2f} | {f['p95']:.2f} | {r['ratio_mean']:.1f}x "
              f"| {r['ratio_median']:.1f}x | {r['ferlite_p95_over_median']:.2f} |")
    print("\nper scene kind (all frames of that kind, each scene's first frame included)")
    print("| scenes | kind | baseline mean | ferlite mean | ratio (mean) | ferlite median | ferlite p95 "
          "| p95 / median |")
    print("|---|---|---|---|---|---|---|---|")
    for r in report["runs"]:
        for kind, k in r["by_scene"].items():
            print(f"| {r['scenes']} | {kind.split('/')[0]} | {k['baseline_mean_ms']:.2f} | {k['ferlite_mean_ms']:.2f} "
                  f"| {k['ratio_mean']:.1f}x | {k['ferlite_median_ms']:.2f} | {k['ferlite_p95_ms']:.2f} "
                  f"| {k['ferlite_p95_over_median']:.2f} |")
    print("\ndetection on the same frames (faces matched at IoU >= 0.4)")
    print("| scenes | threads | true faces | recall baseline | recall ferlite | duplicate baseline | duplicate ferlite "
          "| false baseline | false ferlite | new face within (frames, worst; each) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in report["runs"]:
        c = r["counts"]
        print(f"| {r['scenes']} | {r['threads']} | {c['truth']} "
              f"| {r['recall_baseline']:.2%} | {r['recall_ferlite']:.2%} "
              f"| {c['baseline_duplicate']} | {c['ferlite_duplicate']} | {c['baseline_false']} | {c['ferlite_false']} "
              f"| {r['new_face_worst']}; {r['new_face_frames']} |")
    print("\ndetectors side by side (the same frames, interleaved; ratio: full-frame Haar's mean / the detector's)")
    print("| scenes | threads | detector | mean ms | median ms | p95 ms | ratio (mean) | recall | false faces "
          "| duplicates | new face within (worst) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in report["runs"]:
        for name, d in r.get("detectors", {}).items():
            m, c = d["ms"], d["counts"]
            print(f"| {r['scenes']} | {r['threads']} | {name} | {m['mean']:.2f} | {m['median']:.2f} | {m['p95']:.2f} "
                  f"| {d['ratio_mean']:.1f}x | {d['recall']:.2%} | {c['false']} | {c['duplicate']} "
                  f"| {d['new_face_worst']} |")
    print("\nstart-up to first result and peak RSS (VmHWM)")
    print("| process | first result (median s) | peak RSS (MB) |")
    print("|---|---|---|")
    for name, d in report["daemon"].items():
        print(f"| fer-edge --threads 1, {name} | {d['first_result_median_s']:.2f} | {d['peak_rss_max_mb']:.1f} |")
    p = report.get("tensorflow_peer")
    if p:
        print(f"| python + TensorFlow + Keras model | {p['first_result_median_s']:.2f} | {p['peak_rss_max_mb']:.1f} |")
    print("\nimport peak RSS (MB, a fresh interpreter importing one module):",
          ", ".join(f"{k} {v / 1024:.1f}" for k, v in report["import_rss_kb"].items()))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=default_model())
    p.add_argument("--frames", type=int, default=120, help="frames per scene")
    p.add_argument("--scenes", type=int, default=3, help="scenes of each kind (single, multi, empty, appear)")
    p.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="comma-separated thread counts")
    p.add_argument("--detect-width", type=int, help="override ferlite's default detect_width (0: full frame)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction,
                   help="override ferlite's default test-time flip (the baseline classifies each face once)")
    p.add_argument("--detectors", default=",".join(DETECTORS),
                   help="comma-separated detectors measured beside the default (default: every registered one)")
    p.add_argument("--startup-runs", type=int, default=3)
    p.add_argument("--no-peer", action="store_true", help="skip the TensorFlow peer")
    p.add_argument("--fer-faces", type=int, default=4, help="FER2013 faces to add when ../shared/data is there")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, help="write the report here as JSON")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if not args.model.is_file():
        print(f"bench_pipeline: {args.model}: no model (give --model)", file=sys.stderr)
        return 2
    overrides = {"detect_width": args.detect_width, "flip": args.flip}
    config = EdgeConfig(**{k: v for k, v in overrides.items() if v is not None})
    with tempfile.TemporaryDirectory() as tmp:
        scratch = tmp  # the daemon runs' sources live here: written as <tmp> in the report
        sets = make_scenes(args, Path(tmp))
        report: dict[str, Any] = {"model": str(args.model), "frames": sum(map(len, sets["clean"])),
                                  "baseline": BASELINE, "video_noise_sigmas": SIGMAS, "video_codec": "mp4v",
                                  "cpu_count": os.cpu_count(), "detect_width": config.detect_width, "flip": config.flip,
                                  "runs": []}
        for threads in (int(t) for t in args.threads.split(",")):
            for name, all_scenes in sets.items():
                log.info("measuring %s scenes at %d thread(s)", name, threads)
                detectors = [d for d in args.detectors.split(",") if d]
                report["runs"].append({"scenes": name, **run_threads(all_scenes, args.model, threads, config,
                                                                     detectors)})
        clean = sets["clean"]
        frames = write_frames([s[len(s) // 2] for s in clean[: len(KINDS)]], Path(tmp))
        # A video file of a scene for fer-edge to play: its memory on a video source.
        video = scenes.write_video(clean[1], SIGMAS[-1], np.random.default_rng(0), Path(tmp) / "scene.mp4")
        report["daemon"] = {
            "image folder": daemon_startup(args.model, args.startup_runs, frames),
            "video file": daemon_startup(args.model, args.startup_runs, video),
        } if args.startup_runs else {}
        report["tensorflow_peer"] = None if args.no_peer else tensorflow_peer(args.startup_runs, Path(tmp))
    report["import_rss_kb"] = peak_rss_of_imports(
        ["", "numpy", "cv2", "ai_edge_litert.interpreter", "ferlite.edge.apps.cli"]
    )
    print_tables(report)
    if args.out:
        args.out.write_text(repo_relative(json.dumps(report, indent=1)).replace(scratch, "<tmp>") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
