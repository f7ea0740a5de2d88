"""Synthetic data sets in each official layout, written by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ferlite.train.synthetic import pattern, write_set

# Label index of each class name used below (LABELS order: Angry Disgust Happy Neutral Sad Surprise).
FOLDER_CLASSES = {"anger": 0, "disgust": 1, "happiness": 2, "neutral": 3, "sadness": 4,
                  "surprise": 5}
CKPLUS_CODES = {1: 0, 3: 1, 5: 2, 6: 4, 7: 5}  # CK+ emotion code -> label index
# A tiny hybrid CNN for runs that test the plumbing, not the accuracy.
TINY = ["--filters", "4,4,8,8,8", "--dense", "8,8", "--batch-size", "16", "--seed", "1"]


def keras_env(backend: str) -> dict[str, str]:
    """The environment of a command run under `backend` on the CPU (no GPU probed, TensorFlow's start-up quiet)."""
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu",
            "CUDA_VISIBLE_DEVICES": ""}


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def write_folder_set(
    root: Path, per_class: int = 6, subjects: int = 6, seed: int = 0, size: int = 48
) -> Path:
    """`<class>/S###_001_0000000n.png` crops, a fear folder, one corrupt file, one cross-class
    duplicate; every subject appears in every class."""
    rng = np.random.default_rng(seed)
    write_set(root, per_class, subjects, rng, (size, size))
    for i in range(3):
        write_image(root / "fear" / f"S{10 + i:03d}_009_{i + 1:08d}.png",
                    pattern(0, rng, (size, size)))
    (root / "anger" / "S010_099_00000001.png").write_bytes(b"not a png at all")
    return root


def write_ckplus(root: Path, subjects: int = 6, seed: int = 0) -> Path:
    """cohn-kanade-images/S###/00k/S###_00k_0000000n.png + Emotion/S###/00k/..._emotion.txt."""
    rng = np.random.default_rng(seed)
    codes = [*CKPLUS_CODES, 2, 4]  # plus contempt and fear, which are dropped
    for s in range(subjects):
        subject = f"S{100 + s:03d}"
        for q, code in enumerate(codes, start=1):
            sequence = f"{q:03d}"
            folder = root / "cohn-kanade-images" / subject / sequence
            frames = 3
            for f in range(1, frames + 1):
                label = 3 if f == 1 else CKPLUS_CODES.get(code, 0)
                write_image(folder / f"{subject}_{sequence}_{f:08d}.png",
                            pattern(label, rng, (64, 80)))
            if s == 0 and q == 1:
                continue  # an unlabelled sequence: its first frame is still Neutral
            emotion = root / "Emotion" / subject / sequence
            emotion.mkdir(parents=True, exist_ok=True)
            (emotion / f"{subject}_{sequence}_{frames:08d}_emotion.txt").write_text(
                f"   {code:.7e}\n")
    bad = root / "Emotion" / "S101" / "001" / "S101_001_00000003_emotion.txt"
    bad.write_text("garbage\n")
    return root


def write_ferg(root: Path, per_expression: int = 3, seed: int = 0) -> Path:
    """FERG_DB_256/<character>/<character>_<expression>/<character>_<expression>_<n>.png."""
    rng = np.random.default_rng(seed)
    expressions = {"anger": 0, "disgust": 1, "fear": None, "joy": 2, "neutral": 3,
                   "sadness": 4, "surprise": 5}
    for character in ("aia", "bonnie", "jules"):
        for expression, label in expressions.items():
            for n in range(1, per_expression + 1):
                name = f"{character}_{expression}"
                write_image(root / "FERG_DB_256" / character / name / f"{name}_{n}.png",
                            pattern(label if label is not None else 0, rng, (64, 64)))
    return root


# FER+ vote rows (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF)
# and what the reader must make of each: a label index or the reason it is dropped.
FERPLUS_ROWS = [
    ((10, 0, 0, 0, 0, 0, 0, 0, 0, 0), 3),  # unanimous neutral
    ((1, 6, 0, 0, 0, 0, 0, 0, 3, 0), 2),  # happy; unknown votes are not among the six
    ((4, 0, 0, 3, 1, 2, 0, 0, 0, 0), 3),  # neutral with sad runner-up; the single anger vote is noise
    ((0, 0, 2, 0, 0, 0, 7, 0, 1, 0), "majority fear"),
    ((0, 0, 0, 0, 0, 0, 0, 0, 2, 8), "majority nf"),
    ((4, 0, 0, 4, 0, 0, 0, 0, 2, 0), "tie"),
    ((0, 0, 0, 0, 6, 4, 0, 0, 0, 0), 0),  # angry
]


def write_ferplus(root: Path, seed: int = 0, per_side: int = 2) -> Path:
    """FERPlus's layout: FER2013{Train,Valid,Test}/label.csv beside 48x48 PNGs."""
    rng = np.random.default_rng(seed)
    for folder in ("FER2013Train", "FER2013Valid", "FER2013Test"):
        lines = []
        for copy in range(per_side):
            for i, (votes, expected) in enumerate(FERPLUS_ROWS):
                name = f"fer{copy:03d}{i:04d}.png"
                label = expected if isinstance(expected, int) else 0
                write_image(root / folder / name, pattern(label, rng, (48, 48)))
                lines.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
        lines.append("broken.png,(0 0 48 48),not,numbers")
        (root / folder / "label.csv").write_text("\n".join(lines) + "\n")
    return root
