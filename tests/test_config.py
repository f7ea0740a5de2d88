"""fer-edge's settings: the TOML file and the flags, read, checked (ranges, finiteness, modes), refused in one line."""

from __future__ import annotations

import logging
import os
import subprocess

import pytest
from helpers import EDGE, as_nobody, one_error_line, run_edge, write_config

from ferlite.edge.apps.cli import build_parser, main
from ferlite.edge.runtime.config import ConfigError, EdgeConfig, load_config


def test_toml_values_and_only_given_flags_override(tmp_path):
    path = write_config(tmp_path, 'source = "/dev/video1"\nthreads = 3\nsocket = "/tmp/x.sock"\nsocket_mode = "640"\n')
    args = build_parser().parse_args(["--threads", "1", "--config", str(path)])
    from ferlite.edge.apps.cli import _overrides

    config = load_config(path, _overrides(args))
    assert config.threads == 1  # the flag wins
    assert config.source == "/dev/video1"  # the file's value stays: --source was not given
    assert config.socket == "/tmp/x.sock"
    assert config.socket_mode == 0o640
    assert config.stdout is True


def test_unknown_key_rejected(tmp_path):
    path = write_config(tmp_path, "sauce = 'demo'\n")
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
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, {})
    assert "edge.toml" in str(info.value)


def test_flags_override_only_what_was_typed(tmp_path):
    """A TOML value stays unless a flag names the same setting; everything else keeps its one default."""
    path = write_config(tmp_path, "min_size = 64\nsmooth_window = 3\n")
    config = load_config(path, {"smooth_window": 7})
    assert (config.min_size, config.smooth_window) == (64, 7)
    assert config.max_faces == EdgeConfig().max_faces


