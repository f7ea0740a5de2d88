#!/usr/bin/env python3
"""Build the tiny int8 test model: a narrow hybrid CNN trained for a few seconds on synthetic
patterns, converted and verified by fer-convert's own code, written with its spec.

    python scripts/make_fixture_model.py [--out tests/fixtures/tiny_int8.tflite]

The model recognises no real expression; it only gives the edge tests a real int8 model
with the project's input, output and spec, whose outputs are not all ties.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "tiny_int8.tflite"
FILTERS = (4, 8, 8, 16, 16)
DENSE = (16, 16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras

    from ferlite.convert.tflite import convert
    from ferlite.convert.verify import verify
    from ferlite.edge.contract.atomic import atomic_write
    from ferlite.edge.contract.spec import ModelSpec, write_spec
    from ferlite.train.model import Architecture, build_model
    from ferlite.train.synthetic import make_faces

    keras.utils.set_random_seed(args.seed)
    model = build_model(Architecture(FILTERS, DENSE, dropout=0.1, bn_momentum=0.8), name="ferlite_tiny_fixture")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    faces, labels = make_faces(40, seed=args.seed)
    model.fit(faces[..., None].astype("float32"), labels, epochs=10, batch_size=24, verbose=0)
    with contextlib.redirect_stdout(sys.stderr):
        data = convert(model, "int8", faces[:120])
    check_faces, check_labels = make_faces(20, seed=args.seed + 1)
    source = {"made_by": "scripts/make_fixture_model.py", "purpose": "tests only (synthetic data)",
              "architecture": {"filters": list(FILTERS), "dense": list(DENSE)},
              "seed": args.seed, "date": dt.date.today().isoformat()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(data)
        write_spec(path, ModelSpec(quantization="int8", source=source))
        result = verify(model, path, check_faces, check_labels, threads=1)
    if result.agreement is None or result.agreement < 0.95:
        print(f"fixture agreement too low: {result}", file=sys.stderr)
        return 1
    atomic_write(args.out, data)
    write_spec(args.out, ModelSpec(quantization="int8", source=source))
    print(f"wrote {args.out} ({len(data):,} bytes): synthetic accuracy float "
          f"{result.float_accuracy:.2%}, int8 {result.tflite_accuracy:.2%}, agreement "
          f"{result.agreement:.2%}, batching {'on' if result.batchable else 'off'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
