"""Training on any Keras backend: Adam with plateau drops or a one-cycle schedule, class weights, early
stopping, an atomic checkpoint every epoch and `--resume` from it (weights, optimizer state, callback
state and history)."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ferlite.edge.contract import LABELS
from ferlite.edge.contract.atomic import atomic_write

from .backend import Devices, distribution, engine, find_devices
from .config import DEFAULTS
from .errors import InitError, ResumeError
from .inputs import Augmentation, as_input, class_weights, core_model, sample_weights, training_model
from .model import Architecture, build_model
from .report import compute_metrics, predict_labels
from .stopping import StopRequests

log = logging.getLogger(__name__)

LAST = "checkpoints/last.keras"
BEST = "checkpoints/best.keras"
STATE = "checkpoints/state.json"
# Callback attributes that must survive a resume.
_CALLBACK_STATE = {"lr_plateau": ("wait", "best", "cooldown_counter"),
                   "early_stopping": ("wait", "best", "best_epoch")}


@dataclass
class FitConfig:
    epochs: int = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]
    learning_rate: float = DEFAULTS["learning_rate"]
    patience: int = DEFAULTS["patience"]  # early stopping, epochs without a better validation accuracy
    lr_patience: int = 4
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    class_weights: bool = True
    seed: int = DEFAULTS["seed"]
    augmentation: Augmentation | None = field(default_factory=Augmentation)
    init: Path | None = None  # start from this model's weights instead of random ones
    select: str = DEFAULTS["select"]  # or "dataset-mean": mean of the per-data-set val accuracies
    label_smoothing: float = DEFAULTS["label_smoothing"]
    class_weight_power: float = DEFAULTS["class_weight_power"]  # 1: balanced, 0.5: square root of it
    progress_every_s: float = DEFAULTS["progress_every"]  # a progress log line this often in an epoch
    schedule: str = DEFAULTS["schedule"]  # "plateau" or "onecycle"
    warmup: float = DEFAULTS["warmup"]  # onecycle: share of the steps spent rising to learning_rate


def atomic_save_model(model: keras.Model, path: Path) -> None:
    atomic_write(path, lambda tmp: model.save(tmp))


def select_devices() -> Devices:
    """The backend's devices, said once; mixed precision on an accelerator."""
    devices = find_devices()
    keras.mixed_precision.set_global_policy(devices.precision)
    log.info("training with %s, %s, %s", devices.describe(), engine(devices), devices.precision)
    return devices


