"""fer-train's settings: one frozen, typed TrainConfig, loaded from a TOML file (keys are the long flags,
`-` or `_`; unknown keys refused), then overridden by only the flags that were typed."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from ferlite.edge.contract import settings
from ferlite.edge.contract.errors import ConfigError, UsageError
from ferlite.edge.contract.settings import LOG_LEVELS, refuse_unknown, setting
from ferlite.edge.contract.version import VersionAction

SPLIT_MODES = ("subject", "random")
SELECT_MODES = ("accuracy", "dataset-mean")
TARGET_MODES = ("votes", "majority")
SCHEDULES = ("plateau", "onecycle")


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ferlite" / "faces"


@dataclass(frozen=True)
class TrainConfig(settings.Settings):
    """Every fer-train setting with its type, its one default and its rule: the flags, the TOML keys, the
    help texts and run.json's options all come from these fields. Ranges are inclusive."""

    dash_keys: ClassVar[bool] = True  # TOML keys are the long flags, `-` or `_`

    # data
    data: tuple[str, ...] = setting((), "data sets, KIND[:NAME]=PATH", adds=True)
    class_map: tuple[str, ...] = setting((), "SOURCE=LABEL", adds=True)
    faces: tuple[str, ...] = setting((), "NAME=whole|detect", adds=True)
    subject_regex: tuple[str, ...] = setting((), "NAME=REGEX", adds=True)
    cache: Path | None = setting(None, "face cache folder (default: default_cache())")
    no_cache: bool = setting(False, "decode every image, cache nothing")
    workers: int | None = setting(None, "decoding threads (default: all CPUs)", low=1, high=1024)
    limit: int | None = setting(None, "at most this many images per class of each set and side (0, None: all)",
                                low=0, high=2**62)
    pack: Path | None = setting(None, "also write the decoded, split faces here (to train elsewhere)")
    from_pack: Path | None = setting(None, "train from such a file instead of data", reads=True)
    # split
    split: str = setting("subject", "how unsplit data is split (by subject or at random)", choices=SPLIT_MODES)
    val_fraction: float = setting(0.2, "validation share of unsplit data", low=0.0, high=1.0)
    test_fraction: float = setting(0.0, "test share of unsplit data", low=0.0, high=1.0)
    test_subjects: Path | None = setting(None, "subjects always on the test side, one a line", reads=True)
    write_test_subjects: Path | None = setting(None, "write the test side's subjects here")
    seed: int = setting(0, "split, shuffle and init seed", low=0, high=2**32 - 1)
    # model
    width: float = setting(1.0, "multiplier of the default filters and units", low=0.01, high=64.0)
    filters: tuple[int, ...] | None = setting(None, "conv filter counts (default: the model's times width)",
                                              low=1, non_empty=True)
    dense: tuple[int, ...] | None = setting(None, "hidden dense sizes", low=1, non_empty=True)
    dropout: float = setting(0.4, "dropout after each hidden dense layer", low=0.0, high=0.99)
    # training
    out: Path | None = setting(None, "run folder (required, checked by fer-train: a config may be made without it)")
    epochs: int = setting(40, "epochs", low=1, high=100_000)
    batch_size: int = setting(62, "batch size", low=1, high=1 << 20)
    learning_rate: float = setting(1e-3, "plateau: the starting rate; onecycle: the peak", low=1e-12, high=10.0)
    schedule: str = setting("plateau", "learning rate schedule", choices=SCHEDULES)
    warmup: float = setting(0.3, "onecycle: share of the steps rising to the peak", low=0.0, high=0.9)
    patience: int = setting(10, "plateau: early stopping patience in epochs", low=0, high=100_000)
    no_class_weights: bool = setting(False, "no balanced class weights")
    class_weight_power: float = setting(1.0, "class weights = balanced ** this", low=0.0, high=10.0)
    targets: str = setting("votes", "FER+ faces: trained on their vote distribution or majority label",
                           choices=TARGET_MODES)
    no_augment: bool = setting(False, "no data augmentation")
    augment: float = setting(1.0, "scale of the augmentation ranges", low=0.0, high=10.0)
    label_smoothing: float = setting(0.0, "label smoothing", low=0.0, high=0.99)
    init: Path | None = setting(None, "start from this .keras model's weights", reads=True)
    repeat: tuple[str, ...] = setting((), "NAME[/LABEL]=K", adds=True)
    select: str = setting("accuracy", "validation measure for the best checkpoint", choices=SELECT_MODES)
    overwrite: bool = setting(False, "replace the run already in out")
    progress_every: float = setting(60.0, "seconds between progress lines inside an epoch", low=0.0, high=86400.0)
    log_level: str = setting("INFO", "how much is logged on stderr", choices=LOG_LEVELS, fold_case=True)
    resume: bool = setting(False, "continue the run in out from its last checkpoint")
    dry_run: bool = setting(False, "read, decode and split the data, do not train")

    def check_relations(self) -> None:
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("val_fraction + test_fraction must be below 1")

    @property
    def run_folder(self) -> Path:
        """--out; UsageError when it was not given."""
        if self.out is None:
            raise UsageError("--out is required")
        return self.out

    def options(self) -> dict[str, Any]:
        """What this run trains, as JSON values: run.json's `options`, which --resume reads back."""
        return {name: _to_json(getattr(self, name)) for name in _FIELDS if name not in NOT_SAVED}


