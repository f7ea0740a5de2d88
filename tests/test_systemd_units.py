"""The systemd units in systemd/: verify-clean, exposure <= 1.0, and consistent with the daemon."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"
SERVICE = UNITS / "fer-edge.service"
EXAMPLE_CONFIG = UNITS / "edge.toml"
CHECK = REPO / "scripts" / "check_units.sh"
FIXTURE_MODEL = REPO / "tests" / "fixtures" / "tiny_int8.tflite"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt: systemd)"
)


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit, every value kept (systemd allows repeated keys)."""
    settings: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def run_check(units_dir: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    if units_dir is not None:
        full_env["UNITS_DIR"] = str(units_dir)
    return subprocess.run(
        ["bash", str(CHECK)], capture_output=True, text=True, env=full_env, timeout=120
    )


# --- systemd-analyze ---------------------------------------------------------------------------


@needs_systemd_analyze
def test_units_verify_clean_and_exposure_at_most_1() -> None:
    result = run_check()
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify fer-edge.service: clean" in result.stdout
    score = float(result.stdout.split("exposure ")[1].split()[0])
    assert score <= 1.0


@needs_systemd_analyze
def test_check_fails_on_any_verify_output(tmp_path: Path) -> None:
    # systemd-analyze verify exits 0 on an unknown key; the check must not.
    text = SERVICE.read_text().replace("[Service]\n", "[Service]\nWatchDogSec=30\n")
    (tmp_path / "fer-edge.service").write_text(text)
    result = run_check(tmp_path)
    assert result.returncode != 0
    assert "Unknown key" in result.stderr and "WatchDogSec" in result.stderr


@needs_systemd_analyze
def test_check_fails_above_the_exposure_threshold() -> None:
    result = run_check(EXPOSURE_MAX="0.1")
    assert result.returncode != 0
    assert "exposure" in result.stderr and "> 0.1" in result.stderr


def test_check_skips_without_systemd_analyze_only_outside_ci(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash
    path = tmp_path / "bin"
    path.mkdir()
    for tool in ("dirname", "bash"):
        found = shutil.which(tool)
        assert found
        (path / tool).symlink_to(found)
    base = {"PATH": str(path), "HOME": str(tmp_path)}
    outside = subprocess.run([bash, str(CHECK)], capture_output=True, text=True, env=base)
    assert outside.returncode == 0 and "SKIP" in outside.stdout
    in_ci = subprocess.run(
        [bash, str(CHECK)], capture_output=True, text=True, env={**base, "CI": "true"}
    )
    assert in_ci.returncode == 1 and "FAIL" in in_ci.stderr


# --- what the unit promises the daemon and its readers ------------------------------------------


def test_service_is_type_notify_with_watchdog_and_restart_limits() -> None:
    s = unit_settings(SERVICE)
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert int(s["WatchdogSec"][0]) >= 10
    assert s["Restart"] == ["on-failure"]
    assert "StartLimitIntervalSec" in s and "StartLimitBurst" in s
    assert s["ExecStart"] == ["/opt/ferlite/venv/bin/fer-edge --config /etc/ferlite/edge.toml"]


def test_service_hardening_required_by_the_issue() -> None:
    s = unit_settings(SERVICE)
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "PrivateNetwork": "yes",
        "RestrictAddressFamilies": "AF_UNIX",
        "CapabilityBoundingSet": "",
        "DevicePolicy": "closed",
        "DynamicUser": "yes",
    }.items():
        assert s.get(key) == [value], key
    assert s["SystemCallFilter"][0] == "@system-service"
    assert "MemoryMax" in s
    assert "video" in s["SupplementaryGroups"][0].split()


def test_camera_devices_allowed_and_proc_cpuinfo_kept() -> None:
    s = unit_settings(SERVICE)
    allowed = {v.split()[0] for v in s["DeviceAllow"]}
    assert {"char-video4linux", "char-media", "char-dma_heap"} <= allowed
    # The camera needs the real /dev; LiteRT needs /proc/cpuinfo (ProcSubset=pid hides it).
    assert s.get("PrivateDevices", ["no"]) == ["no"]
    assert "ProcSubset" not in s


def test_socket_lands_in_the_runtime_directory_for_group_fer() -> None:
    s = unit_settings(SERVICE)
    import tomllib

    config = tomllib.loads(EXAMPLE_CONFIG.read_text())
    feed = config["feed"]  # grouped: [feed]
    assert feed["socket"] == f"/run/{s['RuntimeDirectory'][0]}/feed.sock"
    assert s["Group"] == ["fer"]  # the socket's group: it is created by the service's gid
    # Group members must be able to traverse the directory and connect (write) to the socket.
    assert int(s["RuntimeDirectoryMode"][0], 8) & 0o050 == 0o050
    assert int(s.get("UMask", ["0022"])[0], 8) & 0o060 == 0
    assert int(feed.get("socket_mode", "660"), 8) == 0o660
    assert s["ConfigurationDirectory"] == ["ferlite"]


def test_example_config_is_accepted_by_the_daemon() -> None:
    config_mod = pytest.importorskip("ferlite.edge.runtime.config")
    config = config_mod.load_config(EXAMPLE_CONFIG, {})
    assert config.socket == "/run/ferlite/feed.sock"
    assert config.stdout is False
    assert config.threads == 3
    assert config.log_level.upper() == "INFO"
    assert (config.min_size, config.max_faces, config.frame_width) == (48, 8, 640)  # read from their tables


# --- the daemon under MemoryDenyWriteExecute= ------------------------------------------------------

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def _mdwe_supported() -> bool:
    """Linux >= 6.3 offers MDWE as a prctl (systemd >= 256 uses it for MemoryDenyWriteExecute=)."""
    code = textwrap.dedent(
        f"""
        import ctypes, sys
        libc = ctypes.CDLL(None, use_errno=True)
        sys.exit(0 if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0 else 1)
        """
    )
    return subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0


@pytest.mark.slow
def test_daemon_runs_with_memory_deny_write_execute(tmp_path: Path) -> None:
    """The unit sets MemoryDenyWriteExecute=yes: numpy, OpenCV and LiteRT must cope."""
    pytest.importorskip("ferlite.edge.apps.cli")
    if not FIXTURE_MODEL.exists():
        pytest.skip("fixture model not there yet")
    if not _mdwe_supported():
        pytest.skip("kernel has no PR_SET_MDWE (Linux < 6.3)")
    wrapper = textwrap.dedent(
        f"""
        import ctypes, runpy, sys
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0
        # Proof that it bites: a W+X mapping is now refused.
        import mmap
        try:
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        except OSError as e:
            assert e.errno == {errno.EACCES} or e.errno == {errno.EPERM}, e
        else:
            raise SystemExit("MDWE did not refuse a W+X mapping")
        sys.argv = ["fer-edge"] + sys.argv[1:]
        runpy.run_module("ferlite.edge.apps.cli", run_name="__main__")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, "--source", "demo", "--model", str(FIXTURE_MODEL),
         "--max-frames", "3", "--threads", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(frames) == 3
    assert any(frame["faces"] for frame in frames)
