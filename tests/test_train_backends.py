"""fer-train on every Keras backend: the same augmentation, a run under JAX that converts and answers on
the edge, faces that travel in a pack, the one-cycle schedule."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from train_fixtures import TINY, keras_env, write_folder_set  # noqa: E402

from ferlite.train.backend import Devices, configured_backend, engine  # noqa: E402
from ferlite.train.synthetic import make_faces  # noqa: E402

BACKENDS = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b) is not None]
# Fixed draws (no randomness): rotation (rad), shear x/y, zoom x/y, flip, shift x/y (pixels) of 4 images.
DRAWS = {"theta": [0.0, 0.15, -0.1, 0.05], "shear_x": [0.0, 0.05, -0.08, 0.0], "shear_y": [0.0, -0.03, 0.1, 0.0],
         "zoom_x": [1.0, 1.08, 0.93, 1.0], "zoom_y": [1.0, 0.95, 1.1, 1.0], "flip": [1.0, -1.0, 1.0, -1.0],
         "shift_x": [0.0, 3.5, -6.0, 0.0], "shift_y": [0.0, -2.25, 5.0, 0.0]}
TRANSFORM = """
import json, sys, numpy as np, keras
from ferlite.train.inputs import AffineDraw, affine_params, apply_affine
images = np.load(sys.argv[1])
d = AffineDraw(**{k: keras.ops.convert_to_tensor(np.array(v, np.float32)) for k, v in json.loads(sys.argv[2]).items()})
out = apply_affine(keras.ops.convert_to_tensor(images), affine_params(d, images.shape[1], images.shape[2]))
np.save(sys.argv[3], keras.ops.convert_to_numpy(out))
print(keras.backend.backend())
"""
GATHER = TRANSFORM.replace("apply_affine", "gather_affine")  # the gathers, on every backend


def reference_affine(images: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Bilinear resampling at (a0 x + a1 y + a2, b0 x + b1 y + b2), coordinates clamped to the image
    (edge pixels extend outwards): what every backend must compute, written in plain numpy."""
    n, h, w, _ = images.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty_like(images, dtype=np.float64)
    for i, (a0, a1, a2, b0, b1, b2, _c0, _c1) in enumerate(transforms.astype(np.float64)):
        x = np.clip(a0 * xs + a1 * ys + a2, 0, w - 1)
        y = np.clip(b0 * xs + b1 * ys + b2, 0, h - 1)
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
        fx, fy = x - x0, y - y0
        img = images[i, ..., 0].astype(np.float64)
        out[i, ..., 0] = ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
                          + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))
    return out


def _numpy_params(height: int, width: int) -> np.ndarray:
    """affine_params of DRAWS under the backend of this process, as numpy."""
    import keras

    from ferlite.train.inputs import AffineDraw, affine_params

    d = AffineDraw(**{k: keras.ops.convert_to_tensor(np.array(v, np.float32)) for k, v in DRAWS.items()})
    return keras.ops.convert_to_numpy(affine_params(d, height, width))


def test_augmentation_is_the_same_transform_on_every_backend(tmp_path):
    if len(BACKENDS) < 2:
        pytest.skip(f"one Keras backend installed ({BACKENDS}): nothing to compare")
    faces, _ = make_faces(1, seed=3)
    images = faces[:4, ..., None].astype(np.float32)
    np.save(tmp_path / "in.npy", images)
    expected = reference_affine(images, _numpy_params(*images.shape[1:3]))
    results = {}
    for backend in BACKENDS:
        for name, program in (("native", TRANSFORM), ("gather", GATHER)):
            out = tmp_path / f"{backend}-{name}.npy"
            done = subprocess.run([sys.executable, "-c", program, str(tmp_path / "in.npy"), json.dumps(DRAWS),
                                   str(out)], env=keras_env(backend), capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-2000:]
            assert done.stdout.split()[-1] == backend
            results[f"{backend}-{name}"] = np.load(out)
    assert all(np.array_equal(r[0], images[0]) for r in results.values())  # the identity draw changes nothing
    for name, result in results.items():
        # float32 sampling vs float64: within a few thousandths of a grey level; a one-pixel shift is ~10 levels.
        assert np.abs(result - expected).max() < 0.05, name
    assert np.abs(np.roll(expected, 1, axis=2) - expected).max() > 5  # the check can tell a shift


