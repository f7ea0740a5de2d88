"""ferlite.edge reads as its architecture: contract/ <- algorithm/ <- runtime/ <- apps/, each folder importing
only the ones before it, and the pipeline given its parts of fer-edge's settings, never the whole config."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from ferlite.edge.algorithm.detector import DetectSettings
from ferlite.edge.algorithm.tracking import TrackSettings
from ferlite.edge.contract import settings
from ferlite.edge.runtime.config import EdgeConfig
from ferlite.edge.runtime.feed import FeedSettings
from ferlite.edge.runtime.sources import InputSettings

EDGE = Path(__file__).resolve().parents[1] / "src" / "ferlite" / "edge"
LAYERS = ("contract", "algorithm", "runtime", "apps")  # each may import those before it, never after
PARTS = {"input": InputSettings, "detect": DetectSettings, "feed": FeedSettings, "track": TrackSettings}


def _edge_imports(path: Path, root: Path) -> set[str]:
    """The ferlite.edge modules a source file under `root` (a ferlite/edge folder) imports (relative imports
    resolved), at any depth."""
    package = path.relative_to(root.parent.parent).with_suffix("").parts[:-1]  # ("ferlite", "edge", ...)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [".".join([*base, node.module])] if node.module else [".".join([*base, a.name]) for a in
                                                                               node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.startswith("ferlite.edge."))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[2] in LAYERS else None


def layer_violations(root: Path = EDGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        own = _layer(".".join(("ferlite", *path.relative_to(root.parent.parent).with_suffix("").parts[1:])))
        if own is None:
            continue  # ferlite/edge/__init__.py: the public API may name any of them (lazily)
        allowed = set(LAYERS[: LAYERS.index(own) + 1])
        for module in sorted(_edge_imports(path, root)):
            target = _layer(module)
            if target is not None and target not in allowed:
                problems.append(f"{path.relative_to(root)} ({own}) imports {module}")
    return problems


def test_every_edge_module_lives_in_one_of_the_four_folders():
    loose = sorted(p.name for p in EDGE.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside contract/ algorithm/ runtime/ apps/: {loose}"
    assert {p.name for p in EDGE.iterdir() if p.is_dir() and not p.name.startswith("__")} == {
        *LAYERS, "models", "demo"}


def test_each_folder_imports_only_the_folders_before_it():
    assert layer_violations() == []


def test_a_planted_upward_import_is_found(tmp_path):
    """The check can fail: a copy of the tree where the algorithm imports the runtime."""
    import shutil

    copy = tmp_path / "ferlite" / "edge"
    shutil.copytree(EDGE, copy, ignore=shutil.ignore_patterns("models", "demo", "__pycache__"))
    pipeline = copy / "algorithm" / "pipeline.py"
    pipeline.write_text(pipeline.read_text() + "\nfrom ..runtime.config import EdgeConfig  # noqa\n")
    assert layer_violations(copy) == ["algorithm/pipeline.py (algorithm) imports ferlite.edge.runtime.config"]


@pytest.mark.parametrize("group", sorted(PARTS))
def test_each_toml_table_is_exactly_one_part_living_beside_its_code(group):
    part = PARTS[group]
    fields = {f.name for f in dataclasses.fields(part)}
    assert fields == {name for name, table in settings.groups(EdgeConfig).items() if table == group}
    assert issubclass(EdgeConfig, part)
    own = {f.name for f in dataclasses.fields(EdgeConfig)} - set().union(
        *({f.name for f in dataclasses.fields(p)} for p in PARTS.values()))
    assert not own & set(settings.groups(EdgeConfig)), "EdgeConfig's own settings are top-level ones"


def test_a_part_is_handed_on_with_its_own_settings_and_checks_them():
    config = EdgeConfig(min_size=60, max_faces=3, socket="/tmp/x.sock", loop=True)
    detect, track = DetectSettings.of(config), TrackSettings.of(config)
    assert type(detect) is DetectSettings and detect.min_size == 60
    assert type(track) is TrackSettings and track.max_faces == 3
    assert not hasattr(detect, "socket") and not hasattr(track, "loop")
    with pytest.raises(settings.ConfigError, match="reopen_initial_s must be <= reopen_max_s"):
        EdgeConfig(reopen_initial_s=5.0, reopen_max_s=1.0)  # a part's relation is checked in the whole


def test_the_pipeline_is_given_the_parts_never_the_whole_config(tiny_model):
    from ferlite.edge.runtime.api import assemble

    parts = assemble(EdgeConfig(model=str(tiny_model), min_size=60, max_faces=3, flip=True))
    for temporal in (True, False):
        pipeline_settings = parts.pipeline(temporal).settings
        assert type(pipeline_settings.detect) is DetectSettings and pipeline_settings.detect.min_size == 60
        assert type(pipeline_settings.track) is TrackSettings and pipeline_settings.track.max_faces == 3
        assert pipeline_settings.flip and pipeline_settings.temporal is temporal


def test_training_and_conversion_import_only_the_contract_and_the_algorithm():
    src = EDGE.parent
    problems = [f"{path.relative_to(src)} imports {module}"
                for package in ("train", "convert") for path in sorted((src / package).rglob("*.py"))
                for module in sorted(_edge_imports(path, EDGE)) if _layer(module) in ("runtime", "apps")]
    assert problems == []


def test_the_layout_in_the_docs_names_every_module_of_the_edge():
    """docs/development.md's layout is the tree: every module under edge/ is named in it, and every folder."""
    text = (EDGE.parents[2] / "docs" / "development.md").read_text(encoding="utf-8")
    layout = text.split("## Layout", 1)[1].split("```")[1]
    missing = [str(path.relative_to(EDGE)) for path in sorted(EDGE.rglob("*.py"))
               if path.name not in layout and path.name != "__init__.py"]
    missing += [f"{folder.name}/" for folder in _packages(EDGE) if f"{folder.name}/" not in layout]
    assert missing == []


def _packages(root: Path) -> list[Path]:
    """Every folder under `root` that is a package (holds an __init__.py)."""
    return sorted(init.parent for init in root.rglob("__init__.py") if init.parent != root)


def test_every_package_folder_is_installed():
    """pyproject's `packages =` does not take subpackages by itself: a folder missing from it is left out of a
    (non-editable) install, and `pip install '.[edge]' && fer-edge` fails on a fresh machine."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((EDGE.parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(project["tool"]["setuptools"]["packages"])
    src = EDGE.parents[1]
    found = {".".join(folder.relative_to(src).parts) for folder in _packages(src)}
    found |= {f"ferlite.{p.name}" for p in src.iterdir() if (p / "__init__.py").is_file()}
    assert found - listed == set() and listed - found == set()
