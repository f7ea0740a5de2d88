"""Ctrl-C and SIGTERM in fer-train and fer-convert (ferlite.train.stopping): the first signal while training
ends the run after its epoch with everything written; a second, or one at any other time, stops at once with
one line, no traceback, exit 128 + the signal's number."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("keras")

from train_fixtures import TINY, keras_env, write_folder_set  # noqa: E402

from ferlite.train.stopping import StopRequests, stop_requests  # noqa: E402

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    return write_folder_set(tmp_path_factory.mktemp("data") / "set", per_class=6, subjects=6)


def _sigint_as_usual() -> None:
    """A test run started in the background of a non-interactive shell ignores SIGINT, and so would every
    process it starts (fer-train keeps an ignored signal ignored): the commands under test get Python's own."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def sigint_as_usual():
    before = signal.getsignal(signal.SIGINT)
    _sigint_as_usual()
    yield
    signal.signal(signal.SIGINT, before)


def _training(crops: Path, out: Path) -> subprocess.Popen[bytes]:
    """A fer-train run of 10,000 short epochs (JAX on the CPU), once its first epoch is checkpointed; its stdout
    and stderr go to files beside `out` (`_output`)."""
    env = keras_env("jax")
    with (out.parent / "stdout.txt").open("wb") as stdout, (out.parent / "stderr.txt").open("wb") as stderr:
        proc = subprocess.Popen([str(BIN / "fer-train"), "--data", f"crops:set={crops}", "--epochs", "10000",
                                 "--schedule", "onecycle", "--no-cache", "--out", str(out), *TINY],
                                env=env, stdout=stdout, stderr=stderr, preexec_fn=_sigint_as_usual)
    _wait_until(lambda: (out / "checkpoints" / "state.json").is_file(), proc, out, "no epoch finished")
    return proc


def _output(out: Path) -> tuple[str, str]:
    """What the run into `out` has written so far: (stdout, stderr)."""
    stdout, stderr = (out.parent / f"{name}.txt" for name in ("stdout", "stderr"))
    return stdout.read_text(errors="replace"), stderr.read_text(errors="replace")


def _wait_until(done: Callable[[], bool], proc: subprocess.Popen[bytes], out: Path, what: str) -> None:
    """Poll `done` while the run goes on; killed (and the test failed) after 300 s."""
    deadline = time.monotonic() + 300
    while not done():
        assert proc.poll() is None, f"{what}: it ended: {_output(out)[1][-3000:]}"
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{what} in 300 s: {_output(out)[1][-3000:]}")
        time.sleep(0.02)


def _finish(proc: subprocess.Popen[bytes], out: Path) -> tuple[str, str]:
    """Its output once it ends; killed (and the test failed) if it does not end within 300 s."""
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("fer-train did not stop within 300 s of the signal") from None
    return _output(out)


