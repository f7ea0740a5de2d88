"""Small measuring helpers shared by the benchmarks: statistics, box matching, process memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ferlite.edge.algorithm.tracking import iou
from ferlite.edge.contract.preprocess import Box

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MATCH_IOU = 0.4


def default_model() -> Path:
    """The shipped model when it exists, else the committed test fixture."""
    shipped = ROOT / "src" / "ferlite" / "edge" / "models" / "ferlite_int8.tflite"
    return shipped if shipped.is_file() else ROOT / "tests" / "fixtures" / "tiny_int8.tflite"


def fer_edge() -> str:
    exe = VENV_BIN / "fer-edge"
    return str(exe) if exe.exists() else "fer-edge"


def stats_ms(values: Sequence[float]) -> dict[str, float]:
    """Median, p95 and mean of durations given in seconds, in milliseconds."""
    arr = np.asarray(values, dtype=np.float64) * 1000
    if not len(arr):
        return {"median": float("nan"), "p95": float("nan"), "mean": float("nan"), "n": 0}
    return {
        "median": round(float(np.median(arr)), 3),
        "p95": round(float(np.percentile(arr, 95)), 3),
        "mean": round(float(np.mean(arr)), 3),
        "n": int(len(arr)),
    }


def unmatched(boxes: Sequence[Box], others: Sequence[Box], threshold: float = MATCH_IOU) -> list[Box]:
    """Boxes with no box among `others` overlapping them by at least `threshold` IoU."""
    return [b for b in boxes if not any(iou(b, o) >= threshold for o in others)]


def proc_status_kb(pid: int, field: str) -> int | None:
    """A `VmHWM`/`VmRSS`-style field of /proc/PID/status, in kB (None when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def spawn_until_first_line(
    argv: Sequence[str], lines: int = 1, env: dict[str, str] | None = None, timeout_s: float = 120.0
) -> tuple[float, int | None]:
    """Start a process, time spawn -> first stdout line, read `lines` lines, then its peak RSS (kB).

    The process is terminated afterwards; returns (seconds to first line, VmHWM in kB).
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})}
    )
    assert proc.stdout is not None
    first = None
    try:
        deadline = started + timeout_s
        for count in range(lines):
            line = proc.stdout.readline()
            if not line or time.perf_counter() > deadline:
                raise RuntimeError(f"{argv[0]} stopped before {lines} lines (got {count})")
            if first is None:
                first = time.perf_counter() - started
        peak = proc_status_kb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert first is not None
    return first, peak


def repo_relative(text: str) -> str:
    """Paths inside the repository written relative to it: committed results hold no machine paths."""
    root = str(Path(__file__).resolve().parents[2])
    return text.replace(root + "/", "").replace(str(Path(root).parent / "shared") + "/", "../shared/")