_FIELDS = {f.name: f for f in fields(TrainConfig)}
# Every default, once (the help texts and FitConfig read them from here).
DEFAULTS: Mapping[str, Any] = {name: f.default for name, f in _FIELDS.items()}
# How this invocation runs rather than what it trains: not saved in run.json, not taken from it by --resume.
NOT_SAVED = frozenset({"cache", "no_cache", "workers", "write_test_subjects", "pack", "out", "overwrite",
                       "progress_every", "log_level", "resume", "dry_run"})


def _to_json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


def load_config(path: str | os.PathLike[str] | None, overrides: Mapping[str, Any]) -> TrainConfig:
    """Defaults, then the TOML file (if any), then only the settings typed on the command line
    (`overrides`, named as the fields); list settings add the typed items to the file's."""
    return settings.load(TrainConfig, path, overrides)


def resumed(config: TrainConfig, saved: Mapping[str, Any], typed: Sequence[str], where: str) -> TrainConfig:
    """--resume: the saved run's options (run.json's `options`, read from `where`) replace what this
    command line and its config file say, except epochs when it was typed (to train longer)."""
    options = {key: value for key, value in saved.items() if not (key == "epochs" and "epochs" in typed)}
    refuse_unknown(options, set(_FIELDS) - NOT_SAVED, where)
    return settings.replace(config, settings.coerce_values(TrainConfig, options, where), where)


def check_files(config: TrainConfig) -> None:
    """Every file the config names for reading is a readable regular file (a FIFO is refused, not waited on)."""
    settings.check_files(config)


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
  synthetic  (no =PATH) generated patterns, 40 a class, 10 subjects: a quick try of
           the whole chain on a fresh machine, no data needed (not faces).
Class folder names map to the six labels through built-in aliases (anger/angry,
happiness/happy/joy, sadness/sad, ...); fear and contempt are dropped and counted;
add or override with --class-map SOURCE=LABEL (LABEL 'drop' drops it).
folder/crops sets read a subject ID from file names with --subject-regex NAME=REGEX
(default: the CK+ pattern '^(S\\d{3})_'; 'none' to switch off). File names starting
Training_/PublicTest_/PrivateTest_ (FER2013) keep that split as train/val/test.