def test_augment_layer_is_identity_when_not_training():
    import keras

    from ferlite.train.inputs import Augmentation, RandomAffine

    faces, _ = make_faces(1)
    batch = faces[:3, ..., None]
    layer = RandomAffine({"shift": 0.1}, seed=0)
    assert np.array_equal(keras.ops.convert_to_numpy(layer(batch, training=False)), batch.astype(np.float32))
    moved = keras.ops.convert_to_numpy(layer(batch, training=True))
    assert moved.shape == batch.shape and not np.array_equal(moved, batch)
    assert RandomAffine.from_config(layer.get_config()).augmentation == Augmentation(shift=0.1)


def test_onecycle_rises_to_the_peak_then_anneals():
    import keras

    from ferlite.train.fit import FitConfig, learning_rate

    schedule = learning_rate(FitConfig(epochs=10, learning_rate=2e-3, schedule="onecycle", warmup=0.3), 100)
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    rate = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 150, 300, 650, 1000)]
    assert rate[0] == pytest.approx(2e-3 / 25)
    assert rate[0] < rate[1] < rate[2] == pytest.approx(2e-3)
    assert rate[2] > rate[3] > rate[4] and rate[4] < 2e-3 / 500
    assert learning_rate(FitConfig(learning_rate=1e-3), 100) == 1e-3  # plateau: a plain rate


@pytest.mark.parametrize("warmup", [0.3, 0.0])
def test_the_logged_rate_is_the_schedules_own_without_calling_it(warmup, monkeypatch):
    """RunState logs the rate every epoch from plain Python (cosine_rate): calling the schedule through Keras
    outside the compiled step leaks on JAX. The two agree at every step, past the end too."""
    import keras

    from ferlite.train.fit import FitConfig, cosine_rate, current_learning_rate, learning_rate

    schedule = learning_rate(FitConfig(epochs=10, learning_rate=2e-3, schedule="onecycle", warmup=warmup), 100)
    config = schedule.get_config()
    for step in (0, 1, 150, 299, 300, 301, 650, 999, 1000, 1500):
        keras_rate = float(keras.ops.convert_to_numpy(schedule(step)))
        assert cosine_rate(config, step) == pytest.approx(keras_rate, rel=1e-5, abs=1e-12), step
    optimizer = keras.optimizers.Adam(schedule)
    optimizer.build([keras.Variable(np.zeros(2, np.float32))])
    optimizer.iterations.assign(650)
    monkeypatch.setattr(type(schedule), "__call__", lambda *_: pytest.fail("the schedule was called"))
    assert current_learning_rate(optimizer) == pytest.approx(cosine_rate(config, 650))
    assert current_learning_rate(keras.optimizers.Adam(1e-3)) == pytest.approx(1e-3)  # plateau: the variable
    scaled = keras.optimizers.LossScaleOptimizer(optimizer)  # mixed float16 wraps the optimizer
    assert current_learning_rate(scaled) == pytest.approx(cosine_rate(config, 650))
    # Keras's TensorBoard reads the rate in this method; RateLoggingTensorBoard replaces it (a rename in Keras
    # would bring the leak back silently: this fails first).
    assert callable(getattr(keras.callbacks.TensorBoard, "_collect_learning_rate", None))


def test_devices_choose_precision_and_engine():
    assert Devices("jax", "cpu", ("cpu",)).precision == "float32"
    assert Devices("torch", "gpu", ("H200",), bfloat16=True).precision == "mixed_bfloat16"
    assert Devices("tensorflow", "gpu", ("T4",)).precision == "mixed_float16"
    assert engine(Devices("jax", "gpu", ("a", "b"), True)) == "keras.distribution.DataParallel"
    assert engine(Devices("tensorflow", "gpu", ("a", "b"))) == "tf.distribute.MirroredStrategy"
    assert "one" in engine(Devices("torch", "gpu", ("a", "b"), True))


