"""The installed ferlite's version, for `--version` and `ferlite.edge.__version__`.

`ferlite` itself is a namespace package (ferlite.edge, ferlite.train and ferlite.convert are the folders
src/ferlite/edge/, train/ and convert/ of one distribution), so it has no `__init__.py` to carry a
`__version__`: the version lives here, read from the installed distribution's
metadata. It is what `pip install` recorded (an editable install re-reads pyproject.toml only when
reinstalled). docs/development.md, "The version".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

DISTRIBUTION = "ferlite"
UNKNOWN = "0+unknown"  # run from a source tree that was never installed


def version(distribution: str) -> str:
    """importlib.metadata.version, imported on first use: importlib.metadata pulls in email, zipfile,
    csv... (~1.5 MB of RSS) that a daemon never asked for its version should not carry."""
    from importlib.metadata import version as metadata_version

    return metadata_version(distribution)


def package_version() -> str:
    """The version of the installed `ferlite` distribution ("0+unknown" when it is not installed)."""
    from importlib.metadata import PackageNotFoundError

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN


def version_text(prog: str) -> str:
    """What `PROG --version` prints: "fer-edge 0.1.0"."""
    return f"{prog} {package_version()}"


class VersionAction(argparse.Action):
    """`--version` that reads the version when the flag is given (argparse's "version" action takes its
    text when the parser is built, i.e. on every start)."""

    def __init__(self, option_strings: Sequence[str], prog: str, dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str = "show program's version number and exit") -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)
        self.prog = prog

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        sys.stdout.write(version_text(self.prog) + "\n")
        parser.exit()
