"""fer-train's settings: one frozen TrainConfig from defaults, a TOML file and the flags that were typed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from helpers import needs_training

from ferlite.edge.contract.errors import ConfigError
from ferlite.train.cli import main
from ferlite.train.config import DEFAULTS, NOT_SAVED, TrainConfig, build_parser, load_config, parse_args, resumed


def _toml(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@needs_training
def test_unknown_toml_key_exits_2_with_one_line_naming_key_and_file(tmp_path, capsys):
    config = _toml(tmp_path, "epochs = 3\nlearning_rte = 0.1\n", "typo.toml")
    out = tmp_path / "run"
    assert main(["--config", str(config), "--data", "crops=/x", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("fer-train: error:") and "typo.toml" in err[0] and "learning_rte" in err[0]
    assert "Traceback" not in err[0] and not out.exists()


@needs_training
@pytest.mark.parametrize(("text", "setting"), [
    ("batch-size = 'big'\n", "batch_size"), ("epochs = 0\n", "epochs"), ("split = 'sideways'\n", "split"),
    ("filters = 'a,b'\n", "filters"), ("val_fraction = 0.6\ntest_fraction = 0.5\n", "fraction"),
    ("data = [1]\n", "data"), ("out = ''\n", "out"), ("epochs = [\n", "not valid TOML"),
])
def test_bad_toml_values_exit_2_naming_file_and_setting(tmp_path, capsys, text, setting):
    config = _toml(tmp_path, text)
    assert main(["--config", str(config), "--data", "crops=/x", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run.toml" in err[0] and setting in err[0], err


def test_toml_values_are_used_when_no_flag_names_them(tmp_path):
    path = _toml(tmp_path, 'epochs = 3\nbatch-size = 16\nno_cache = true\nfilters = [4, 4, 8, 8, 8]\n'
                           'out = "runs/a"\ntargets = "majority"\n')
    config = parse_args(["--config", str(path)])
    assert (config.epochs, config.batch_size, config.no_cache) == (3, 16, True)
    assert config.filters == (4, 4, 8, 8, 8) and config.out == Path("runs/a") and config.targets == "majority"


def test_a_flag_overrides_only_what_was_typed(tmp_path):
    path = _toml(tmp_path, 'epochs = 3\nbatch_size = 16\nlearning-rate = 0.01\ndata = ["crops:a=/x"]\n')
    config = parse_args(["--config", str(path), "--epochs", "5", "--data", "crops:b=/y"])
    assert config.epochs == 5  # typed: the flag wins
    assert (config.batch_size, config.learning_rate) == (16, 0.01)  # not typed: the file's values stay
    assert config.data == ("crops:a=/x", "crops:b=/y")  # list flags add to the file's list
    untouched = {"epochs", "batch_size", "learning_rate", "data"}
    assert all(getattr(config, name) == DEFAULTS[name] for name in DEFAULTS if name not in untouched)
    assert parse_args(["--epochs", "5"]) == dataclasses.replace(TrainConfig(), epochs=5)


def test_config_is_frozen_typed_and_checked_in_code_too():
    config = parse_args(["--filters", "4,4,8,8,8", "--out", "r", "--cache", "c", "--repeat", "a=2"])
    assert config.filters == (4, 4, 8, 8, 8) and config.out == Path("r") and config.cache == Path("c")
    assert config.repeat == ("a=2",)
    with pytest.raises(ConfigError, match="select"):
        TrainConfig(select="best")
    with pytest.raises(ConfigError, match="command line: .*dropout"):
        load_config(None, {"dropout": 1.5})


def test_every_flag_is_a_setting_with_its_one_default_in_the_help():
    actions = {a.dest: a for a in build_parser()._actions}  # the test may look inside argparse
    assert set(actions) - {"help", "version", "config_file"} == set(DEFAULTS)
    for name in ("epochs", "batch_size", "seed", "test_fraction", "select", "progress_every", "dropout"):
        assert str(actions[name].help).endswith(f"(default {DEFAULTS[name]})"), name
    assert DEFAULTS["epochs"] == TrainConfig().epochs == 40


def test_resume_takes_the_saved_options_except_typed_epochs(tmp_path):
    saved = dataclasses.replace(TrainConfig(), epochs=3, seed=7, filters=(4, 4, 8, 8, 8)).options()
    assert not set(saved) & NOT_SAVED and json.loads(json.dumps(saved)) == saved
    now = parse_args(["--out", "r", "--resume", "--epochs", "9", "--seed", "1", "--no-cache"])
    config = resumed(now, saved, ["out", "resume", "epochs", "seed", "no_cache"], "run.json")
    assert (config.epochs, config.seed, config.filters) == (9, 7, (4, 4, 8, 8, 8))
    assert config.no_cache and config.out == Path("r")  # how this invocation runs is not saved
    assert resumed(now, saved, ["out", "resume"], "run.json").epochs == 3
    old = {**saved, "filters": "4,4,8,8,8", "dense": None}  # runs written before the typed config
    assert resumed(now, old, [], "run.json").filters == (4, 4, 8, 8, 8)
    with pytest.raises(ConfigError, match="run.json: unknown setting.*out"):
        resumed(now, {**saved, "out": "elsewhere"}, [], "run.json")