@pytest.mark.skipif("jax" not in BACKENDS, reason="jax is not installed")
@pytest.mark.parametrize(("platform", "capability", "kind", "precision"), [
    ("gpu", "9.0", "gpu", "mixed_bfloat16"), ("cuda", "8.6", "gpu", "mixed_bfloat16"),
    ("gpu", "7.5", "gpu", "mixed_float16"), ("tpu", None, "tpu", "mixed_bfloat16"), ("cpu", None, "cpu", "float32"),
])
def test_jax_devices_are_read_as_the_gpu_box_reports_them(monkeypatch, platform, capability, kind, precision):
    """What a GPU box's JAX reports (never seen on the CPU machines that test): an H200 is compute capability
    9.0 and trains in bfloat16; a plugin's "cuda" platform is a GPU too."""
    import jax

    from ferlite.train.backend import _jax_devices

    device = type("Device", (), {"platform": platform, "device_kind": f"{platform} device",
                                 **({"compute_capability": capability} if capability else {})})()
    monkeypatch.setattr(jax, "devices", lambda: [device, device])
    found = _jax_devices()
    assert (found.kind, found.precision) == (kind, precision)
    assert found.names == (("cpu",) if kind == "cpu" else (f"{platform} device",) * 2)


def test_configured_backend_reads_keras_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert configured_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    assert configured_backend() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert configured_backend() == "torch"


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    return write_folder_set(tmp_path_factory.mktemp("data") / "set", per_class=8, subjects=8)


def _cli(args: list[str], backend: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], env=keras_env(backend), capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.skipif("jax" not in BACKENDS, reason="jax is not installed")
def test_a_jax_run_converts_and_answers_on_the_edge(crops, tmp_path):
    out = tmp_path / "run"
    trained = _cli(["fer-train", "--data", f"crops:set={crops}", "--out", str(out), "--epochs", "2",
                    "--schedule", "onecycle", "--no-cache", *TINY], "jax")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "with jax (cpu, float32)" in trained.stdout
    run = json.loads((out / "run.json").read_text())
    assert run["training"][0]["backend"] == "jax" and run["training"][0]["devices"]["kind"] == "cpu"
    history = json.loads((out / "checkpoints" / "state.json").read_text())["history"]
    assert len(history) == 2 and history[0]["learning_rate"] != history[1]["learning_rate"]
    model = tmp_path / "m.tflite"
    # fer-convert is TensorFlow's: the .keras written under JAX loads there as it is.
    converted = _cli(["fer-convert", str(out / "model.keras"), "--calibration", str(crops), "--cropped",
                      "--samples", "24", "--min-agreement", "0", "--out", str(model)], "tensorflow")
    assert converted.returncode == 0, converted.stderr[-3000:]
    answered = _cli(["fer-edge", "--model", str(model), "--source", str(crops / "happiness"),
                     "--whole-frame", "--max-frames", "3"], "tensorflow", timeout=120)
    assert answered.returncode == 0, answered.stderr[-2000:]
    lines = [json.loads(line) for line in answered.stdout.splitlines()]
    assert len(lines) == 3 and all(len(line["faces"]) == 1 for line in lines)
    assert all(line["faces"][0]["label"] in ("Angry", "Disgust", "Happy", "Neutral", "Sad", "Surprise")
               for line in lines)


@pytest.mark.skipif("torch" not in BACKENDS, reason="torch is not installed (checked on a GPU machine)")
def test_a_torch_run_writes_a_model(crops, tmp_path):
    out = tmp_path / "run"
    trained = _cli(["fer-train", "--data", f"crops:set={crops}", "--out", str(out), "--epochs", "1",
                    "--no-cache", *TINY], "torch")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (out / "model.keras").is_file() and "with torch" in trained.stdout
    converted = _cli(["fer-convert", str(out / "model.keras"), "--calibration", str(crops), "--cropped",
                      "--samples", "24", "--min-agreement", "0", "--out", str(tmp_path / "m.tflite")], "tensorflow")
    assert converted.returncode == 0, converted.stderr[-3000:]


