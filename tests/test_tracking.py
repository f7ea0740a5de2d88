from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers import ScriptedDetector

from ferlite.edge.algorithm.pipeline import PipelineConfig
from ferlite.edge.algorithm.sweep import MIN_LEVELS, ChangeMap, PyramidCost, new_face_bound, scale_slices
from ferlite.edge.algorithm.tracking import FaceTracker, iou

FRAME = np.zeros((240, 320), np.uint8)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 10, 10)) - 1 / 3) < 1e-9


def test_track_id_stays_while_face_moves_and_roi_search_is_used():
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24)
    ids = []
    for step in range(10):
        det.faces = [(50 + 3 * step, 60, 60, 60)]
        seen, appeared, ended = tracker.update(FRAME)
        ids.append(seen[0].track_id)
        assert seen[0].box == det.faces[0]
    assert len(set(ids)) == 1
    assert tracker.full_searches == 1  # the first frame only; its region after that
    after_first = det.calls[len(tracker.new_faces._slices):]
    assert len(after_first) == 9 and all(c[0] < 320 for c in after_first)


@pytest.fixture
def frame_drawing():
    yield FRAME
    FRAME[:] = 0


def test_new_face_appears_within_the_bound_and_leaving_face_ends(frame_drawing):
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24, keep_missed=1)
    det.faces = [(20, 20, 50, 50)]
    frame_drawing[20:70, 20:70] = 200
    _, appeared, _ = tracker.update(FRAME)
    assert appeared == [1]
    det.faces = [(20, 20, 50, 50), (200, 100, 60, 60)]
    frame_drawing[100:160, 200:260] = 150  # the new face changes the picture
    frames_to_new = None
    for n in range(1, 10):
        _, appeared, _ = tracker.update(FRAME)
        if appeared:
            frames_to_new = n
            break
    assert frames_to_new is not None and frames_to_new <= 5  # a small change: a few frames' budget
    det.faces = [(200, 100, 60, 60)]  # face 1 leaves
    frame_drawing[20:70, 20:70] = 0
    ended_at = None
    for n in range(1, 10):
        seen, _, ended = tracker.update(FRAME)
        if ended:
            ended_at = n
            assert ended == [1]
            break
    assert ended_at is not None and ended_at <= 2
    assert [t.track_id for t in seen] == [2]


def test_max_faces_keeps_the_largest():
    det = ScriptedDetector(FRAME)
    det.faces = [(0, 0, 30, 30), (100, 0, 80, 80), (200, 100, 50, 50)]
    tracker = FaceTracker(det, min_size=24, max_faces=2)
    seen, _, _ = tracker.update(FRAME)
    assert sorted(t.box[2] for t in seen) == [50, 80]


def test_an_unchanging_frame_costs_no_search_until_the_refresh_which_finds_a_face():
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24, refresh_every=30)
    tracker.update(FRAME)
    first = len(det.calls)
    for _ in range(10):
        seen, appeared, _ = tracker.update(FRAME)
        assert seen == [] and appeared == []
    assert len(det.calls) == first  # nothing changed: nothing searched
    det.faces = [(100, 100, 60, 60)]  # there, but the picture never changed (a detector's miss ending)
    appeared_at = [n for n in range(11, 60) if tracker.update(FRAME)[1] == [1]]
    assert appeared_at and 30 <= appeared_at[0] < 30 + 20  # the refresh, spread over a few frames


def test_no_frame_after_the_first_searches_more_than_its_budget(frame_drawing):
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24, budget=0.1)
    tracker.update(FRAME)
    whole = sum(s.cost for s in tracker.new_faces._slices) * 320 * 240
    rng = np.random.default_rng(0)
    spent = []
    for _ in range(30):
        frame_drawing[:] = rng.integers(0, 255, FRAME.shape, dtype=np.uint8)  # everything changes
        tracker.update(FRAME)
        spent.append(tracker.new_faces.spent / whole)
    assert max(spent) <= 0.1 * 1.5  # one strip may go over what is left, never far
    assert sum(spent) >= 1.0  # and the work is done, frame after frame


def test_a_face_appearing_while_everything_changes_is_found_within_the_bound(frame_drawing):
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24)
    texture = np.random.default_rng(1).integers(0, 255, (240, 320 + 8 * 80), dtype=np.uint8)
    texture = cv2.GaussianBlur(texture, (0, 0), 3)
    frame_drawing[:] = texture[:, :320]
    tracker.update(FRAME)
    bound = new_face_bound(5, 0.08)
    for step in range(1, 8):  # the camera pans: the whole picture changes on every frame
        frame_drawing[:] = texture[:, 8 * step : 8 * step + 320]
        tracker.update(FRAME)
    det.faces = [(150, 90, 90, 90)]
    found_at = None
    for n in range(1, bound + 5):
        frame_drawing[:] = texture[:, 8 * (7 + n) : 8 * (7 + n) + 320]
        frame_drawing[90:180, 150:240] = 250  # someone walks in while the camera pans
        if tracker.update(FRAME)[1]:
            found_at = n
            break
    assert found_at is not None and found_at <= bound


