"""fer-convert: Keras model -> verified int8 (or float16/float32) TFLite with its spec."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferlite.edge.contract.errors import UsageError
from ferlite.edge.contract.version import VersionAction

from .errors import AgreementError

if TYPE_CHECKING:
    from ferlite.train.stopping import StopRequests

log = logging.getLogger("ferlite.convert")

EXIT_FAILED_CHECK = 1
EXIT_BAD_INPUT = 2


DESCRIPTION = """\
Convert a trained Keras model to TFLite, write its spec, and verify it through the edge runner.

Default: full-integer int8 (int8 input and output), calibrated on --samples real faces
from --calibration, preprocessed exactly as on the edge (no augmentation). A folder is
either a class tree (<class>/<image>, labels from class names) or a flat folder of images;
with --cropped every image is a face crop, otherwise the largest Haar face is used.
The model is written only if top-1 agreement with Keras on the verification faces
(--verify, else the calibration faces) reaches --min-agreement. Faces whose float top-2
probabilities are too close to call (within two int8 output steps, 2/256) are counted but not
judged: which way such a tie falls depends on the CPU's rounding, not on the model.

Example:
  fer-convert runs/merged/model.keras --calibration ../shared/data/ckplus48_hugoiwnl \\
      --cropped --verify ../shared/data/fer2013 --out model.tflite
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-convert", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="trained model (.keras), e.g. runs/NAME/model.keras")
    p.add_argument("--out", type=Path, required=True, help="the .tflite to write")
    p.add_argument("--calibration", type=Path, help="folder of real faces (needed for int8)")
    p.add_argument("--samples", type=int, default=300, help="calibration faces (300)")
    p.add_argument("--verify", type=Path, help="folder of faces to verify on (default: calibration)")
    p.add_argument("--verify-samples", type=int, default=2000,
                   help="verification faces, a seeded random subset (2000; 0 = all)")
    p.add_argument("--cropped", action="store_true",
                   help="the images are face crops: resize only, no face detection")
    p.add_argument("--min-agreement", type=float, default=0.99,
                   help="least top-1 agreement with Keras, on the faces with a clear float decision, "
                        "to keep the file (0.99)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    p.add_argument("--no-logit-floor", action="store_true",
                   help="int8: keep the plain softmax layer (default: floor the logits far below "
                        "the runner-up, for a finer int8 logit scale; no decision changes)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--float16", dest="quantization", action="store_const", const="float16",
                      help="float16 weights instead of int8")
    kind.add_argument("--float32", dest="quantization", action="store_const", const="float32",
                      help="plain float32 instead of int8")
    p.add_argument("--log-level", default="INFO", help="DEBUG (shows TensorFlow's own output) | INFO | WARNING")
    p.add_argument("--version", action=VersionAction, prog="fer-convert")
    p.set_defaults(quantization="int8")
    return p


def _load_model(path: Path) -> Any:
    import keras

    import ferlite.train.model  # noqa: F401  (registers the custom layers)

    if not path.is_file():
        raise UsageError(f"{path}: model file not found")
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UsageError(f"{path}: not a loadable Keras model ({e})") from e


def _run_info(model_path: Path) -> dict[str, Any]:
    """The training run's options and headline metrics, when the model sits in a run folder."""
    info: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError, KeyError):
        run = json.loads((model_path.parent / "run.json").read_text())
        info["run"] = _portable_options(run["options"])
        if run.get("framing"):
            info["framing"] = run["framing"]
    with contextlib.suppress(OSError, ValueError, KeyError):
        metrics = json.loads((model_path.parent / "metrics.json").read_text())
        info["metrics"] = {side: {"accuracy": r["accuracy"], "n": r["n"]}
                           for side, r in metrics["sides"].items()}
    return info


def check_arguments(args: argparse.Namespace) -> None:
    """Every path and number checked before TensorFlow is imported (that alone takes seconds)."""
    if not args.model.is_file():
        raise UsageError(f"{args.model}: model file not found")
    if args.quantization == "int8" and args.calibration is None:
        raise UsageError("int8 needs --calibration DIR (real faces)")
    for flag, folder in (("--calibration", args.calibration), ("--verify", args.verify)):
        if folder is not None and not folder.is_dir():
            raise UsageError(f"{flag} {folder}: not a folder")
    if args.out.suffix != ".tflite":
        raise UsageError(f"--out {args.out}: the model file must end in .tflite")
    if args.out.parent.exists() and not args.out.parent.is_dir():
        raise UsageError(f"--out {args.out}: {args.out.parent} is not a folder")
    if args.samples < 1:
        raise UsageError(f"--samples {args.samples}: must be at least 1")
    if args.verify_samples < 0:
        raise UsageError(f"--verify-samples {args.verify_samples}: must be 0 (all) or more")
    if not 0.0 <= args.min_agreement <= 1.0:
        raise UsageError(f"--min-agreement {args.min_agreement}: must be within 0..1")


