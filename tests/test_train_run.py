"""fer-train end to end on a few dozen synthetic faces: report files, metrics, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

# An edge-only install (pip install '.[edge,dev]') has no Keras: fer-train's runs skip, not error.
keras = pytest.importorskip("keras", reason="fer-train needs the training extra (pip install -e '.[train]')")

import numpy as np  # noqa: E402
from train_fixtures import write_ckplus, write_folder_set  # noqa: E402

from ferlite.edge.contract import LABELS  # noqa: E402
from ferlite.train.cli import main  # noqa: E402
from ferlite.train.report import compute_metrics, predict_labels  # noqa: E402
from ferlite.train.splits import read_manifest  # noqa: E402

TINY = ["--filters", "4,4,8,8,8", "--dense", "8,8", "--batch-size", "16", "--seed", "1"]
REPORT_FILES = ("model.keras", "metrics.json", "accuracy.png", "loss.png", "confusion-test.png", "confusion-val.png",
                "report.md", "manifest.csv", "run.json", "history.csv", "train.log")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_folder_set(root / "set", per_class=8, subjects=8)
    write_ckplus(root / "ck", subjects=4)
    return root


@pytest.fixture(scope="module")
def run(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["--data", f"crops:set={data_root / 'set'}", "--data", f"ckplus:ck={data_root / 'ck'}",
                 "--faces", "ck=whole", "--test-fraction", "0.2", "--cache",
                 str(data_root / "cache"), "--out", str(out), "--epochs", "1", *TINY])
    assert code == 0
    return out


def test_one_epoch_writes_every_report_file(run, capsys):
    for name in REPORT_FILES:
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["primary"] == "test"
    assert metrics["model"]["params"] > 0
    assert metrics["training"]["epochs_run"] == 1
    report = (run / "report.md").read_text()
    for image in ("accuracy.png", "loss.png", "confusion-test.png"):
        assert f"]({image})" in report
    assert metrics["counts"]["skipped"] == {"unreadable": 1}
    assert metrics["counts"]["dropped_classes"]["set: class fear"] == 3


def test_metrics_agree_with_confusion_matrix(run):
    metrics = json.loads((run / "metrics.json").read_text())
    manifest = read_manifest(run / "manifest.csv")
    for side, result in metrics["sides"].items():
        matrix = np.array(result["confusion"])
        expected_n = sum(1 for r in manifest if r["side"] == side and r["status"] == "ok")
        assert matrix.sum() == result["n"] == expected_n
        assert np.trace(matrix) / matrix.sum() == pytest.approx(result["accuracy"])
        for i, label in enumerate(LABELS):
            assert result["per_class"][label]["support"] == matrix[i].sum()
        total = sum(sub["n"] for sub in result["per_dataset"].values())
        assert total == result["n"]


@pytest.mark.parametrize("which", ["trained", "linear"])
def test_metrics_are_invariant_to_shuffling_the_evaluation_input(run, which):
    from ferlite.train.synthetic import make_faces

    keras.utils.set_random_seed(3)
    # The 1-epoch model may predict one class for all; a random linear model never does.
    model = (keras.models.load_model(run / "model.keras") if which == "trained" else
             keras.Sequential([keras.Input((84, 84, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(6, activation="softmax")]))
    faces, labels = make_faces(10, seed=5)
    datasets = np.array(["a", "b"] * (len(labels) // 2))
    predicted = predict_labels(model, faces)
    reference = compute_metrics(labels, predicted, datasets)
    order = np.random.default_rng(0).permutation(len(labels))
    shuffled = compute_metrics(labels[order], predict_labels(model, faces[order]), datasets[order])
    assert shuffled == reference
    matrix = np.array(shuffled["confusion"])
    assert np.trace(matrix) / matrix.sum() == pytest.approx(shuffled["accuracy"])
    assert shuffled["accuracy"] == pytest.approx(np.mean(predicted == labels))
    if which == "linear":
        # Predictions misaligned with their faces change the matrix: the check can fail.
        assert len(set(predicted.tolist())) > 1
        wrong = compute_metrics(labels, predict_labels(model, faces[order]), datasets)
        assert wrong["confusion"] != reference["confusion"]


def test_no_subject_on_two_sides(run):
    sides: dict[str, set[str]] = {}
    for row in read_manifest(run / "manifest.csv"):
        if row["subject"] and row["status"] == "ok":
            sides.setdefault(row["subject"], set()).add(row["side"])
    assert sides and all(len(s) == 1 for s in sides.values())
    assert {side for s in sides.values() for side in s} == {"train", "val", "test"}


def test_resume_continues_from_the_last_epoch(run, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(run, out)
    state_before = json.loads((out / "checkpoints" / "state.json").read_text())
    before = keras.models.load_model(out / "checkpoints" / "last.keras")
    steps = int(before.optimizer.iterations.numpy())
    assert main(["--out", str(out), "--resume", "--epochs", "2"]) == 0
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    assert state["history"][0] == state_before["history"][0]
    after = keras.models.load_model(out / "checkpoints" / "last.keras")
    assert int(after.optimizer.iterations.numpy()) == 2 * steps  # optimizer state carried on
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["epochs_run"] == 2
    assert len((out / "history.csv").read_text().strip().splitlines()) == 3


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    assert main(["--data", f"crops={tmp_path / 'missing'}", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]
    assert main(["--data", "crops=/x"]) == 2  # no --out
    assert main(["--out", str(tmp_path / "nothing"), "--resume"]) == 2
    config = tmp_path / "c.toml"
    config.write_text("epoks = 3\n")
    assert main(["--config", str(config), "--out", str(tmp_path / "r")]) == 2


def test_real_data_sample(shared_data, tmp_path):
    """50 real crops of CK+ (hugoiwnl) and FER2013 through a dry run and a tiny epoch."""
    rng = np.random.default_rng(0)
    for name in ("ckplus48_hugoiwnl", "fer2013"):
        src = shared_data / name
        if not src.is_dir():
            pytest.skip(f"{src} not present")
        files = sorted(src.glob("*/*.*g"))
        for i in rng.choice(len(files), 25, replace=False):
            target = tmp_path / name / files[i].parent.name / files[i].name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(files[i], target)
    out = tmp_path / "run"
    code = main(["--data", f"crops:ck={tmp_path / 'ckplus48_hugoiwnl'}",
                 "--data", f"crops:fer={tmp_path / 'fer2013'}", "--no-cache",
                 "--out", str(out), "--epochs", "1", *TINY])
    assert code == 0
    rows = [r for r in read_manifest(out / "manifest.csv") if r["status"] == "ok"]
    fer = [r for r in rows if r["dataset"] == "fer"]
    for row in fer:
        prefix = Path(row["path"]).name.split("_")[0]
        assert row["side"] == {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}[prefix]
    assert all(r["subject"].startswith("S") for r in rows if r["dataset"] == "ck")


def test_dry_run_writes_manifest_and_test_subjects(data_root, tmp_path, capsys):
    listing = tmp_path / "held-out.txt"
    out = tmp_path / "dry"
    assert main(["--data", f"crops:set={data_root / 'set'}", "--test-fraction", "0.3",
                 "--write-test-subjects", str(listing), "--no-cache", "--dry-run",
                 "--out", str(out)]) == 0
    assert not (out / "model.keras").exists()
    held_out = set(listing.read_text().split())
    rows = read_manifest(out / "manifest.csv")
    assert held_out == {r["subject"] for r in rows if r["side"] == "test"}
    assert held_out and not held_out & {r["subject"] for r in rows if r["side"] != "test"}
    # The list fixes the split: a second run with it puts exactly those subjects on test.
    again = tmp_path / "again"
    assert main(["--data", f"crops:set={data_root / 'set'}", "--test-subjects", str(listing),
                 "--seed", "9", "--no-cache", "--dry-run", "--out", str(again)]) == 0
    rows = read_manifest(again / "manifest.csv")
    assert held_out == {r["subject"] for r in rows if r["side"] == "test"}


def test_repeat_oversamples_only_the_named_set():
    from ferlite.train.cli import repeat_index

    labels = np.array([0, 1, 2, 3, 4])
    names = ["a", "b", "a", "b", "b"]
    index = repeat_index(labels, names, {("a", None): 3})
    assert sorted(labels[index].tolist()) == [0, 0, 0, 1, 2, 2, 2, 3, 4]
    assert [names[i] for i in index].count("a") == 6
    # NAME/LABEL wins over NAME: label 2 of set a x5, the rest of a x2.
    by_label = labels[repeat_index(labels, names, {("a", None): 2, ("a", LABELS[2]): 5})]
    assert sorted(by_label.tolist()) == [0, 0, 1, 2, 2, 2, 2, 2, 3, 4]
    assert repeat_index(labels, names, {}).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("entry", ["nope=2", "set=0", "set=x", "set", "set/Fear=2"])
def test_bad_repeat_exits_2_before_decoding(data_root, tmp_path, capsys, entry):
    code = main(["--data", f"crops:set={data_root / 'set'}", "--repeat", entry,
                 "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--repeat" in err[0]


def test_init_finetune_with_smoothing_and_dataset_mean(run, data_root, tmp_path, capsys):
    """--init starts from a trained model; --select dataset-mean picks by per-set accuracy."""
    out = tmp_path / "ft"
    data = ["--data", f"crops:set={data_root / 'set'}", "--data", f"ckplus:ck={data_root / 'ck'}",
            "--faces", "ck=whole", "--cache", str(data_root / "cache"), "--epochs", "1"]
    code = main([*data, *TINY, "--init", str(run / "model.keras"), "--label-smoothing", "0.1",
                 "--select", "dataset-mean", "--repeat", "ck=2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert "val_dataset_mean" in state["history"][0]
    assert state["best"] == state["history"][0]["val_dataset_mean"]
    options = json.loads((out / "run.json").read_text())["options"]
    assert options["label_smoothing"] == 0.1 and options["repeat"] == ["ck=2"]
    assert main(["--out", str(out), "--resume", "--epochs", "2"]) == 0  # smoothed loss reloads
    wrong = tmp_path / "wrong"
    code = main([*data, *TINY, "--filters", "4,4,8,8,16", "--init", str(run / "model.keras"),
                 "--out", str(wrong)])
    assert code == 2
    assert "another architecture" in capsys.readouterr().err


def test_missing_init_model_exits_2_before_decoding(data_root, tmp_path, capsys):
    code = main(["--data", f"crops:set={data_root / 'set'}", "--init", str(tmp_path / "no.keras"),
                 "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "init" in err[0] and "no.keras" in err[0] and "No such file" in err[0], err