def test_lost_face_is_looked_for_around_where_it_was_on_the_same_frame():
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24)
    det.faces = [(50, 50, 60, 60)]
    tracker.update(FRAME)
    det.faces = [(75, 60, 60, 60)]  # moved further than its region reaches
    seen, appeared, ended = tracker.update(FRAME)
    assert [t.box for t in seen] == [(75, 60, 60, 60)] and appeared == [] and ended == []
    assert seen[0].track_id == 1 and tracker.full_searches == 1


class _UniformClassifier:
    def classify(self, faces):
        return np.full((len(faces), 6), 1 / 6, dtype=np.float32)


def test_pipeline_follows_a_real_face_in_shrunk_regions_between_full_searches(astronaut):
    from helpers import place_face

    from ferlite.edge.algorithm.detector import NEAR_NEIGHBORS, HaarDetector
    from ferlite.edge.algorithm.pipeline import Pipeline

    pipeline = Pipeline(HaarDetector(1.1, 5, 48), _UniformClassifier(), PipelineConfig())
    calls: list[tuple[int, int | None]] = []  # (width, min_neighbors) searched
    detect = pipeline.detector.detect

    def spy(gray, min_size=None, max_size=None, min_neighbors=None):
        calls.append((gray.shape[1], min_neighbors))
        return detect(gray, min_size, max_size, min_neighbors)

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
    roi_widths = [width for width, neighbors in calls if neighbors == NEAR_NEIGHBORS]  # searches near the face
    # Unshrunk, a region (the face plus half its size on each side) would be ~130 px wide here.
    assert len(roi_widths) >= 4 and max(roi_widths) < 100


def test_change_map_sees_what_changed_not_the_noise():
    change = ChangeMap()
    rng = np.random.default_rng(0)
    frame = np.full((240, 320), 90, np.uint8)
    assert change.observe(frame) is None  # nothing to compare with yet

    def noisy(image, sigma):
        return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)

    for _ in range(20):
        assert not change.observe(noisy(frame, 6)).any()
    moved = frame.copy()
    moved[100:160, 200:260] = 220  # something appears
    changed = change.observe(noisy(moved, 6))
    rows, cols = np.nonzero(changed)
    assert rows.min() * 8 >= 96 and rows.max() * 8 < 160 and cols.min() * 8 >= 192 and cols.max() * 8 < 260
    assert not change.observe(noisy(moved, 6)).any()  # reported once


def test_change_map_learns_a_flickering_cell_and_ignores_it():
    change = ChangeMap()
    frame = np.full((64, 64), 100, np.uint8)
    change.observe(frame)
    flicker = [frame.copy(), frame.copy()]
    flicker[1][:8, :8] = 112  # a cell that jumps by 12 grey levels every other frame
    seen = [change.observe(flicker[i % 2])[0, 0] for i in range(1, 200)]
    assert any(seen[:20]) and not any(seen[-50:])
    assert change.noise is not None and change.noise[0, 0] > 3 and change.noise[1, 1] < 1


def test_scale_runs_cover_every_level_once_and_cost_what_they_say():
    windows = PyramidCost(24, 1.1).levels(48, 480)
    assert windows[0] == 51 and windows[-1] <= 480  # round(24 * 1.1**8): Haar's first window over 48
    runs = scale_slices(48, 480, PyramidCost(24, 1.1), 0.05)
    assert [w for run in runs for w in run.windows] == windows
    total = sum(run.cost for run in runs)
    assert all(len(run.windows) >= MIN_LEVELS for run in runs)
    assert all(run.cost <= 0.05 * total or len(run.windows) == MIN_LEVELS for run in runs)


def test_pipeline_search_for_new_faces_uses_haar_levels_as_a_whole_frame_search_would(astronaut):
    from helpers import place_face

    from ferlite.edge.algorithm.detector import HaarDetector
    from ferlite.edge.algorithm.pipeline import Pipeline

    pipeline = Pipeline(HaarDetector(1.1, 5, 48), _UniformClassifier(), PipelineConfig())
    empty = np.full((480, 640, 3), 100, np.uint8)  # what place_face pastes on
    for _ in range(3):
        assert pipeline.process(empty).faces == ()
    head = astronaut[0:260, 100:360]
    found_at = None
    for n in range(1, 6):  # a face walks in: found within a few frames, never by a whole-frame search
        if pipeline.process(place_face(head, 300, 100, scale=1.0)).faces:
            found_at = n
            break
    assert found_at is not None and found_at <= 3
    assert pipeline.tracker.full_searches == 1


def test_a_followed_face_moving_owes_no_search_for_new_faces(frame_drawing):
    det = ScriptedDetector(FRAME)
    tracker = FaceTracker(det, min_size=24)
    for step in range(12):
        frame_drawing[:] = 0
        frame_drawing[60 : 60 + 60, 40 + 4 * step : 100 + 4 * step] = 200  # the face, moving right
        det.faces = [(40 + 4 * step, 60, 60, 60)]
        seen, _, _ = tracker.update(FRAME)
        assert len(seen) == 1
    assert tracker.new_faces.searches == len(tracker.new_faces._slices)  # the first frame's, no more
