from __future__ import annotations

import pytest

from ferlite.edge.cli import build_parser, main
from ferlite.edge.config import ConfigError, EdgeConfig, load_config


def _write(tmp_path, text):
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_toml_values_and_only_given_flags_override(tmp_path):
    path = _write(tmp_path, 'source = "/dev/video1"\nthreads = 3\nsocket = "/tmp/x.sock"\nsocket_mode = "640"\n')
    args = build_parser().parse_args(["--threads", "1", "--config", str(path)])
    from ferlite.edge.cli import _overrides

    config = load_config(path, _overrides(args))
    assert config.threads == 1  # the flag wins
    assert config.source == "/dev/video1"  # the file's value stays: --source was not given
    assert config.socket == "/tmp/x.sock"
    assert config.socket_mode == 0o640
    assert config.stdout is True


def test_unknown_key_rejected(tmp_path):
    path = _write(tmp_path, "sauce = 'demo'\n")
    with pytest.raises(ConfigError, match=r"edge.toml: unknown setting\(s\) sauce"):
        load_config(path, {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threads = 'two'\n", "threads must be int"),
        ("threads = 0\n", "threads must be at least 1"),
        ("scale_factor = 1.0\n", "scale_factor must be above 1.0"),
        ("loop = 1\n", "loop must be bool"),
        ("log_level = 'LOUD'\n", "log_level"),
        ("source = [1\n", "not valid TOML"),
    ],
)
def test_bad_values_rejected_naming_file_and_setting(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, {})
    assert "edge.toml" in str(info.value)


def test_flags_override_only_what_was_typed(tmp_path):
    """A TOML value stays unless a flag names the same setting; everything else keeps its one default."""
    path = _write(tmp_path, "min_size = 64\nsmooth_window = 3\n")
    config = load_config(path, {"smooth_window": 7})
    assert (config.min_size, config.smooth_window) == (64, 7)
    assert config.max_faces == EdgeConfig().max_faces


def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys):
    path = _write(tmp_path, "sauce = 1\n")
    assert main(["--config", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fer-edge:") and "sauce" in err[-1]


def test_cli_missing_config_file(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in capsys.readouterr().err


def test_check_config_prints_effective_config(tmp_path, tiny_model, capsys):
    path = _write(tmp_path, "threads = 2\nmax_faces = 3\n")
    assert main(["--config", str(path), "--model", str(tiny_model), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "threads = 2" in out and "max_faces = 3" in out and "# config OK" in out


def test_detection_settings_are_flags_that_override_only_what_was_typed(tmp_path):
    """--min-size, --min-neighbors, --flip/--no-flip, --smooth-window: the config's keys as flags."""
    from ferlite.edge.cli import _overrides

    def effective(argv, toml=None):
        path = _write(tmp_path, toml) if toml is not None else None
        return load_config(path, _overrides(build_parser().parse_args(argv)))

    config = effective(["--min-size", "64", "--min-neighbors", "3", "--flip", "--smooth-window", "1"])
    assert (config.min_size, config.min_neighbors, config.flip, config.smooth_window) == (64, 3, True, 1)
    assert effective([]) == EdgeConfig()  # nothing typed: every default
    toml = "min_size = 30\nmin_neighbors = 7\nflip = true\nsmooth_window = 9\n"
    config = effective(["--no-flip", "--min-size", "40"], toml)
    assert (config.min_size, config.min_neighbors, config.flip, config.smooth_window) == (40, 7, False, 9)
    assert effective(["--flip", "--no-flip"]).flip is False  # the last one typed wins


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--min-size", "0"], "min_size must be at least 1"),
        (["--min-neighbors", "101"], "min_neighbors must be at most 100"),
        (["--smooth-window", "0"], "smooth_window must be at least 1"),
        (["--min-size", "big"], "--min-size: invalid int value: 'big'"),
        (["--smooth-window", "2.5"], "--smooth-window: invalid int value"),
        (["--flip=yes"], "--flip: ignored explicit argument"),
    ],
)
def test_bad_detection_flags_exit_2_with_one_line_naming_the_setting(argv, says, capsys):
    try:
        code = main([*argv, "--check-config"])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fer-edge: ") and says in err, err
