"""Pick the fixed CK+ held-out subjects (src/ferlite/train/subject_lists/ckplus-test-subjects.txt).

25 of the 123 subjects in ../shared/data/ckplus48_hugoiwnl, chosen among 3,000 seeded random draws as the
draw whose per-class image counts are closest to 20% of each class. Re-running gives the same list.
"""

from __future__ import annotations

import collections
import random
import sys
from pathlib import Path

from ferlite.train.labels import ALIASES, DROP

CLASSES = {name: label for name, label in ALIASES.items() if label != DROP}


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/ckplus48_hugoiwnl")
    per_subject: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for folder in sorted(p for p in root.iterdir() if p.name in CLASSES):
        for image in folder.iterdir():
            per_subject[image.name[:4]][CLASSES[folder.name]] += 1
    subjects = sorted(per_subject)
    totals: collections.Counter[str] = collections.Counter()
    for counts in per_subject.values():
        totals.update(counts)
    best: tuple[float, list[str]] | None = None
    for seed in range(3000):
        pick = sorted(random.Random(seed).sample(subjects, 25))
        held: collections.Counter[str] = collections.Counter()
        for subject in pick:
            held.update(per_subject[subject])
        error = sum(abs(held[k] / totals[k] - 0.2) for k in totals)
        if best is None or error < best[0]:
            best = (error, pick)
    assert best is not None
    print("\n".join(best[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
