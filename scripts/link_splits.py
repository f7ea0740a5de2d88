"""Class-tree folders of links for fer-convert: calibration faces from the training side only, verification
faces from the test side (FER2013 PrivateTest + CK+ held-out subjects), so no test image calibrates the model,
and a validation tree (FER2013 PublicTest) for choosing conversion settings without looking at the test side.

    python scripts/link_splits.py OUT [--data ../shared/data]
    -> OUT/calibration/<Label>/...  OUT/val/<Label>/...  OUT/test/<Label>/...
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_model import ROOT, collect, held_out_subjects, test_sets  # noqa: E402


def link_tree(items: list[tuple[Path, str]], out: Path) -> int:
    for i, (path, label) in enumerate(items):
        target = out / label / f"{i:06d}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path.resolve(), target)
    return len(items)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    if args.out.exists():
        print(f"link_splits: {args.out} exists; give a new folder", file=sys.stderr)
        return 2
    subjects = held_out_subjects()
    train_side = collect(args.data / "fer2013", lambda f: f.name.startswith("Training_"))
    train_side += collect(args.data / "ckplus48_hugoiwnl", lambda f: f.name[:4] not in subjects)
    test_side = [item for items in test_sets(args.data).values() for item in items]
    print(f"calibration: {link_tree(train_side, args.out / 'calibration')} faces")
    val_side = collect(args.data / "fer2013", lambda f: f.name.startswith("PublicTest_"))
    print(f"val: {link_tree(val_side, args.out / 'val')} faces")
    print(f"test: {link_tree(test_side, args.out / 'test')} faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
