#!/usr/bin/env bash
# The shipped model's recipe, retrained to convergence on a GPU box from a face pack (docs/model.md,
# "Training on a GPU box"). Runs from the repository root on a machine that has a Keras backend with CUDA
# (JAX by default) but need not have ferlite installed, TensorFlow, or the image folders:
#
#   where the data is:  scripts/gpu_prepare.sh   (the face pack in .pack/, the wheels the box lacks in .whl/)
#   on the GPU box:     scripts/gpu_retrain.sh   (PACK, EPOCHS, BATCH, LR, RUN, RESULTS, WHEELS, DEADLINE_S, KERAS_BACKEND)
#
# Wheels in WHEELS (default .whl/: keras, optree, namex where the box lacks them) are installed to a temporary
# folder first.
# The run folder is RUN (checkpointed every epoch: `scripts/gpu_retrain.sh` again with RESUME=1 continues it);
# model.keras, metrics.json, run.json, history.csv and train.log are copied to RESULTS (default $OUT when set).
# DEADLINE_S (seconds, optional): fer-train gets SIGTERM then, ends after the epoch under way and writes its
# results as for a finished run, so they come back even from a command that has a time limit.
set -euo pipefail
cd "$(dirname "$0")/.."

PACK=${PACK:-.pack/shipped.ferpack}
EPOCHS=${EPOCHS:-120}
BATCH=${BATCH:-256}
LR=${LR:-2e-3}
RUN=${RUN:-/tmp/ferlite-gpu-run}
WHEELS=${WHEELS:-.whl}
RESULTS=${RESULTS:-${OUT:-runs/gpu-results}}
export KERAS_BACKEND=${KERAS_BACKEND:-jax}

[ -f "$PACK" ] || { printf 'gpu_retrain: %q: no such face pack (see the header of this script)\n' "$PACK" >&2; exit 2; }
if [ -n "${DEADLINE_S:-}" ] && ! [[ "$DEADLINE_S" =~ ^[0-9]+$ && "$DEADLINE_S" -gt 0 ]]; then
    printf 'gpu_retrain: DEADLINE_S=%q: give whole seconds, 1 or more\n' "$DEADLINE_S" >&2  # %q: one line
    exit 2
fi
site=$(mktemp -d)
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$WHEELS"/*.whl || {
        echo "gpu_retrain: the wheels in $WHEELS do not install for $(python3 -V) (made for another Python? see" \
             "scripts/gpu_prepare.sh, PY=)" >&2
        exit 2
    }
fi
# src/ferlite is the ferlite namespace as it is: importable without installing.
export PYTHONPATH="$site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

args=(--from-pack "$PACK" --repeat ckplus=4 --repeat ckplus48=2 --targets votes --class-weight-power 0.5
      --label-smoothing 0.05 --seed 0 --schedule onecycle --learning-rate "$LR" --batch-size "$BATCH"
      --epochs "$EPOCHS" --progress-every 30 --no-cache)
if [ "${RESUME:-0}" = 1 ]; then
    args=(--resume --epochs "$EPOCHS")
else
    args+=(--overwrite)
fi
start=$(date +%s)
train=(python3 -m ferlite.train.cli "${args[@]}" --out "$RUN")
if [ -n "${DEADLINE_S:-}" ]; then
    train=(timeout --preserve-status --signal=TERM --kill-after=120 "$DEADLINE_S" "${train[@]}")
fi
"${train[@]}"
echo "gpu_retrain: $(( $(date +%s) - start )) s with $KERAS_BACKEND" | tee -a "$RUN/train.log"

mkdir -p "$RESULTS"
for name in model.keras metrics.json run.json history.csv train.log; do
    cp "$RUN/$name" "$RESULTS/"
done
echo "gpu_retrain: results in $RESULTS"
