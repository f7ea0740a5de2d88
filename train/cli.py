"""fer-train: data -> faces -> split -> hybrid CNN -> report (see `fer-train --help`)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ferlite.edge.contract import INPUT_SIZE, LABELS, PREPROCESS_VERSION

from .config import PATH_OPTIONS, ConfigError, default_cache, int_list, parse_args
from .data import DataError, DataSource
from .labels import ClassMapError, LabelMapper, parse_class_map
from .splits import SplitError, read_subject_list

log = logging.getLogger("ferlite.train")

EXIT_BAD_INPUT = 2
RUN_FILE = "run.json"
_SAVED = ("data", "class_map", "faces", "subject_regex", "split", "val_fraction",
          "test_fraction", "test_subjects", "seed", "width", "filters", "dense", "dropout",
          "epochs", "batch_size", "learning_rate", "patience", "no_class_weights", "no_augment",
          "augment", "init", "repeat", "select", "label_smoothing")


class UsageError(ValueError):
    """Bad combination of options."""


def _setup_logging(out: Path | None) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(out / "train.log"))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)


def _per_name(entries: list[str], flag: str) -> dict[str, str]:
    result = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise UsageError(f"bad {flag} {entry!r}: expected NAME=VALUE")
        result[name] = value
    return result


def build_sources(args: argparse.Namespace) -> list[DataSource]:
    sources = [DataSource.parse(text) for text in args.data]
    if not sources:
        raise UsageError("no data: give at least one --data KIND[:NAME]=PATH")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise UsageError(f"data set names must differ, got {names}: use --data KIND:NAME=PATH")
    faces, regexes = _per_name(args.faces, "--faces"), _per_name(args.subject_regex,
                                                                  "--subject-regex")
    for name in {*faces, *regexes} - set(names):
        raise UsageError(f"--faces/--subject-regex name {name!r} is not one of {names}")
    out = []
    for source in sources:
        whole = source.whole
        if source.name in faces:
            if faces[source.name] not in ("whole", "detect"):
                raise UsageError(f"--faces {source.name}=... must be 'whole' or 'detect'")
            whole = faces[source.name] == "whole"
        regex = regexes.get(source.name, source.subject_regex)
        out.append(dataclasses.replace(source, whole=whole,
                                       subject_regex=None if regex == "none" else regex))
    return out


def _resolve_resume(args: argparse.Namespace) -> argparse.Namespace:
    """--resume: the run's saved options; only --epochs (and paths to caches) may change."""
    try:
        saved = json.loads((args.out / RUN_FILE).read_text())["options"]
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"{args.out / RUN_FILE}: cannot resume ({e})") from e
    merged = vars(args) | {k: v for k, v in saved.items() if k != "epochs" or "epochs" not in
                           args.explicit}
    for key in PATH_OPTIONS:
        if merged.get(key):
            merged[key] = Path(merged[key])
    return argparse.Namespace(**merged)


