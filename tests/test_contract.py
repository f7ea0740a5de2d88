from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from ferlite.edge import INPUT_SIZE, LABELS, preprocess_face, preprocess_faces
from ferlite.edge.contract.preprocess import expand_box, to_gray


def test_labels_fixed_order():
    assert LABELS == ("Angry", "Disgust", "Happy", "Neutral", "Sad", "Surprise")
    assert INPUT_SIZE == (84, 84)


def test_bgr_gray_and_y_plane_give_the_same_face(astronaut):
    box = (177, 66, 95, 95)
    from_bgr = preprocess_face(astronaut, box)
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    from_gray = preprocess_face(gray, box)
    # picamera2's YUV420 lores buffer: (h * 3 / 2, w), the Y plane on top.
    yuv = cv2.cvtColor(astronaut, cv2.COLOR_BGR2YUV_I420)
    from_y_plane = preprocess_face(yuv[: astronaut.shape[0]], box)
    assert from_bgr.shape == INPUT_SIZE and from_bgr.dtype == np.uint8
    np.testing.assert_array_equal(from_bgr, from_gray)
    # Y is BT.601 limited-range luma, not BGR2GRAY: the same face, slightly other levels.
    assert from_y_plane.shape == INPUT_SIZE and from_y_plane.dtype == np.uint8
    limited_range = 16 + from_gray.astype(float) * 219 / 255
    assert np.abs(from_y_plane - limited_range).max() <= 3


def test_margin_grows_box_and_clips_to_frame():
    assert expand_box((10, 10, 100, 50), 0.1, (480, 640)) == (0, 5, 120, 60)
    assert expand_box((600, 400, 100, 100), 0.0, (480, 640)) == (600, 400, 40, 80)
    with pytest.raises(ValueError, match="outside"):
        expand_box((700, 10, 20, 20), 0.0, (480, 640))


def test_whole_frame_and_batch(astronaut):
    whole = preprocess_face(astronaut)
    # Through the training faces' 48x48 first (FACE_SIZE), then up to the input size.
    at_48 = cv2.resize(to_gray(astronaut), (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(whole, cv2.resize(at_48, (84, 84), interpolation=cv2.INTER_LINEAR))
    direct = preprocess_face(astronaut, face_size=0)
    np.testing.assert_array_equal(direct, cv2.resize(to_gray(astronaut), (84, 84), interpolation=cv2.INTER_AREA))
    batch = preprocess_faces(astronaut, [(0, 0, 100, 100), (100, 100, 50, 60)])
    assert batch.shape == (2, 84, 84)
    np.testing.assert_array_equal(batch[1], preprocess_face(astronaut, (100, 100, 50, 60)))


def test_small_crops_are_upscaled_like_the_48px_training_data():
    face48 = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    out = preprocess_face(face48)
    np.testing.assert_array_equal(out, cv2.resize(face48, (84, 84), interpolation=cv2.INTER_LINEAR))


def test_unsupported_image_shape():
    with pytest.raises(ValueError, match="unsupported"):
        to_gray(np.zeros((4, 4, 2), np.uint8))


def test_edge_imports_without_tensorflow():
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "import ferlite.edge, ferlite.edge.apps.cli, ferlite.edge.algorithm.runner, ferlite.edge.runtime.sources\n"
        "import ferlite.edge.runtime.feed, ferlite.edge.apps.watch, ferlite.edge.algorithm.pipeline\n"
        "import ferlite.edge.runtime.notify, ferlite.edge.runtime.api, ferlite.edge.apps.annotate\n"
        "import ferlite.edge.apps.preview, ferlite.edge.algorithm.frames\n"
        "from ferlite.edge import Recognizer, recognize, draw_result, InputError\n"
        "assert sys.modules['tensorflow'] is None\n"
        "assert not any(m.startswith(('ferlite.train', 'ferlite.convert')) for m in sys.modules)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_edge_runs_a_model_without_tensorflow(tiny_model):
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "import numpy as np\n"
        "from ferlite.edge.algorithm.runner import ModelRunner\n"
        f"r = ModelRunner({str(tiny_model)!r}, threads=1)\n"
        "p = r.classify(np.zeros((2, 84, 84), np.uint8))\n"
        "print(p.shape, r.backend)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("(2, 6)")
    assert "tensorflow" not in out.stdout
