"""One image file as a frame: its size read from the header before decoding (JPEG, PNG, TIFF, PNM,
WebP), its EXIF orientation (JPEG, PNG, WebP, TIFF) applied, refused when it cannot be a frame."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ...contract.errors import FileRefusedError
from ...contract.files import name_problem, read_bytes
from .base import BYTES_PER_PIXEL, DEFAULT_MAX_PIXELS


class UnusableImage(Exception):
    """An image file that cannot be a frame; the message says why."""


def _u16(data: bytes, offset: int, order: str) -> int:
    return int(struct.unpack_from(order + "H", data, offset)[0])


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    for marker, at, _ in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack_from(">HH", data, at + 5)
            return int(width), int(height)
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    big = _u16(data, 2, order) == 43
    if big:
        offset = int(struct.unpack_from(order + "Q", data, 8)[0])
        count = int(struct.unpack_from(order + "Q", data, offset)[0])
        first, entry, value_at = offset + 8, 20, 12
    else:
        offset = int(struct.unpack_from(order + "I", data, 4)[0])
        count = _u16(data, offset, order)
        first, entry, value_at = offset + 2, 12, 8
    size: dict[int, int] = {}
    for n in range(min(count, 4096)):
        at = first + n * entry
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            code = "H" if kind == 3 else "I" if kind == 4 else "Q" if kind == 16 else None
            if code is None:
                return None
            size[tag] = int(struct.unpack_from(order + code, data, at + value_at)[0])
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    head = data[:4096]
    if head[:2] == b"P7":  # PAM: WIDTH and HEIGHT lines
        fields = dict(line.split(None, 1) for line in head.split(b"\n") if b" " in line.strip())
        return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    tokens: list[bytes] = []
    for line in head[2:].split(b"\n"):
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            return int(tokens[0]), int(tokens[1])
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        return _u16(data, 26, "<") & 0x3FFF, _u16(data, 28, "<") & 0x3FFF
    if chunk == b"VP8L":
        bits = int(struct.unpack_from("<I", data, 21)[0])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an image file's header without decoding it; None when the format
    is not one of IMAGE_SUFFIXES' or the header is broken."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg_size(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            width, height = struct.unpack_from(">II", data, 16)
            return int(width), int(height)
        if data[:2] == b"BM":
            if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 core header
                return _u16(data, 18, "<"), _u16(data, 20, "<")
            width, height = struct.unpack_from("<ii", data, 18)
            return abs(int(width)), abs(int(height))
        if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
            return _tiff_size(data)
        if len(data) > 2 and data[:1] == b"P" and data[1:2] in b"1234567fF":
            return _pnm_size(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except (struct.error, ValueError, KeyError, IndexError):
        return None
    return None


# EXIF Orientation (TIFF tag 274): 1 upright; 2-8 how the stored pixels must be turned to be shown.
ORIENTATION_TAG = 0x0112
MAX_EXIF_ENTRIES = 1024  # IFD0 of a real photo holds a few dozen; a count past this is a broken block
MAX_SEGMENTS = 4096  # JPEG markers / PNG / RIFF chunks looked at before giving up


def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation of an EXIF block (a TIFF header and IFD0); 1 when it has none or is broken."""
    if tiff[:6] == b"Exif\0\0":  # some PNG/WebP writers keep JPEG's APP1 prefix
        tiff = tiff[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or _u16(tiff, 2, order) != 42:
        return 1
    ifd = int(struct.unpack_from(order + "I", tiff, 4)[0])
    count = _u16(tiff, ifd, order)
    if count > MAX_EXIF_ENTRIES:
        return 1
    for n in range(count):
        at = ifd + 2 + 12 * n
        tag, kind, values = struct.unpack_from(order + "HHI", tiff, at)
        if tag != ORIENTATION_TAG:
            continue
        if kind != 3 or values != 1:  # SHORT, one value: anything else is a broken tag
            return 1
        value = _u16(tiff, at + 8, order)
        return value if 1 <= value <= 8 else 1
    return 1


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """A JPEG's marker segments before its image data, as (marker, offset of its 0xFF, length after the
    marker): the one walk for the frame size and the EXIF block. It stops at the start of scan or the end
    of image, at a byte that is no marker, at the end of the data, and after MAX_SEGMENTS steps."""
    i = 2
    for _ in range(MAX_SEGMENTS):
        if i + 4 > len(data) or data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # TEM, RSTn, SOI: no length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan
            return
        length = _u16(data, i + 2, ">")
        yield marker, i, length
        i += 2 + length


def _jpeg_exif(data: bytes) -> bytes | None:
    """The EXIF block of a JPEG's APP1 "Exif" segment (before its image data), if any."""
    for marker, at, length in _jpeg_segments(data):
        if marker == 0xE1 and data[at + 4 : at + 10] == b"Exif\0\0":
            return data[at + 10 : at + 2 + length]
    return None


def _chunk_exif(data: bytes, png: bool) -> bytes | None:
    """The EXIF chunk of a PNG (eXIf: length then kind, big-endian, 4 CRC bytes after the data) or a WebP
    (EXIF: kind then length, little-endian, data padded to an even length)."""
    i, wanted = (8, b"eXIf") if png else (12, b"EXIF")
    for _ in range(MAX_SEGMENTS):
        if i + 8 > len(data):
            return None
        if png:
            length, kind = int(struct.unpack_from(">I", data, i)[0]), data[i + 4 : i + 8]
        else:
            kind, length = data[i : i + 4], int(struct.unpack_from("<I", data, i + 4)[0])
        if kind == wanted:
            return data[i + 8 : i + 8 + length]
        if png and kind == b"IEND":
            return None
        i += 8 + length + (4 if png else length & 1)
    return None


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation (1-8) of a JPEG, PNG or WebP file's bytes; 1 when there is none, and for
    a missing, truncated or corrupt EXIF block (never an exception).

    These are the formats whose orientation OpenCV applies only in cv2.imread/IMREAD_COLOR, never with
    IMREAD_UNCHANGED (which read_image decodes with). TIFF is left alone: its decoder turns it itself.
    """
    try:
        if data[:3] == b"\xff\xd8\xff":
            block = _jpeg_exif(data)
        elif data[:8] == b"\x89PNG\r\n\x1a\n":
            block = _chunk_exif(data, png=True)
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            block = _chunk_exif(data, png=False)
        else:
            return 1
        return _tiff_orientation(block) if block else 1
    except (struct.error, ValueError, IndexError):
        return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """The image as a viewer shows it under an EXIF Orientation (the same turns as cv2.imread's):
    2 mirrored, 3 turned 180 degrees, 4 flipped, 5 transposed, 6 turned 90 degrees clockwise,
    7 transverse, 8 turned 90 degrees counter-clockwise; 1 (or anything else) as it is."""
    if orientation == 1 or not 2 <= orientation <= 8:
        return image
    if orientation >= 5:
        image = np.swapaxes(image, 0, 1)
    turned = {2: image[:, ::-1], 3: image[::-1, ::-1], 4: image[::-1], 5: image,
              6: image[:, ::-1], 7: image[::-1, ::-1], 8: image[::-1]}[orientation]
    return np.ascontiguousarray(turned)


def _frame_image(image: np.ndarray) -> np.ndarray:
    """A decoded image as the pipeline takes it: uint8, gray or 3/4 channels."""
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise UnusableImage(f"unsupported image shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise UnusableImage("holds NaN or infinite values")
    peak = float(np.max(np.abs(image)))
    return cv2.convertScaleAbs(image, alpha=255.0 / max(1.0, peak))


def _refusal(e: FileRefusedError) -> str:
    """Why an image file was not read, in the words of a skipped file's warning."""
    if e.kind == "a directory":  # a file turned into a folder after the listing
        return "a folder, not an image file"
    if e.limit is not None:
        size = f"{e.size} bytes" if e.size is not None else "grew while read"
        return f"{size}, more than an image of max_image_pixels needs"
    return str(e)


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one image file from bytes read here, upright, or raise UnusableImage saying why.

    The file is read by the one hardened reader (files.read_bytes: opened without blocking, a regular
    file of at most what `max_pixels` needs; a FIFO named .jpg would block forever); its header must
    name at most `max_pixels` pixels before anything is decoded.
    cv2.imread is never used: it crashes on names that are not valid UTF-8. The image comes back
    as a viewer shows it: its EXIF orientation (a phone's portrait photo) applied, as cv2.imread
    would. Every image file fer-edge, fer-preview and the API read comes through here.
    """
    max_bytes = max_pixels * BYTES_PER_PIXEL + (1 << 20)
    problem = name_problem(path, opencv=False)
    if problem is not None:  # a NUL byte: os.open would raise ValueError
        raise UnusableImage(problem)
    try:
        data, _ = read_bytes(path, max_bytes)
    except FileRefusedError as e:
        raise UnusableImage(_refusal(e)) from e
    size = image_size(data)
    if size is None:
        raise UnusableImage("not a JPEG, PNG, BMP, PNM, TIFF or WebP image")
    width, height = size
    if width * height > max_pixels:
        raise UnusableImage(f"{width}x{height} pixels, more than max_image_pixels ({max_pixels})")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise UnusableImage("cannot decode") from e
    if image is None or image.size == 0:
        raise UnusableImage("cannot decode")
    if image.shape[0] * image.shape[1] > max_pixels:  # the header lied
        raise UnusableImage(f"decodes to more than max_image_pixels ({max_pixels})")
    return apply_orientation(_frame_image(image), exif_orientation(data))
