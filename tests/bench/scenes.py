"""Camera-like 640x480 frames made from real face photos, with the true face boxes.

Shared by the benchmarks and the in-suite smoke test. Faces come from the NASA astronaut
portrait that ships in edge/demo (and its mirror image) and, when ../shared/data is present,
a few FER2013 crops upscaled; they are pasted onto a real non-face photo (scikit-image's
coffee, or a synthetic texture without scikit-image) and drift a few pixels per frame, with
sensor noise, as a camera would see them.

A photo's true face box is what Haar finds on the photo itself at its own resolution; photos
where it finds nothing are not used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ferlite.edge.algorithm.detector import HaarDetector
from ferlite.edge.contract.preprocess import Box

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
ASTRONAUT = ROOT / "src" / "ferlite" / "edge" / "demo" / "astronaut.jpg"
FER2013 = ROOT.parent / "shared" / "data" / "fer2013"
FRAME_W, FRAME_H = 640, 480


@dataclass(frozen=True)
class Photo:
    image: np.ndarray  # BGR
    face: Box  # the face inside the photo
    name: str


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR 640x480
    truth: list[Box]  # true face boxes in frame pixels
    scene: str
    new_face: int | None = None  # index into truth of a face that appears on this frame


def _largest_face(image: np.ndarray, pad: int = 0) -> Box | None:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=110)
    found = HaarDetector(1.1, 6, 40).detect(gray)
    if not found:
        return None
    x, y, w, h = max(found, key=lambda b: b[2] * b[3])
    return x - pad, y - pad, w, h


def _astronaut_photos() -> list[Photo]:
    image = cv2.imread(str(ASTRONAUT))
    if image is None:
        raise FileNotFoundError(ASTRONAUT)
    face = _largest_face(image)
    assert face is not None, "Haar finds no face on the astronaut photo"
    x, y, w, h = face
    x0, y0 = max(0, x - w // 2), max(0, y - h // 2)
    head = np.ascontiguousarray(image[y0 : y + h + h // 2, x0 : x + w + w // 2])
    box = (x - x0, y - y0, w, h)
    mirror = np.ascontiguousarray(head[:, ::-1])
    mirror_box = (head.shape[1] - box[0] - w, box[1], w, h)
    return [Photo(head, box, "astronaut"), Photo(mirror, mirror_box, "astronaut-mirror")]


def _fer_photos(limit: int) -> list[Photo]:
    photos: list[Photo] = []
    if not FER2013.is_dir() or limit <= 0:
        return photos
    for label in ("happy", "neutral", "surprise", "sad", "angry"):
        for path in sorted((FER2013 / label).glob("PrivateTest_*.jpg"))[:8]:
            gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                continue
            big = cv2.cvtColor(cv2.resize(gray, (144, 144), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
            face = _largest_face(big, pad=40)
            if face is not None and min(face[:2]) >= 0 and face[0] + face[2] <= 144 and face[1] + face[3] <= 144:
                photos.append(Photo(big, face, f"fer2013/{label}/{path.name}"))
                break
        if len(photos) >= limit:
            break
    return photos


def face_photos(fer_limit: int = 4) -> list[Photo]:
    """The astronaut and its mirror, then up to `fer_limit` FER2013 faces when the data is present."""
    photos = _astronaut_photos() + _fer_photos(fer_limit)
    log.info("face photos: %s", ", ".join(p.name for p in photos))
    return photos


def background(rng: np.random.Generator) -> np.ndarray:
    """A real photo without faces (scikit-image's coffee), else a smooth random texture."""
    try:
        from skimage import data  # dev extra only
    except ImportError:
        noise = rng.integers(40, 200, size=(12, 16, 3), dtype=np.uint8)
        return cv2.resize(noise, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), (FRAME_W, FRAME_H))