def _options_json(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k in _SAVED}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = parse_args(argv)
        if args.out is None:
            raise UsageError("--out is required")
        if args.resume:
            args = _resolve_resume(args)
        _setup_logging(args.out if not args.dry_run else None)
        return run(args)
    except (ConfigError, UsageError, DataError, ClassMapError, SplitError) as e:
        print(f"fer-train: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run(args: argparse.Namespace) -> int:
    from .prepare import SplitOptions, prepare, side_sizes
    from .splits import write_manifest

    sources = build_sources(args)
    repeats = _repeats(args.repeat, {s.name for s in sources})  # fail before decoding anything
    if args.init is not None and not args.init.is_file():
        raise UsageError(f"--init {args.init}: no such model file")
    mapper = LabelMapper(parse_class_map(args.class_map))
    test_subjects = read_subject_list(args.test_subjects) if args.test_subjects else None
    split = SplitOptions(args.split, args.val_fraction, args.test_fraction, test_subjects,
                         args.seed)
    cache = None if args.no_cache else (args.cache or default_cache())
    prepared = prepare(sources, mapper, split, cache, args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    write_manifest(args.out / "manifest.csv", prepared.samples, prepared.sides, prepared.statuses)
    sizes = side_sizes(prepared)
    print(f"data: {sizes['train']} train, {sizes['val']} val, {sizes['test']} test faces; "
          f"manifest {args.out / 'manifest.csv'}")
    if args.write_test_subjects:
        _write_test_subjects(args.write_test_subjects, prepared)
    _write_run_file(args, prepared)
    if args.dry_run:
        return 0
    if sizes["train"] == 0:
        raise UsageError("no training faces after the split")
    return _train_and_report(args, prepared, repeats)


def _write_test_subjects(path: Path, prepared: Any) -> None:
    from ferlite.edge.spec import atomic_write_bytes

    subjects = sorted({s.subject for s, side in zip(prepared.samples, prepared.sides, strict=True)
                       if side == "test" and s.subject})
    atomic_write_bytes(path, ("\n".join(subjects) + "\n").encode())
    print(f"test subjects: {len(subjects)} written to {path}")


def _write_run_file(args: argparse.Namespace, prepared: Any) -> None:
    from ferlite.edge.spec import atomic_write_bytes

    info = {
        "options": _options_json(args),
        "labels": list(LABELS), "input_size": list(INPUT_SIZE),
        "preprocess_version": PREPROCESS_VERSION,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "counts": prepared.counts(),
    }
    atomic_write_bytes(args.out / RUN_FILE, (json.dumps(info, indent=2) + "\n").encode())


def _train_and_report(args: argparse.Namespace, prepared: Any,
                      repeats: dict[tuple[str, str | None], int]) -> int:
    from .fit import FitOptions, atomic_save_model, fit
    from .model import Architecture, build_model
    from .pipeline import Augmentation
    from .report import compute_metrics, predict_labels, write_report

    arch = Architecture.scaled(args.width, int_list(args.filters), int_list(args.dense),
                               args.dropout)
    params = build_model(arch).count_params()
    print(f"model: hybrid CNN, {params:,} parameters, filters {list(arch.filters)}, "
          f"dense {list(arch.dense)}")
    opts = FitOptions(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        patience=args.patience, class_weights=not args.no_class_weights, seed=args.seed,
        augmentation=None if args.no_augment else Augmentation().scaled(args.augment),
        init=args.init, select=args.select, label_smoothing=args.label_smoothing,
    )
    train = repeat_sets(prepared.side("train"), repeats)
    val = prepared.side("val")
    result = fit(arch, opts, args.out, train[:2], val if len(val[1]) else None, args.resume)
    atomic_save_model(result.model, args.out / "model.keras")
    sides = {}
    for side in ("val", "test"):
        faces, labels, datasets = prepared.side(side)
        if len(labels):
            sides[side] = compute_metrics(labels, predict_labels(result.model, faces), datasets)
    history = result.history
    metrics = {
        "run": str(args.out), "labels": list(LABELS),
        "primary": "test" if "test" in sides else ("val" if "val" in sides else None),
        "sides": sides, "counts": prepared.counts(),
        "model": {"params": params, "architecture": arch.to_dict()},
        "training": _training_summary(history, result.best_epoch, len(train[1])),
    }
    write_report(args.out, metrics, history)
    _print_summary(args.out, metrics)
    return 0


def _repeats(entries: list[str], names: set[str]) -> dict[tuple[str, str | None], int]:
    """--repeat NAME=K or NAME/LABEL=K -> {(name, label or None): K}."""
    repeats: dict[tuple[str, str | None], int] = {}
    for key, value in _per_name(entries, "--repeat").items():
        name, _, label = key.partition("/")
        if name not in names:
            raise UsageError(f"--repeat {key}=...: no data set named {name!r} (have {sorted(names)})")
        if label and label not in LABELS:
            raise UsageError(f"--repeat {key}=...: {label!r} is not one of {list(LABELS)}")
        try:
            count = int(value)
        except ValueError as e:
            raise UsageError(f"--repeat {key}={value}: K must be a whole number >= 1") from e
        if count < 1:
            raise UsageError(f"--repeat {key}={value}: K must be a whole number >= 1")
        repeats[(name, label or None)] = count
    return repeats


def repeat_sets(side: tuple[np.ndarray, np.ndarray, list[str]],
                repeats: dict[tuple[str, str | None], int],
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Oversample: a face of data set NAME and label L appears repeats[(NAME, L)] times, else
    repeats[(NAME, None)] times, else once (shuffled later)."""
    faces, labels, datasets = side
    if not repeats:
        return side
    counts = np.array([repeats.get((name, LABELS[label]), repeats.get((name, None), 1))
                       for name, label in zip(datasets, labels, strict=True)], dtype=np.int64)
    index = np.repeat(np.arange(len(labels)), counts)
    log.info("training faces after --repeat: %d (was %d)", len(index), len(labels))
    return faces[index], labels[index], [datasets[i] for i in index]


def _training_summary(history: list[dict[str, float]], best: int | None, n: int) -> dict[str, Any]:
    # The first epoch includes graph tracing: report the median of the others.
    seconds = sorted(h["seconds"] for h in history[1:]) or [h["seconds"] for h in history]
    typical = seconds[len(seconds) // 2] if seconds else 0.0
    return {"epochs_run": len(history), "best_epoch": best, "train_images": n,
            "seconds_per_epoch": typical, "images_per_second": n / typical if typical else 0.0}


def _print_summary(out: Path, metrics: dict[str, Any]) -> None:
    t = metrics["training"]
    print(f"trained {t['epochs_run']} epochs (best {t['best_epoch']}), "
          f"{t['seconds_per_epoch']:.1f} s/epoch, {t['images_per_second']:.0f} images/s")
    for side, result in metrics["sides"].items():
        parts = [f"{name} {sub['accuracy']:.2%} (n={sub['n']})"
                 for name, sub in result.get("per_dataset", {}).items()]
        print(f"{side}: accuracy {result['accuracy']:.2%}, macro-F1 {result['macro_f1']:.3f}"
              f" (n={result['n']}); " + "; ".join(parts))
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    sys.exit(main())
