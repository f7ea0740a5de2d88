"""fer-edge's command line: camera frames -> face detector -> int8 model -> JSON lines on stdout and a Unix socket.

Only the flags: daemon.run starts the process, serves and gives the exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ..algorithm.detector import DEFAULT_DETECTOR, DETECTORS
from ..contract.version import VersionAction
from . import daemon


class OneLineParser(argparse.ArgumentParser):
    """argparse that refuses a bad flag or value with one line on stderr and exit 2, like every other
    refusal of fer-edge (`fer-edge: argument --min-size: invalid int value: 'big'`), not usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def add_detection_flags(p: argparse.ArgumentParser) -> None:
    """The detection and labelling settings as flags (fer-edge and fer-preview): each overrides its config
    key only when typed; ranges are the config's (a bad value exits 2 naming the setting)."""
    p.add_argument("--detector", metavar="|".join(DETECTORS),
                   help=f"face detector (default {DEFAULT_DETECTOR})")
    p.add_argument("--min-size", type=int, metavar="PX",
                   help="smallest face looked for, in pixels of the frame (default 48)")
    p.add_argument("--min-neighbors", type=int, metavar="N",
                   help="Haar hits needed to call a face: fewer finds more (and more false faces) (default 5)")
    p.add_argument("--flip", action="store_const", const=True,
                   help="test-time flip: average each face with its mirror (default)")
    p.add_argument("--no-flip", dest="flip", action="store_const", const=False,
                   help="no test-time flip: one inference per face instead of two, slightly less often right")
    p.add_argument("--smooth-window", type=int, metavar="N",
                   help="cameras/videos: frames of scores averaged for a face's label (default 5; 1: none)")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
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
    add_detection_flags(p)
    p.add_argument("--annotate", metavar="PATH",
                   help="also write annotated frames: a video file (camera/video) or a folder of images (stills)")
    p.add_argument("--format", metavar="json|csv",
                   help="results on stdout: JSON lines (default) or CSV, one row per face (the socket stays JSON)")
    p.add_argument("--log-level", help="DEBUG | INFO | WARNING | ERROR")
    p.add_argument("--version", action=VersionAction, prog="fer-edge")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = dict(vars(args))
    values.pop("config_file", None)
    values.pop("check_config", None)
    if "log_level" in values:
        values["log_level"] = values["log_level"].upper()
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return daemon.run(getattr(args, "config_file", None), _overrides(args),
                      check_only=getattr(args, "check_config", False))


if __name__ == "__main__":
    sys.exit(main())