class RunState(keras.callbacks.Callback):
    """Saves last/best checkpoints and state.json atomically at the end of every epoch."""

    def __init__(self, out: Path, monitor: str, callbacks: dict[str, keras.callbacks.Callback],
                 train_count: int, restored: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.out, self.monitor, self.others = out, monitor, callbacks
        self.train_count = train_count
        self.state: dict[str, Any] = restored or {"history": [], "best": None, "best_epoch": None}
        self._restore = restored is not None
        self._started = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self._restore:
            return
        for name, attrs in self._tracked():
            saved = self.state.get("callbacks", {}).get(name, {})
            for attr in attrs:
                if attr in saved:
                    setattr(self.others[name], attr, saved[attr])

    def _tracked(self) -> list[tuple[str, tuple[str, ...]]]:
        """The stateful callbacks this run has (a schedule run has no plateau callback)."""
        return [(name, attrs) for name, attrs in _CALLBACK_STATE.items() if name in self.others]

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.perf_counter() - self._started
        entry = {k: float(v) for k, v in (logs or {}).items()}
        entry.update(epoch=epoch + 1, seconds=seconds, images_per_second=self.train_count / seconds,
                     learning_rate=current_learning_rate(self.model.optimizer))
        log.info("epoch %d: %.1f s, %.0f images/s, %s", epoch + 1, seconds,
                 entry["images_per_second"],
                 ", ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items())))
        value = entry.get(self.monitor)
        improved = value is not None and (self.state["best"] is None or value > self.state["best"])
        if improved:
            self.state.update(best=value, best_epoch=epoch + 1)
            atomic_save_model(self.model, self.out / BEST)
        atomic_save_model(self.model, self.out / LAST)
        self.state["history"].append(entry)
        self.state["epoch"] = epoch + 1
        self.state["callbacks"] = {
            name: {a: _plain(getattr(self.others[name], a, None)) for a in attrs}
            for name, attrs in self._tracked()
        }
        atomic_write(self.out / STATE, json.dumps(self.state, indent=1).encode())


class ProgressLog(keras.callbacks.Callback):
    """A log line every `every_s` seconds inside an epoch (images done, images/s, ETA of the epoch
    and of the run), so a run whose output goes to a file is never silent for a whole epoch."""

    def __init__(self, images: int, batch_size: int, epochs: int, every_s: float = 60.0) -> None:
        super().__init__()
        self.images, self.batch_size, self.epochs, self.every_s = images, batch_size, epochs, every_s
        self._epoch = 0
        self._epoch_start = self._last = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._epoch_start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        if now - self._last < self.every_s:
            return
        self._last = now
        done = min(self.images, (batch + 1) * self.batch_size)
        rate = done / max(now - self._epoch_start, 1e-9)
        epoch_left = (self.images - done) / rate
        run_left = epoch_left + (self.epochs - self._epoch - 1) * self.images / rate
        log.info("epoch %d/%d: %d/%d images (%.0f%%), %.0f images/s, ETA epoch %s, run %s",
                 self._epoch + 1, self.epochs, done, self.images, 100 * done / self.images, rate,
                 _duration(epoch_left), _duration(run_left))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class DatasetMeanAccuracy(keras.callbacks.Callback):
    """Adds val_dataset_mean (mean of the per-data-set validation accuracies) to the epoch's
    logs, so a small data set counts as much as a large one when picking the best epoch.
    Listed before the callbacks that read it."""

    KEY = "val_dataset_mean"

    def __init__(self, faces: np.ndarray, labels: np.ndarray, datasets: list[str],
                 batch_size: int) -> None:
        super().__init__()
        self.faces, self.labels, self.datasets, self.batch_size = faces, labels, datasets, batch_size

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        predicted = predict_labels(self.model, self.faces, self.batch_size)
        per_dataset = compute_metrics(self.labels, predicted, self.datasets)["per_dataset"]
        per_set = {name: result["accuracy"] for name, result in per_dataset.items()}
        log.info("epoch %d validation accuracy per data set: %s", epoch + 1,
                 ", ".join(f"{k} {v:.4f}" for k, v in per_set.items()))
        if logs is not None:
            logs[self.KEY] = float(np.mean(list(per_set.values())))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_state(out: Path) -> dict[str, Any]:
    try:
        state = json.loads((out / STATE).read_text())
    except FileNotFoundError as e:
        raise ResumeError(f"{out / STATE}: no checkpoint to resume from") from e
    except (OSError, ValueError) as e:
        raise ResumeError(f"{out / STATE}: unreadable checkpoint state ({e})") from e
    if not (out / LAST).is_file():
        raise ResumeError(f"{out / LAST}: checkpoint missing")
    return state


def _tensorboard(out: Path) -> list[keras.callbacks.Callback]:
    """TensorBoard logs when both tensorboard and TensorFlow are installed: TF 2.21 no longer pulls tensorboard,
    and Keras writes the logs with tf.summary on every backend (a JAX or PyTorch GPU box often has tensorboard
    and no TensorFlow: the callback would fail the run at its first epoch)."""
    missing = [name for name in ("tensorboard", "tensorflow") if importlib.util.find_spec(name) is None]
    if missing:
        log.info("%s not installed: no TensorBoard logs (history.csv has every epoch)", " and ".join(missing))
        return []
    return [RateLoggingTensorBoard(str(out / "tensorboard"))]


class RateLoggingTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard logs the learning rate each epoch by calling the schedule: on JAX that leaks (see
    current_learning_rate); this one logs the same rate read the leak-free way."""

    def _collect_learning_rate(self, logs: dict[str, Any]) -> dict[str, Any]:
        logs["learning_rate"] = current_learning_rate(self.model.optimizer)
        return logs


def learning_rate(opts: FitConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """plateau: a constant that ReduceLROnPlateau halves; onecycle: a linear rise from
    learning_rate / 25 to learning_rate over `warmup` of the steps, then a cosine to 1/1000 of it,
    ending with the last epoch (a fixed budget that converges; saved with the optimizer, so --resume
    continues on the same curve)."""
    if opts.schedule != "onecycle":
        return opts.learning_rate
    total = max(1, opts.epochs * steps_per_epoch)
    warmup = int(total * opts.warmup)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=opts.learning_rate / 25, decay_steps=max(1, total - warmup), alpha=1e-3,
        warmup_target=opts.learning_rate, warmup_steps=warmup)


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The rate the optimizer's next step takes. A one-cycle schedule (Keras's CosineDecay with warmup) is
    computed here in plain Python: evaluating it through Keras outside the compiled step leaks on JAX (its
    ops.cond traces two new lambdas on every call, which JAX's caches keep: ~1.6 MB a call measured, read once an
    epoch here and once more by TensorBoard)."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer (mixed float16)
    schedule = getattr(optimizer, "_learning_rate", None)
    if not isinstance(schedule, keras.optimizers.schedules.CosineDecay):
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    return cosine_rate(schedule.get_config(), int(keras.ops.convert_to_numpy(optimizer.iterations)))


def cosine_rate(config: dict[str, Any], step: int) -> float:
    """keras.optimizers.schedules.CosineDecay's rate at `step`, from its config (the same formula)."""
    initial, decay_steps, alpha = config["initial_learning_rate"], config["decay_steps"], config["alpha"]
    target, warmup = config.get("warmup_target"), config.get("warmup_steps") or 0
    if target is None:
        start, step, warmup = initial, min(step, decay_steps), 0
    else:
        step = min(step, decay_steps + warmup)
        if step < warmup:
            return (target - initial) * step / warmup + initial
        start = target
    cosine = 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / decay_steps))
    return start * ((1 - alpha) * cosine + alpha)


