"""One hardened file read (files.read_bytes) for every file ferlite reads whole: a config, a model spec, an
image (and the model a spec's sha256 is taken of, through files.open_regular).

Each reader refuses what is not a regular file of a sane size, in one line naming the file, without waiting on a
FIFO, and the refusal comes from the one reader (its cause is a FileRefusedError).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from ferlite.edge.contract import files, settings
from ferlite.edge.contract.errors import ConfigError, FileRefusedError, ModelSpecError
from ferlite.edge.contract.spec import file_sha256, read_spec, spec_path_for
from ferlite.edge.runtime.sources import UnusableImage, read_image

BIG = 2 << 20  # past every reader's cap below (configs and specs 1 MiB; an image of 1 pixel 1 MiB + 4 bytes)


def _config(path: Path) -> None:
    settings.read_toml(path)


def _spec(path: Path) -> None:
    model = path.with_name("model.tflite")
    model.write_bytes(b"model")
    if os.path.lexists(path):  # what the test made takes the spec's place
        os.replace(path, spec_path_for(model))
    read_spec(model)


def _image(path: Path) -> None:
    read_image(path, max_pixels=1)


READERS: dict[str, tuple[Callable[[Path], None], type[Exception]]] = {
    "config": (_config, ConfigError),
    "spec": (_spec, ModelSpecError),
    "image": (_image, UnusableImage),
    "sha256": (file_sha256, FileRefusedError),
}


def _within(seconds: float, call: Callable[[], None]) -> BaseException | None:
    """What call() raised (None if nothing), failing the test if it takes longer than `seconds` (a blocked open)."""
    caught: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            caught.append(e)
        else:
            caught.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert caught, f"still reading after {seconds} s: blocked"
    return caught[0]


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _folder(path: Path) -> None:
    path.mkdir()


def _large(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate(BIG)  # sparse: its size says BIG without writing it


@pytest.mark.parametrize("make", [_fifo, _folder, _large], ids=["fifo", "folder", "too-large"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_refuses_through_the_one_reader(tmp_path, reader, make):
    read, error = READERS[reader]
    if reader == "sha256" and make is _large:
        pytest.skip("a model is hashed whatever its size (streamed)")
    path = tmp_path / "file.x"
    make(path)
    caught = _within(5, lambda: read(path))
    assert isinstance(caught, error), repr(caught)
    message = str(caught)
    assert "\n" not in message and len(message) < 300, message
    if error is not FileRefusedError:
        assert isinstance(caught.__cause__, FileRefusedError), "refused by a reader of its own"


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_refuses_a_missing_file_in_one_line(tmp_path, reader):
    read, error = READERS[reader]
    with pytest.raises(error) as caught:
        read(tmp_path / "missing.x")
    assert "\n" not in str(caught.value)


def test_the_refusal_says_what_the_file_is_and_the_settings_wording_holds(tmp_path):
    fifo = tmp_path / "edge.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"edge.toml: config must be a regular file, not a FIFO$"):
        settings.read_toml(fifo)
    with pytest.raises(FileRefusedError, match="^a FIFO, not a regular file$"):
        files.read_bytes(fifo, 10)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * 11)
    with pytest.raises(FileRefusedError, match="^11 bytes, more than 10$") as caught:
        files.read_bytes(big, 10)
    assert (caught.value.size, caught.value.limit) == (11, 10)
    with pytest.raises(FileRefusedError, match=r"^cannot open \(No such file") as missing:
        files.read_bytes(tmp_path / "nope", 10)
    assert missing.value.opening and missing.value.errno is not None


def test_a_missing_spec_is_still_called_missing(tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"model")
    with pytest.raises(ModelSpecError, match=r"model.tflite: model spec .*model.spec.json is missing$"):
        read_spec(model)


def test_an_image_that_became_a_folder_is_called_a_folder(tmp_path):
    (tmp_path / "a.jpg").mkdir()
    with pytest.raises(UnusableImage, match="^a folder, not an image file$"):
        read_image(tmp_path / "a.jpg")
