"""Re-measure an int8 model (default: the one shipped in ferlite.edge) on ../shared/data, through fer-edge.

Runs `fer-edge --whole-frame` over a folder of links to the images of each set (named after their label), reads
its JSON lines and prints accuracy, macro-F1, per-class recall and the confusion matrix; writes JSON with --out.

    python scripts/measure_model.py [--side test|val] [--data ../shared/data] [--model PATH] [--no-flip]
                                    [--manifest RUN/manifest.csv] [--limit N] [--out FILE]

Sets (the test side by default; every one read by ferlite.train's own readers):
- FER+ FER2013Test (or FER2013Valid): majority label of the 10 crowd votes; faces whose majority is fear,
  contempt, unknown or not-a-face, and ties for the top, are left out and counted.
- FER2013 PrivateTest (or PublicTest), the original single labels, fear dropped (for comparability).
- CK+ held-out subjects (src/ferlite/train/subject_lists/ckplus-test-subjects.txt) in both crop styles,
  ckplus48_hugoiwnl (neutral first frames and peak frames) and ckplus48 (three near-peak frames per sequence).
  With --side val the CK+ subjects are those on the validation side of a run's manifest (--manifest), or left
  out without one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ferlite.edge.contract import LABELS
from ferlite.edge.runtime.config import EdgeConfig
from ferlite.train.data import CKPLUS_SUBJECT_REGEX, Sample, read_ferplus, read_folder
from ferlite.train.labels import LabelMapper
from ferlite.train.report import confusion_matrix, metrics_from_confusion
from ferlite.train.splits import read_manifest, read_subject_list

ROOT = Path(__file__).resolve().parents[1]
TEST_SUBJECTS = ROOT / "src" / "ferlite" / "train" / "subject_lists" / "ckplus-test-subjects.txt"
SEP = "__"
FER2013_SPLIT = {"test": "PrivateTest", "val": "PublicTest"}
FERPLUS_FOLDER = {"test": "FER2013Test", "val": "FER2013Valid"}
CKPLUS_STYLES = {"ckplus48_hugoiwnl": "CK+ held-out, hugoiwnl crops", "ckplus48": "CK+ held-out, ckplus48 crops"}


def ckplus_subjects(side: str, manifest: Path | None) -> set[str]:
    if side == "test":
        return read_subject_list(TEST_SUBJECTS)
    if manifest is None:
        return set()
    rows = read_manifest(manifest)
    return {row["subject"] for row in rows if row["side"] == "val" and row["subject"].startswith("S")}


def test_sets(data: Path, side: str = "test", manifest: Path | None = None
              ) -> tuple[dict[str, list[Sample]], dict[str, dict[str, int]]]:
    """{set name: samples} and {set name: faces left out, by reason}."""
    mapper = LabelMapper()
    sets: dict[str, list[Sample]] = {}
    left_out: dict[str, dict[str, int]] = {}
    if (data / "ferplus").is_dir():
        ferplus = read_ferplus(data / "ferplus", "ferplus", mapper, sides=(side,))
        name = f"FER+ {FERPLUS_FOLDER[side]}"
        sets[name] = ferplus.samples
        left_out[name] = dict(ferplus.dropped)
    if (data / "fer2013").is_dir():
        fer = read_folder(data / "fer2013", "fer2013", mapper, None)
        sets[f"FER2013 {FER2013_SPLIT[side]}"] = [s for s in fer.samples if s.split == side]
    subjects = ckplus_subjects(side, manifest)
    for folder, name in CKPLUS_STYLES.items():
        if subjects and (data / folder).is_dir():
            samples = read_folder(data / folder, folder, mapper, CKPLUS_SUBJECT_REGEX).samples
            sets[name if side == "test" else name.replace("held-out", "validation")] = [
                s for s in samples if s.subject in subjects]
    return {k: v for k, v in sets.items() if v}, left_out


def spread(items: list[Sample], limit: int | None) -> list[Sample]:
    if not limit or limit >= len(items):
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def run_edge(items: list[Sample], model: str | None, threads: int, flip: bool) -> dict[str, str]:
    """Link the images into one folder, run fer-edge --whole-frame over it, return {link name: label}."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "faces"
        folder.mkdir()
        for i, sample in enumerate(items):
            os.symlink(sample.path.resolve(), folder / f"{LABELS[sample.label]}{SEP}{i:06d}{sample.path.suffix}")
        cmd = [sys.executable, "-m", "ferlite.edge.apps.cli", "--source", str(folder), "--whole-frame",
               "--threads", str(threads), "--log-level", "WARNING"]
        if model:
            cmd += ["--model", model]
        cmd.append("--flip" if flip else "--no-flip")
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"fer-edge failed ({out.returncode}): {out.stderr.strip()}")
    predicted = {}
    for line in out.stdout.splitlines():
        message = json.loads(line)
        predicted[message["file"]] = message["faces"][0]["label"]
    return predicted