AGREEMENT_HELP = ("what helps: train with --label-smoothing 0.05-0.1 (smaller logit gaps quantise better), train "
                  "longer, calibrate on more or other real faces (--samples, --calibration), keep the logit floor "
                  "on; or lower --min-agreement, accepting that the int8 model's answers differ that often")


def _check_agreement(result: Any, min_agreement: float) -> None:
    """Raise AgreementError when the converted model disagrees too often on the faces the float
    model calls clearly (verify.py says why near-ties are left out). --min-agreement 0 asks for no check."""
    if min_agreement <= 0:
        return
    if result.agreement is None:
        raise AgreementError(f"none of the {result.faces} verification faces has a clear float decision (every "
                             f"top-2 gap is under {result.tie_tolerance:.4f}): nothing to verify the model on; "
                             "nothing written; verify on other faces (--verify)")
    if result.agreement < min_agreement:
        raise AgreementError(f"top-1 agreement {result.agreement:.2%} is below --min-agreement "
                             f"{min_agreement:.2%}; nothing written; {AGREEMENT_HELP}")


def convert_and_verify(args: argparse.Namespace, requests: StopRequests | None = None) -> dict[str, Any]:
    """Convert, verify, then write --out and its spec; a signal in `requests` stops it before --out changes."""
    from ferlite.edge.contract.atomic import temp_path_for
    from ferlite.edge.contract.spec import ModelSpec, file_sha256, spec_path_for, write_spec
    from ferlite.train import tf_runtime
    from ferlite.train.stopping import StopRequests

    from .face_sets import load_face_set

    requests = requests or StopRequests()
    check_arguments(args)
    tf_runtime.tensorflow()
    from .tflite import convert, logit_floor
    from .verify import verify

    model = _load_model(args.model)
    requests.check()  # between the long steps: a signal whose raise was lost stops here
    needs_calibration = args.quantization == "int8"
    calibration = (load_face_set(args.calibration, args.cropped, args.samples, args.seed)
                   if args.calibration else None)
    check = (load_face_set(args.verify, args.cropped, args.verify_samples, args.seed)
             if args.verify else calibration)
    if check is None:
        raise UsageError("nothing to verify on: give --verify DIR or --calibration DIR")
    requests.check()
    floor = None
    exported = model
    if needs_calibration and not args.no_logit_floor:
        assert calibration is not None
        exported, floor = logit_floor(model, calibration.faces)
    with tf_runtime.quiet():  # the converter's chatter: shown with --log-level debug
        data = convert(exported, args.quantization,
                       calibration.faces if calibration and needs_calibration else None)
    tmp = temp_path_for(args.out)  # verified through the edge runner before it takes the real name
    try:
        tmp.write_bytes(data)
        # Provenance without machine paths: the run folder's name and the file, never where they lay.
        source = {"keras": _portable(args.model), "keras_sha256": file_sha256(args.model),
                  "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  **_run_info(args.model)}
        if "framing" not in source:  # measured (and warned about) only when the run recorded none
            source["framing"] = _framing_from(calibration if args.cropped else None)
        margin = float(source["framing"]["margin"])
        spec = ModelSpec(quantization=args.quantization, margin=margin, source=source,  # runs before it: Haar's
                         framing_detector=str(source["framing"].get("detector", ModelSpec.framing_detector)))
        write_spec(tmp, spec)
        result = verify(model, tmp, check.faces, check.labels)
        _print_verification(args, len(data), result, check.source)
        _check_agreement(result, args.min_agreement)
        requests.check()  # a signal whose raise was lost during conversion: --out stays as it was
        source |= {"calibration": {"folder": _portable(args.calibration), "faces":
                                   len(calibration.faces) if calibration else 0,
                                   "logit_floor": floor},
                   "verification": {"folder": _portable(check.source), **result.to_dict()}}
        os.replace(tmp, args.out)
        write_spec(args.out, dataclasses.replace(spec, source=source))
    finally:
        tmp.unlink(missing_ok=True)
        spec_path_for(tmp).unlink(missing_ok=True)
    print(f"wrote {args.out} and {spec_path_for(args.out)} (framing margin {margin:.3f})")
    return source


def _portable_options(options: dict[str, Any]) -> dict[str, Any]:
    """A run's options with every absolute path cut to its last two parts (`ferplus=.../data/ferplus`)."""
    def cut(value: Any) -> Any:
        if isinstance(value, list):
            return [cut(v) for v in value]
        if isinstance(value, str) and "/" in value:
            head, sep, path = value.rpartition("=") if "=" in value else ("", "", value)
            if path.startswith(("/", "~")):
                return f"{head}{sep}{_portable(Path(path))}"
        return value

    return {key: cut(value) for key, value in options.items()}


def _portable(path: Path | None) -> str | None:
    """A path as the last two parts (`runs/NAME/model.keras` -> `NAME/model.keras`): enough to
    know which run or folder it was, without the machine's layout."""
    return None if path is None else "/".join(Path(path).resolve().parts[-2:])


def _framing_from(crops: Any) -> dict[str, Any]:
    """Framing for a model whose run recorded none: measured on the calibration crops, else the
    contract's default."""
    from ferlite.edge.contract import DEFAULT_MARGIN
    from ferlite.train.framing import measure_framing

    if crops is None:
        log.warning("no framing in the run and no --cropped calibration faces: margin %.2f (default)",
                    DEFAULT_MARGIN)
        return {"margin": DEFAULT_MARGIN, "measured": False}
    framing = measure_framing(crops.faces).to_dict()
    log.info("framing measured on %d calibration crops: margin %.3f", framing["faces"], framing["margin"])
    return {**framing, "measured_on": "calibration"}


def _pct(value: float | None, missing: str = "n/a (unlabelled)") -> str:
    return missing if value is None else f"{value:.2%}"


def _print_verification(args: argparse.Namespace, size: int, result: Any, folder: Path) -> None:
    print(f"{args.quantization} model: {size:,} bytes ({size / 1024:.1f} KiB)")
    print(f"verified on {result.faces} faces from {folder}: float accuracy "
          f"{_pct(result.float_accuracy)}, {args.quantization} accuracy "
          f"{_pct(result.tflite_accuracy)}, top-1 agreement {_pct(result.agreement, 'n/a')} on the "
          f"{result.decided} faces with a clear float decision ({result.too_close} too close to call: "
          f"top-2 gap under {result.tie_tolerance:.4f}, which rounding on another CPU could flip; "
          f"{result.agreement_all:.2%} counting them), "
          f"max probability difference {result.max_prob_diff:.4f}, "
          f"batching {'on' if result.batchable else 'off'}")


# Reduced-precision switches for oneDNN's float32 kernels: TensorFlow's own (read on Arm builds) and
# oneDNN's default. The verification's float reference must be float32 on every CPU (verify.py).
FPMATH_VARIABLES = ("TF_SET_ONEDNN_FPMATH_MODE", "ONEDNN_DEFAULT_FPMATH_MODE")


def strict_float32_math() -> None:
    """Ask oneDNN for strict float32 before TensorFlow is imported (it reads these once, at start)."""
    for name in FPMATH_VARIABLES:
        value = os.environ.get(name, "")
        if value and value.upper() != "STRICT":
            log.warning("%s=%s ignored: the verification's float reference is computed in strict float32",
                        name, value)
        os.environ[name] = "STRICT"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    missing = next((m for m in ("tensorflow", "keras") if importlib.util.find_spec(m) is None), None)
    if missing:
        print(f"fer-convert: error: fer-convert needs the training extra ({missing} is not installed): "
              f"pip install 'ferlite[train]'", file=sys.stderr)
        return EXIT_BAD_INPUT
    strict_float32_math()
    from ferlite.edge.algorithm.runner import ModelLoadError
    from ferlite.edge.contract.errors import FerliteError
    from ferlite.edge.contract.spec import ModelSpecError
    from ferlite.train.stopping import report_stopped, stop_requests

    with stop_requests() as requests:
        try:
            convert_and_verify(args, requests)
        except (AgreementError, ModelLoadError, ModelSpecError) as e:  # made, but failed its checks
            print(f"fer-convert: error: {e}", file=sys.stderr)
            return EXIT_FAILED_CHECK
        except FerliteError as e:  # bad input: nothing was made
            print(f"fer-convert: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:  # SIGINT or SIGTERM: the temporary model is removed on the way out
            return report_stopped("fer-convert", requests, f"{args.out} left as it was")
    return 0


if __name__ == "__main__":
    sys.exit(main())
