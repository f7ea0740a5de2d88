"""fer-edge as a process: start-up (config, model, source, sinks), signals, stdout, exit codes.

cli.py parses the flags and calls run(); the frame loop itself is loop.run_loop.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..algorithm.native import open_closed_stderr, set_opencv_threads
from ..algorithm.pipeline import FrameResult, Pipeline
from ..contract.errors import FerliteError, OutputError, StartupError
from ..runtime.api import assemble, load_parts
from ..runtime.config import EdgeConfig, describe, load_config
from ..runtime.feed import FeedError
from ..runtime.loop import MessageSink, Sink, run_loop
from ..runtime.notify import SystemdNotifier
from ..runtime.sinks import SocketFeed, StdoutSink
from ..runtime.sources import Frame, FrameSource
from .table import CsvLines

log = logging.getLogger("ferlite.edge")

EXIT_OK = 0
EXIT_BAD_START = 2


def run(config_file: str | None, overrides: Mapping[str, Any], check_only: bool = False) -> int:
    """fer-edge from its config file and the settings typed on its command line, to its exit code:
    0 when the run ends (source done, --max-frames, SIGTERM/SIGINT, stdout's reader gone); 2 with one
    line on stderr for every refusal (a FerliteError), never a traceback."""
    # OpenCV would load an OpenCL runtime, where one is installed, at the first detection: ~0.6 MB
    # resident for nothing (frames are numpy arrays on the CPU). An explicit setting is kept.
    os.environ.setdefault("OPENCV_OPENCL_RUNTIME", "disabled")
    open_closed_stderr()  # `2>&-`: before any file is opened, or it would become fd 2
    level = str(overrides.get("log_level", "INFO")).upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    started = time.monotonic()
    try:
        config = load_config(config_file, overrides)
        logging.getLogger().setLevel(config.log_level.upper())
        if check_only:
            return check_config(config)
        signals = Signals()
        signals.install()
        _stdout_state(config)
        code = serve(config, signals)
    except FerliteError as e:
        return _fail(str(e))
    log.debug("ran %.1f s", time.monotonic() - started)
    return code


class Signals:
    """What the signal handlers asked for. Handlers only set flags; the frame loop and the source
    (sources.Requests: stop, interrupted, take_reopen) act on them.

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


class PhotoReport:
    """Photos (a folder, one image, the demo): what was not found, said per photo and counted.

    A photo in which no face is found is searched once more, for faces below min_size, to tell a
    photo without a face from one whose faces are too small. Either gets one log line (INFO; DEBUG
    on the later passes of a looping folder), a count in the status line and in the summary at the
    end, and a note on its annotated copy ("no face", "faces below min_size"). Photos too small to
    hold a face of min_size px (a folder of 48x48 face crops) also say once to use --whole-frame.
    """

    def __init__(self, pipeline: Pipeline, config: EdgeConfig, source: FrameSource,
                 annotate: Callable[..., None] | None = None) -> None:
        self.pipeline = pipeline
        self.min_size = config.min_size
        self.source = source
        self.annotate = annotate
        self.photos = 0
        self.faces = 0
        self.no_face = 0
        self.too_small = 0
        self.hinted = False

    def __call__(self, frame: Frame, result: FrameResult) -> None:
        self.photos += 1
        self.faces += len(result.faces)
        note = None
        if not result.faces:  # (with --whole-frame every photo is one face)
            note = self._not_found(frame, result)
        if self.annotate is not None:
            self.annotate(frame, result, note)

    def _not_found(self, frame: Frame, result: FrameResult) -> str:
        width, height = result.size
        name = frame.file or self.source.name
        level = logging.DEBUG if frame.repeat else logging.INFO
        small = self.pipeline.faces_below_min_size(frame.image)
        if small:
            self.too_small += 1
            sizes = sorted(box[2] for box in small)
            log.log(level, "%s: no face of min_size (%d px); %d smaller face(s), %d-%d px (lower min_size to "
                    "look for them)", name, self.min_size, len(small), sizes[0], sizes[-1])
            note = f"faces below min_size ({self.min_size} px)"
        else:
            self.no_face += 1
            log.log(level, "%s: no face found (%dx%d)", name, width, height)
            note = "no face"
        if not self.hinted and min(width, height) < 2 * self.min_size:
            self.hinted = True
            log.warning("no face found in a %dx%d image: faces smaller than min_size (%d px) are not looked for; "
                        "if the images are face crops, use --whole-frame", width, height, self.min_size)
        return note

    def status(self) -> str:
        """For the status line: the photos in which no face was found so far."""
        return f", {self.no_face} photos with no face, {self.too_small} with faces below min_size"

    def summary(self, fps: float) -> None:
        skipped = self.source.skipped
        log.info("%s: %d photos, %d faces, %d with no face, %d with only faces below min_size (%d px), "
                 "%d unreadable skipped; %.1f photos/s", self.source.name, self.photos, self.faces, self.no_face,
                 self.too_small, self.min_size, skipped, fps)


def serve(config: EdgeConfig, stop: Signals) -> int:
    """Load the model, open the source and the sinks, run the frame loop until it ends; EXIT_OK.

    Raises:
        FerliteError: the model, detector, source, socket, annotated output or stdout refused (a
            StartupError, ModelLoadError, ModelSpecError, DetectorError or OutputError), or the
            source gave no frame at all.
    """
    set_opencv_threads(config.threads)
    notifier = SystemdNotifier.from_env()
    parts = assemble(config)
    with ExitStack() as stack:
        source = stack.enter_context(parts.open_source(stop, on_wait=notifier.watchdog))
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
        pipeline = parts.pipeline_for(source)
        on_result: Any = None  # --annotate: imported and called only when asked for
        if config.annotate:
            from .annotate import AnnotateError, annotator_for

            try:
                on_result = stack.enter_context(annotator_for(config.annotate, source, config.fps_limit))
            except AnnotateError as e:
                raise StartupError(str(e)) from e
        report: PhotoReport | None = None
        if not source.temporal:  # photos: each said and counted
            on_result = report = PhotoReport(pipeline, config, source, on_result)
        message_sinks: list[MessageSink] = []
        if stdout is not None and config.format == "csv":
            sinks.remove(stdout)
            message_sinks.append(CsvLines(stdout))

        def extra() -> str:
            text = report.status() if report is not None else ""
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
                message_sinks=message_sinks,
            )
        finally:
            notifier.stopping()
    if stdout is not None:
        stdout.check()  # a write error met after the last frame (the queue drains on close)
    if report is not None:
        report.summary(stats.fps)
    else:
        log.info("%d frames, %d faces, %.1f fps", stats.frames, stats.faces, stats.fps)
    if stats.failed:
        log.warning("%d frame(s) gave no result: the model failed on them", stats.failed)
    if stats.ended == "source" and stats.frames == 0 and stats.failed:
        raise StartupError(f"{source.name}: no frame gave a result: the model failed on all {stats.failed} "
                           f"({parts.runner.path})")
    if stats.ended == "source" and stats.frames == 0:
        skipped = source.skipped
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


def check_config(config: EdgeConfig) -> int:
    """Load the model and detector, print the effective config; FerliteError if either fails."""
    set_opencv_threads(config.threads)  # OpenCV's settings from the environment are checked too
    runner, _ = load_parts(config)
    _emit(describe(config))
    _emit(f"# model: {Path(runner.path)} ({runner.backend}, {runner.input_dtype.name} input)")
    _emit("# config OK (model and detector loaded; the source is not opened by --check-config)")
    return EXIT_OK
