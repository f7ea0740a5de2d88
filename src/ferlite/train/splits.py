"""Train / val / test sides: files' own split kept, then subject-independent (or random) splits.

Subject-independent: every subject (CK+ person, FERG-DB character) lies on one side only.
Samples with no known subject are their own group. Groups are assigned greedily so that each
side gets close to its fraction of every class. Exact duplicate faces never sit on two sides.
"""

from __future__ import annotations

import csv
import io
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from ferlite.edge.contract import LABELS
from ferlite.edge.contract.atomic import atomic_write

from .config import DEFAULTS, SPLIT_MODES
from .data import Sample
from .errors import SplitError

log = logging.getLogger(__name__)

SIDES = ("train", "val", "test")


def read_subject_list(path: Path) -> set[str]:
    """One subject per line (`S005`); blank lines and `#` comments ignored."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise SplitError(f"{path}: unreadable subject list ({e})") from e
    subjects = {line.split("#", 1)[0].strip() for line in text.splitlines()}
    subjects.discard("")
    if not subjects:
        raise SplitError(f"{path}: no subjects listed")
    return subjects


def _group_key(sample: Sample, index: int, mode: str) -> str:
    if mode == "subject" and sample.subject is not None:
        return "s:" + sample.subject
    return f"f:{index}"


def _cost(counts: dict[str, Counter[int]], targets: dict[str, dict[int, float]]) -> float:
    return sum(abs(counts[s][c] - t) for s, tc in targets.items() for c, t in tc.items())


def assign_groups(
    groups: dict[str, Counter[int]], fractions: dict[str, float], seed: int
) -> dict[str, str]:
    """Greedy stratified assignment of groups to sides (largest groups first, ties random)."""
    totals: Counter[int] = Counter()
    for counter in groups.values():
        totals.update(counter)
    targets = {s: {c: f * n for c, n in totals.items()} for s, f in fractions.items() if f > 0}
    counts: dict[str, Counter[int]] = {s: Counter() for s in targets}
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    keys.sort(key=lambda k: -sum(groups[k].values()))
    sides: dict[str, str] = {}
    for key in keys:
        best, best_cost = "train", _cost(counts, targets)
        for side in targets:
            counts[side].update(groups[key])
            cost = _cost(counts, targets)
            counts[side].subtract(groups[key])
            if cost < best_cost:
                best, best_cost = side, cost
        sides[key] = best
        if best != "train":
            counts[best].update(groups[key])
    _ensure_nonempty(groups, sides, targets)
    return sides


def _ensure_nonempty(
    groups: dict[str, Counter[int]], sides: dict[str, str], targets: dict[str, dict[int, float]]
) -> None:
    for side in targets:
        train = [k for k, s in sides.items() if s == "train"]
        if side not in sides.values() and len(train) > 1:
            smallest = min(train, key=lambda k: (sum(groups[k].values()), k))
            sides[smallest] = side
            log.warning("%s side was empty: moved the smallest group %s there", side, smallest)


def assign_sides(
    samples: Sequence[Sample], *, mode: str = DEFAULTS["split"], val_fraction: float = DEFAULTS["val_fraction"],
    test_fraction: float = DEFAULTS["test_fraction"], test_subjects: set[str] | None = None,
    seed: int = DEFAULTS["seed"],
) -> list[str]:
    """Side of every sample: own split > fixed test subjects > subject/random split of the rest."""
    if mode not in SPLIT_MODES:
        raise SplitError(f"split must be one of {', '.join(SPLIT_MODES)}, not {mode!r}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise SplitError("val and test fractions must be in [0, 1) and sum to less than 1")
    sides: list[str | None] = [s.split for s in samples]
    for i, sample in enumerate(samples):
        if sides[i] is None and test_subjects and sample.subject in test_subjects:
            sides[i] = "test"
    groups: dict[str, Counter[int]] = defaultdict(Counter)
    members: dict[str, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        if sides[i] is None:
            key = _group_key(sample, i, mode)
            groups[key][sample.label] += 1
            members[key].append(i)
    group_sides = assign_groups(dict(groups), {"val": val_fraction, "test": test_fraction}, seed)
    for key, side in group_sides.items():
        for i in members[key]:
            sides[i] = side
    return [s or "train" for s in sides]


def drop_cross_duplicates(
    hashes: Sequence[str | None], sides: list[str]
) -> tuple[list[bool], Counter[str]]:
    """Keep mask: a face also present on a later side (test > val > train) is dropped here."""
    rank = {side: i for i, side in enumerate(SIDES)}
    top: dict[str, int] = {}
    for h, side in zip(hashes, sides, strict=True):
        if h is not None:
            top[h] = max(top.get(h, -1), rank[side])
    keep: list[bool] = []
    removed: Counter[str] = Counter()
    for h, side in zip(hashes, sides, strict=True):
        duplicate = h is not None and top[h] > rank[side]
        keep.append(not duplicate)
        if duplicate:
            removed[side] += 1
    return keep, removed


def subject_leaks(samples: Sequence[Sample], sides: Sequence[str]) -> dict[str, set[str]]:
    """Subjects found on more than one side (empty when the split is subject-independent)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for sample, side in zip(samples, sides, strict=True):
        if sample.subject is not None:
            seen[sample.subject].add(side)
    return {s: v for s, v in seen.items() if len(v) > 1}


MANIFEST_FIELDS = ("path", "dataset", "label", "subject", "side", "status")


def write_manifest(
    path: Path, samples: Sequence[Sample], sides: Sequence[str], statuses: Sequence[str]
) -> None:
    """Every file considered: its label, its side and whether it was used (status 'ok')."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_FIELDS)
    for sample, side, status in zip(samples, sides, statuses, strict=True):
        writer.writerow([sample.path, sample.dataset, LABELS[sample.label], sample.subject or "",
                         side, status])
    atomic_write(path, buffer.getvalue().encode())


def read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
