#!/usr/bin/env bash
# The arm64 check: run fer-edge on emulated aarch64 (a Debian rootfs with Debian's python3,
# numpy and OpenCV, plus the aarch64 wheels of the edge dependencies, under qemu-aarch64-static)
# and require the same labels as the x86 run over the same folder of face images.
#
#   scripts/arm64_check.sh [--suite trixie|bookworm] [--model M.tflite] [--images DIR]
#                          [--fresh] [--threads N] [--cpus "cortex-a72 cortex-a76"]
#
# Each CPU in --cpus is one aarch64 run, emulated as that core (QEMU_CPU) with a matching
# /proc/cpuinfo: cortex-a72 is the Raspberry Pi 4's, cortex-a76 the Pi 5's. Emulate a real Pi core,
# not qemu's default "max" CPU: qemu 7.2 advertises newer extensions (SVE, SME, I8MM) for which
# XNNPACK picks kernels that it then miscomputes (labels differ from x86 while LiteRT's builtin
# kernels agree).
#
# Needs: mmdebstrap, qemu-user-static (installed with apt-get when run as root), and network
# access to the Debian mirror and PyPI the first time. The rootfs and wheels are cached under
# build/arm64/ (git-ignored); --fresh rebuilds them. Not part of the default test run: the first
# run takes a few minutes, later ones about one.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=trixie
MODEL=""
IMAGES=""
FRESH=0
THREADS=1
CPUS="cortex-a72 cortex-a76"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_PY=${HOST_PYTHON:-$REPO/.venv/bin/python}
[ -x "$HOST_PY" ] || HOST_PY=python3

while [ $# -gt 0 ]; do
    case "$1" in
        --suite) SUITE=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        --images) IMAGES=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --cpus) CPUS=$2; shift 2 ;;
        --fresh) FRESH=1; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "arm64_check: unknown argument $1" >&2; exit 2 ;;
    esac
done

case "$SUITE" in
    # trixie: numpy 2.x, so the current ml_dtypes that ai-edge-litert pulls in just works.
    trixie) PINS=() ;;
    # bookworm: numpy 1.24; ml_dtypes >= 0.6 needs numpy >= 2 (see docs/raspberry-pi.md).
    bookworm) PINS=("ml_dtypes<0.6") ;;
    *) echo "arm64_check: --suite must be trixie or bookworm" >&2; exit 2 ;;
esac

WORK=${ARM64_WORK:-$REPO/build/arm64}
ROOT=$WORK/rootfs-$SUITE
SITE=$WORK/site-$SUITE
OUT=$WORK/out-$SUITE
mkdir -p "$WORK" "$OUT"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(now)

# --- tools ------------------------------------------------------------------------------------
if ! command -v mmdebstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing mmdebstrap qemu-user-static"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap qemu-user-static >/dev/null
    else
        echo "arm64_check: needs mmdebstrap and qemu-user-static (apt-get install mmdebstrap qemu-user-static)" >&2
        exit 2
    fi
fi
QEMU=$(command -v qemu-aarch64-static)

