"""Class-tree folders of links for fer-convert, read with ferlite.train's own readers:
- calibration: training-side faces only (FER+ FER2013Train, CK+ subjects not held out, both crop styles), so no
  validation or test image calibrates the model;
- val: FER+ FER2013Valid (majority labels), for choosing conversion settings without looking at the test side;
- test: FER+ FER2013Test (majority labels) and the CK+ held-out subjects in both crop styles.

    python scripts/link_splits.py OUT [--data ../shared/data]
    -> OUT/calibration/<Label>/...  OUT/val/<Label>/...  OUT/test/<Label>/...
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ferlite.edge.contract import LABELS
from ferlite.train.data import CKPLUS_SUBJECT_REGEX, Sample, read_ferplus, read_folder
from ferlite.train.labels import LabelMapper
from ferlite.train.splits import read_subject_list

ROOT = Path(__file__).resolve().parents[1]
TEST_SUBJECTS = ROOT / "src" / "ferlite" / "train" / "subject_lists" / "ckplus-test-subjects.txt"
CKPLUS_FOLDERS = ("ckplus48_hugoiwnl", "ckplus48")


def link_tree(samples: list[Sample], out: Path) -> int:
    for i, sample in enumerate(samples):
        target = out / LABELS[sample.label] / f"{i:06d}_{sample.path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(sample.path.resolve(), target)
    return len(samples)


def sides(data: Path) -> dict[str, list[Sample]]:
    mapper = LabelMapper()
    ferplus = read_ferplus(data / "ferplus", "ferplus", mapper).samples
    held_out = read_subject_list(TEST_SUBJECTS)
    ckplus = [s for folder in CKPLUS_FOLDERS
              for s in read_folder(data / folder, folder, mapper, CKPLUS_SUBJECT_REGEX).samples]
    return {
        "calibration": [s for s in ferplus if s.split == "train"] + [s for s in ckplus if s.subject not in held_out],
        "val": [s for s in ferplus if s.split == "val"],
        "test": [s for s in ferplus if s.split == "test"] + [s for s in ckplus if s.subject in held_out],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    if args.out.exists():
        print(f"link_splits: {args.out} exists; give a new folder", file=sys.stderr)
        return 2
    for side, samples in sides(args.data).items():
        print(f"{side}: {link_tree(samples, args.out / side)} faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