def test_a_first_signal_ends_training_after_its_epoch_with_everything_written(crops, tmp_path):
    out = tmp_path / "run"
    proc = _training(crops, out)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = _finish(proc, out)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "SIGTERM: stopping after this epoch" in stderr
    stopped = [line for line in stdout.splitlines() if line.startswith("stopped by SIGTERM after epoch")]
    assert len(stopped) == 1 and "of 10000" in stopped[0] and "--resume continues" in stopped[0], stdout
    epochs = json.loads((out / "metrics.json").read_text())["training"]["epochs_run"]
    assert 1 <= epochs < 10000 and (out / "model.keras").is_file() and (out / "report.md").is_file()
    assert json.loads((out / "run.json").read_text())["training"][-1]["stopped_by"] == "SIGTERM"
    history = json.loads((out / "checkpoints" / "state.json").read_text())["history"]
    assert len(history) == epochs  # the epoch under way was finished and checkpointed, not cut
    env = keras_env("jax")
    resumed = subprocess.run([str(BIN / "fer-train"), "--out", str(out), "--resume", "--epochs", str(epochs + 1)],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"trained {epochs + 1} epochs" in resumed.stdout


def test_a_second_signal_stops_at_once_with_one_line(crops, tmp_path):
    out = tmp_path / "run"
    proc = _training(crops, out)
    proc.send_signal(signal.SIGINT)
    # The second once the first was handled, so that it is a second: sent at a fixed delay, it could come after
    # the epochs (0.1 s each on a fast CPU) and find a run that was already ending as the first asked.
    _wait_until(lambda: "SIGINT: stopping after this epoch" in _output(out)[1], proc, out, "no notice of the first")
    proc.send_signal(signal.SIGINT)
    _, stderr = _finish(proc, out)
    assert proc.returncode == 128 + signal.SIGINT, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("fer-train: stopped by SIGINT; the last finished epoch's checkpoint is kept"), last
    assert (out / "checkpoints" / "state.json").is_file()


def test_a_signal_before_training_removes_the_run_folder_it_made(crops, tmp_path, monkeypatch, capsys):
    """A real SIGTERM, through the real handler, while the run reads its data."""
    from ferlite.train import cli

    def reading(config, requests):
        config.run_folder.mkdir(parents=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises in this thread first
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(cli, "run", reading)
    out = tmp_path / "run"
    assert cli.main(["--data", f"crops:set={crops}", "--out", str(out)]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"fer-train: stopped by SIGTERM; nothing kept ({out} removed)", err
    assert not out.exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back


def test_fer_convert_stopped_says_one_line_and_leaves_the_model_as_it_was(tmp_path, monkeypatch, capsys,
                                                                         sigint_as_usual):
    from ferlite.convert import cli

    def converting(args, requests):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        raise AssertionError("SIGINT did not stop the conversion")

    monkeypatch.setattr(cli, "convert_and_verify", converting)
    out = tmp_path / "m.tflite"
    out.write_bytes(b"the model before")
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"")
    assert cli.main([str(keras_file), "--out", str(out)]) == 128 + signal.SIGINT
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"fer-convert: stopped by SIGINT; {out} left as it was"
    assert out.read_bytes() == b"the model before"


def _signal_lost(sig: signal.Signals) -> None:
    """`sig` to this process, its handler's KeyboardInterrupt swallowed, as native code that clears errors does
    (numpy's array coercion inside Keras's per-batch log conversion was seen losing it)."""
    try:
        os.kill(os.getpid(), sig)
        time.sleep(0.5)  # the handler runs here
    except KeyboardInterrupt:
        return
    raise AssertionError(f"{sig.name} did not reach the handler")


def test_a_second_signal_whose_raise_was_lost_still_stops_training_at_the_next_batch(crops, tmp_path,
                                                                                    monkeypatch, capsys):
    from ferlite.train import cli, fit

    batches: list[int] = []

    def losing_the_second(self, batch, logs=None):
        batches.append(batch)
        if len(batches) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the first: stop after this epoch
            time.sleep(0.5)
            _signal_lost(signal.SIGTERM)  # the second: now, but its raise is lost

    monkeypatch.setattr(fit.ProgressLog, "on_train_batch_end", losing_the_second)
    out = tmp_path / "run"
    status = cli.main(["--data", f"crops:set={crops}", "--epochs", "3", "--no-cache",
                       "--out", str(out), *TINY, "--batch-size", "4"])  # 8 batches an epoch
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 128 + signal.SIGTERM, err[-5:]
    assert err[-1].startswith("fer-train: stopped by SIGTERM; "), err[-5:]
    assert len(batches) == 1  # stopped at the batch, not at the end of the epoch (8 batches)


def test_fer_convert_stopped_by_a_signal_whose_raise_was_lost_leaves_the_model_as_it_was(tmp_path, monkeypatch,
                                                                                         capsys):
    from ferlite.convert import cli

    loaded: list[Path] = []

    def loading(path):  # the first long step; a real SIGTERM arrives and its raise is lost
        loaded.append(path)
        _signal_lost(signal.SIGTERM)
        return object()

    monkeypatch.setattr(cli, "_load_model", loading)
    out = tmp_path / "m.tflite"
    out.write_bytes(b"the model before")
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"")
    faces = tmp_path / "faces"
    faces.mkdir()
    status = cli.main([str(keras_file), "--calibration", str(faces), "--out", str(out)])
    assert loaded and status == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"fer-convert: stopped by SIGTERM; {out} left as it was"
    assert out.read_bytes() == b"the model before"


def test_stop_requests_wait_for_the_epoch_only_the_first_time():
    requests = StopRequests()
    with pytest.raises(KeyboardInterrupt):
        requests.handle(signal.SIGTERM, None)  # not training: at once
    requests = StopRequests()
    requests.training = True
    requests.handle(signal.SIGINT, None)
    assert requests.stop_after_epoch is signal.SIGINT
    requests.check()  # the first only asks for the end of the epoch
    with pytest.raises(KeyboardInterrupt):
        requests.handle(signal.SIGTERM, None)
    assert requests.last is signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):
        requests.check()  # and again wherever it is asked: the handler's own raise can be lost


def test_an_ignored_signal_stays_ignored():
    """A background job of a non-interactive shell starts with SIGINT ignored: fer-train keeps it so."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_requests():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
