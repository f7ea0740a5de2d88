#!/usr/bin/env bash
# Everything a GPU box needs from here, made where the data is (docs/model.md, "Training on a GPU box"), so that
# the box runs scripts/gpu_retrain.sh with nothing else:
#   PACK   (.pack/shipped.ferpack)  the decoded, split faces: FER+ and both CK+ crop styles, the fixed CK+ test
#          subjects; made once (REBUILD=1 makes it again)
#   WHEELS (.whl/)  wheels of the Python packages the box lacks (NEEDED: keras optree namex), at the versions
#          installed here, for the box's Python (PY: 3.12) on x86-64 Linux
# Both folders are ignored by git. The sizes are checked against what one call may carry (LIMIT_MIB: 64, the
# checkout's tracked files included).
#
#   scripts/gpu_prepare.sh            then, on the box: carry .pack and .whl, run scripts/gpu_retrain.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-../shared/data}
PACK=${PACK:-.pack/shipped.ferpack}
WHEELS=${WHEELS:-.whl}
PY=${PY:-3.12}
NEEDED=${NEEDED:-keras optree namex}
LIMIT_MIB=${LIMIT_MIB:-64}

if [ ! -f "$PACK" ] || [ "${REBUILD:-0}" = 1 ]; then
    for set in ferplus ckplus48_hugoiwnl ckplus48; do
        [ -d "$DATA/$set" ] || { printf 'gpu_prepare: %q: no such folder (give DATA)\n' "$DATA/$set" >&2; exit 2; }
    done
    scratch=$(mktemp -d)
    fer-train --data "ferplus=$DATA/ferplus" --data "crops:ckplus=$DATA/ckplus48_hugoiwnl" \
        --data "crops:ckplus48=$DATA/ckplus48" \
        --test-subjects src/ferlite/train/subject_lists/ckplus-test-subjects.txt \
        --pack "$PACK" --dry-run --overwrite --out "$scratch/pack"
    rm -rf "$scratch"
fi

mkdir -p "$WHEELS"
for name in $NEEDED; do
    version=$(python3 -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null) || {
        echo "gpu_prepare: $name is not installed here: its version is the one the box gets" >&2; exit 2; }
    rm -f "$WHEELS/$name"-*.whl  # one version of each: two stop the install on the box
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" "$name==$version"
done

tracked=$(git ls-files -z | xargs -0 cat | wc -c)
carried=$(cat "$PACK" "$WHEELS"/*.whl | wc -c)
total=$((tracked + carried))
printf 'gpu_prepare: %s (%d bytes), %s (%s), tracked files %d bytes: %d of %d MiB a call may carry\n' \
    "$PACK" "$(wc -c <"$PACK")" "$WHEELS" "$(ls "$WHEELS" | tr '\n' ' ')" "$tracked" $((total >> 20)) "$LIMIT_MIB"
if [ "$total" -gt $((LIMIT_MIB << 20)) ]; then
    echo "gpu_prepare: over the limit: leave a data set out of the pack, or carry less" >&2
    exit 1
fi
