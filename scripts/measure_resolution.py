"""Does the edge pass a face through the training resolution (the spec's face_size) or not?

Training faces are 48x48 crops upscaled to the model input, so they are soft; a camera face of 200 px shrunk
straight to the input is sharp, unlike anything the model saw. This script measures, on the real photos that
ship in the package (edge/demo), shown at face sizes from 48 to 400 px:
- sharpness of the model's input (variance of the Laplacian), beside the same measure on training faces;
- how much the model's answer moves when the same face is only shown larger (max probability change and
  whether the top label stays), with face_size 48 (pass through 48 px) and 0 (straight to the input).

    python scripts/measure_resolution.py [--model PATH] [--data ../shared/data] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from ferlite.edge.algorithm.detector import HaarDetector
from ferlite.edge.algorithm.runner import ModelRunner
from ferlite.edge.contract import LABELS
from ferlite.edge.contract.preprocess import preprocess_face
from ferlite.edge.runtime.config import default_model_path

ROOT = Path(__file__).resolve().parents[1]
FACE_SIZES = (48, 64, 96, 128, 192, 256, 400)


def sharpness(face: np.ndarray) -> float:
    return float(cv2.Laplacian(face, cv2.CV_64F).var())


def training_sharpness(data: Path, count: int = 400) -> list[float]:
    files = sorted((data / "ferplus" / "FER2013Valid").glob("*.png"))[:count]
    return [sharpness(preprocess_face(cv2.imread(str(f)))) for f in files]


def faces_at_sizes(photo: np.ndarray, detector: HaarDetector) -> list[tuple[int, np.ndarray, tuple[int, ...]]]:
    """The photo rescaled so that its largest Haar face is about each of FACE_SIZES px wide."""
    boxes = detector.detect(photo)
    if not boxes:
        return []
    width = max(boxes, key=lambda b: b[2] * b[3])[2]
    out = []
    for size in FACE_SIZES:
        scale = size / width
        image = cv2.resize(photo, None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        found = detector.detect(image, min_size=max(24, size // 2))
        if found:
            out.append((size, image, max(found, key=lambda b: b[2] * b[3])))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    runner = ModelRunner(args.model, threads=1)
    detector = HaarDetector()
    report: dict[str, object] = {"model": str(args.model.name), "margin": runner.spec.margin}
    if (args.data / "ferplus").is_dir():
        train = training_sharpness(args.data)
        report["training_sharpness"] = {"median": float(np.median(train)),
                                        "p10": float(np.percentile(train, 10)),
                                        "p90": float(np.percentile(train, 90))}
    photos = sorted((ROOT / "src" / "ferlite" / "edge" / "demo").glob("*.jpg"))
    rows = []
    for photo_path in photos:
        photo = cv2.imread(str(photo_path))
        for face_size in (48, 0):
            probs, sharp = [], []
            for size, image, box in faces_at_sizes(photo, detector):
                face = preprocess_face(image, box, margin=runner.spec.margin, face_size=face_size)
                sharp.append((size, sharpness(face)))
                probs.append(runner.classify(face[np.newaxis])[0])
            p = np.array(probs)
            labels = [LABELS[i] for i in p.argmax(1)]
            rows.append({"photo": photo_path.name, "face_size": face_size,
                         "sharpness": sharp, "labels": labels,
                         "max_prob_change": float((p.max(0) - p.min(0)).max()),
                         "label_changes": sum(a != b for a, b in zip(labels, labels[1:], strict=False))})
    report["photos"] = rows
    print(f"model {args.model.name}, margin {runner.spec.margin}")
    if "training_sharpness" in report:
        print(f"training faces (FER+ FER2013Valid, 400): input sharpness {report['training_sharpness']}")
    print("| photo | face_size | input sharpness at 48 .. 400 px faces | labels | max prob change | label flips |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        sharp = " ".join(f"{s:.0f}" for _, s in row["sharpness"])
        print(f"| {row['photo']} | {row['face_size']} | {sharp} | {' '.join(row['labels'])} | "
              f"{row['max_prob_change']:.3f} | {row['label_changes']} |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
