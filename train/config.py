"""fer-train's command line and its TOML mirror (keys are the long flags, `-` or `_`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from ferlite.edge.errors import ConfigError

from .splits import SPLIT_MODES

SELECT_MODES = ("accuracy", "dataset-mean")
TARGET_MODES = ("votes", "majority")


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ferlite" / "faces"


DESCRIPTION = """\
Train the hybrid CNN on one or more labelled face data sets and write a report.

Data sets (--data KIND[:NAME]=PATH, repeat to merge several):
  ckplus   CK+ official layout (cohn-kanade-images/ + Emotion/): first frame of every
           sequence = Neutral, last frame of a labelled sequence = its emotion; full
           frames, faces found with the Haar detector. Subject = S###.
  ferg     FERG-DB official layout (FERG_DB_256/<character>/<character>_<expression>/);
           whole images are faces; subject = character.
  folder   <class>/<image> (or <train|val|test>/<class>/<image>); full images, faces
           found with the Haar detector.
  ferplus  FER+ (FERPlus's layout): FER2013{Train,Valid,Test}/label.csv with 10 crowd
           votes per face; the folders are the train/val/test sides. Faces whose votes
           are mostly fear/contempt/unknown/not-a-face, and ties, are dropped and counted.
  crops    like folder, but the images are already face crops: only resized
           (e.g. the 48x48 sets in ../shared/data).
Class folder names map to the six labels through built-in aliases (anger/angry,
happiness/happy/joy, sadness/sad, ...); fear and contempt are dropped and counted;
add or override with --class-map SOURCE=LABEL (LABEL 'drop' drops it).
folder/crops sets read a subject ID from file names with --subject-regex NAME=REGEX
(default: the CK+ pattern '^(S\\d{3})_'; 'none' to switch off). File names starting
Training_/PublicTest_/PrivateTest_ (FER2013) keep that split as train/val/test.

Example:
  fer-train --data crops:ckplus=../shared/data/ckplus48_hugoiwnl \\
            --data crops:fer2013=../shared/data/fer2013 \\
            --test-subjects train/splits/ckplus-test-subjects.txt --out runs/merged
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-train", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="TOML file; its keys mirror these flags")
    g = p.add_argument_group("data")
    _add(g, "--data", action="append", metavar="KIND[:NAME]=PATH",
                   help="a data set (repeatable)")
    _add(g, "--class-map", action="append", metavar="SOURCE=LABEL",
                   help="map a class name to a label or 'drop' (repeatable)")
    _add(g, "--faces", action="append", metavar="NAME=whole|detect",
                   help="override how a set's faces are found (repeatable)")
    _add(g, "--subject-regex", action="append", metavar="NAME=REGEX",
                   help="subject ID from file names of a folder/crops set; group 1 (repeatable)")
    _add(g, "--cache", type=Path, help=f"face cache folder (default {default_cache()})")
    _add(g, "--no-cache", action="store_true", help="decode every image, cache nothing")
    _add(g, "--workers", type=int, help="decoding threads (default: all CPUs)")
    _add(g, "--limit", type=int, metavar="N",
                   help="at most N images per class of each data set and side (a quick smoke run)")
    s = p.add_argument_group("split")
    _add(s, "--split", choices=SPLIT_MODES, help="subject-independent (default) or random")
    _add(s, "--val-fraction", type=float, help="validation share of unsplit data")
    _add(s, "--test-fraction", type=float, help="test share of unsplit data")
    _add(s, "--test-subjects", type=Path, metavar="FILE",
                   help="subjects (one per line, e.g. S005) always on the test side")
    _add(s, "--write-test-subjects", type=Path, metavar="FILE",
                   help="write the test side's subjects to FILE (with --test-fraction)")
    _add(s, "--seed", type=int, help="split, shuffle and init seed")
    m = p.add_argument_group("model")
    _add(m, "--width", type=float, help="multiplier of the default filters and units")
    _add(m, "--filters", help="five conv filter counts, e.g. 32,64,128,128,256")
    _add(m, "--dense", help="two hidden dense sizes, e.g. 256,128")
    _add(m, "--dropout", type=float, help="dropout after each hidden dense layer")
    t = p.add_argument_group("training")
    _add(t, "--out", type=Path, help="run folder (required)")
    _add(t, "--epochs", type=int, help="epochs")
    _add(t, "--batch-size", type=int, help="batch size")
    _add(t, "--learning-rate", type=float, help="Adam learning rate")
    _add(t, "--patience", type=int, help="early stopping patience in epochs")
    _add(t, "--no-class-weights", action="store_true", help="no balanced class weights")
    _add(t, "--class-weight-power", type=float, metavar="P",
                   help="class weights = balanced ** P (1 balanced; 0.5 square root)")
    _add(t, "--targets", choices=TARGET_MODES,
                   help="FER+ faces: train on the vote distribution (votes, default) or on "
                        "the majority label (one-hot)")
    _add(t, "--no-augment", action="store_true", help="no data augmentation")
    _add(t, "--augment", type=float, metavar="FACTOR",
                   help="scale the augmentation ranges (1: shift/shear/zoom 10%%, rotation 10 deg)")
    _add(t, "--label-smoothing", type=float, metavar="EPS",
                   help="label smoothing; keeps logits small, which int8 resolves better")
    _add(t, "--init", type=Path, metavar="MODEL",
                   help="start from this .keras model's weights (fine-tuning; same architecture)")
    _add(t, "--repeat", action="append", metavar="NAME[/LABEL]=K",
                   help="show a data set's training faces (of one label) K times per epoch "
                        "(repeatable; NAME/LABEL wins over NAME)")
    _add(t, "--select", choices=SELECT_MODES,
                   help="validation measure for the best checkpoint and early stopping: "
                        "overall accuracy (default) or the mean of the per-data-set accuracies")
    _add(t, "--overwrite", action="store_true",
                   help="replace the run already in --out (default: refuse)")
    _add(t, "--progress-every", type=float, metavar="S",
                   help="a progress log line every S seconds inside an epoch")
    _add(t, "--log-level", help="DEBUG | INFO (default) | WARNING")
    _add(t, "--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (its saved options)")
    _add(t, "--dry-run", action="store_true",
                   help="read, decode and split the data, write the manifest, do not train")
    return p


def _add(group: Any, *flags: str, **kwargs: Any) -> None:
    """add_argument, with the default (from DEFAULTS, the one place it is written) in the help."""
    dest = flags[0].lstrip("-").replace("-", "_")
    default = DEFAULTS.get(dest)
    if kwargs.get("help") and default is not None and not isinstance(default, list):
        kwargs["help"] += f" (default {default})"
    group.add_argument(*flags, **kwargs)


# Every fer-train default, once: the help texts, the TOML merge and FitConfig read them from here.
DEFAULTS: dict[str, Any] = {
    "data": [], "class_map": [], "faces": [], "subject_regex": [], "split": "subject",
    "val_fraction": 0.2, "test_fraction": 0.0, "seed": 0, "width": 1.0, "dropout": 0.4,
    "epochs": 40, "batch_size": 62, "augment": 1.0, "learning_rate": 1e-3, "patience": 10,
    "repeat": [], "select": "accuracy", "label_smoothing": 0.0, "class_weight_power": 1.0,
    "targets": "votes", "progress_every": 60.0, "log_level": "INFO",
}
_LISTS = ("data", "class_map", "faces", "subject_regex", "repeat")
PATH_OPTIONS = ("out", "cache", "test_subjects", "write_test_subjects", "init")
_NOT_IN_TOML = {"config", "help"}


def load_toml(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable config ({e})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: bad TOML ({e})") from e
    known = set(vars(parser.parse_args([]))) - _NOT_IN_TOML
    values = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}")
    for key in _LISTS:
        if key in values and isinstance(values[key], str):
            values[key] = [values[key]]
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags > TOML > defaults; list flags add to the TOML lists."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = load_toml(args.config, parser) if args.config else {}
    merged: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key in _LISTS:
            merged[key] = [*config.get(key, []), *(value or [])]
        elif value is None or value is False:
            merged[key] = config.get(key, DEFAULTS.get(key, value))
        else:
            merged[key] = value
    for key in PATH_OPTIONS:
        if merged.get(key) is not None:
            merged[key] = Path(merged[key])
    merged["explicit"] = sorted(k for k, v in vars(args).items() if v not in (None, False, []))
    return argparse.Namespace(**merged)


def int_list(text: str | list[int] | None) -> list[int] | None:
    if text is None or isinstance(text, list):
        return text
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise ConfigError(f"expected comma-separated integers, got {text!r}") from e
