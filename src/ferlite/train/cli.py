"""fer-train: data -> faces -> split -> hybrid CNN -> report (see `fer-train --help`)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ferlite.edge.contract import INPUT_SIZE, LABELS, PREPROCESS_VERSION
from ferlite.edge.contract.errors import FerliteError, UsageError

from .config import TrainConfig, check_files, default_cache, load_config, read_command_line, resumed
from .data import DataSource
from .labels import LabelMapper, parse_class_map
from .splits import read_subject_list
from .stopping import StopRequests, report_stopped, stop_requests

log = logging.getLogger("ferlite.train")

EXIT_BAD_INPUT = 2
RUN_FILE = "run.json"


_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")


def missing_extra() -> str | None:
    """The first module of the training extra that is not installed for the configured Keras
    backend (an edge-only install, or a backend without its framework)."""
    from .backend import configured_backend, missing_module

    return missing_module(configured_backend()) or (
        "matplotlib" if importlib.util.find_spec("matplotlib") is None else None)


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FORMAT)
    root.addHandler(handler)


def _log_to_run(out: Path) -> None:
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(_FORMAT)
    logging.getLogger().addHandler(handler)


def _check_out(config: TrainConfig) -> None:
    """A finished or running run is never replaced by accident."""
    out = config.run_folder
    if config.resume or config.overwrite or not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if any(out.iterdir()):
        raise UsageError(f"--out {out} already holds a run: continue it with --resume, "
                         f"or give a new --out (--overwrite replaces it)")


def _per_name(entries: Sequence[str], flag: str) -> dict[str, str]:
    result = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise UsageError(f"bad {flag} {entry!r}: expected NAME=VALUE")
        result[name] = value
    return result


def build_sources(config: TrainConfig) -> list[DataSource]:
    sources = [DataSource.parse(text) for text in config.data]
    if not sources:
        raise UsageError("no data: give at least one --data KIND[:NAME]=PATH")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise UsageError(f"data set names must differ, got {names}: use --data KIND:NAME=PATH")
    faces, regexes = _per_name(config.faces, "--faces"), _per_name(config.subject_regex, "--subject-regex")
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
        out.append(dataclasses.replace(source, whole=whole, path=_generated(source),
                                       subject_regex=None if regex == "none" else regex))
    return out


def _generated(source: DataSource) -> Path:
    """A `synthetic` set's folder, written on first use (beside the face cache unless a path was given)."""
    if source.kind != "synthetic":
        return source.path
    from .synthetic import quick_try_set

    return quick_try_set(source.path if source.path != Path() else default_cache().parent)