def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys):
    path = write_config(tmp_path, "sauce = 1\n")
    assert main(["--config", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fer-edge:") and "sauce" in err[-1]


def test_cli_missing_config_file(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in capsys.readouterr().err


def test_check_config_prints_effective_config(tmp_path, tiny_model, capsys):
    path = write_config(tmp_path, "threads = 2\nmax_faces = 3\n")
    assert main(["--config", str(path), "--model", str(tiny_model), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "threads = 2" in out and "max_faces = 3" in out and "# config OK" in out


def test_detection_settings_are_flags_that_override_only_what_was_typed(tmp_path):
    """--min-size, --min-neighbors, --flip/--no-flip, --smooth-window: the config's keys as flags."""
    from ferlite.edge.apps.cli import _overrides

    def effective(argv, toml=None):
        path = write_config(tmp_path, toml) if toml is not None else None
        return load_config(path, _overrides(build_parser().parse_args(argv)))

    config = effective(["--min-size", "64", "--min-neighbors", "3", "--no-flip", "--smooth-window", "1"])
    assert (config.min_size, config.min_neighbors, config.flip, config.smooth_window) == (64, 3, False, 1)
    assert effective([]) == EdgeConfig()  # nothing typed: every default
    assert EdgeConfig().flip is True  # test-time flip on by default (docs/model.md, "Test-time flip")
    toml = "min_size = 30\nmin_neighbors = 7\nflip = false\nsmooth_window = 9\n"
    config = effective(["--flip", "--min-size", "40"], toml)
    assert (config.min_size, config.min_neighbors, config.flip, config.smooth_window) == (40, 7, True, 9)
    assert effective(["--min-size", "40"], toml).flip is False  # the file's, where no flag was typed
    assert effective(["--flip", "--no-flip"]).flip is False  # the last one typed wins
    assert effective(["--no-flip", "--flip"]).flip is True


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


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("scale_factor = inf\n", "scale_factor"),
        ("scale_factor = 1e300\n", "scale_factor"),
        ("fps_limit = 1e-300\n", "fps_limit"),
        ("track_margin = nan\n", "track_margin"),
        ("track_margin = inf\n", "track_margin"),
        ("smooth_window = 100000000000000000000\n", "smooth_window"),
        ("reopen_initial_s = nan\n", "reopen_initial_s"),
        ("reopen_max_s = inf\n", "reopen_max_s"),
        ("status_every_s = nan\n", "status_every_s"),
        ("status_every_s = -1.0\n", "status_every_s"),
        ("threads = 10000\n", "threads"),
        ("min_size = 2147483648\n", "min_size"),
        ("min_neighbors = 2147483648\n", "min_neighbors"),
        ("max_faces = 4294967296\n", "max_faces"),
        ("frame_width = 2147483648\n", "frame_width"),
        ("detect_width = 2147483648\n", "detect_width"),
        ("full_detect_every = 1099511627776\n", "full_detect_every"),
        ("search_budget = 0.0\n", "search_budget"),  # a frame could never search anything
        ("search_budget = nan\n", "search_budget"),
        ("refresh_every = 0\n", "refresh_every"),
        ("socket_buffer = 1099511627776\n", "socket_buffer"),
        ("fps_limit = " + "9" * 400 + "\n", "fps_limit"),
    ],
)
def test_insane_numbers_refused_naming_the_setting(tmp_path, text, setting):
    with pytest.raises(ConfigError, match=setting) as info:
        load_config(write_config(tmp_path, text), {})
    assert "edge.toml" in str(info.value)


@pytest.mark.parametrize("flag", [["--fps-limit", "nan"], ["--fps-limit", "inf"], ["--fps-limit", "1e-300"],
                                  ["--threads", "10000"], ["--max-faces", "99999999999"]])
def test_insane_flags_refused_by_check_config(flag, tiny_model, capsys):
    from ferlite.edge.apps.cli import main

    assert main(flag + ["--model", str(tiny_model), "--check-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fer-edge: command line:") and flag[0][2:].replace("-", "_") in err[-1]


@pytest.mark.parametrize("value", ['"777"', '"4777"', '"666"', '"700"', '"999"', '"abc"', '""', "-1", "99999",
                                   "660", "true"])
def test_bad_socket_modes_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="socket_mode"):
        load_config(write_config(tmp_path, f"socket_mode = {value}\n"), {})


@pytest.mark.parametrize(("value", "mode"), [('"660"', 0o660), ('"0640"', 0o640), ('"0o600"', 0o600)])
def test_octal_socket_modes_accepted(tmp_path, value, mode):
    assert load_config(write_config(tmp_path, f"socket_mode = {value}\n"), {}).socket_mode == mode


def test_socket_mode_out_of_range_refused_in_code_too():
    with pytest.raises(ConfigError, match="socket_mode"):
        EdgeConfig(socket_mode=0o777)


def test_toml_that_is_not_utf8_exits_2(tmp_path, capsys):
    from ferlite.edge.apps.cli import main

    path = write_config(tmp_path, b'source = "\xff\xfe"\n')
    assert main(["--config", str(path), "--check-config"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "edge.toml" in line and "UTF-8" in line


def test_toml_nested_2000_deep_exits_2(tmp_path, capsys):
    from ferlite.edge.apps.cli import main

    path = write_config(tmp_path, "source = " + "[" * 2000 + "]" * 2000 + "\n")
    assert main(["--config", str(path), "--check-config"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "edge.toml" in line and "nested" in line


def test_toml_that_is_a_fifo_exits_2_instead_of_waiting(tmp_path):
    fifo = tmp_path / "edge.toml"
    os.mkfifo(fifo)
    line = one_error_line(run_edge(["--config", str(fifo), "--check-config"], timeout=60))
    assert "edge.toml" in line and "regular file" in line


def test_a_million_unknown_keys_give_one_short_line(tmp_path, capsys):
    from ferlite.edge.apps.cli import main

    path = write_config(tmp_path, "".join(f"k{i} = 1\n" for i in range(60_000)))
    assert main(["--config", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and len(err[0]) < 400
    assert "59990 more" in err[0]
    bigger = write_config(tmp_path, "".join(f"k{i} = 1\n" for i in range(1_000_000)), "big.toml")  # ~11 MB
    with pytest.raises(ConfigError, match="big.toml") as info:
        load_config(bigger, {})
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("setting", ["source", "socket", "model"])
def test_empty_strings_refused(tmp_path, setting):
    with pytest.raises(ConfigError, match=f"{setting} must not be empty"):
        load_config(write_config(tmp_path, f'{setting} = ""\n'), {})
    with pytest.raises(ConfigError, match=f"command line: {setting} must not be empty"):
        load_config(None, {setting: ""})


def test_empty_source_flag_exits_2(tiny_model):
    line = one_error_line(run_edge(["--source", "", "--model", str(tiny_model)]))
    assert "source must not be empty" in line


def test_config_not_readable_by_a_non_root_user_exits_2(shared_dir):
    prefix = as_nobody()
    config = shared_dir / "edge.toml"
    config.write_text("threads = 1\n")
    config.chmod(0o600)
    out = subprocess.run(prefix + EDGE + ["--config", str(config), "--check-config"],
                         capture_output=True, text=True, timeout=60, check=False)
    line = one_error_line(out)
    assert "edge.toml" in line and "Permission denied" in line


# --- [group] tables (issue 23): grouped keys, flat keys with a notice, refusals in one line --------------

GROUPED = """source = "demo"
threads = 2

[input]
frame_width = 320
reopen_max_s = 4.0

[detect]
min_size = 64
scale_factor = 1.2

[track]
max_faces = 3

[feed]
socket = "/tmp/f.sock"
socket_mode = "640"
"""
FLAT = """source = "demo"
threads = 2
frame_width = 320
reopen_max_s = 4.0
min_size = 64
scale_factor = 1.2
max_faces = 3
socket = "/tmp/f.sock"
socket_mode = "640"
"""


def test_grouped_toml_loads_equal_to_flat(tmp_path):
    grouped = load_config(write_config(tmp_path, GROUPED, "grouped.toml"), {})
    flat = load_config(write_config(tmp_path, FLAT, "flat.toml"), {})
    assert grouped == flat
    assert (grouped.min_size, grouped.max_faces, grouped.socket_mode, grouped.frame_width) == (64, 3, 0o640, 320)
    # A flag still overrides a grouped key.
    assert load_config(write_config(tmp_path, GROUPED, "grouped.toml"), {"min_size": 96}).min_size == 96


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[track]\nmin_size = 64\n", "min_size belongs in [detect], not in [track]"),
        ("[detect]\nthreads = 2\n", "threads belongs in the top level, not in [detect]"),
        ("[bogus]\nmin_size = 64\n", "unknown table(s) bogus"),
        ("min_size = 48\n[detect]\nmin_size = 64\n", "min_size is given twice, at the top level and in [detect]"),
        ("[detect]\nmin_sise = 64\n", "[detect]: unknown setting(s) min_sise"),
    ],
    ids=["wrong-table", "top-level-in-table", "unknown-table", "twice", "unknown-in-table"],
)
def test_bad_tables_exit_2_with_one_line_naming_the_key_and_file(tmp_path, text, says, capsys):
    path = write_config(tmp_path, text)
    assert main(["--config", str(path), "--check-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = captured.err.strip().splitlines()[-1]
    assert line.startswith("fer-edge:") and "edge.toml" in line and says in line, line


def test_flat_keys_log_one_info_notice_per_file(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    load_config(write_config(tmp_path, FLAT, "flat.toml"), {})
    notices = [r for r in caplog.records if "may be grouped" in r.getMessage()]
    assert len(notices) == 1 and notices[0].levelno == logging.INFO
    message = notices[0].getMessage()
    assert "flat.toml" in message and "min_size" in message and "[detect]" in message and "[feed]" in message
    caplog.clear()
    load_config(write_config(tmp_path, GROUPED, "grouped.toml"), {})
    load_config(write_config(tmp_path, 'source = "demo"\n', "top.toml"), {})  # only top-level keys: nothing to group
    load_config(None, {"min_size": 64})  # flags are not a file
    assert not [r for r in caplog.records if "may be grouped" in r.getMessage()]
