"""Photos come out the way every viewer shows them: EXIF orientation 1-8, by path, by folder and by array.

Each test photo is an upright 640x480 picture with a face at the top right, stored turned so that applying
its EXIF orientation makes it upright again (as a phone stores a portrait photo: sideways pixels, tag 6).
cv2.imread, which applies EXIF itself, is the oracle for what a viewer shows.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import place_face

from ferlite.edge import Recognizer
from ferlite.edge.apps.annotate import COLOURS
from ferlite.edge.runtime.sources import UnusableImage, exif_orientation, read_image

EDGE = [sys.executable, "-m", "ferlite.edge.apps.cli"]
ORIENTATIONS = range(1, 9)
# In the 512 px astronaut photo the face box is about (177, 66, 95, 95); pasted at (300, 40), 0.8 size.
FACE_CENTRE = (300 + (177 + 47) * 0.8, 40 + (66 + 47) * 0.8)


def _tiff_orientation(orientation: int, order: bytes = b"MM") -> bytes:
    """A minimal EXIF block (TIFF header, IFD0 with one Orientation entry)."""
    o = ">" if order == b"MM" else "<"
    entry = struct.pack(o + "HHI", 0x0112, 3, 1) + struct.pack(o + "H", orientation) + b"\0\0"
    return order + struct.pack(o + "HI", 42, 8) + struct.pack(o + "H", 1) + entry + struct.pack(o + "I", 0)


def _app1(tiff: bytes) -> bytes:
    payload = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def with_jpeg_exif(jpeg: bytes, tiff: bytes) -> bytes:
    """A JPEG with an APP1 Exif segment inserted right after its SOI marker."""
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + _app1(tiff) + jpeg[2:]


def stored_for(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores for `upright` under `orientation` (the inverse of what a viewer applies):
    written with numpy's own operations, independently of the code under test."""
    t = np.swapaxes
    undo = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # mirrored
        3: lambda a: a[::-1, ::-1],  # upside down
        4: lambda a: a[::-1],  # flipped vertically
        5: lambda a: t(a, 0, 1),  # transposed
        6: lambda a: t(a[:, ::-1], 0, 1),  # stored turned left: a viewer turns it 90 degrees clockwise
        7: lambda a: t(a[::-1, ::-1], 0, 1),  # transverse
        8: lambda a: t(a[::-1], 0, 1),  # stored turned right: a viewer turns it 90 degrees counter-clockwise
    }[orientation]
    return np.ascontiguousarray(undo(upright))


@pytest.fixture(scope="module")
def upright(astronaut) -> np.ndarray:
    return place_face(astronaut, 300, 40, scale=0.8)  # 640x480, the face at the top right