def test_faces_travel_in_a_pack(crops, tmp_path):
    from ferlite.train.cli import main

    pack = tmp_path / "faces.ferpack"
    assert main(["--data", f"crops:set={crops}", "--pack", str(pack), "--dry-run", "--no-cache",
                 "--out", str(tmp_path / "a")]) == 0
    assert main(["--from-pack", str(pack), "--dry-run", "--out", str(tmp_path / "b")]) == 0
    before, after = ((tmp_path / side / "manifest.csv").read_text().splitlines() for side in "ab")
    assert [row.split(",")[1:] for row in before] == [row.split(",")[1:] for row in after]
    from ferlite.train.pack import read_pack

    packed = read_pack(pack)
    prepared, options = packed.prepared, packed.options
    assert options["data"] == [f"crops:set={crops}"]
    runs = [json.loads((tmp_path / side / "run.json").read_text()) for side in "ab"]
    assert runs[0]["framing"] == runs[1]["framing"] == packed.framing  # measured once, where the faces were
    assert all(not s.path.is_absolute() and str(crops) not in str(s.path) for s in prepared.samples)  # no machine path
    assert str(prepared.samples[0].path).startswith(("anger/", "disgust/", "happiness/", "neutral/"))
    assert prepared.faces.dtype == np.uint8 and prepared.faces.shape[1:] == (84, 84)


def test_pack_round_trip_is_exact(crops, tmp_path):
    from ferlite.train.data import DataSource
    from ferlite.train.labels import LabelMapper
    from ferlite.train.pack import read_pack, row_delta, undo_row_delta, write_pack
    from ferlite.train.prepare import SplitConfig, prepare

    faces = np.random.default_rng(0).integers(0, 256, (5, 84, 84), dtype=np.uint8)
    assert np.array_equal(undo_row_delta(row_delta(faces)), faces)
    sources = [DataSource.parse(f"crops:set={crops}"), DataSource.parse(f"folder:det={crops}")]
    prepared = prepare(sources[:1], LabelMapper({}), SplitConfig(), None)
    small = write_pack(tmp_path / "crops.ferpack", prepared, sources[:1], {}, {})
    back = read_pack(tmp_path / "crops.ferpack").prepared
    assert np.array_equal(back.faces, prepared.faces) and np.array_equal(back.rows, prepared.rows)
    # 48x48 crops travel at 48x48: stored as 84x84 faces (a set whose faces were searched for) they take more.
    as_found = dataclasses.replace(sources[0], whole=False)
    big = write_pack(tmp_path / "big.ferpack", prepared, [as_found], {}, {})
    assert np.array_equal(read_pack(tmp_path / "big.ferpack").prepared.faces, prepared.faces)
    assert small < 0.6 * big


