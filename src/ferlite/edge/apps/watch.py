"""fer-watch: print a running fer-edge's feed (one JSON object per line).

Exit codes: 0 when the feed ends, --count is reached, SIGTERM/SIGINT arrives or stdout's reader goes away;
1 when --timeout passes without a line; 2 (one line on stderr) for bad flags or a socket that cannot be
read (no such path, refused, permission denied, a path no socket can have). A line that is not a message
(or, with --summary, not a frame) is skipped and counted on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from ..contract.errors import FeedError
from ..contract.version import VersionAction
from ..runtime.feed import DEFAULT_SOCKET, finite_number, iterate_messages

EXIT_OK = 0
EXIT_TIMEOUT = 1
EXIT_BAD = 2


class _Stopped(BaseException):
    """Raised by the SIGTERM handler: leaves a blocked recv() or a write to a stalled stdout at once."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def _parsed(text: str, kind: type[float] | type[int], what: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def _positive_seconds(text: str) -> float:
    value = _parsed(text, float, "a number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _positive_count(text: str) -> int:
    value = int(_parsed(text, int, "a whole number"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _Skips:
    """Counts lines that were skipped; says so on stderr for the 1st, 10th, 100th and every 1000th."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, reason: str) -> None:
        self.count += 1
        if self.count in (1, 10, 100) or self.count % 1000 == 0:
            print(f"fer-watch: skipped {reason} ({self.count} skipped so far)", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fer-watch", description="Print fer-edge's socket feed.")
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help=f"feed socket (default {DEFAULT_SOCKET})")
    parser.add_argument("--count", type=_positive_count, default=None, help="stop after N messages")
    parser.add_argument("--summary", action="store_true", help="one short line per frame instead of JSON")
    parser.add_argument("--timeout", type=_positive_seconds, default=None, metavar="S",
                        help="exit 1 when no line comes for S seconds (default: wait for ever)")
    parser.add_argument("--version", action=VersionAction, prog="fer-watch")
    args = parser.parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    skips = _Skips()
    try:
        return _watch(args, skips)
    except (KeyboardInterrupt, _Stopped, BrokenPipeError):
        _silence_stdout()  # what a stalled or closed stdout still holds is not waited for at exit
        return EXIT_OK
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        if skips.count:
            print(f"fer-watch: {skips.count} line(s) skipped", file=sys.stderr)


def _watch(args: argparse.Namespace, skips: _Skips) -> int:
    where = args.socket
    shown = 0
    try:
        for message in iterate_messages(args.socket, timeout=args.timeout, on_skip=skips):
            if args.summary:
                try:
                    text = summary_line(message)
                except ValueError as e:
                    skips(f"a message that is not a frame ({e})")
                    continue
            else:
                text = json.dumps(message)
            print(text, flush=True)
            shown += 1
            if args.count is not None and shown >= args.count:
                break
    except FeedError as e:
        print(f"fer-watch: {e}", file=sys.stderr)
        return EXIT_BAD
    except TimeoutError:
        print(f"fer-watch: {where}: no line for {args.timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT
    except (FileNotFoundError, ConnectionRefusedError) as e:
        print(f"fer-watch: {where}: no fer-edge feed there ({e.strerror})", file=sys.stderr)
        return EXIT_BAD
    except PermissionError:
        print(f"fer-watch: {where}: permission denied (join the 'fer' group)", file=sys.stderr)
        return EXIT_BAD
    except BrokenPipeError:
        raise
    except OSError as e:
        print(f"fer-watch: {where}: cannot read the feed ({e.strerror or e})", file=sys.stderr)
        return EXIT_BAD
    return EXIT_OK


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no stdout at all (closed, or not a file)
        pass


def summary_line(message: dict[str, Any]) -> str:
    """`frame 12: #3 Happy 0.93, #4 Neutral 0.71` (the track id where the face has one).

    ValueError (saying what is wrong) for a message that is not a frame: no whole `frame` number, `faces`
    not a list of objects with a `label` string and a finite `score`."""
    frame = message.get("frame")
    if not _is_int(frame):
        raise ValueError("no whole 'frame' number")
    faces = message.get("faces")
    if not isinstance(faces, list):
        raise ValueError("'faces' is not a list")
    parts = []
    for face in faces:
        if not isinstance(face, dict) or not isinstance(face.get("label"), str):
            raise ValueError("a face without a 'label' string")
        score = finite_number(face.get("score"))
        if score is None:
            raise ValueError("a face without a finite 'score'")
        track = face.get("track")
        parts.append((f"#{track} " if _is_int(track) else "") + f"{_printable(face['label'])} {score:.2f}")
    return f"frame {frame}: {', '.join(parts) or '-'}"


def _printable(text: str) -> str:
    """The text, with control characters (a terminal's escape sequences) written as escapes."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


if __name__ == "__main__":
    sys.exit(main())