# --- model and images -------------------------------------------------------------------------
if [ -z "$MODEL" ]; then
    for candidate in "$REPO"/src/ferlite/edge/models/*.tflite "$REPO/tests/fixtures/tiny_int8.tflite"; do
        if [ -f "$candidate" ]; then MODEL=$candidate; break; fi
    done
fi
[ -n "$MODEL" ] && [ -f "$MODEL" ] || { echo "arm64_check: no model (give --model)" >&2; exit 2; }
MODEL=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
if [ -z "$IMAGES" ]; then
    IMAGES=$OUT/faces
    rm -rf "$IMAGES"
    "$HOST_PY" "$REPO/scripts/arm64/make_faces.py" "$IMAGES"
fi
IMAGES=$(cd "$IMAGES" && pwd)

# --- the aarch64 rootfs -------------------------------------------------------------------------
if [ "$FRESH" = 1 ]; then rm -rf "$ROOT" "$SITE"; fi
if [ ! -x "$ROOT/usr/bin/python3" ]; then
    echo "== mmdebstrap $SUITE arm64 -> $ROOT"
    t=$(now)
    rm -rf "$ROOT.tmp"
    mmdebstrap --quiet --variant=extract --architectures=arm64 \
        --include=python3,python3-numpy,python3-opencv,opencv-data \
        "$SUITE" "$ROOT.tmp" "$MIRROR"
    # --variant=extract installs no base-files, so add the merged-/usr links ld.so is found by.
    for dir in bin sbin lib; do
        [ -e "$ROOT.tmp/$dir" ] || ln -s "usr/$dir" "$ROOT.tmp/$dir"
    done
    # Nor are maintainer scripts run: do update-alternatives' job for BLAS/LAPACK by hand.
    for lib in "$ROOT.tmp"/usr/lib/aarch64-linux-gnu/{blas,lapack,openblas-pthread}/lib*.so.3; do
        [ -e "$lib" ] || continue
        link="$ROOT.tmp/usr/lib/aarch64-linux-gnu/$(basename "$lib")"
        [ -e "$link" ] || ln -s "${lib#"$ROOT.tmp/usr/lib/aarch64-linux-gnu/"}" "$link"
    done
    mv "$ROOT.tmp" "$ROOT"
    echo "   rootfs built in $(since "$t") s ($(du -sh "$ROOT" | cut -f1))"
fi
PYVER=$(basename "$(ls -d "$ROOT"/usr/lib/python3.[0-9]* | sort -V | tail -1)")
PYVER=${PYVER#python}

# ai-edge-litert (through Google's cpuinfo library) reads /proc/cpuinfo and crashes on the x86
# host's. qemu's -L prefix serves $ROOT/proc/cpuinfo in its place: a Pi's, for the emulated core.
fake_cpuinfo() {
    local n part variant features model revision
    case "$1" in
        cortex-a72) part=0xd08; variant=0x0; revision=3; model="Raspberry Pi 4 Model B Rev 1.4"
            features="fp asimd evtstrm crc32 cpuid" ;;
        cortex-a76) part=0xd0b; variant=0x4; revision=1; model="Raspberry Pi 5 Model B Rev 1.0"
            features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
        *) echo "arm64_check: no /proc/cpuinfo for $1 (cortex-a72 or cortex-a76)" >&2; exit 2 ;;
    esac
    mkdir -p "$ROOT/proc"
    rm -f "$ROOT/proc/cpuinfo"
    for n in 0 1 2 3; do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\n' "$n" "$features"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\n' "$variant"
        printf 'CPU part\t: %s\nCPU revision\t: %s\n\n' "$part" "$revision"
    done > "$ROOT/proc/cpuinfo"
    printf 'Model\t\t: %s\n' "$model" >> "$ROOT/proc/cpuinfo"
}

# --- the edge dependencies' aarch64 wheels + ferlite itself ------------------------------------
if [ ! -f "$SITE/.complete" ]; then
    echo "== aarch64 wheels for cp${PYVER/./} -> $SITE"
    t=$(now)
    rm -rf "$SITE"
    # Debian provides numpy and cv2; pip brings what Debian lacks (no deps: keep Debian's numpy).
    "$HOST_PY" -m pip install --quiet --no-deps --only-binary=:all: --target "$SITE" \
        --python-version "$PYVER" --implementation cp \
        --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 \
        --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
        ai-edge-litert "ml_dtypes" flatbuffers protobuf tqdm typing-extensions \
        backports.strenum "${PINS[@]}" 2>&1 | { grep -v "Location .* is ignored" || true; }
    touch "$SITE/.complete"
    echo "   wheels installed in $(since "$t") s"
fi
rm -rf "$SITE/ferlite"
mkdir -p "$SITE/ferlite"
cp -r "$REPO/src/ferlite/edge" "$SITE/ferlite/edge"
find "$SITE/ferlite" -name __pycache__ -prune -exec rm -rf {} +

# --- run both -------------------------------------------------------------------------------------
ARGS=(--whole-frame --source "$IMAGES" --model "$MODEL" --threads "$THREADS" --log-level WARNING)
echo "== model  $MODEL"
echo "== images $IMAGES ($(ls "$IMAGES" | wc -l) files)"

t=$(now)
"$HOST_PY" -m ferlite.edge.apps.cli "${ARGS[@]}" > "$OUT/x86_64.jsonl"
X86_S=$(since "$t")
echo "== x86_64 run: $X86_S s"

# -L: the ELF interpreter, libraries and /proc/cpuinfo come from the rootfs; python finds its
# stdlib and Debian's dist-packages (numpy, cv2) from its own location inside it.
arm_python() {
    env -i PATH=/usr/bin:/bin HOME=/nonexistent LANG=C.UTF-8 PYTHONPATH="$SITE" \
        PYTHONDONTWRITEBYTECODE=1 QEMU_CPU="$1" \
        "$QEMU" -L "$ROOT" "$ROOT/usr/bin/python$PYVER" "${@:2}"
}

# A second pass with the Haar detector on the demo photos: on aarch64 that is Debian's OpenCV,
# which has no cv2.data, so it also proves the cascade-path fallback.
DETECT_ARGS=(--source "$REPO/src/ferlite/edge/demo" --model "$MODEL" --threads "$THREADS" --log-level WARNING)
"$HOST_PY" -m ferlite.edge.apps.cli "${DETECT_ARGS[@]}" > "$OUT/x86_64-detect.jsonl"

status=0
for cpu in $CPUS; do
    fake_cpuinfo "$cpu"
    t=$(now)
    arm_python "$cpu" -m ferlite.edge.apps.cli "${ARGS[@]}" > "$OUT/aarch64-$cpu.jsonl"
    echo "== aarch64 run, qemu $cpu: $(since "$t") s"
    arm_python "$cpu" -c 'import platform, numpy, cv2, ai_edge_litert, ml_dtypes; print("   aarch64 stack:", platform.machine(), "python", platform.python_version(), "numpy", numpy.__version__, "cv2", cv2.__version__, "ml_dtypes", ml_dtypes.__version__)'
    "$HOST_PY" "$REPO/scripts/arm64/compare.py" "$OUT/x86_64.jsonl" "$OUT/aarch64-$cpu.jsonl" \
        || status=1
    t=$(now)
    arm_python "$cpu" -m ferlite.edge.apps.cli "${DETECT_ARGS[@]}" > "$OUT/aarch64-$cpu-detect.jsonl"
    echo "== aarch64 run with face detection (demo photos), qemu $cpu: $(since "$t") s"
    "$HOST_PY" "$REPO/scripts/arm64/compare.py" \
        "$OUT/x86_64-detect.jsonl" "$OUT/aarch64-$cpu-detect.jsonl" || status=1
done
if [ $status -ne 0 ]; then
    echo "== arm64 check FAILED ($SUITE) after $(since "$T0") s"
    exit 1
fi
echo "== arm64 check passed ($SUITE: $CPUS) in $(since "$T0") s"