@pytest.mark.parametrize("content", [b"", b"not xz at all", b"\xfd7zXZ\x00 truncated"])
def test_a_bad_pack_exits_2_with_one_line(tmp_path, capsys, content):
    from ferlite.train.cli import main

    pack = tmp_path / "bad.ferpack"
    pack.write_bytes(content)
    assert main(["--from-pack", str(pack), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.ferpack" in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "run").exists()
    assert main(["--from-pack", str(tmp_path / "missing.ferpack"), "--out", str(tmp_path / "run")]) == 2
    assert main(["--from-pack", str(pack), "--data", "crops=/x", "--out", str(tmp_path / "run")]) == 2


def test_a_pack_that_cannot_be_written_exits_2_with_one_line(crops, tmp_path, capsys):
    from ferlite.train.cli import main

    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["--data", f"crops:set={crops}", "--pack", str(folder), "--dry-run", "--no-cache",
                 "--out", str(tmp_path / "a")]) == 2
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["--data", f"crops:set={crops}", "--pack", str(blocked / "x.ferpack"), "--dry-run", "--no-cache",
                 "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("fer-train: error:")]
    assert len(errors) == 2 and "is a folder" in errors[0] and "cannot write the face pack" in errors[1], err
    assert "Traceback" not in "\n".join(err)


def test_a_quick_try_needs_no_data(tmp_path):
    """`fer-train --data synthetic` on a fresh machine: the generated set is written once, then the whole
    chain runs and prints what a real run prints."""
    env = {**keras_env("tensorflow"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = [str(Path(sys.executable).parent / "fer-train"), "--data", "synthetic", "--epochs", "1", *TINY]
    done = subprocess.run([*args, "--out", str(tmp_path / "try")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for line in ("data: ", "model: hybrid CNN", "trained 1 epochs", "val: accuracy", "report: "):
        assert line in done.stdout, done.stdout
    folder = tmp_path / "cache" / "ferlite" / "synthetic-v1"
    assert len(list(folder.glob("*/*.png"))) == 240 and str(folder) in done.stderr
    missing = subprocess.run([*args[:2], f"ferplus={tmp_path / 'ferplus'}", "--out", str(tmp_path / "r")],
                             env=env, capture_output=True, text=True, timeout=120)
    err = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and len(err) == 1 and "no such folder" in err[0] and "ferplus" in err[0], err


@pytest.mark.parametrize("command", ["fer-train", "fer-convert"])
def test_version_of_the_workstation_commands(command):
    from importlib.metadata import version

    done = subprocess.run([str(Path(sys.executable).parent / command), "--version"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == f"{command} {version('ferlite')}\n", done.stderr


ENGINE = """
import os, sys
import numpy as np
backend = os.environ["KERAS_BACKEND"]
if backend == "tensorflow":  # two logical CPUs: MirroredStrategy with two replicas
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from ferlite.train.backend import Devices, distribution
from ferlite.train.fit import _compile
from ferlite.train.inputs import Augmentation, as_input, training_model
from ferlite.train.model import Architecture, build_model
from ferlite.train.synthetic import make_faces

if backend == "tensorflow":
    scope = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope()
else:  # XLA_FLAGS gives JAX two host devices; distribution() spreads the batch over both
    scope = distribution(Devices("jax", "gpu", ("cpu:0", "cpu:1"), True))
with scope:
    model = training_model(build_model(Architecture((4, 4, 8, 8, 8), (8, 8), 0.1)), Augmentation(), 0)
    _compile(model, 1e-3)
    faces, labels = make_faces(8)
    history = model.fit(as_input(faces), keras.utils.to_categorical(labels, 6), batch_size=16, epochs=2,
                        verbose=0, sample_weight=np.ones(len(labels), np.float32))
    if backend == "jax":
        print("devices", len(keras.distribution.distribution().device_mesh.devices.ravel()))
    else:
        print("devices", tf.distribute.get_strategy().num_replicas_in_sync)
print("loss", *history.history["loss"])
"""


@pytest.mark.parametrize("backend", [b for b in ("tensorflow", "jax") if b in BACKENDS])
def test_the_training_model_trains_on_two_devices(backend):
    """The backend's own engine for several devices (MirroredStrategy, DataParallel), on two CPU devices."""
    env = {**keras_env(backend), "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", ENGINE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert lines["devices"] == "2"
    assert all(np.isfinite(float(v)) for v in lines["loss"].split())


MIXED = """
import sys
import ferlite.train.fit as fit
from ferlite.train.backend import Devices
fit.find_devices = lambda: Devices("jax", "gpu", ("a bfloat16 GPU",), bfloat16=True)  # what a GPU box reports
from ferlite.train.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif("jax" not in BACKENDS, reason="jax is not installed")
def test_mixed_precision_trains_and_saves_a_float32_model(crops, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", MIXED, "--data", f"crops:set={crops}", "--epochs", "1",
                           "--no-cache", "--out", str(out), *TINY], env=keras_env("jax"), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mixed_bfloat16" in done.stdout
    assert json.loads((out / "run.json").read_text())["training"][0]["devices"]["precision"] == "mixed_bfloat16"
    check = ("import keras, sys, ferlite.train.model; m = keras.models.load_model(sys.argv[1]); "
             "print({str(w.dtype) for w in m.weights}, {l.dtype_policy.name for l in m.layers})")
    read = subprocess.run([sys.executable, "-c", check, str(out / "model.keras")], env=keras_env("jax"),
                          capture_output=True, text=True, timeout=120)
    assert read.stdout.strip() == "{'float32'} {'float32'}", read.stderr[-2000:]


def test_main_leaves_no_log_handler_behind(crops, tmp_path):
    """fer-train's main() in a process that goes on (a notebook, a test) takes its stderr and train.log handlers
    away again: none is left on a stream that may close, no train.log stays open."""
    import logging

    from ferlite.train.cli import main

    before = list(logging.getLogger().handlers)
    assert main(["--data", f"crops:set={crops}", "--no-cache", "--dry-run", "--out", str(tmp_path / "a")]) == 0
    assert main(["--data", "crops:set=/no/such/folder", "--out", str(tmp_path / "b")]) == 2
    assert logging.getLogger().handlers == before


def test_read_pack_refuses_what_is_not_a_pack_file_without_waiting(tmp_path):
    from ferlite.train.errors import DataError
    from ferlite.train.pack import read_pack

    os.mkfifo(tmp_path / "fifo.ferpack")  # no writer: an ordinary open() would wait forever
    with pytest.raises(DataError, match="fifo.ferpack: cannot read the face pack .*FIFO"):
        read_pack(tmp_path / "fifo.ferpack")
    with pytest.raises(DataError, match="cannot read the face pack .*directory"):
        read_pack(tmp_path)


@pytest.mark.skipif("jax" not in BACKENDS, reason="jax is not installed")
def test_the_gpu_recipe_runs_from_a_pack_and_resumes(crops, tmp_path):
    """scripts/gpu_retrain.sh is the one command a GPU box runs (docs/model.md): it must work from a pack,
    without ferlite installed (PYTHONPATH=src) and without TensorFlow (hidden here, tensorboard left visible, as on
    such a box), and continue a run with RESUME=1. Here on the CPU, two epochs."""
    from ferlite.train.cli import main

    pack = tmp_path / "faces.ferpack"
    assert main(["--data", f"crops:ckplus={crops}", "--data", f"crops:ckplus48={crops}", "--pack", str(pack),
                 "--dry-run", "--no-cache", "--out", str(tmp_path / "pack")]) == 0
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_retrain.sh"
    env = {**keras_env("jax"), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PACK": str(pack), "BATCH": "16", "RUN": str(tmp_path / "run"), "OUT": str(tmp_path / "out"),
           "PYTHONPATH": str(Path(__file__).parent / "without_tensorflow"), "WHEELS": str(tmp_path / "no-wheels")}
    env.pop("RESUME", None)
    first = subprocess.run(["bash", str(script)], env={**env, "EPOCHS": "1"}, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    results = tmp_path / "out"
    assert sorted(p.name for p in results.iterdir()) == ["history.csv", "metrics.json", "model.keras", "run.json",
                                                         "train.log"]
    run = json.loads((results / "run.json").read_text())
    assert run["training"][0]["backend"] == "jax"
    assert run["options"]["schedule"] == "onecycle" and run["options"]["targets"] == "votes"
    again = subprocess.run(["bash", str(script)], env={**env, "EPOCHS": "2", "RESUME": "1"}, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len((results / "history.csv").read_text().splitlines()) == 1 + 2  # header, epoch 1 kept, epoch 2 added
    # DEADLINE_S: stopped by SIGTERM after an epoch, the results still written and copied (a time-limited call).
    timed = subprocess.run(["bash", str(script)], env={**env, "EPOCHS": "10000", "DEADLINE_S": "30",
                                                       "RUN": str(tmp_path / "timed"), "OUT": str(tmp_path / "t")},
                           capture_output=True, text=True, timeout=600)
    assert timed.returncode == 0, timed.stderr[-3000:]
    assert json.loads((tmp_path / "t" / "run.json").read_text())["training"][-1]["stopped_by"] == "SIGTERM"
    assert 2 <= len((tmp_path / "t" / "history.csv").read_text().splitlines()) < 10000
    for deadline in ("abc", "0", "-5", "1e9", "nan", "10\n20"):
        bad = subprocess.run(["bash", str(script)], env={**env, "DEADLINE_S": deadline}, capture_output=True,
                             text=True, timeout=60)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "DEADLINE_S" in bad.stderr, (deadline, bad)
    missing = subprocess.run(["bash", str(script)], env={**env, "PACK": str(tmp_path / "none.ferpack")},
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "none.ferpack" in missing.stderr