def _compile(model: keras.Model, lr: float | keras.optimizers.schedules.LearningRateSchedule,
             label_smoothing: float = 0.0) -> None:
    # Targets are (n, classes): one-hot labels or FER+ vote distributions, so one loss serves both.
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss,
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


@dataclass
class FitResult:
    model: keras.Model
    history: list[dict[str, float]]
    best_epoch: int | None
    devices: Devices
    stopped_by: str | None = None  # the signal that ended training before its last epoch


class StopWhenAsked(keras.callbacks.Callback):
    """The first SIGINT or SIGTERM while training (stopping.StopRequests) ends training after the epoch under
    way, once that epoch's checkpoint is written (RunState comes before it)."""

    def __init__(self, requests: StopRequests) -> None:
        super().__init__()
        self.requests = requests

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.requests.training = True

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.requests.check()  # a second signal: now, even if its handler's raise was lost

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.requests.check()
        if self.requests.stop_after_epoch is not None:
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.requests.training = False
        self.requests.check()


def _build(arch: Architecture, opts: FitConfig, out: Path, restored: dict[str, Any] | None,
           steps_per_epoch: int) -> keras.Model:
    """The model fit() trains: a checkpoint to resume, or a new model behind the augmentation."""
    if restored:
        log.info("resuming %s after epoch %d", out, restored["epoch"])
        return keras.models.load_model(out / LAST)
    model = build_model(arch)
    if opts.init is not None:
        _load_initial_weights(model, opts.init)
    trained = training_model(model, opts.augmentation, opts.seed)
    _compile(trained, learning_rate(opts, steps_per_epoch), opts.label_smoothing)
    return trained


