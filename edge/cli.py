"""fer-edge: camera frames -> Haar -> int8 model -> JSON lines on stdout and a Unix socket."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2

from .api import build_pipeline
from .api import pipeline_settings as pipeline_settings  # moved to .api; kept for old callers
from .config import EdgeConfig, describe, load_config, resolve_model
from .daemon import OutputError, ReopenOnRequest, Sink, StdoutSink, run_loop
from .detector import DetectorError, HaarDetector
from .errors import FerliteError, StartupError
from .feed import FeedError, SocketFeed
from .notify import SystemdNotifier
from .runner import ModelLoadError, ModelRunner
from .sources import FrameSource, ImageFilesSource, SourceError, open_source, utf8_name
from .spec import ModelSpecError, check_model_input, spec_path_for

log = logging.getLogger("ferlite.edge")

EXIT_OK = 0
EXIT_BAD_START = 2


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
    p.add_argument("--annotate", metavar="PATH",
                   help="also write annotated frames: a video file (camera/video) or a folder of images (stills)")
    p.add_argument("--log-level", help="DEBUG | INFO | WARNING | ERROR")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = dict(vars(args))
    values.pop("config_file", None)
    values.pop("check_config", None)
    if "log_level" in values:
        values["log_level"] = values["log_level"].upper()
    return values


class Signals:
    """What the signal handlers asked for. Handlers only set flags; the frame loop acts on them.

    SIGTERM, SIGINT: stop (exit 0, socket removed). SIGHUP: reopen the source. SIGUSR1: log a
    status line.
    """

    def __init__(self) -> None:
        self.stop = False
        self.reopen = False
        self.status = False

    def __call__(self) -> bool:
        return self.stop

    def interrupted(self) -> bool:
        """For sources that wait: return to the loop to stop, or to be reopened."""
        return self.stop or self.reopen

    def reopen_pending(self) -> bool:
        return self.reopen and not self.stop

    def take_reopen(self) -> bool:
        asked, self.reopen = self.reopen, False
        return asked

    def take_status(self) -> bool:
        asked, self.status = self.status, False
        return asked

    def handle(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop = True
        elif signum == signal.SIGHUP:
            self.reopen = True
        elif signum == signal.SIGUSR1:
            self.status = True

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(signum, self.handle)


# Kept for callers of the old name.
_StopFlag = Signals


def _load_parts(config: EdgeConfig) -> tuple[ModelRunner, HaarDetector | None]:
    model_path = resolve_model(config)
    if not utf8_name(model_path):
        raise StartupError(f"{os.fspath(model_path)!a}: the model's file name is not valid UTF-8; rename it")
    try:
        runner = ModelRunner(model_path, threads=config.threads)
        check_model_input(runner.spec, runner.input_dtype.name, spec_path_for(model_path))
    except (ModelLoadError, ModelSpecError) as e:
        raise StartupError(str(e)) from e
    try:
        detector = None if config.whole_frame else HaarDetector(
            config.scale_factor, config.min_neighbors, config.min_size
        )
    except DetectorError as e:
        raise StartupError(str(e)) from e
    return runner, detector


def _open(config: EdgeConfig, signals: Signals, notifier: SystemdNotifier) -> FrameSource:
    return open_source(
        config.source,
        loop=config.loop,
        size=(config.frame_width, config.frame_height),
        reopen=(config.reopen_initial_s, config.reopen_max_s),
        should_stop=signals.interrupted,
        on_wait=notifier.watchdog,
        max_pixels=config.max_image_pixels,
    )


class SmallImageHint:
    """Photos too small to hold a face of min_size px (e.g. a folder of 48x48 face crops) find no face:
    say why once, and what to use instead, rather than printing empty results in silence."""

    def __init__(self, min_size: int) -> None:
        self.min_size = min_size
        self.said = False

    def __call__(self, frame: Any, result: Any) -> None:
        width, height = result.size
        if self.said or result.faces or min(width, height) >= 2 * self.min_size:
            return
        self.said = True
        log.warning("no face found in a %dx%d image: faces smaller than min_size (%d px) are not looked for; "
                    "if the images are face crops, use --whole-frame", width, height, self.min_size)


def serve(config: EdgeConfig, stop: Signals) -> int:
    # OpenCV reads 0 as "no threading" and a negative number as "its default (all cores)".
    cv2.setNumThreads(config.threads or -1)
    notifier = SystemdNotifier.from_env()
    runner, detector = _load_parts(config)
    with ExitStack() as stack:
        try:
            source = stack.enter_context(
                ReopenOnRequest(lambda: _open(config, stop, notifier), stop.take_reopen, stop.reopen_pending)
            )
        except SourceError as e:
            raise StartupError(str(e)) from e
        sinks: list[Sink] = []
        stdout: StdoutSink | None = None
        if config.stdout:
            stdout = stack.enter_context(StdoutSink(budget=config.socket_buffer))
            sinks.append(stdout)
        feed: SocketFeed | None = None
        if config.socket:
            try:
                feed = stack.enter_context(
                    SocketFeed(config.socket, config.socket_mode, config.socket_buffer)
                )
            except FeedError as e:
                raise StartupError(str(e)) from e
            sinks.append(feed.publish)
        # Stills from a folder are unrelated photos: no tracking or smoothing across them.
        temporal = not isinstance(source.source, ImageFilesSource)
        pipeline = build_pipeline(config, runner, detector, temporal=temporal)
        on_result: Any = None  # --annotate: imported and called only when asked for
        if config.annotate:
            from .annotate import AnnotateError, annotator_for

            try:
                on_result = stack.enter_context(annotator_for(config, source.source, temporal))
            except AnnotateError as e:
                raise StartupError(str(e)) from e
        elif not temporal and not config.whole_frame:
            on_result = SmallImageHint(config.min_size)

        def extra() -> str:
            text = ""
            if feed is not None:
                text += f", {feed.reader_count} readers, {feed.dropped} dropped"
            if stdout is not None and stdout.dropped:
                text += f", {stdout.dropped} stdout lines dropped"
            return text

        try:
            stats = run_loop(
                source, pipeline, sinks,
                max_frames=config.max_frames,
                should_stop=stop,
                notifier=notifier,
                status_every_s=config.status_every_s,
                fps_limit=config.fps_limit,
                status_requested=stop.take_status,
                status_extra=extra,
                on_result=on_result,
            )
        finally:
            notifier.stopping()
    if stdout is not None:
        stdout.check()  # a write error met after the last frame (the queue drains on close)
    log.info("%d frames, %d faces, %.1f fps", stats.frames, stats.faces, stats.fps)
    if stats.ended == "source" and stats.frames == 0:
        skipped = getattr(source.source, "skipped", 0)
        detail = f" ({skipped} unusable image(s) skipped)" if skipped else ""
        raise StartupError(f"{source.name}: no readable frame{detail}")
    return EXIT_OK


def _stdout_state(config: EdgeConfig) -> None:
    """Before anything opens a file: with fd 1 closed, the next file opened would become stdout."""
    try:
        os.fstat(1)
    except OSError as e:
        if config.stdout:
            raise OutputError("stdout is closed; give --no-stdout (or stdout = false) to run without it") from e
        null = os.open(os.devnull, os.O_WRONLY)
        if null != 1:
            os.dup2(null, 1)
            os.close(null)


def _fail(message: str) -> int:
    print(f"fer-edge: {message}", file=sys.stderr)
    return EXIT_BAD_START


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    started = time.monotonic()
    try:  # every refusal is a FerliteError: one line on stderr, exit 2
        config = load_config(getattr(args, "config_file", None), _overrides(args))
        logging.getLogger().setLevel(config.log_level.upper())
        if getattr(args, "check_config", False):
            return _check_config(config)
        signals = Signals()
        signals.install()
        _stdout_state(config)
        code = serve(config, signals)
    except FerliteError as e:
        return _fail(str(e))
    log.debug("ran %.1f s", time.monotonic() - started)
    return code


def _emit(text: str) -> None:
    """Print text to stdout now; OutputError if it cannot be written."""
    out = sys.stdout
    if out is None:
        raise OutputError("stdout is closed")
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")  # a file name need not be UTF-8
    try:
        out.write(safe + "\n")
        out.flush()
    except (OSError, ValueError) as e:
        _discard_stdout()
        raise OutputError(f"stdout: cannot write ({getattr(e, 'strerror', None) or e})") from e


def _discard_stdout() -> None:
    """Point fd 1 at /dev/null, so that the interpreter's flush at exit does not fail again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except OSError:
        pass


def _check_config(config: EdgeConfig) -> int:
    """Load the model and detector, print the effective config; FerliteError if either fails."""
    runner, _ = _load_parts(config)
    _emit(describe(config))
    _emit(f"# model: {Path(runner.path)} ({runner.backend}, {runner.input_dtype.name} input)")
    _emit("# config OK (model and detector loaded; the source is not opened by --check-config)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