def score(predicted: dict[str, str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (ferlite.train.report)."""
    names = sorted(predicted)
    truth = np.array([LABELS.index(name.split(SEP)[0]) for name in names], dtype=np.int64)
    guess = np.array([LABELS.index(predicted[name]) for name in names], dtype=np.int64)
    metrics = metrics_from_confusion(confusion_matrix(truth, guess))
    recall = {label: (c["recall"] if c["support"] else None) for label, c in metrics["per_class"].items()}
    return {"images": metrics["n"], "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "recall": recall, "per_class": metrics["per_class"], "confusion": metrics["confusion"],
            "labels": list(LABELS)}


def print_table(results: dict[str, dict[str, Any]], model: str, left_out: dict[str, dict[str, int]]) -> None:
    print(f"model: {model}")
    print("| set | images | accuracy | macro-F1 | " + " | ".join(f"{label} recall" for label in LABELS) + " |")
    print("|---|---|---|---|" + "---|" * len(LABELS))
    for name, r in results.items():
        cells = [f"{r['recall'][k]:.1%}" if r["recall"][k] is not None else "-" for k in LABELS]
        print(f"| {name} | {r['images']} | {r['accuracy']:.2%} | {r['macro_f1']:.3f} | " + " | ".join(cells) + " |")
    for name, reasons in left_out.items():
        if reasons and name in results:
            print(f"\n{name}: left out {sum(reasons.values())} faces: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    for name, r in results.items():
        print(f"\nconfusion, {name} (rows true, columns predicted: {', '.join(LABELS)})")
        for label, row in zip(LABELS, r["confusion"], strict=True):
            print(f"  {label:>8} " + " ".join(f"{v:5d}" for v in row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", help="int8 .tflite (default: the model shipped in ferlite.edge)")
    parser.add_argument("--side", choices=("test", "val"), default="test",
                        help="the test sets (default) or the validation sets, for choosing settings")
    parser.add_argument("--manifest", type=Path, help="a run's manifest.csv: its CK+ validation subjects")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=EdgeConfig().flip,
                        help="fer-edge with (or without) test-time flip (default: fer-edge's, flip = true)")
    parser.add_argument("--limit", type=int, help="at most N images per set, spread over the set")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"measure_model: {args.data}: no data folder", file=sys.stderr)
        return 2
    sets, left_out = test_sets(args.data, args.side, args.manifest)
    results = {name: score(run_edge(spread(items, args.limit), args.model, args.threads, args.flip))
               for name, items in sets.items()}
    model_name = args.model or "shipped (ferlite/edge/models/ferlite_int8.tflite)"
    print_table(results, model_name + (" with test-time flip" if args.flip else " without test-time flip"), left_out)
    if args.out:
        report = {"model": model_name, "side": args.side, "flip": args.flip, "results": results,
                  "left_out": {k: v for k, v in left_out.items() if k in results},
                  "counts": {k: dict(Counter(LABELS[s.label] for s in v)) for k, v in sets.items()}}
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
