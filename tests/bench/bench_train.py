"""Training throughput per Keras backend and input path, side by side in one run.

Each (backend, path) trains the default hybrid CNN on random 84x84 faces for a few steps in its own
process (a Keras backend is chosen once per process) and reports images/s after a warm-up epoch:

- `device-aug`: what fer-train does: uint8 batches to the device, the affine augmentation inside the
  compiled step (`ferlite.train.inputs.RandomAffine`, keras.ops).
- `host-aug`: the alternative: a `keras.utils.PyDataset` that augments each image on the host with
  OpenCV (`cv2.warpAffine`, the same matrices) in worker threads, float batches to the device.
- `no-aug`: the model alone (the ceiling).
- `tf.data` (TensorFlow only): the pipeline fer-train had before (the same transform, which is
  `ImageProjectiveTransformV3` on TensorFlow, in parallel `tf.data` map calls), for comparison.

    python tests/bench/bench_train.py [--steps 12] [--batch 62] [--json tests/bench/bench_train.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATHS = ("no-aug", "device-aug", "host-aug", "tf.data")

CHILD = r"""
import json, sys, time
import numpy as np, keras
from ferlite.train.inputs import Augmentation, affine_params, draw, training_model, as_input
from ferlite.train.model import build_model

path, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
keras.utils.set_random_seed(0)
n = steps * batch
rng = np.random.default_rng(0)
faces = rng.integers(0, 256, (n, 84, 84), dtype=np.uint8)
targets = keras.utils.to_categorical(rng.integers(0, 6, n), 6).astype("float32")
aug = Augmentation()
model = build_model()
trained = training_model(model, aug, 0) if path == "device-aug" else model
trained.compile(optimizer="adam", loss="categorical_crossentropy")


class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.t


class HostAugmented(keras.utils.PyDataset):
    def __init__(self):
        super().__init__(workers=4, use_multiprocessing=False)
        import cv2
        self.cv2 = cv2

    def __len__(self):
        return steps

    def __getitem__(self, i):
        x = faces[i * batch:(i + 1) * batch]
        d = draw(len(x), aug, 84, 84)
        params = keras.ops.convert_to_numpy(affine_params(d, 84, 84))
        out = np.empty(x.shape + (1,), np.float32)
        for j, (face, p) in enumerate(zip(x, params)):
            matrix = np.array([[p[0], p[1], p[2]], [p[3], p[4], p[5]]], np.float32)
            out[j, ..., 0] = self.cv2.warpAffine(face.astype(np.float32), matrix, (84, 84),
                flags=self.cv2.INTER_LINEAR | self.cv2.WARP_INVERSE_MAP, borderMode=self.cv2.BORDER_REPLICATE)
        return out, targets[i * batch:(i + 1) * batch]


timer = Timer()
for epoch in range(2):  # the first epoch compiles
    if path == "host-aug":
        trained.fit(HostAugmented(), epochs=1, verbose=0, callbacks=[timer])
    elif path == "tf.data":
        import tensorflow as tf
        from ferlite.train.inputs import augment
        ds = tf.data.Dataset.from_tensor_slices((faces, targets)).shuffle(n, seed=0).batch(batch)
        # an int seed: stateless draws inside tf.data's graph (the same each batch; the cost is what counts)
        ds = ds.map(lambda x, y: (augment(tf.cast(x[..., None], tf.float32), aug, 0), y),
                    num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
        trained.fit(ds, epochs=1, verbose=0, callbacks=[timer])
    else:
        trained.fit(as_input(faces), targets, batch_size=batch, epochs=1, verbose=0, callbacks=[timer])
print(json.dumps({"backend": keras.backend.backend(), "path": path, "images_per_second": n / timer.seconds}))
"""


def run_one(backend: str, path: str, steps: int, batch: int) -> dict[str, object]:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", CHILD, path, str(steps), str(batch)], env=env,
                          capture_output=True, text=True, timeout=1800, cwd=ROOT / "tests" / "bench")
    if done.returncode != 0:
        return {"backend": backend, "path": path, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=62)
    p.add_argument("--backends", default="tensorflow,jax,torch")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rows = []
    for backend in args.backends.split(","):
        if importlib.util.find_spec(backend) is None:
            print(f"{backend}: not installed, skipped", file=sys.stderr)
            continue
        for path in PATHS:
            if path == "tf.data" and backend != "tensorflow":
                continue
            row = run_one(backend, path, args.steps, args.batch)
            print(f"{backend:10s} {path:10s} " + (f"{row['images_per_second']:7.1f} images/s"
                                                  if "images_per_second" in row else f"error {row['error']}"))
            rows.append(row)
    if args.json:
        result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "steps": args.steps,
                  "batch": args.batch, "rows": rows}
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
