"""Soak: the daemon's loop under many socket readers and a camera that keeps failing.

    .venv/bin/python tests/bench/soak.py --frames 50000 --out tests/bench/soak.json

The daemon runs in a child process made of fer-edge's own parts (ReopeningSource around a
ReplaySource that fails every --fail-every reads, the Pipeline with fer-edge's settings,
SocketFeed, run_loop): fer-edge itself has no way to make a camera fail on purpose. The
child is pinned to one core, the readers to the others, so their own CPU time does not count
as the feed's cost.

Frames alternate in blocks: without readers (only the probe reader), then with 50 more
(one of which stops reading) and one that connects and disconnects in a tight loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scenes
from measure import default_model, proc_status_kb, repo_relative

log = logging.getLogger(__name__)

FRAME_RE = re.compile(rb'^\{"frame": (\d+), "ts": ([\d.]+)')


# ---------------------------------------------------------------- the daemon (child process)


def serve(args: argparse.Namespace) -> int:
    """fer-edge's loop with a failing replayed camera; prints a JSON summary on stdout at the end."""
    import cv2

    from ferlite.edge.runtime.api import assemble
    from ferlite.edge.runtime.config import EdgeConfig
    from ferlite.edge.runtime.loop import run_loop
    from ferlite.edge.runtime.sinks import SocketFeed
    from ferlite.edge.runtime.sources import ReopeningSource
    from ferlite.edge.runtime.testing import ReplaySource

    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(args.seed)
    photos = scenes.face_photos(fer_limit=2)
    kinds = ("single", "multi", "empty")
    images = [f.image for kind in kinds for f in scenes.scene(kind, args.scene_frames, photos, rng)]
    config = EdgeConfig(
        model=str(args.model), threads=args.threads, reopen_initial_s=0.01, reopen_max_s=0.05,
        socket_buffer=args.socket_buffer,
    )
    pipeline = assemble(config).pipeline(temporal=True)  # as fer-edge builds it for a camera
    source = ReopeningSource(
        lambda: ReplaySource(images, name="soak", loop=True, fail_every=args.fail_every),
        config.reopen_initial_s, config.reopen_max_s,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rss = RssProbe(args.frames, every=max(1, args.block // 5))
    with SocketFeed(args.socket, buffer_limit=config.socket_buffer) as feed:
        stats = run_loop(source, pipeline, [feed.publish, rss], max_frames=args.frames, should_stop=stop.is_set)
        dropped = feed.dropped
    summary = {"frames": stats.frames, "fps": round(stats.fps, 1), "reopens": source.reopens, "dropped": dropped,
               "rss_kb": rss.samples, "stopped_by_signal": stop.is_set()}
    print(json.dumps(summary), flush=True)
    return 0


class RssProbe:
    """A sink that samples the process's VmRSS every `every` frames and on the last one."""

    def __init__(self, frames: int, every: int = 1000) -> None:
        self.frames = 0
        self.last = frames - 1
        self.every = every
        self.samples: dict[int, int] = {}

    def __call__(self, _line: bytes) -> None:
        if self.frames % self.every == 0 or self.frames == self.last:
            self.samples[self.frames] = proc_status_kb(os.getpid(), "VmRSS") or 0
        self.frames += 1


# ---------------------------------------------------------------- the readers (parent process)


@dataclass
class Reader:
    """One socket reader that checks it gets every frame number once, in order."""

    name: str
    sock: socket.socket
    buffer: bytes = b""
    frames: int = 0
    first: int | None = None
    last: int | None = None
    gaps: int = 0
    reordered: int = 0
    ts: list[tuple[int, float]] = field(default_factory=list)  # (frame, ts), for the probe
    closed: bool = False

    def feed(self, data: bytes, keep_ts: bool) -> None:
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            match = FRAME_RE.match(line)
            if match is None:
                raise ValueError(f"{self.name}: not a feed message: {line[:80]!r}")
            frame = int(match.group(1))
            if self.last is not None and frame != self.last + 1:
                self.gaps += max(0, frame - self.last - 1)  # messages missing
                self.reordered += frame <= self.last
            self.first = frame if self.first is None else self.first
            self.last = frame
            self.frames += 1
            if keep_ts:
                self.ts.append((frame, float(match.group(2))))

    def report(self) -> dict[str, Any]:
        return {"name": self.name, "messages": self.frames, "first": self.first, "last": self.last,
                "missing": self.gaps, "out_of_order": self.reordered}


def connect(path: str, timeout_s: float = 60.0) -> socket.socket:
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Flapper(threading.Thread):
    """Connects and disconnects in a tight loop while `active` is set."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.active = threading.Event()
        self.done = threading.Event()
        self.connections = 0

    def run(self) -> None:
        while not self.done.is_set():
            if not self.active.wait(0.1):
                continue
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.path)
                sock.close()
                self.connections += 1
            except OSError:
                time.sleep(0.01)


class Crowd:
    """The probe (always connected) plus, in 'with' blocks, live readers, a stalled one and the flapper."""

    def __init__(self, path: str, readers: int, flapper: bool = True) -> None:
        self.path = path
        self.count = readers
        self.use_flapper = flapper
        self.selector = selectors.DefaultSelector()
        self.probe = self._add("probe")
        self.sessions: list[Reader] = []
        self.live: list[Reader] = []
        self.stalled: socket.socket | None = None
        self.flapper = Flapper(path)
        self.flapper.start()

    def _add(self, name: str) -> Reader:
        reader = Reader(name, connect(self.path))
        reader.sock.setblocking(False)
        self.selector.register(reader.sock, selectors.EVENT_READ, reader)
        return reader

    def join(self, block: int) -> None:
        self.live = [self._add(f"block{block}-reader{i}") for i in range(self.count - 1)]
        self.sessions += self.live
        if self.stalled is None:
            self.stalled = connect(self.path)  # connected, never read: the daemon must drop it
        if self.use_flapper:
            self.flapper.active.set()

    def leave(self) -> None:
        self.flapper.active.clear()
        for reader in self.live:
            self.selector.unregister(reader.sock)
            reader.sock.close()
        self.live = []

    def pump(self, timeout: float = 0.2) -> bool:
        """Read what is there; False once the daemon has closed the probe's connection."""
        for key, _ in self.selector.select(timeout):
            reader: Reader = key.data
            try:
                data = reader.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                self.selector.unregister(reader.sock)
                reader.closed = True
                if reader is self.probe:
                    return False
                continue
            reader.feed(data, keep_ts=reader is self.probe)
        return True

    def stalled_last_frame(self) -> int | None:
        """Read the stalled reader to its end: the last frame it got (a dropped reader stops early)."""
        if self.stalled is None:
            return None
        self.stalled.settimeout(5.0)
        data = b""
        try:
            while chunk := self.stalled.recv(1 << 20):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        lines = data.split(b"\n")
        complete = lines[-2] if len(lines) > 1 else b""  # the last whole line
        match = FRAME_RE.match(complete)
        return int(match.group(1)) if match else None

    def close(self) -> None:
        self.flapper.done.set()
        self.leave()
        if self.stalled is not None:
            self.stalled.close()


def block_fps(ts: list[tuple[int, float]], block: int, size: int, skip: int) -> float | None:
    """Frames per second within one block, from the probe's (frame, ts) pairs, skipping its start."""
    inside = [(f, t) for f, t in ts if block * size + skip <= f < (block + 1) * size]
    if len(inside) < 2 or inside[-1][1] <= inside[0][1]:
        return None
    return (inside[-1][0] - inside[0][0]) / (inside[-1][1] - inside[0][1])


def drive(args: argparse.Namespace, path: str) -> dict[str, Any]:
    crowd = Crowd(path, args.readers, args.flapper)
    block = 0
    try:
        while crowd.pump():
            seen = crowd.probe.last if crowd.probe.last is not None else -1
            if seen + 1 >= (block + 1) * args.block:
                block += 1
                if block % 2 and seen + args.block < args.frames:
                    crowd.join(block)
                else:
                    crowd.leave()
        exited_early = crowd.probe.last is None or crowd.probe.last + 1 < args.frames
        stalled_last = crowd.stalled_last_frame()
    finally:
        crowd.close()
    return result(args, crowd, block, exited_early, stalled_last)


def result(
    args: argparse.Namespace, crowd: Crowd, blocks: int, exited_early: bool, stalled: int | None
) -> dict[str, Any]:
    fps = [block_fps(crowd.probe.ts, b, args.block, args.block // 10) for b in range(blocks + 1)]
    without = [f for b, f in enumerate(fps) if f is not None and b % 2 == 0 and b > 0]
    with_readers = [f for b, f in enumerate(fps) if f is not None and b % 2 == 1]
    fps_without = float(np.median(without)) if without else float("nan")
    fps_with = float(np.median(with_readers)) if with_readers else float("nan")
    sessions = [r.report() for r in crowd.sessions]
    return {
        "fps_per_block": [None if f is None else round(f, 1) for f in fps],
        "fps_without_readers": round(fps_without, 1),
        "fps_with_readers": round(fps_with, 1),
        "fps_drop": round(1 - fps_with / fps_without, 4),
        "probe": crowd.probe.report(),
        "reader_sessions": len(sessions),
        "sessions_missing": sum(s["missing"] for s in sessions) + crowd.probe.gaps,
        "sessions_out_of_order": sum(s["out_of_order"] for s in sessions) + crowd.probe.reordered,
        "sessions_min_messages": min((s["messages"] for s in sessions), default=0),
        "stalled_reader_last_frame": stalled,
        "flapper_connections": crowd.flapper.connections,
        "daemon_exited_early": exited_early,
        "readers": sessions,
    }


def rss_after_warmup(samples: dict[str, int], warmup: int) -> dict[str, Any]:
    """RSS growth from the end of the first without/with cycle (every code path has run) to the end."""
    rss = sorted((int(frame), kb) for frame, kb in samples.items())
    after = [(frame, kb) for frame, kb in rss if frame >= warmup] or rss[-1:]
    return {"rss_first": rss[0], "rss_start": after[0], "rss_end": after[-1], "rss_max": max(kb for _, kb in after),
            "rss_growth_kb": after[-1][1] - after[0][1]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "feed.sock")
        argv = [sys.executable, __file__, "--serve", "--socket", path, "--model", str(args.model),
                "--frames", str(args.frames), "--fail-every", str(args.fail_every), "--threads", "1",
                "--scene-frames", str(args.scene_frames), "--seed", str(args.seed)]
        argv += ["--socket-buffer", str(args.socket_buffer), "--block", str(args.block)]
        cores = sorted(os.sched_getaffinity(0))
        pin = args.pin and len(cores) > 1  # the daemon on one core, the readers on the others
        if pin:
            argv += ["--cpu", str(cores[0])]
            os.sched_setaffinity(0, set(cores[1:]))
        errors = Path(tmp) / "daemon.log"
        with errors.open("wb") as err_file:
            child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err_file)
            try:
                report = drive(args, path)
                out, _ = child.communicate(timeout=120)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
                if pin:
                    os.sched_setaffinity(0, set(cores))
        err = errors.read_bytes()
    daemon = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    report["daemon"] = daemon
    report["daemon_exit_code"] = child.returncode
    report["daemon_log_tail"] = err.decode(errors="replace").splitlines()[-5:]
    report.update(rss_after_warmup(daemon.get("rss_kb", {}), warmup=2 * args.block))
    report["settings"] = {k: str(v) for k, v in vars(args).items() if k != "out"}  # where it is written: no setting
    return report


def print_table(report: dict[str, Any]) -> None:
    d = report["daemon"]
    (first, start), (last, end) = report["rss_start"], report["rss_end"]
    rows = [
        ("frames (daemon ran / asked)", f"{d.get('frames')} / {report['settings']['frames']}"),
        ("fps without readers (median of blocks)", f"{report['fps_without_readers']:.1f}"),
        (f"fps with {report['settings']['readers']} readers + flapper (median of blocks)",
         f"{report['fps_with_readers']:.1f}"),
        ("fps drop", f"{report['fps_drop']:.1%}"),
        (f"RSS at frame {first} (after warm-up) / {last} (MB)", f"{start / 1024:.1f} / {end / 1024:.1f}"),
        ("RSS growth (kB) / highest after warm-up (MB)", f"{report['rss_growth_kb']} / {report['rss_max'] / 1024:.1f}"),
        (f"RSS at frame {report['rss_first'][0]}, before warm-up (MB)", f"{report['rss_first'][1] / 1024:.1f}"),
        ("camera failures survived (reopens)", f"{d.get('reopens')}"),
        ("reader sessions / least messages in one", f"{report['reader_sessions']} / {report['sessions_min_messages']}"),
        ("messages missing / out of order (all live readers)",
         f"{report['sessions_missing']} / {report['sessions_out_of_order']}"),
        ("probe reader messages", f"{report['probe']['messages']}"),
        ("readers the daemon dropped / last frame the stalled one got",
         f"{d.get('dropped')} / {report['stalled_reader_last_frame']}"),
        ("flapping reader connections", f"{report['flapper_connections']}"),
        ("daemon exited early / exit code", f"{report['daemon_exited_early']} / {report['daemon_exit_code']}"),
    ]
    print("| soak | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=default_model())
    p.add_argument("--frames", type=int, default=50_000)
    p.add_argument("--block", type=int, default=2500, help="frames per block (blocks alternate without/with readers)")
    p.add_argument("--readers", type=int, default=50, help="readers in 'with' blocks, one of them stalls")
    p.add_argument("--fail-every", type=int, default=300, help="the camera fails every N reads")
    p.add_argument("--scene-frames", type=int, default=20, help="frames per replayed scene")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--no-flapper", dest="flapper", action="store_false", help="no connect/disconnect reader")
    p.add_argument("--socket-buffer", type=int, default=256 * 1024, help="the daemon's socket_buffer")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin the daemon and readers to cores")
    p.add_argument("--out", type=Path)
    p.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--socket", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.serve:
        return serve(args)
    if not args.model.is_file():
        print(f"soak: {args.model}: no model (give --model)", file=sys.stderr)
        return 2
    report = run(args)
    print_table(report)
    if args.out:
        kept = {k: v for k, v in report.items() if k != "readers"}
        args.out.write_text(repo_relative(json.dumps(kept, indent=1)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
