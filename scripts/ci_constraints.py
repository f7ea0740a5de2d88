"""CI's pinned versions (constraints/ci.txt): write them from a green venv, or report how far the newest releases
have moved from them.

  .venv/bin/python scripts/ci_constraints.py freeze > constraints/ci.txt   # after .ci/run passed
  .venv/bin/python scripts/ci_constraints.py drift                          # report only; always exits 0

`freeze` lists the installed version of every distribution `ferlite[edge,train,dev]` pulls in (its dependency
closure, read from the installed metadata), so packages installed by hand for other experiments stay out.
`drift` asks pip what a fresh, unconstrained install would get today (`pip install --dry-run --report`, nothing is
installed) and prints each package whose newest version differs from the pinned one. It never fails: the newest
releases are news, not a verdict; a registry that does not answer within its time limit is reported and skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints" / "ci.txt"
PROJECT, EXTRAS = "ferlite", ("edge", "train", "dev")
WATCHED = ("tensorflow", "keras", "ai-edge-litert")  # the ones whose releases have broken conversions before
DRIFT_TIMEOUT_S = 50

HEADER = """\
# The exact versions CI (.ci/run) last passed with, on Linux x86_64, Python {python}.
# .ci/run exports PIP_CONSTRAINT=constraints/ci.txt, so the README's install resolves to these.
# Regenerate after a green .ci/run with newer versions:
#   .venv/bin/python scripts/ci_constraints.py freeze > constraints/ci.txt
# Ranges that users get live in pyproject.toml; these pins are only CI's.
"""


def project_requirements(extras: tuple[str, ...]) -> list[tuple[str, set[str]]]:
    """What pyproject.toml asks for with these extras, its own extras (`ferlite[mqtt]`) expanded. Read from the
    file, not from the installed metadata, which is as old as the last `pip install -e`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional, out = project.get("optional-dependencies", {}), []
    todo, seen = list(extras), set()
    lines = list(project.get("dependencies", []))
    while todo:
        extra = todo.pop()
        if extra not in seen:
            seen.add(extra)
            lines += optional.get(extra, [])
    for line in lines:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if canonicalize_name(req.name) == PROJECT:
            out += project_requirements(tuple(sorted(req.extras)))
        else:
            out.append((req.name, set(req.extras)))
    return out


def closure(requirements: list[tuple[str, set[str]]]) -> dict[str, str]:
    """{canonical name: installed version} of these requirements and everything they require, recursively."""
    found: dict[str, str] = {}
    todo = list(requirements)
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        dist_name, wanted = todo.pop()
        key = (canonicalize_name(dist_name), frozenset(wanted))
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(dist_name)
        found[key[0]] = dist.version
        todo.extend(_requirements(dist, wanted))
    return found


def _requirements(dist: metadata.Distribution, extras: set[str]) -> list[tuple[str, set[str]]]:
    """The requirements of `dist` that apply here, for the given extras (markers evaluated for this Python)."""
    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            out.append((req.name, set(req.extras)))
    return out


def freeze() -> int:
    pins = closure(project_requirements(EXTRAS))
    print(HEADER.format(python=".".join(map(str, sys.version_info[:2]))), end="")
    for name in sorted(pins):
        print(f"{name}=={pins[name]}")
    return 0


def pinned() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def newest() -> dict[str, str] | None:
    """What `pip install '.[edge,train,dev]'` would resolve to today without constraints; None if pip could not
    say in time (registry unreachable or slow)."""
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", "-", f".[{','.join(EXTRAS)}]"]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=DRIFT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"newest releases: no answer from the package index within {DRIFT_TIMEOUT_S} s; skipped")
        return None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        reason = next((line.strip() for line in lines if line.strip().startswith("ERROR")), lines[-1])
        print(f"newest releases: pip could not resolve ({reason}); skipped")
        return None
    report = json.loads(done.stdout)
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}


def drift() -> int:
    latest = newest()
    if latest is None:
        return 0
    pins = pinned()
    latest.pop(canonicalize_name(PROJECT), None)
    changed = sorted(name for name in latest.keys() | pins.keys() if latest.get(name) != pins.get(name))
    if not changed:
        print("newest releases: none differ from constraints/ci.txt")
        return 0
    print(f"newest releases: {len(changed)} differ from constraints/ci.txt (report only; CI used the pins):")
    for name in sorted(changed, key=lambda n: (n not in WATCHED, n)):
        mark = "  <- watched: test the conversion with it" if name in WATCHED else ""
        print(f"  {name}: {pins.get(name, '(not pinned)')} -> {latest.get(name, '(no longer needed)')}{mark}")
    return 0


def main(argv: list[str]) -> int:
    commands = {"freeze": freeze, "drift": drift}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: {Path(__file__).name} freeze|drift", file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
