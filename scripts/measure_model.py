"""Re-measure an int8 model (default: the one shipped in ferlite.edge) on ../shared/data, through fer-edge.

Runs `fer-edge --whole-frame` over a folder of the test images of each set (links named after their class),
reads its JSON lines and prints accuracy, per-class recall and the confusion matrix; writes JSON with --out.

    python scripts/measure_model.py [--data ../shared/data] [--model PATH] [--limit N] [--out FILE]

Sets: CK+ held-out subjects (train/splits/ckplus-test-subjects.txt, ckplus48_hugoiwnl crops: neutral first
frames and peak frames) and FER2013 PrivateTest (fear dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ferlite.edge.contract import LABELS
from ferlite.train.labels import ALIASES, DROP

ROOT = Path(__file__).resolve().parents[1]
# Class folder names -> label, as fer-train reads them (fear and contempt dropped).
CLASS_NAMES = {name: label for name, label in ALIASES.items() if label != DROP}
SEP = "__"


def held_out_subjects() -> set[str]:
    text = (ROOT / "train" / "splits" / "ckplus-test-subjects.txt").read_text()
    return {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")}


def collect(root: Path, keep: Callable[[Path], bool]) -> list[tuple[Path, str]]:
    items = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name in CLASS_NAMES):
        items += [(f, CLASS_NAMES[folder.name]) for f in sorted(folder.iterdir()) if keep(f)]
    return items


def test_sets(data: Path) -> dict[str, list[tuple[Path, str]]]:
    subjects = held_out_subjects()
    return {
        "CK+ held-out subjects": collect(data / "ckplus48_hugoiwnl", lambda f: f.name[:4] in subjects),
        "FER2013 PrivateTest": collect(data / "fer2013", lambda f: f.name.startswith("PrivateTest_")),
    }


def spread(items: list[tuple[Path, str]], limit: int | None) -> list[tuple[Path, str]]:
    if not limit or limit >= len(items):
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def run_edge(items: list[tuple[Path, str]], model: str | None, threads: int) -> dict[str, str]:
    """Link the images into one folder, run fer-edge --whole-frame over it, return {link name: label}."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, (path, label) in enumerate(items):
            os.symlink(path.resolve(), Path(tmp) / f"{label}{SEP}{i:06d}{path.suffix}")
        cmd = [sys.executable, "-m", "ferlite.edge.cli", "--source", tmp, "--whole-frame",
               "--threads", str(threads), "--log-level", "WARNING"]
        if model:
            cmd += ["--model", model]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"fer-edge failed ({out.returncode}): {out.stderr.strip()}")
    predicted = {}
    for line in out.stdout.splitlines():
        message = json.loads(line)
        predicted[message["file"]] = message["faces"][0]["label"]
    return predicted


def score(predicted: dict[str, str]) -> dict[str, object]:
    confusion = [[0] * len(LABELS) for _ in LABELS]
    for name, label in predicted.items():
        confusion[LABELS.index(name.split(SEP)[0])][LABELS.index(label)] += 1
    total = sum(map(sum, confusion))
    correct = sum(confusion[i][i] for i in range(len(LABELS)))
    recall = {LABELS[i]: (confusion[i][i] / sum(row) if sum(row) else None) for i, row in enumerate(confusion)}
    return {"images": total, "accuracy": correct / total if total else 0.0, "recall": recall,
            "confusion": confusion, "labels": list(LABELS)}


def print_table(results: dict[str, dict], model: str) -> None:
    print(f"model: {model}")
    print("| test set | images | accuracy | " + " | ".join(f"{label} recall" for label in LABELS) + " |")
    print("|---|---|---|" + "---|" * len(LABELS))
    for name, r in results.items():
        cells = [f"{r['recall'][k]:.1%}" if r["recall"][k] is not None else "-" for k in LABELS]
        print(f"| {name} | {r['images']} | {r['accuracy']:.2%} | " + " | ".join(cells) + " |")
    for name, r in results.items():
        print(f"\nconfusion, {name} (rows true, columns predicted: {', '.join(LABELS)})")
        for label, row in zip(LABELS, r["confusion"], strict=True):
            print(f"  {label:>8} " + " ".join(f"{v:5d}" for v in row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", help="int8 .tflite (default: the model shipped in ferlite.edge)")
    parser.add_argument("--limit", type=int, help="at most N images per set, spread over the set")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"measure_model: {args.data}: no data folder", file=sys.stderr)
        return 2
    results = {}
    for name, items in test_sets(args.data).items():
        results[name] = score(run_edge(spread(items, args.limit), args.model, args.threads))
    model_name = args.model or "shipped (ferlite/edge/models/ferlite_int8.tflite)"
    print_table(results, model_name)
    if args.out:
        args.out.write_text(json.dumps({"model": model_name, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
