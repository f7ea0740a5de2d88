"""What the in-process API costs per frame, beside what fer-edge's loop spends on the same frame.

    .venv/bin/python tests/bench/bench_api.py --frames 120 --out tests/bench/bench_api.json

Both sides run the same camera-like scenes (tests/bench/scenes.py), one after the other on every
frame (order alternating), each with its own pipeline made by ferlite.edge.runtime.api.assemble:
* daemon: Pipeline.process + the feed line (frame_to_json + encode), what run_loop does per frame
  besides reading the source and writing the sinks;
* API: Recognizer.process (the input check, then the same Pipeline), and the same with
  result.to_json() for callers that want the feed's JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import scenes
from measure import default_model, repo_relative, stats_ms

from ferlite.edge.algorithm.frames import check_frame
from ferlite.edge.runtime.api import Recognizer
from ferlite.edge.runtime.config import EdgeConfig
from ferlite.edge.runtime.loop import encode, frame_message


def measure(frames: list[np.ndarray], model: Path, threads: int) -> dict[str, Any]:
    cv2.setNumThreads(threads)
    config = EdgeConfig(threads=threads, model=str(model))
    recognizer = Recognizer(config=config)
    assert recognizer._parts is not None  # the same interpreter for both sides
    daemon = recognizer._parts.pipeline(temporal=True)  # as fer-edge builds it for a camera
    times: dict[str, list[float]] = {"daemon": [], "api": [], "api_json": []}
    api_json = Recognizer(config=config)
    for index, image in enumerate(frames):
        order = ["daemon", "api", "api_json"]
        if index % 2:
            order.reverse()
        for name in order:
            start = time.perf_counter()
            if name == "daemon":
                result = daemon.process(image)
                encode(frame_message(index, "bench", SimpleNamespace(file=None), result))  # type: ignore[arg-type]
            elif name == "api":
                recognizer.process(image)
            else:
                api_json.process(image).to_json()
            times[name].append(time.perf_counter() - start)
    check = []
    for image in frames:
        start = time.perf_counter()
        check_frame(image)
        check.append(time.perf_counter() - start)
    return {"threads": threads, "frames": len(frames), **{k: stats_ms(v) for k, v in times.items()},
            "input_check_us_median": round(float(np.median(check)) * 1e6, 2)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=default_model())
    p.add_argument("--frames", type=int, default=120, help="frames per scene kind (single, multi, empty)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    photos = scenes.face_photos(fer_limit=0)
    frames = [f.image for kind in ("single", "multi", "empty") for f in scenes.scene(kind, args.frames, photos, rng)]
    report = {"model": str(args.model), "cpu_count": os.cpu_count(), **measure(frames, args.model, args.threads)}
    print("| per frame (ms) | median | mean | p95 |")
    print("|---|---|---|---|")
    for name, title in (("daemon", "fer-edge loop: Pipeline.process + feed line"),
                        ("api", "Recognizer.process"), ("api_json", "Recognizer.process + to_json()")):
        s = report[name]
        print(f"| {title} | {s['median']:.2f} | {s['mean']:.2f} | {s['p95']:.2f} |")
    print(f"input check alone: {report['input_check_us_median']} us (median)")
    if args.out:
        args.out.write_text(repo_relative(json.dumps(report, indent=1)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