Example:
  fer-train --data crops:ckplus=../shared/data/ckplus48_hugoiwnl \\
            --data crops:fer2013=../shared/data/fer2013 \\
            --test-subjects src/ferlite/train/subject_lists/ckplus-test-subjects.txt --out runs/merged
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-train", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # only what was typed overrides the config file
    )
    p.add_argument("--version", action=VersionAction, prog="fer-train")
    p.add_argument("--config", dest="config_file", metavar="FILE",
                   help="TOML file; its keys mirror these flags (flags win, list flags add)")
    g = p.add_argument_group("data")
    _add(g, "--data", action="append", metavar="KIND[:NAME]=PATH", help="a data set (repeatable)")
    _add(g, "--class-map", action="append", metavar="SOURCE=LABEL",
         help="map a class name to a label or 'drop' (repeatable)")
    _add(g, "--faces", action="append", metavar="NAME=whole|detect",
         help="override how a set's faces are found (repeatable)")
    _add(g, "--subject-regex", action="append", metavar="NAME=REGEX",
         help="subject ID from file names of a folder/crops set; group 1 (repeatable)")
    _add(g, "--cache", metavar="FOLDER", help=f"face cache folder (default {default_cache()})")
    _add(g, "--no-cache", action="store_true", help="decode every image, cache nothing")
    _add(g, "--workers", type=int, metavar="N", help="decoding threads (default: all CPUs)")
    _add(g, "--limit", type=int, metavar="N",
         help="at most N images per class of each data set and side (a quick smoke run)")
    _add(g, "--pack", metavar="FILE",
         help="also write the decoded, split faces to FILE (xz, no image folders needed to train from it; "
              "with --dry-run: pack only)")
    _add(g, "--from-pack", metavar="FILE",
         help="train from a --pack FILE instead of --data (its split and data options come with it)")
    s = p.add_argument_group("split")
    _add(s, "--split", choices=SPLIT_MODES, help="subject-independent or random")
    _add(s, "--val-fraction", type=float, metavar="F", help="validation share of unsplit data")
    _add(s, "--test-fraction", type=float, metavar="F", help="test share of unsplit data")
    _add(s, "--test-subjects", metavar="FILE",
         help="subjects (one per line, e.g. S005) always on the test side")
    _add(s, "--write-test-subjects", metavar="FILE",
         help="write the test side's subjects to FILE (with --test-fraction)")
    _add(s, "--seed", type=int, help="split, shuffle and init seed")
    m = p.add_argument_group("model")
    _add(m, "--width", type=float, help="multiplier of the default filters and units")
    _add(m, "--filters", help="five conv filter counts, e.g. 32,64,128,128,256")
    _add(m, "--dense", help="two hidden dense sizes, e.g. 256,128")
    _add(m, "--dropout", type=float, help="dropout after each hidden dense layer")
    t = p.add_argument_group("training")
    _add(t, "--out", metavar="FOLDER", help="run folder (required)")
    _add(t, "--epochs", type=int, help="epochs")
    _add(t, "--batch-size", type=int, metavar="N", help="batch size")
    _add(t, "--learning-rate", type=float, metavar="LR", help="Adam learning rate")
    _add(t, "--schedule", choices=SCHEDULES,
         help="learning rate: halved on validation plateaus, or one cycle (a rise to --learning-rate over "
              "--warmup of the steps, then a cosine to 1/1000 of it at the last epoch: a fixed budget, every "
              "epoch runs, no early stopping)")
    _add(t, "--warmup", type=float, metavar="F", help="onecycle: share of the steps rising to the peak")
    _add(t, "--patience", type=int, metavar="EPOCHS", help="plateau schedule: early stopping patience in epochs")
    _add(t, "--no-class-weights", action="store_true", help="no balanced class weights")
    _add(t, "--class-weight-power", type=float, metavar="P",
         help="class weights = balanced ** P (1 balanced; 0.5 square root)")
    _add(t, "--targets", choices=TARGET_MODES,
         help="FER+ faces: train on the vote distribution (votes) or on the majority label (one-hot)")
    _add(t, "--no-augment", action="store_true", help="no data augmentation")
    _add(t, "--augment", type=float, metavar="FACTOR",
         help="scale the augmentation ranges (1: shift/shear/zoom 10%%, rotation 10 deg)")
    _add(t, "--label-smoothing", type=float, metavar="EPS",
         help="label smoothing; keeps logits small, which int8 resolves better")
    _add(t, "--init", metavar="MODEL",
         help="start from this .keras model's weights (fine-tuning; same architecture)")
    _add(t, "--repeat", action="append", metavar="NAME[/LABEL]=K",
         help="show a data set's training faces (of one label) K times per epoch "
              "(repeatable; NAME/LABEL wins over NAME)")
    _add(t, "--select", choices=SELECT_MODES,
         help="validation measure for the best checkpoint and early stopping: "
              "overall accuracy or the mean of the per-data-set accuracies")
    _add(t, "--overwrite", action="store_true",
         help="replace the run already in --out (default: refuse)")
    _add(t, "--progress-every", type=float, metavar="S",
         help="a progress log line every S seconds inside an epoch")
    _add(t, "--log-level", metavar="LEVEL", help=" | ".join(LOG_LEVELS[:3]))
    _add(t, "--resume", action="store_true",
         help="continue the run in --out from its last checkpoint (its saved options)")
    _add(t, "--dry-run", action="store_true",
         help="read, decode and split the data, write the manifest, do not train")
    return p


def _add(group: Any, flag: str, **kwargs: Any) -> None:
    """add_argument for a TrainConfig field, with the field's default in the help."""
    default = DEFAULTS[flag.lstrip("-").replace("-", "_")]
    if default is not None and not isinstance(default, (bool, tuple)):
        kwargs["help"] += f" (default {default})"
    group.add_argument(flag, **kwargs)


def read_command_line(argv: Sequence[str] | None = None) -> tuple[str | None, dict[str, Any]]:
    """(the --config file or None, the settings typed on the command line, named as the fields)."""
    typed = dict(vars(build_parser().parse_args(argv)))
    return typed.pop("config_file", None), typed


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """The command line's config: the --config file, overridden by the flags that were typed."""
    return load_config(*read_command_line(argv))
