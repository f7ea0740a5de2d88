"""Files, the one careful way: every file ferlite reads itself goes through read_bytes (configs, password files,
model specs, face packs, images), and every name handed to OpenCV through opencv_path.

Standard library only: fer-mqtt and fer-watch import this without numpy or OpenCV.
"""

from __future__ import annotations

import os
import stat

from .errors import FileRefusedError


def read_bytes(path: str | os.PathLike[str], max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The one hardened file read (configs, password files, model specs, images): the bytes of a regular
    file of at most `max_bytes`, and its stat. Opened without blocking (a FIFO without a writer would
    block open() forever; a device or directory is refused, not read); FileRefusedError saying why
    otherwise, for the caller to word."""
    fd, info = open_regular(path)
    try:
        if info.st_size > max_bytes:
            raise FileRefusedError(f"{info.st_size} bytes, more than {max_bytes}", size=info.st_size,
                                   limit=max_bytes)
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise FileRefusedError(f"cannot read ({e.strerror})", strerror=e.strerror, errno=e.errno) from e
    finally:
        os.close(fd)
    if size > max_bytes:  # it grew while being read
        raise FileRefusedError(f"more than {max_bytes} bytes", limit=max_bytes)
    return b"".join(chunks), info


def open_regular(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """A read-only descriptor of a regular file, opened without blocking, and its stat (the caller closes
    the descriptor); FileRefusedError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        words = getattr(e, "strerror", None) or str(e)
        raise FileRefusedError(f"cannot open ({words})", strerror=words, errno=getattr(e, "errno", None),
                               opening=True) from e
    try:
        info = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise FileRefusedError(f"cannot read ({e.strerror})", strerror=e.strerror, errno=e.errno) from e
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = _kind(info.st_mode)
        raise FileRefusedError(f"{kind}, not a regular file", kind=kind)
    return fd, info


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def utf8_name(path: str | os.PathLike[str]) -> bool:
    """False for a name that is not valid UTF-8 (Python keeps such bytes as lone surrogates):
    OpenCV's own file functions crash on them."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def name_problem(path: object, opencv: bool = True) -> str | None:
    """Why a file name cannot be handed on (to OpenCV, or to the OS at all); None when it can.

    A name holding a NUL byte cannot name a file (the OS would stop at the NUL: Python refuses it
    with ValueError); one that is not valid UTF-8 crashes OpenCV's file functions (SIGSEGV in
    cv2.VideoWriter and cv2.VideoCapture), but is a good name for files ferlite reads itself
    (`opencv` False).
    """
    try:
        name = os.fspath(path)  # type: ignore[call-overload]
    except TypeError:
        return f"a file name must be a str or os.PathLike, got {type(path).__name__}"
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if "\0" in name:
        return "the name holds a NUL byte"
    if opencv and not utf8_name(name):
        return "the name is not valid UTF-8; rename it"
    return None


def opencv_path(path: str | os.PathLike[str], error: type[Exception], what: str = "") -> str:
    """The name to give an OpenCV function that opens a file (VideoCapture, VideoWriter,
    CascadeClassifier): every path ferlite hands OpenCV passes here first.

    Raises:
        `error`: one line naming the file (as ascii(), so that any name prints) and `what` it
            was for, when name_problem() says it cannot be taken.
    """
    problem = name_problem(path)
    if problem is not None:
        shown = ascii(os.fspath(path)) if isinstance(path, (str, bytes, os.PathLike)) else ascii(path)[:60]
        raise error(f"{shown}: {what}{': ' if what else ''}{problem}")
    return os.fsdecode(os.fspath(path))
