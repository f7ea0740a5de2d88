from __future__ import annotations

import numpy as np
import pytest
from helpers import ScriptedDetector

from ferlite.edge.tracking import COMPLETE_AFTER, ChangeDetector, FaceTracker, iou

FRAME = np.zeros((240, 320), np.uint8)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 10, 10)) - 1 / 3) < 1e-9


def test_track_id_stays_while_face_moves_and_roi_search_is_used():
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24, full_every=5)
    ids = []
    for step in range(10):
        det.faces = [(50 + 3 * step, 60, 60, 60)]
        seen, appeared, ended = tracker.update(FRAME)
        ids.append(seen[0].track_id)
        assert seen[0].box == det.faces[0]
    assert len(set(ids)) == 1
    assert tracker.full_searches == 2  # frames 0 and 5; ROIs in between
    assert sum(1 for c in det.calls if c == (320, 240)) == 2
    assert all(c[0] < 320 for c in det.calls if c != (320, 240))


def test_new_face_appears_within_the_bound_and_leaving_face_ends():
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24, full_every=4, keep_missed=1)
    det.faces = [(20, 20, 50, 50)]
    _, appeared, _ = tracker.update(FRAME)
    assert appeared == [1]
    det.faces = [(20, 20, 50, 50), (200, 100, 60, 60)]
    frames_to_new = None
    for n in range(1, 10):
        _, appeared, _ = tracker.update(FRAME)
        if appeared:
            frames_to_new = n
            break
    assert frames_to_new is not None and frames_to_new <= 4
    det.faces = [(200, 100, 60, 60)]  # face 1 leaves
    ended_at = None
    for n in range(1, 10):
        seen, _, ended = tracker.update(FRAME)
        if ended:
            ended_at = n
            assert ended == [1]
            break
    assert ended_at is not None and ended_at <= 3
    assert [t.track_id for t in seen] == [2]


def test_max_faces_keeps_the_largest():
    det = ScriptedDetector(FRAME)
    det.faces = [(0, 0, 30, 30), (100, 0, 80, 80), (200, 100, 50, 50)]
    tracker = FaceTracker(det, min_size=24, max_faces=2)
    seen, _, _ = tracker.update(FRAME)
    assert sorted(t.box[2] for t in seen) == [50, 80]


def test_no_face_in_view_costs_one_full_search_every_n_frames_and_new_face_still_within_bound():
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24, full_every=5)
    for _ in range(10):
        seen, appeared, _ = tracker.update(FRAME)
        assert seen == [] and appeared == []
    assert tracker.full_searches == 2  # frames 0 and 5, not every frame
    det.faces = [(100, 100, 60, 60)]
    appeared_after = [tracker.update(FRAME)[1] for _ in range(5)]  # within 5 frames
    assert [1] in appeared_after


def test_lost_face_triggers_a_full_search_on_the_same_frame():
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24, full_every=5)
    det.faces = [(50, 50, 60, 60)]
    tracker.update(FRAME)
    det.faces = [(200, 120, 60, 60)]  # jumped out of its region
    seen, _, _ = tracker.update(FRAME)
    assert tracker.full_searches == 2
    assert [t.box for t in seen] == [(200, 120, 60, 60)]


class _UniformClassifier:
    def classify(self, faces):
        return np.full((len(faces), 6), 1 / 6, dtype=np.float32)


def test_pipeline_follows_a_real_face_in_shrunk_regions_between_full_searches(astronaut):
    from helpers import place_face

    from ferlite.edge.detector import HaarDetector
    from ferlite.edge.pipeline import Pipeline, PipelineConfig

    pipeline = Pipeline(HaarDetector(1.1, 5, 48), _UniformClassifier(), PipelineConfig(full_detect_every=5))
    calls: list[tuple[int, int | None]] = []
    detect = pipeline.detector.detect

    def spy(gray, min_size=None, max_size=None):
        calls.append((gray.shape[1], max_size))
        return detect(gray, min_size, max_size)

    pipeline.detector.detect = spy
    tracks = set()
    for step in range(5):
        # The face (95 px in the photo) becomes ~133 px: ~66 px on the 320-wide detection frame.
        head = astronaut[0:260, 100:360]  # the face only, no badge that Haar might take for one
        result = pipeline.process(place_face(head, 20 + 4 * step, 10 + 2 * step, scale=1.4))
        assert len(result.faces) == 1
        x, y, w, _ = result.faces[0].box
        assert abs(x - (20 + 4 * step + 108)) < 20 and abs(y - (10 + 2 * step + 92)) < 20 and 110 < w < 160
        tracks.add(result.faces[0].track)
    assert tracks == {1}
    assert pipeline.tracker.full_searches == 1
    roi_widths = [width for width, max_size in calls if max_size is not None]
    # Unshrunk, a region (the face plus half its size on each side) would be ~130 px wide here.
    assert len(roi_widths) >= 4 and max(roi_widths) < 100


def test_change_detector_reports_only_what_changed():
    change = ChangeDetector()
    frame = np.full((240, 320), 90, np.uint8)
    assert change.regions(frame, pad=24) is None  # nothing to compare with yet
    noisy = np.clip(frame + np.random.default_rng(0).normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
    assert change.regions(noisy, pad=24) == []
    moved = noisy.copy()
    moved[100:160, 200:260] = 220  # something appears
    (x, y, w, h), = change.regions(moved, pad=24)
    assert x <= 200 and y <= 100 and x + w >= 260 and y + h >= 160 and w * h < 320 * 240 / 4
    assert change.regions(np.full((240, 320), 10, np.uint8), pad=24) is None  # the light went out: all of it


@pytest.fixture
def frame_drawing():
    yield FRAME
    FRAME[:] = 0


def test_due_search_covers_only_changed_regions_and_still_finds_a_new_face(frame_drawing):
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24, full_every=5, change=ChangeDetector())
    det.faces = [(20, 20, 50, 50)]
    frame_drawing[20:70, 20:70] = 200
    _, appeared, _ = tracker.update(FRAME)
    assert appeared == [1] and tracker.full_searches == 1
    det.faces.append((200, 120, 60, 60))
    frame_drawing[120:180, 200:260] = 150  # the new face changes the picture
    det.calls.clear()
    appeared_after = [tracker.update(FRAME)[1] for _ in range(5)]
    assert [2] in appeared_after
    assert tracker.full_searches == 1 and tracker.partial_searches == 1
    assert (320, 240) not in det.calls  # no whole-frame search was needed


def test_whole_frame_is_searched_again_after_some_region_only_searches():
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24, full_every=2, change=ChangeDetector())
    for _ in range(2 * (COMPLETE_AFTER + 1) + 1):
        tracker.update(FRAME)  # an unchanging empty frame
    assert tracker.partial_searches == COMPLETE_AFTER
    assert tracker.full_searches == 2  # the first frame, then after COMPLETE_AFTER region-only searches
