"""fer-watch: print a running fer-edge's feed (one JSON object per line)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .feed import iterate_messages
from .version import version_text

DEFAULT_SOCKET = "/run/ferlite/feed.sock"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fer-watch", description="Print fer-edge's socket feed.")
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help=f"feed socket (default {DEFAULT_SOCKET})")
    parser.add_argument("--count", type=int, default=None, help="stop after N messages")
    parser.add_argument("--summary", action="store_true", help="one short line per frame instead of JSON")
    parser.add_argument("--version", action="version", version=version_text("fer-watch"))
    args = parser.parse_args(argv)
    shown = 0
    try:
        for message in iterate_messages(args.socket):
            if args.summary:
                print(summary_line(message), flush=True)
            else:
                print(json.dumps(message), flush=True)
            shown += 1
            if args.count is not None and shown >= args.count:
                break
    except (FileNotFoundError, ConnectionRefusedError) as e:
        print(f"fer-watch: {args.socket}: no fer-edge feed there ({e.strerror})", file=sys.stderr)
        return 2
    except PermissionError:
        print(f"fer-watch: {args.socket}: permission denied (join the 'fer' group)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0
    return 0


def summary_line(message: dict[str, Any]) -> str:
    """`frame 12: #3 Happy 0.93, #4 Neutral 0.71` (the track id where the face has one)."""
    faces = ", ".join(
        (f"#{f['track']} " if f.get("track") is not None else "") + f"{f['label']} {f['score']:.2f}"
        for f in message["faces"]
    )
    return f"frame {message['frame']}: {faces or '-'}"


if __name__ == "__main__":
    sys.exit(main())