def _resume(config: TrainConfig, typed: Sequence[str]) -> TrainConfig:
    """--resume: the run's saved options; only --epochs (and how this invocation runs) may change."""
    path = config.run_folder / RUN_FILE
    try:
        saved = json.loads(path.read_text())["options"]
        if not isinstance(saved, dict):
            raise ValueError("options is not a table")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path}: cannot resume ({e})") from e
    return resumed(config, saved, typed, str(path))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    missing = missing_extra()
    if missing:
        from .backend import configured_backend

        print(f"fer-train: error: fer-train needs the training extra ({missing} is not installed for the "
              f"Keras backend {configured_backend()!r}): pip install 'ferlite[train]' (TensorFlow), "
              f"or keras and jax / torch with KERAS_BACKEND=jax / torch", file=sys.stderr)
        return EXIT_BAD_INPUT
    created: Path | None = None
    folder: Path | None = None
    handlers = list(logging.getLogger().handlers)
    with stop_requests() as requests:
        try:
            config_file, typed = read_command_line(argv)
            config = load_config(config_file, typed)
            _check_out(config)
            if config.resume:
                config = _resume(config, list(typed))
            check_files(config)  # --test-subjects, --init, --from-pack: a FIFO is refused, not waited on
            _setup_logging(config.log_level)
            folder = config.run_folder
            if not config.run_folder.exists():
                created = config.run_folder
            status = run(config, requests)
            requests.check()  # a signal during the report whose raise was lost: said as a stop all the same
            return status
        except FerliteError as e:
            if created is not None:  # a run that fails on bad input leaves no folder behind
                shutil.rmtree(created, ignore_errors=True)
            print(f"fer-train: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:  # a second SIGINT/SIGTERM, or one outside the epochs (stopping.py)
            return _stopped(requests, folder, created)
        finally:
            _remove_handlers_since(handlers)


def _stopped(requests: StopRequests, folder: Path | None, created: Path | None) -> int:
    """One line for a run stopped at once: its checkpoint is kept (--resume continues from the last finished
    epoch); a folder this run made and never trained in goes."""
    if created is not None and not (created / "checkpoints").is_dir():  # fit.py's checkpoints: none yet
        shutil.rmtree(created, ignore_errors=True)
        return report_stopped("fer-train", requests, f"nothing kept ({created} removed)")
    if folder is None or not (folder / "checkpoints").is_dir():
        return report_stopped("fer-train", requests, "no epoch was finished")
    return report_stopped("fer-train", requests, "the last finished epoch's checkpoint is kept "
                          f"(fer-train --out {folder} --resume continues)")


def _remove_handlers_since(handlers: list[logging.Handler]) -> None:
    """The log handlers this run added (stderr, train.log) go when it returns: main() called in a process
    that goes on (a notebook, a test) leaves no handler on a stream that may close, nor train.log open."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()


def _prepare(config: TrainConfig, sources: list[DataSource]) -> tuple[Any, dict[str, Any]]:
    """Read, decode (cached) and split --data, measure the framing; with --pack, also write both there."""
    from .prepare import SplitConfig, prepare

    _repeats(config.repeat, {s.name for s in sources})  # fail before decoding anything
    mapper = LabelMapper(parse_class_map(config.class_map))
    test_subjects = read_subject_list(config.test_subjects) if config.test_subjects else None
    split = SplitConfig(config.split, config.val_fraction, config.test_fraction, test_subjects,
                        config.seed)
    cache = None if config.no_cache else (config.cache or default_cache())
    prepared = prepare(sources, mapper, split, cache, config.workers, limit=config.limit, seed=config.seed)
    framing = _measure_framing(prepared, config.seed)
    if config.pack is not None:
        from .pack import write_pack

        size = write_pack(config.pack, prepared, sources, config.options(), framing)
        print(f"pack: {len(prepared.faces)} faces, {size:,} bytes in {config.pack}")
    return prepared, framing


def _unpack(config: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """A --from-pack file's faces and the framing measured on them when it was packed (so the GPU box
    needs no Haar detector)."""
    from .pack import read_pack

    assert config.from_pack is not None
    pack = read_pack(config.from_pack)
    made_with = {k: pack.options.get(k) for k in ("data", "split", "val_fraction", "test_fraction", "seed", "limit")}
    log.info("faces from %s: %d faces, made with %s", config.from_pack, len(pack.prepared.faces),
             ", ".join(f"{k}={v}" for k, v in made_with.items() if v not in (None, [], ())))
    return pack.prepared, pack.framing


def run(config: TrainConfig, requests: StopRequests | None = None) -> int:
    """One fer-train run; a first SIGINT/SIGTERM in `requests` during training ends it after its epoch."""
    from .prepare import side_sizes
    from .splits import write_manifest

    requests = requests or StopRequests()
    out = config.run_folder
    if config.from_pack is not None and (config.data or config.pack):
        raise UsageError("--from-pack trains from a pack: give no --data and no --pack with it")
    if config.pack is not None and config.pack.is_dir():  # refused before hours of decoding, not after
        raise UsageError(f"--pack {config.pack}: is a folder; give the pack's file name")
    sources = [] if config.from_pack else build_sources(config)
    if config.init is not None and not config.init.is_file():
        raise UsageError(f"--init {config.init}: no such model file")
    out.mkdir(parents=True, exist_ok=True)
    if not config.dry_run:
        _log_to_run(out)
    prepared, framing = _prepare(config, sources) if sources else _unpack(config)
    requests.check()  # a signal while faces were decoded whose raise was lost: stop before training
    repeats = _repeats(config.repeat, {s.dataset for s in prepared.samples})
    write_manifest(out / "manifest.csv", prepared.samples, prepared.sides, prepared.statuses)
    sizes = side_sizes(prepared)
    print(f"data: {sizes['train']} train, {sizes['val']} val, {sizes['test']} test faces; "
          f"manifest {out / 'manifest.csv'}")
    if config.write_test_subjects:
        _write_test_subjects(config.write_test_subjects, prepared)
    _write_run_file(config, prepared, framing)
    if config.dry_run:
        return 0
    if sizes["train"] == 0:
        raise UsageError("no training faces after the split")
    return _train_and_report(config, prepared, repeats, requests)


def _write_test_subjects(path: Path, prepared: Any) -> None:
    from ferlite.edge.contract.atomic import atomic_write

    subjects = sorted({s.subject for s, side in zip(prepared.samples, prepared.sides, strict=True)
                       if side == "test" and s.subject})
    atomic_write(path, ("\n".join(subjects) + "\n").encode())
    print(f"test subjects: {len(subjects)} written to {path}")


def _measure_framing(prepared: Any, seed: int) -> dict[str, Any]:
    """Where the edge's Haar box sits in the training faces, per data set and over all of them."""
    from .framing import measure_framing_per_set

    faces, _, datasets = prepared.side("train")
    if not len(faces):
        return {}
    pooled, sets = measure_framing_per_set(faces, datasets, seed=seed)  # Haar once per face
    per_set = {name: framing.to_dict() for name, framing in sets.items()}
    overall = pooled.to_dict()
    log.info("framing: Haar box = %.1f%% of a training crop, margin %.3f (%s)",
             overall["box_width"] * 100, overall["margin"],
             ", ".join(f"{k} {v['margin']:.3f}" for k, v in per_set.items()))
    return {**overall, "per_dataset": per_set}


