"""fer-train's readers, face cache, splits and configuration (no training here)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import needs_training
from train_fixtures import write_ckplus, write_ferg, write_folder_set, write_image

from ferlite.edge.contract import INPUT_SIZE, LABELS
from ferlite.train import faces as faces_mod
from ferlite.train.data import DataError, DataSource, Sample, read_ckplus, read_ferg, read_folder
from ferlite.train.faces import FaceDecoder, load_faces
from ferlite.train.labels import ClassMapError, LabelMapper, parse_class_map
from ferlite.train.prepare import SplitConfig, prepare
from ferlite.train.splits import (
    assign_sides,
    drop_cross_duplicates,
    read_manifest,
    read_subject_list,
    subject_leaks,
    write_manifest,
)

MAPPER = LabelMapper()


def test_aliases_and_class_map():
    assert LABELS[MAPPER.index("Happiness")] == "Happy"
    assert LABELS[MAPPER.index("joy")] == "Happy"
    assert LABELS[MAPPER.index("anger")] == "Angry"
    assert MAPPER.index("fear") is None and MAPPER.index("contempt") is None
    custom = LabelMapper(parse_class_map(["grumpy=angry", "happy=drop"]))
    assert LABELS[custom.index("GRUMPY")] == "Angry"
    assert custom.index("happy") is None
    with pytest.raises(ClassMapError):
        parse_class_map(["grumpy=furious"])
    with pytest.raises(ClassMapError):
        parse_class_map(["no-equals-sign"])


def test_data_source_parsing():
    crops = DataSource.parse("crops:ck=/data/ck")
    assert (crops.kind, crops.name, crops.whole) == ("crops", "ck", True)
    assert crops.subject_regex is not None
    assert DataSource.parse("ckplus=/x").whole is False
    assert DataSource.parse("ferg=/x").whole is True
    assert DataSource.parse("folder=/data/set1").name == "set1"
    for bad in ("nonsense=/x", "folder:/x", "crops"):
        with pytest.raises(DataError):
            DataSource.parse(bad)


def test_ckplus_layout(tmp_path):
    root = write_ckplus(tmp_path / "ck")
    result = read_ckplus(root, "ck", MAPPER)
    by_name = {s.path.name: s for s in result.samples}
    # Every sequence's first frame is Neutral, labelled ones also give their last frame.
    assert LABELS[by_name["S100_001_00000001.png"].label] == "Neutral"
    assert "S100_001_00000003.png" not in by_name  # unlabelled sequence: no peak
    assert LABELS[by_name["S102_001_00000003.png"].label] == "Angry"
    assert LABELS[by_name["S102_003_00000003.png"].label] == "Happy"
    assert "S102_002_00000002.png" not in by_name  # middle frames are not used
    assert by_name["S103_004_00000003.png"].subject == "S103"
    assert result.dropped == Counter({"class contempt": 6, "class fear": 6, "bad emotion file": 1})
    assert len(result.samples) == 42 + 28


def test_ckplus_wrong_layout(tmp_path):
    with pytest.raises(DataError, match="CK\\+ layout"):
        read_ckplus(tmp_path, "ck", MAPPER)


def test_ferg_layout(tmp_path):
    root = write_ferg(tmp_path / "ferg")
    result = read_ferg(root, "ferg", MAPPER)
    assert {s.subject for s in result.samples} == {"ferg:aia", "ferg:bonnie", "ferg:jules"}
    joy = [s for s in result.samples if "_joy_" in s.path.name]
    assert joy and {LABELS[s.label] for s in joy} == {"Happy"}
    assert result.dropped == Counter({"class fear": 9})
    assert len(result.samples) == 3 * 6 * 3


def test_folder_layout(tmp_path):
    root = write_folder_set(tmp_path / "set")
    write_image(root / "happy" / "PrivateTest_77.png",
                np.zeros((48, 48), np.uint8))
    result = read_folder(root, "set", MAPPER, r"^(S\d{3})_")
    assert result.dropped == Counter({"class fear": 3})
    happy = [s for s in result.samples if s.path.parent.name == "happy"]
    assert [(s.split, s.subject) for s in happy] == [("test", None)]
    assert {s.subject for s in result.samples if s.subject} == {f"S{i:03d}" for i in range(10, 16)}
    assert all(s.split is None for s in result.samples if s.path.parent.name != "happy")


def test_folder_with_split_dirs(tmp_path):
    for split in ("train", "test"):
        write_image(tmp_path / split / "sad" / "a.png", np.zeros((48, 48), np.uint8))
    result = read_folder(tmp_path, "set", MAPPER)
    assert sorted(s.split for s in result.samples) == ["test", "train"]


def test_unknown_class_folder_dropped_and_counted(tmp_path, caplog):
    write_image(tmp_path / "sad" / "a.png", np.zeros((48, 48), np.uint8))
    write_image(tmp_path / "bored" / "b.png", np.zeros((48, 48), np.uint8))
    result = read_folder(tmp_path, "set", MAPPER)
    assert result.dropped == Counter({"class bored": 1})
    assert "--class-map bored=LABEL" in caplog.text


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    root = write_folder_set(tmp_path / "set")
    paths = sorted((root / "anger").iterdir())
    decoded = load_faces(paths, root, FaceDecoder(whole=True), None)
    assert decoded.skipped == Counter({"unreadable": 1})
    assert decoded.faces.shape == (len(paths) - 1, *INPUT_SIZE)
    assert decoded.faces.dtype == np.uint8
    assert sorted(decoded.rows.tolist())[0] == -1


def test_haar_path_crops_a_real_face(tmp_path, astronaut):
    path = write_image(tmp_path / "happy" / "astronaut.png", astronaut)
    write_image(tmp_path / "happy" / "blank.png", np.full((200, 200), 90, np.uint8))
    decoded = load_faces([path, tmp_path / "happy" / "blank.png"], tmp_path,
                         FaceDecoder(whole=False), None)
    assert decoded.statuses == ["ok", "no face"]
    whole = FaceDecoder(whole=True)(path)
    assert not np.array_equal(decoded.faces[0], whole)  # a crop, not the resized photo


def test_face_cache_second_run_decodes_nothing(tmp_path, monkeypatch):
    root = write_folder_set(tmp_path / "set")
    paths = sorted(root.glob("*/*.png"))
    cache = tmp_path / "cache"
    first = load_faces(paths, root, FaceDecoder(whole=True), cache)
    calls = []
    original = faces_mod.FaceDecoder.__call__

    def counting(self, path):
        calls.append(path)
        return original(self, path)

    monkeypatch.setattr(faces_mod.FaceDecoder, "__call__", counting)
    second = load_faces(paths, root, FaceDecoder(whole=True), cache)
    assert calls == []
    assert np.array_equal(first.faces, second.faces)
    assert first.statuses == second.statuses and second.skipped == first.skipped
    # A changed file is decoded again; the others still come from the cache.
    changed = paths[3]
    write_image(changed, np.full((30, 30), 7, np.uint8))
    third = load_faces(paths, root, FaceDecoder(whole=True), cache)
    assert calls == [changed]
    assert (third.faces[third.rows[3]] == 7).all()
    # Another way of finding faces is another cache entry.
    load_faces(paths[:2], root, FaceDecoder(whole=False), cache)
    assert len(calls) == 3


def _samples(n_subjects: int, per_subject: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    return [Sample(Path(f"S{s:03d}_{i}.png"), rng.randrange(6), "ck", f"S{s:03d}")
            for s in range(n_subjects) for i in range(per_subject)]


@pytest.mark.parametrize("seed", range(5))
def test_subject_split_never_leaks(seed):
    samples = _samples(40, random.Random(seed).randint(1, 9), seed)
    sides = assign_sides(samples, val_fraction=0.2, test_fraction=0.1, seed=seed)
    assert subject_leaks(samples, sides) == {}
    counts = Counter(sides)
    assert counts["val"] > 0 and counts["test"] > 0
    assert 0.1 <= counts["val"] / len(samples) <= 0.3


def test_random_split_mixes_subjects_and_is_seeded():
    samples = _samples(10, 20)
    sides = assign_sides(samples, mode="random", val_fraction=0.2, seed=1)
    assert subject_leaks(samples, sides)  # plain random split: subjects on both sides
    assert abs(Counter(sides)["val"] - 40) <= 6
    assert sides == assign_sides(samples, mode="random", val_fraction=0.2, seed=1)
    assert sides != assign_sides(samples, mode="random", val_fraction=0.2, seed=2)


def test_fixed_test_subjects_and_own_split_kept(tmp_path):
    listing = tmp_path / "subjects.txt"
    listing.write_text("# held out\nS001\nS003\n\n")
    subjects = read_subject_list(listing)
    assert subjects == {"S001", "S003"}
    samples = _samples(8, 4) + [Sample(Path("PrivateTest_1.jpg"), 0, "fer", None, "test"),
                                Sample(Path("Training_2.jpg"), 0, "fer", None, "train")]
    sides = assign_sides(samples, val_fraction=0.25, test_subjects=subjects)
    for sample, side in zip(samples, sides, strict=True):
        if sample.subject in subjects:
            assert side == "test"
        elif sample.split:
            assert side == sample.split
        else:
            assert side in ("train", "val")
    assert subject_leaks(samples, sides) == {}


def test_duplicates_never_on_two_sides():
    hashes = ["a", "a", "b", "b", "c", None, "c"]
    sides = ["train", "test", "train", "val", "val", "train", "test"]
    keep, removed = drop_cross_duplicates(hashes, sides)
    assert keep == [False, True, False, True, False, True, True]
    assert removed == Counter({"train": 2, "val": 1})


def test_prepare_merges_sets_drops_duplicates_and_writes_manifest(tmp_path):
    folder = write_folder_set(tmp_path / "set")
    # An exact copy of a face under another subject: it lands on one side only.
    copy = sorted((folder / "happiness").glob("*.png"))[0]
    (folder / "happiness" / "S099_001_00000001.png").write_bytes(copy.read_bytes())
    ferg = write_ferg(tmp_path / "ferg")
    sources = [DataSource.parse(f"crops:set={folder}"), DataSource.parse(f"ferg={ferg}")]
    prepared = prepare(sources, MAPPER, SplitConfig(val_fraction=0.3, seed=3), tmp_path / "c")
    used = prepared.rows >= 0
    assert Counter(prepared.statuses)["unreadable"] == 1
    assert subject_leaks([s for s, u in zip(prepared.samples, used, strict=True) if u],
                         [s for s, u in zip(prepared.sides, used, strict=True) if u]) == {}
    for side in ("train", "val"):
        faces, labels, datasets = prepared.side(side)
        assert len(faces) == len(labels) == len(datasets) > 0
    hashes = {}
    for i in np.flatnonzero(used):
        key = prepared.faces[prepared.rows[i]].tobytes()
        hashes.setdefault(key, set()).add(prepared.sides[i])
    assert all(len(sides) == 1 for sides in hashes.values())
    write_manifest(tmp_path / "manifest.csv", prepared.samples, prepared.sides, prepared.statuses)
    rows = read_manifest(tmp_path / "manifest.csv")
    assert len(rows) == len(prepared.samples)
    assert {r["status"] for r in rows} >= {"ok", "unreadable"}
    assert {r["dataset"] for r in rows} == {"set", "ferg"}


def test_decoder_matches_edge_preprocessing(tmp_path):
    from ferlite.edge.contract.preprocess import preprocess_face

    image = np.random.default_rng(0).integers(0, 255, (60, 50, 3), dtype=np.uint8)
    path = write_image(tmp_path / "x.png", image)
    assert np.array_equal(FaceDecoder(whole=True)(path), preprocess_face(cv2.imread(str(path))))


@needs_training
def test_augmentation_is_one_affine_resampling():
    import keras

    from ferlite.train.inputs import Augmentation, augment, class_weights
    from ferlite.train.synthetic import make_faces

    def run(aug: Augmentation) -> np.ndarray:
        return keras.ops.convert_to_numpy(augment(batch, aug, seed=0))

    faces, _ = make_faces(2)
    batch = faces[..., None].astype(np.float32)
    none = run(Augmentation(0, 0, 0, 0, flip=False))[..., 0]
    assert np.array_equal(none, faces)
    flipped = run(Augmentation(0, 0, 0, 0, flip=True))[..., 0]
    assert all(np.array_equal(f, o) or np.array_equal(f, o[:, ::-1])
               for f, o in zip(flipped, faces, strict=True))
    assert any(not np.array_equal(f, o) for f, o in zip(flipped, faces, strict=True))  # some flipped
    moved = run(Augmentation())
    assert moved.shape == batch.shape and not np.array_equal(moved[..., 0], faces)
    assert moved.min() >= 0 and moved.max() <= 255
    weights = class_weights(np.array([0, 0, 0, 1]), 6)
    assert weights[1] == pytest.approx(3 * weights[0]) and weights[5] == 0.0


@needs_training
def test_augmentation_strength_scales():
    from ferlite.train.inputs import Augmentation

    assert Augmentation().scaled(0) is None
    half = Augmentation().scaled(0.5)
    assert half is not None and half.shift == pytest.approx(0.05) and half.rotation_degrees == 5
