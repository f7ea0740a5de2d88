"""The Markdown documentation: every relative link and #anchor resolves; the README's first screen."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import ROOT

SKIP_PARTS = {".venv", ".git", "node_modules", "build", "dist"}
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def markdown_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.md")
                  if not SKIP_PARTS & set(p.relative_to(ROOT).parts) and "egg-info" not in str(p))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (backticks, colons, dots, ×) dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", path.read_text()).splitlines():
        match = re.match(r"#{1,6} (.*)", line)
        if match:
            name = slug(match.group(1))
            count = seen.get(name, 0)
            seen[name] = count + 1
            found.add(name if count == 0 else f"{name}-{count}")
    return found


def test_every_relative_link_and_anchor_in_the_docs_resolves():
    files = markdown_files()
    assert ROOT / "README.md" in files and ROOT / "docs" / "mqtt.md" in files
    broken = []
    for path in files:
        for url in LINK.findall(FENCE.sub("", path.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", url):  # http:, https:, mailto:, file:
                continue
            target, _, fragment = url.partition("#")
            resolved = (path.parent / target).resolve() if target else path
            where = f"{path.relative_to(ROOT)}: {url}"
            if not resolved.exists():
                broken.append(f"{where} (no such file)")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{where} (no such heading in {resolved.relative_to(ROOT)})")
    assert not broken, "\n".join(broken)


def test_readme_first_screen_says_what_it_is_how_to_start_and_where_to_go():
    lines = (ROOT / "README.md").read_text().splitlines()
    first_screen = "\n".join(lines[:45])
    assert "facial expressions" in first_screen
    assert "fer-edge --source demo" in first_screen  # the first command
    assert first_screen.count("<!-- test-command -->") == 1 and "<!-- /test-command -->" in first_screen
    assert "## Where to go next" in first_screen
