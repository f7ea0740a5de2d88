"""fer-edge: camera frames -> Haar -> int8 model -> JSON lines on stdout and a Unix socket."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2

from .config import ConfigError, EdgeConfig, describe, load_config, resolve_model
from .daemon import Sink, StopFeed, run_loop
from .detector import DetectorError, HaarDetector
from .feed import FeedError, SocketFeed
from .notify import SystemdNotifier
from .pipeline import Pipeline, PipelineSettings
from .runner import ModelLoadError, ModelRunner
from .sources import ImageFilesSource, SourceError, open_source
from .spec import ModelSpecError

log = logging.getLogger("ferlite.edge")

EXIT_OK = 0
EXIT_BAD_START = 2


class StartupError(Exception):
    """Anything that stops the daemon from starting: one line for stderr, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-edge",
        description="Facial-expression recognition on camera frames; one JSON object per frame.",
        argument_default=argparse.SUPPRESS,  # only what the user typed overrides the config
    )
    p.add_argument("--source", help="auto | demo | picamera2 | /dev/videoN | N | VIDEO | IMAGE | FOLDER (default auto)")
    p.add_argument("--model", help="int8 .tflite with its .spec.json (default: the shipped model)")
    p.add_argument("--config", dest="config_file", metavar="FILE", help="TOML config; flags override it")
    p.add_argument("--check-config", action="store_true", help="check config and model, print the config, exit")
    p.add_argument("--threads", type=int, help="interpreter and OpenCV threads (default: all cores)")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--loop", action="store_const", const=True, help="replay a folder or video forever")
    p.add_argument("--whole-frame", action="store_const", const=True, help="no detection: the whole frame is one face")
    p.add_argument("--socket", help="also serve the feed on this Unix socket path")
    p.add_argument("--no-stdout", dest="stdout", action="store_const", const=False, help="no results on stdout")
    p.add_argument("--fps-limit", type=float, help="pace image/video sources to this frame rate")
    p.add_argument("--detect-width", type=int, help="detect on frames scaled to this width (0: full size)")
    p.add_argument("--max-faces", type=int, help="most faces classified per frame")
    p.add_argument("--log-level", help="DEBUG | INFO | WARNING | ERROR")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = dict(vars(args))
    values.pop("config_file", None)
    values.pop("check_config", None)
    if "log_level" in values:
        values["log_level"] = values["log_level"].upper()
    return values


def _stdout_sink(line: bytes) -> None:
    try:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    except BrokenPipeError as e:
        raise StopFeed from e


class _StopFlag:
    def __init__(self) -> None:
        self.set = False

    def __call__(self) -> bool:
        return self.set

    def handle(self, signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        self.set = True


def _load_parts(config: EdgeConfig) -> tuple[ModelRunner, HaarDetector | None]:
    model_path = resolve_model(config)
    try:
        runner = ModelRunner(model_path, threads=config.threads)
    except (ModelLoadError, ModelSpecError) as e:
        raise StartupError(str(e)) from e
    try:
        detector = None if config.whole_frame else HaarDetector(
            config.scale_factor, config.min_neighbors, config.min_size
        )
    except DetectorError as e:
        raise StartupError(str(e)) from e
    return runner, detector


def pipeline_settings(config: EdgeConfig, temporal: bool, margin: float) -> PipelineSettings:
    return PipelineSettings(
        whole_frame=config.whole_frame,
        temporal=temporal,
        detect_width=config.detect_width,
        min_size=config.min_size,
        full_detect_every=config.full_detect_every,
        track_margin=config.track_margin,
        smooth_window=config.smooth_window,
        max_faces=config.max_faces,
        margin=margin,
    )


def serve(config: EdgeConfig, stop: _StopFlag) -> int:
    # OpenCV reads 0 as "no threading" and a negative number as "its default (all cores)".
    cv2.setNumThreads(config.threads or -1)
    notifier = SystemdNotifier.from_env()
    runner, detector = _load_parts(config)
    with ExitStack() as stack:
        try:
            source = stack.enter_context(open_source(
                config.source,
                loop=config.loop,
                size=(config.frame_width, config.frame_height),
                reopen=(config.reopen_initial_s, config.reopen_max_s),
                should_stop=stop,
                on_wait=notifier.watchdog,
            ))
        except SourceError as e:
            raise StartupError(str(e)) from e
        sinks: list[Sink] = [_stdout_sink] if config.stdout else []
        if config.socket:
            try:
                feed = stack.enter_context(
                    SocketFeed(config.socket, config.socket_mode, config.socket_buffer)
                )
            except FeedError as e:
                raise StartupError(str(e)) from e
            sinks.append(feed.publish)
        # Stills from a folder are unrelated photos: no tracking or smoothing across them.
        temporal = not isinstance(source, ImageFilesSource)
        pipeline = Pipeline(detector, runner, pipeline_settings(config, temporal, runner.spec.margin))
        try:
            stats = run_loop(
                source, pipeline, sinks,
                max_frames=config.max_frames,
                should_stop=stop,
                notifier=notifier,
                status_every_s=config.status_every_s,
                fps_limit=config.fps_limit,
            )
        finally:
            notifier.stopping()
    log.info("%d frames, %d faces, %.1f fps", stats.frames, stats.faces, stats.fps)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config(getattr(args, "config_file", None), _overrides(args))
    except ConfigError as e:
        print(f"fer-edge: {e}", file=sys.stderr)
        return EXIT_BAD_START
    logging.getLogger().setLevel(config.log_level)
    if getattr(args, "check_config", False):
        return _check_config(config)
    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop.handle)
    signal.signal(signal.SIGINT, stop.handle)
    started = time.monotonic()
    try:
        code = serve(config, stop)
    except StartupError as e:
        print(f"fer-edge: {e}", file=sys.stderr)
        return EXIT_BAD_START
    log.debug("ran %.1f s", time.monotonic() - started)
    return code


def _check_config(config: EdgeConfig) -> int:
    try:
        runner, _ = _load_parts(config)
    except StartupError as e:
        print(f"fer-edge: {e}", file=sys.stderr)
        return EXIT_BAD_START
    print(describe(config))
    print(f"# model: {Path(runner.path)} ({runner.backend}, {runner.input_dtype.name} input)")
    print("# config OK")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
