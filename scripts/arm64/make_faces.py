"""Write a small folder of pre-cropped face images for the arm64 check (x86 side, host cv2)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np


def sources(repo: Path) -> list[np.ndarray]:
    images = [cv2.imread(str(p)) for p in sorted((repo / "src" / "ferlite" / "edge" / "demo").glob("*.jpg"))]
    try:
        from skimage import data

        images.append(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    except ImportError:
        pass
    return [im for im in images if im is not None]


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True)
    repo = Path(__file__).resolve().parents[2]
    from ferlite.edge.algorithm.detector import cascade_path  # finds the cascade where Debian's OpenCV has no cv2.data

    cascade = cv2.CascadeClassifier(str(cascade_path()))
    n = 0
    for image in sources(repo):
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        faces = cascade.detectMultiScale(gray, 1.1, 5, minSize=(40, 40))
        h, w = gray.shape
        boxes = [tuple(int(v) for v in f) for f in faces] or [(w // 4, h // 4, w // 2, h // 2)]
        for x, y, bw, bh in boxes:
            m = bw // 5
            crop = image[max(0, y - m): y + bh + m, max(0, x - m): x + bw + m]
            variants = {
                "": crop,
                "_flip": cv2.flip(crop, 1),
                "_dark": cv2.convertScaleAbs(crop, alpha=0.6, beta=0),
                "_tight": image[y: y + bh, x: x + bw],
            }
            for suffix, face in variants.items():
                cv2.imwrite(str(out / f"face_{n:02d}{suffix}.png"), face)
            n += 1
    if n == 0:
        raise SystemExit("make_faces: no source images")
    print(f"   {len(list(out.iterdir()))} face images from {n} faces -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