def _write_run_file(config: TrainConfig, prepared: Any, framing: dict[str, Any]) -> None:
    from ferlite.edge.contract.atomic import atomic_write

    info = {
        "options": config.options(),
        "labels": list(LABELS), "input_size": list(INPUT_SIZE),
        "preprocess_version": PREPROCESS_VERSION,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "counts": prepared.counts(),
        "framing": framing,
    }
    if config.resume:  # the backends and devices of the earlier sessions of this run
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            info["training"] = list(json.loads((config.run_folder / RUN_FILE).read_text())["training"])
    atomic_write(config.run_folder / RUN_FILE, (json.dumps(info, indent=2) + "\n").encode())


def _train_and_report(config: TrainConfig, prepared: Any, repeats: dict[tuple[str, str | None], int],
                      requests: StopRequests) -> int:
    from .backend import configured_backend

    if configured_backend() == "tensorflow":
        from . import tf_runtime

        tf_runtime.tensorflow()  # before keras: TensorFlow's native start-up lines go to the debug log
    from .fit import FitConfig, atomic_save_model, fit
    from .inputs import Augmentation
    from .model import Architecture, build_model
    from .report import compute_metrics, predict_labels, write_report

    out = config.run_folder
    arch = Architecture.scaled(config.width, config.filters, config.dense, config.dropout)
    params = build_model(arch).count_params()
    print(f"model: hybrid CNN, {params:,} parameters, filters {list(arch.filters)}, "
          f"dense {list(arch.dense)}")
    opts = FitConfig(
        epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
        patience=config.patience, class_weights=not config.no_class_weights, seed=config.seed,
        augmentation=None if config.no_augment else Augmentation().scaled(config.augment),
        init=config.init, select=config.select, label_smoothing=config.label_smoothing,
        class_weight_power=config.class_weight_power, progress_every_s=config.progress_every,
        schedule=config.schedule, warmup=config.warmup,
    )
    votes = config.targets == "votes"
    faces, labels, datasets = prepared.side("train")
    index = repeat_index(labels, datasets, repeats)
    train = faces[index], labels[index], prepared.targets("train", votes)[index]
    val = (*prepared.side("val"), prepared.targets("val", votes))
    result = fit(arch, opts, out, train, val if len(val[1]) else None, config.resume, requests)
    _record_devices(out, result.devices, result.stopped_by)
    atomic_save_model(result.model, out / "model.keras")
    sides = {}
    for side in ("val", "test"):
        faces, labels, datasets = prepared.side(side)
        if len(labels):
            sides[side] = compute_metrics(labels, predict_labels(result.model, faces), datasets)
    history = result.history
    metrics = {
        "run": out.name, "labels": list(LABELS),
        "primary": "test" if "test" in sides else ("val" if "val" in sides else None),
        "sides": sides, "counts": prepared.counts(),
        "model": {"params": params, "architecture": arch.to_dict()},
        "training": {**_training_summary(history, result.best_epoch, len(train[1])),
                     **_device_summary(result.devices), "epochs": config.epochs, "stopped_by": result.stopped_by},
    }
    write_report(out, metrics, history)
    _print_summary(out, metrics)
    return 0


