"""FaceTracker on overlapping boxes: tracks on one face merge; a box inside a face is no face (see test_tracking.py)."""

from __future__ import annotations

import numpy as np
from helpers import ScriptedDetector


def test_tracks_that_end_up_on_one_face_merge():
    from ferlite.edge.algorithm.tracking import FaceTracker

    frame = np.zeros((480, 640), np.uint8)
    det = ScriptedDetector(frame)
    tracker = FaceTracker(det, min_size=24)
    counts, ended_ids = [], []
    for i in range(40):
        x = 250 if i < 20 else 100 if i < 22 else 170
        det.faces = [(x, 150, 180, 180)]
        seen, _, ended = tracker.update(frame)
        counts.append(len(seen))
        ended_ids += ended
        assert len(tracker.tracks) <= 2
    assert counts[22:] == [1] * 18  # was 2 from frame 22 on: two tracks on the same face
    assert len(tracker.tracks) == 1
    assert ended_ids  # the duplicate track ended, with an "end" event


def test_box_inside_another_face_is_not_a_face():
    from ferlite.edge.algorithm.tracking import FaceTracker

    frame = np.zeros((480, 640), np.uint8)
    det = ScriptedDetector(frame)
    face, eye = (100, 100, 180, 180), (140, 150, 40, 40)
    det.faces = [face, eye]
    tracker = FaceTracker(det, min_size=24)
    for _ in range(6):
        seen, _, _ = tracker.update(frame)
        assert [t.box for t in seen] == [face]