@pytest.fixture(scope="module")
def oriented(tmp_path_factory, upright) -> Path:
    """A folder with one JPEG per EXIF orientation, o1.jpg .. o8.jpg."""
    folder = tmp_path_factory.mktemp("exif")
    for orientation in ORIENTATIONS:
        ok, jpeg = cv2.imencode(".jpg", stored_for(upright, orientation), [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        order = b"II" if orientation % 2 else b"MM"  # both byte orders
        data = with_jpeg_exif(jpeg.tobytes(), _tiff_orientation(orientation, order))
        (folder / f"o{orientation}.jpg").write_bytes(data)
    return folder


def _near_face(box) -> bool:
    x, y, w, h = box
    return max(abs(x + w / 2 - FACE_CENTRE[0]), abs(y + h / 2 - FACE_CENTRE[1])) < 15


@pytest.fixture(scope="module")
def recognizer(tiny_model):
    with Recognizer(tiny_model, threads=1) as rec:
        yield rec


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_every_orientation_reads_upright_as_a_viewer_shows_it(oriented, upright, orientation):
    path = oriented / f"o{orientation}.jpg"
    viewer = cv2.imread(str(path))  # applies EXIF
    assert viewer.shape == (480, 640, 3)
    assert np.abs(viewer.astype(int) - upright).mean() < 3  # the test photo is right: upright once turned
    ours = read_image(path)
    np.testing.assert_array_equal(ours, viewer)  # same decoder, same turn: the same pixels


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_recognize_by_path_and_by_array_finds_the_face_where_a_viewer_shows_it(oriented, recognizer, orientation):
    path = oriented / f"o{orientation}.jpg"
    by_path = recognizer.recognize(path)
    assert len(by_path) == 1 and _near_face(by_path[0].box), (orientation, by_path)
    # An array is pixels as given: cv2.imread has turned it upright already, so the same face comes back.
    by_array = recognizer.recognize(cv2.imread(str(path)))
    assert [f.box for f in by_array] == [f.box for f in by_path]


def test_folder_of_every_orientation_gives_upright_results_and_upright_annotations(oriented, tiny_model, tmp_path):
    annotated = tmp_path / "annotated"
    out = subprocess.run(
        EDGE + ["--source", str(oriented), "--model", str(tiny_model), "--threads", "1", "--annotate", str(annotated)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    messages = [json.loads(line) for line in out.stdout.splitlines()]
    assert [m["file"] for m in messages] == [f"o{o}.jpg" for o in ORIENTATIONS]
    for message in messages:
        assert message["size"] == [640, 480], message["file"]
        assert len(message["faces"]) == 1 and _near_face(message["faces"][0]["box"]), message
        image = cv2.imread(str(annotated / message["file"]))
        assert image.shape == (480, 640, 3)  # written upright (no EXIF tag on it)
        face = message["faces"][0]
        x, y, w, h = face["box"]
        # The box's left edge drawn where the face is, upright, in its label's colour (JPEG blurs a thin line;
        # comparing with the photo instead fails for a gray face under Neutral's gray).
        near_colour = np.abs(image[y : y + h, x].astype(int) - COLOURS[face["label"]]).max(axis=1) < 60
        assert near_colour.mean() > 0.8, face


def _png_with_exif(image: np.ndarray, tiff: bytes) -> bytes:
    ok, png = cv2.imencode(".png", image)
    assert ok
    data = png.tobytes()
    end_of_ihdr = 8 + 4 + 4 + 13 + 4
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
    return data[:end_of_ihdr] + chunk + data[end_of_ihdr:]


def _webp_with_exif(image: np.ndarray, tiff: bytes) -> bytes:
    ok, webp = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])  # lossless
    assert ok
    data = webp.tobytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP" and data[12:16] in (b"VP8L", b"VP8 ")
    height, width = image.shape[:2]
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (
        height - 1).to_bytes(3, "little")
    exif = b"EXIF" + struct.pack("<I", len(tiff)) + tiff + (b"\0" if len(tiff) % 2 else b"")
    body = b"WEBP" + vp8x + data[12:] + exif
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("kind", ["png", "webp"])
def test_png_and_webp_exif_orientation_is_applied_too(tmp_path, upright, kind):
    make = _png_with_exif if kind == "png" else _webp_with_exif
    path = tmp_path / f"o6.{kind}"
    path.write_bytes(make(stored_for(upright, 6), _tiff_orientation(6)))
    viewer = cv2.imread(str(path))
    assert viewer.shape == (480, 640, 3)
    np.testing.assert_array_equal(read_image(path), viewer)


def test_exif_orientation_of_each_kind_and_of_no_exif(oriented):
    for orientation in ORIENTATIONS:
        assert exif_orientation((oriented / f"o{orientation}.jpg").read_bytes()) == orientation
    ok, plain = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert exif_orientation(plain.tobytes()) == 1
    assert exif_orientation(b"") == 1


def _corruptions(jpeg: bytes) -> list[bytes]:
    """Broken EXIF blocks in an otherwise fine JPEG."""
    good = _tiff_orientation(6)
    broken_tiffs = [
        b"", b"MM", b"MM\0*", b"XX\0*\0\0\0\x08", good[:10], good[:17], good[:19],  # cut before the value
        good[:4] + struct.pack(">I", 10_000) + good[8:],  # IFD0 past the end
        good[:8] + struct.pack(">H", 0xFFFF) + good[10:],  # 65535 entries
        good.replace(struct.pack(">H", 6) + b"\0\0", struct.pack(">H", 9) + b"\0\0"),  # orientation 9
        good.replace(struct.pack(">H", 6) + b"\0\0", struct.pack(">H", 0) + b"\0\0"),  # orientation 0
        good.replace(struct.pack(">HHI", 0x0112, 3, 1), struct.pack(">HHI", 0x0112, 2, 1)),  # ASCII, not SHORT
        good.replace(struct.pack(">HHI", 0x0112, 3, 1), struct.pack(">HHI", 0x0112, 3, 2**32 - 1)),
    ]
    variants = [with_jpeg_exif(jpeg, tiff) for tiff in broken_tiffs]
    # An APP1 whose length runs past the end of the file, and a file cut inside its APP1.
    variants.append(jpeg[:2] + b"\xff\xe1\xff\xff" + b"Exif\0\0" + good)
    variants.append(with_jpeg_exif(jpeg, good)[:20])
    rng = random.Random(21)
    whole = with_jpeg_exif(jpeg, good)
    for _ in range(300):  # random bytes of the EXIF block overwritten
        data = bytearray(whole)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(2, 4 + len(good) + 10)] = rng.randrange(256)
        variants.append(bytes(data))
    return variants


def test_corrupt_or_truncated_exif_never_crashes_it_is_ignored(tmp_path):
    image = np.zeros((30, 40, 3), np.uint8)
    image[:, :10] = 255
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    path = tmp_path / "broken.jpg"
    for n, data in enumerate(_corruptions(jpeg.tobytes())):
        assert exif_orientation(data) in ORIENTATIONS
        path.write_bytes(data)
        try:
            decoded = read_image(path)
        except UnusableImage:
            continue  # a file cut short is skipped, as before
        assert decoded.shape[:2] in ((30, 40), (40, 30)), n
    for n, data in enumerate(_corruptions(jpeg.tobytes())[:13]):  # each broken block: the photo as stored
        path.write_bytes(data)
        assert read_image(path).shape == (30, 40, 3), n
