"""FER+ votes: the reader, the drop rules, and training targets from the vote distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import needs_training
from train_fixtures import FERPLUS_ROWS, write_ferplus

from ferlite.edge.contract import LABELS
from ferlite.train.data import FERPLUS_COLUMNS, DataError, DataSource, ferplus_target, read_ferplus
from ferlite.train.labels import LabelMapper

MAPPER = LabelMapper()
COLUMNS = [MAPPER.index(name) for name in FERPLUS_COLUMNS]


@pytest.mark.parametrize(("votes", "expected"), FERPLUS_ROWS)
def test_majority_label_or_drop_reason(votes, expected):
    result = ferplus_target(votes, COLUMNS)
    if isinstance(expected, str):
        assert result == expected
    else:
        assert not isinstance(result, str)
        assert result[0] == expected


def test_vote_distribution_is_renormalised_over_the_six_and_single_votes_are_noise():
    label, dist = ferplus_target((4, 0, 0, 3, 1, 2, 0, 0, 0, 0), COLUMNS)  # type: ignore[misc]
    assert LABELS[label] == "Neutral"
    assert sum(dist) == pytest.approx(1.0)
    by_name = dict(zip(LABELS, dist, strict=True))
    assert by_name["Neutral"] == pytest.approx(4 / 9) and by_name["Sad"] == pytest.approx(3 / 9)
    assert by_name["Disgust"] == pytest.approx(2 / 9) and by_name["Angry"] == 0.0
    # unknown/not-a-face votes are not part of the six-class mass
    _, happy = ferplus_target((1, 6, 0, 0, 0, 0, 0, 0, 3, 0), COLUMNS)  # type: ignore[misc]
    assert happy[LABELS.index("Happy")] == pytest.approx(1.0)


def test_reader_keeps_the_official_sides_and_counts_drops(tmp_path: Path):
    root = write_ferplus(tmp_path / "ferplus")
    result = read_ferplus(root, "ferplus", MAPPER)
    kept = [e for _, e in FERPLUS_ROWS if isinstance(e, int)]
    assert len(result.samples) == 3 * 2 * len(kept)
    assert {s.split for s in result.samples} == {"train", "val", "test"}
    assert all(s.path.parent.name == "FER2013Test" for s in result.samples if s.split == "test")
    assert sorted(s.label for s in result.samples if s.split == "val") == sorted(kept * 2)
    assert result.dropped == {"majority fear": 6, "majority nf": 6, "tie": 6, "bad label row": 3}
    assert all(s.votes is not None and sum(s.votes) == pytest.approx(1.0) for s in result.samples)


def test_kind_parses_and_a_wrong_layout_is_refused(tmp_path: Path):
    source = DataSource.parse(f"ferplus={tmp_path}")
    assert source.kind == "ferplus" and source.name == "ferplus" and source.whole
    with pytest.raises(DataError, match="FERPlus layout"):
        read_ferplus(tmp_path, "ferplus", MAPPER)


@needs_training
def test_train_on_votes_or_majority(tmp_path: Path, capsys):
    """A real fer-train run on FER+ (fixture layout): vote targets reach the model's loss."""
    from ferlite.train.cli import main
    from ferlite.train.prepare import SplitConfig, prepare

    root = write_ferplus(tmp_path / "ferplus", per_side=3)
    prepared = prepare([DataSource.parse(f"ferplus={root}")], MAPPER, SplitConfig(), None)
    votes = prepared.targets("train", votes=True)
    majority = prepared.targets("train", votes=False)
    labels = prepared.side("train")[1]
    assert np.array_equal(majority.argmax(1), labels) and np.array_equal(votes.argmax(1), labels)
    assert (majority.max(1) == 1.0).all() and (votes.max(1) < 1.0).any()
    out = tmp_path / "run"
    assert main(["--data", f"ferplus={root}", "--no-cache", "--epochs", "1", "--width", "0.25",
                 "--batch-size", "8", "--targets", "votes", "--class-weight-power", "0.5",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "test: accuracy" in text
    import json

    run = json.loads((out / "run.json").read_text())
    assert run["options"]["targets"] == "votes"
    assert 0.0 <= run["framing"]["margin"] <= 1.0