@dataclass
class Mover:
    """One face on the canvas: a photo scaled so its face is `size` px wide, drifting."""

    photo: Photo
    size: int
    x: float  # where the face box's top-left corner is
    y: float
    vx: float
    vy: float
    lane: tuple[float, float] = (0.0, float(FRAME_W))  # the face stays within these x (no overlaps)

    def step(self, rng: np.random.Generator) -> None:
        self.vx = float(np.clip(self.vx + rng.normal(0, 0.5), -3, 3))
        self.vy = float(np.clip(self.vy + rng.normal(0, 0.5), -3, 3))
        self.x = float(np.clip(self.x + self.vx, self.lane[0], self.lane[1] - self.size))
        self.y = float(np.clip(self.y + self.vy, 0, FRAME_H - self.size))

    def paste(self, canvas: np.ndarray) -> Box:
        scale = self.size / self.photo.face[2]
        small = cv2.resize(self.photo.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        fx, fy = round(self.photo.face[0] * scale), round(self.photo.face[1] * scale)
        ox, oy = round(self.x) - fx, round(self.y) - fy  # photo origin on the canvas
        x0, y0 = max(round(self.lane[0]), ox), max(0, oy)  # the photo is cut at its lane
        x1, y1 = min(round(self.lane[1]), ox + small.shape[1]), min(FRAME_H, oy + small.shape[0])
        canvas[y0:y1, x0:x1] = small[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        side = round(self.photo.face[2] * scale)
        return round(self.x), round(self.y), side, round(self.photo.face[3] * scale)


def _render(base: np.ndarray, movers: list[Mover], rng: np.random.Generator) -> tuple[np.ndarray, list[Box]]:
    canvas = base.copy()
    boxes = [m.paste(canvas) for m in movers]
    noise = rng.normal(0, 2.0, size=(FRAME_H // 4, FRAME_W // 4, 1)).astype(np.float32)
    noisy = canvas.astype(np.float32) + cv2.resize(noise, (FRAME_W, FRAME_H))[..., None]
    return np.clip(noisy, 0, 255).astype(np.uint8), boxes


def _mover(photo: Photo, rng: np.random.Generator, sizes: tuple[int, int], lane: tuple[float, float]) -> Mover:
    size = int(rng.integers(sizes[0], min(sizes[1], int(lane[1] - lane[0])) + 1))
    x = float(rng.uniform(lane[0], lane[1] - size))
    return Mover(photo, size, x, float(rng.uniform(0, FRAME_H - size)), 0.0, 0.0, lane)


def scene(
    kind: str, frames: int, photos: list[Photo], rng: np.random.Generator, sizes: tuple[int, int] = (56, 160)
) -> Iterator[Frame]:
    """`single` (one face), `multi` (three), `empty` (no face) or `appear` (a second face joins)."""
    base = background(rng)
    pick = [photos[int(i)] for i in rng.permutation(len(photos))]
    movers: list[Mover] = []
    third = FRAME_W / 3
    if kind == "single":
        movers = [_mover(pick[0], rng, sizes, (0.0, float(FRAME_W)))]
    elif kind == "multi":
        movers = [_mover(pick[i % len(pick)], rng, sizes, (i * third, (i + 1) * third)) for i in range(3)]
    elif kind == "appear":
        movers = [_mover(pick[0], rng, sizes, (0.0, FRAME_W / 2))]
    elif kind != "empty":
        raise ValueError(f"unknown scene {kind}")
    appear_at = frames // 2 + int(rng.integers(0, 5)) if kind == "appear" else -1
    for index in range(frames):
        if index == appear_at:
            movers.append(_mover(pick[1 % len(pick)], rng, sizes, (FRAME_W / 2, float(FRAME_W))))
        image, boxes = _render(base, movers, rng)
        new = len(boxes) - 1 if index == appear_at else None
        yield Frame(image, boxes, kind, new)
        for mover in movers:
            mover.step(rng)


def write_video(frames: list[Frame], sigma: float, rng: np.random.Generator, path: Path,
                fourcc: str = "mp4v") -> Path:
    """The frames with Gaussian sensor noise (sigma grey levels per pixel), written with a real
    video codec (OpenCV's VideoWriter) to `path`."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30, (FRAME_W, FRAME_H))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} video here")
    for frame in frames:
        noisy = frame.image.astype(np.float32) + rng.normal(0, sigma, frame.image.shape).astype(np.float32)
        writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()
    return path


def through_codec(frames: list[Frame], sigma: float, rng: np.random.Generator, folder: Path,
                  fourcc: str = "mp4v") -> list[Frame]:
    """The frames as a camera and a video file would give them: noisy, through write_video and
    read back."""
    path = write_video(frames, sigma, rng, folder / f"scene-{frames[0].scene}-{sigma:g}.mp4", fourcc)
    capture = cv2.VideoCapture(str(path))
    decoded: list[Frame] = []
    for frame in frames:
        ok, image = capture.read()
        if not ok:
            raise RuntimeError(f"{path}: {len(decoded)} of {len(frames)} frames came back")
        decoded.append(replace(frame, image=image, scene=frame.scene + "/video"))
    capture.release()
    path.unlink()
    return decoded