def _device_summary(devices: Any) -> dict[str, Any]:
    from .backend import engine

    return {"backend": devices.backend, "devices": devices.to_dict(), "engine": engine(devices)}


def _record_devices(out: Path, devices: Any, stopped_by: str | None) -> None:
    """run.json says which backend and devices trained (a resumed run lists each one in turn), and the signal
    that ended a session early."""
    from ferlite.edge.contract.atomic import atomic_write

    path = out / RUN_FILE
    info = json.loads(path.read_text())
    info.setdefault("training", []).append(
        {**_device_summary(devices), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
         **({"stopped_by": stopped_by} if stopped_by else {})})
    atomic_write(path, (json.dumps(info, indent=2) + "\n").encode())


def _repeats(entries: Sequence[str], names: set[str]) -> dict[tuple[str, str | None], int]:
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


def repeat_index(labels: np.ndarray, datasets: list[str],
                 repeats: dict[tuple[str, str | None], int]) -> np.ndarray:
    """Oversampling as row indices: a face of data set NAME and label L appears
    repeats[(NAME, L)] times, else repeats[(NAME, None)] times, else once (shuffled later)."""
    if not repeats:
        return np.arange(len(labels))
    counts = np.array([repeats.get((name, LABELS[label]), repeats.get((name, None), 1))
                       for name, label in zip(datasets, labels, strict=True)], dtype=np.int64)
    index = np.repeat(np.arange(len(labels)), counts)
    log.info("training faces after --repeat: %d (was %d)", len(index), len(labels))
    return index


def _training_summary(history: list[dict[str, float]], best: int | None, n: int) -> dict[str, Any]:
    # The first epoch includes graph tracing: report the median of the others.
    seconds = sorted(h["seconds"] for h in history[1:]) or [h["seconds"] for h in history]
    typical = seconds[len(seconds) // 2] if seconds else 0.0
    return {"epochs_run": len(history), "best_epoch": best, "train_images": n,
            "seconds_per_epoch": typical, "images_per_second": n / typical if typical else 0.0}


def _print_summary(out: Path, metrics: dict[str, Any]) -> None:
    t = metrics["training"]
    if t.get("stopped_by"):
        print(f"stopped by {t['stopped_by']} after epoch {t['epochs_run']} of {t['epochs']}: model.keras is the best "
              f"so far; fer-train --out {out} --resume continues")
    print(f"trained {t['epochs_run']} epochs (best {t['best_epoch']}) with {t['backend']} "
          f"({t['devices']['kind']}, {t['devices']['precision']}), "
          f"{t['seconds_per_epoch']:.1f} s/epoch, {t['images_per_second']:.0f} images/s")
    for side, result in metrics["sides"].items():
        parts = [f"{name} {sub['accuracy']:.2%} (n={sub['n']})"
                 for name, sub in result.get("per_dataset", {}).items()]
        print(f"{side}: accuracy {result['accuracy']:.2%}, macro-F1 {result['macro_f1']:.3f}"
              f" (n={result['n']}); " + "; ".join(parts))
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    sys.exit(main())