def _callbacks(opts: FitConfig, out: Path, train_count: int, has_val: bool,
               val: tuple[np.ndarray, np.ndarray, list[str], np.ndarray] | None,
               restored: dict[str, Any] | None) -> tuple[list[keras.callbacks.Callback], RunState]:
    monitor = "val_accuracy" if has_val else "accuracy"
    first: list[keras.callbacks.Callback] = []
    if has_val and opts.select == "dataset-mean":
        assert val is not None
        first.append(DatasetMeanAccuracy(*val[:3], opts.batch_size))
        monitor = DatasetMeanAccuracy.KEY
    others: dict[str, keras.callbacks.Callback] = {}
    # One cycle is a fixed budget: every epoch runs (the best one is still kept), and nothing else
    # may change the rate it sets.
    if opts.schedule == "plateau":
        others["early_stopping"] = keras.callbacks.EarlyStopping(monitor=monitor, mode="max",
                                                                 patience=opts.patience, verbose=1)
        others["lr_plateau"] = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss" if has_val else "loss", factor=opts.lr_factor,
            patience=opts.lr_patience, min_lr=opts.min_lr, verbose=1)
    state = RunState(out, monitor, others, train_count, restored)
    progress = ProgressLog(train_count, opts.batch_size, opts.epochs, opts.progress_every_s)
    callbacks = [*first, *others.values(), state, progress,
                 keras.callbacks.CSVLogger(str(out / "history.csv"), append=bool(restored)),
                 *_tensorboard(out)]
    return callbacks, state


def fit(
    arch: Architecture, opts: FitConfig, out: Path,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, list[str], np.ndarray] | None, resume: bool = False,
    requests: StopRequests | None = None,
) -> FitResult:
    """Train (or continue training) and return the best model by validation accuracy
    (`opts.select`). `train` is (faces, labels, targets (n, classes)); `val` is (faces, labels,
    data set name of each face, targets). A signal in `requests` ends training after its epoch."""
    requests = requests or StopRequests()
    keras.utils.set_random_seed(opts.seed)
    devices = select_devices()
    restored = load_state(out) if resume else None
    faces, labels, targets = train
    steps_per_epoch = -(-len(faces) // opts.batch_size)
    has_val = val is not None and len(val[0]) > 0
    with distribution(devices):
        model = _build(arch, opts, out, restored, steps_per_epoch)
        callbacks, state = _callbacks(opts, out, len(faces), has_val, val, restored)
        callbacks.append(StopWhenAsked(requests))
        initial_epoch = int(restored["epoch"]) if restored else 0
        if initial_epoch < opts.epochs:
            weights = None
            if opts.class_weights:
                per_class = class_weights(labels, len(LABELS), opts.class_weight_power)
                log.info("class weights: %s", ", ".join(f"{LABELS[c]} {w:.2f}" for c, w in per_class.items()))
                weights = sample_weights(labels, per_class)
            model.fit(
                as_input(faces), targets.astype(np.float32), sample_weight=weights,
                batch_size=opts.batch_size, shuffle=True,
                validation_data=(as_input(val[0]), val[3].astype(np.float32)) if has_val and val else None,
                epochs=opts.epochs, initial_epoch=initial_epoch,
                callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2,
            )
    history = state.state["history"]
    asked = requests.stop_after_epoch
    stopped_by = asked.name if asked is not None and len(history) < opts.epochs else None
    return FitResult(_best_float32(arch, out), history, state.state["best_epoch"], devices, stopped_by)


def _load_initial_weights(model: keras.Model, path: Path) -> None:
    try:
        source = keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as e:
        raise InitError(f"{path}: cannot load --init model ({e})") from e
    try:
        model.set_weights(source.get_weights())
    except ValueError as e:
        raise InitError(f"{path}: --init model has another architecture ({e})") from e
    log.info("starting from the weights of %s", path)


def _best_float32(arch: Architecture, out: Path) -> keras.Model:
    """The best checkpoint's model, without the augmentation, in float32 (drops any mixed-precision
    policy)."""
    best = keras.models.load_model(out / BEST if (out / BEST).is_file() else out / LAST)
    keras.mixed_precision.set_global_policy("float32")
    model = build_model(arch)
    model.set_weights(core_model(best).get_weights())
    return model  # not compiled: model.keras carries no optimizer state (checkpoints do)
