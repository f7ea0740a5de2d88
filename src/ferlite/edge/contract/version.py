"""The installed ferlite's version, for `--version` and `ferlite.edge.__version__`.

`ferlite` itself is a namespace package (ferlite.edge, ferlite.train and ferlite.convert are the folders
edge/, train/ and convert/ of one distribution, mapped by pyproject.toml's package-dir), so it has no
`__init__.py` to carry a `__version__`: the version lives here, read from the installed distribution's
metadata. It is what `pip install` recorded (an editable install re-reads pyproject.toml only when
reinstalled). docs/development.md, "The version".
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "ferlite"
UNKNOWN = "0+unknown"  # run from a source tree that was never installed


def package_version() -> str:
    """The version of the installed `ferlite` distribution ("0+unknown" when it is not installed)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN


def version_text(prog: str) -> str:
    """What `PROG --version` prints: "fer-edge 0.1.0"."""
    return f"{prog} {package_version()}"
