#!/usr/bin/env bash
# Check the systemd units in systemd/:
#  1. `systemd-analyze verify` must print nothing. It exits 0 on unknown keys and other
#     mistakes it merely warns about, so any output at all is a failure.
#  2. `systemd-analyze security --offline=yes` exposure must stay <= the unit's limit: 1.0 for units
#     without network (fer-edge.service), 2.0 for fer-mqtt.service, which must reach a broker
#     (AF_INET/AF_INET6, no PrivateNetwork=). EXPOSURE_MAX, when set, is the limit for every unit.
#
# verify runs against a scratch root (--root) holding a copy of the host's system units (for
# the targets the unit orders after), the unit under test, and an executable stand-in at
# ExecStart's path, so the real unit file is verified as shipped without ferlite installed.
#
# Without systemd-analyze: installed with apt-get when running as root where apt-get exists (as .ci/run
# does); otherwise a failure under CI=true, or a skip (exit 0) with a note.
# Debian/Ubuntu: apt-get install systemd
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UNITS_DIR=${UNITS_DIR:-$REPO/systemd}
DEFAULT_EXPOSURE_MAX=1.0
declare -A UNIT_EXPOSURE_MAX=([fer-mqtt.service]=2.0)

exposure_max() {
    if [ -n "${EXPOSURE_MAX:-}" ]; then echo "$EXPOSURE_MAX"; else echo "${UNIT_EXPOSURE_MAX[$1]:-$DEFAULT_EXPOSURE_MAX}"; fi
}

if ! command -v systemd-analyze >/dev/null 2>&1 && [ "${EUID:-1}" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "check_units: apt-get install systemd (for systemd-analyze)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd; } >/dev/null 2>&1
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "check_units: FAIL: systemd-analyze not found (apt-get install systemd)" >&2
        exit 1
    fi
    echo "check_units: SKIP: systemd-analyze not found (apt-get install systemd)"
    exit 0
fi
echo "check_units: $(systemd-analyze --version | head -1)"

shopt -s nullglob
units=("$UNITS_DIR"/*.service "$UNITS_DIR"/*.socket)
if [ ${#units[@]} -eq 0 ]; then
    echo "check_units: FAIL: no units in $UNITS_DIR" >&2
    exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/etc/systemd/system" "$scratch/usr/lib/systemd"
for dir in /usr/lib/systemd/system /lib/systemd/system; do
    if [ -d "$dir" ]; then cp -a "$dir" "$scratch/usr/lib/systemd/"; break; fi
done
for unit in "${units[@]}"; do
    cp "$unit" "$scratch/etc/systemd/system/"
    # A stand-in for each absolute Exec*= binary, so verify checks the unit, not this machine.
    sed -nE 's/^-?Exec[A-Za-z]*=[-@:+!]*(\/[^ ]+).*/\1/p' "$unit" | while read -r exe; do
        mkdir -p "$scratch$(dirname "$exe")"
        printf '#!/bin/sh\nexit 0\n' > "$scratch$exe"
        chmod +x "$scratch$exe"
    done
done

status=0
for unit in "${units[@]}"; do
    name=$(basename "$unit")
    out=$(systemd-analyze verify --root="$scratch" "$name" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
        echo "check_units: FAIL: systemd-analyze verify $name (exit $rc):" >&2
        printf '%s\n' "$out" | sed 's/^/    /' >&2
        status=1
    else
        echo "check_units: verify $name: clean"
    fi
done

for unit in "$UNITS_DIR"/*.service; do
    name=$(basename "$unit")
    max=$(exposure_max "$name")
    report=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1)
    score=$(printf '%s\n' "$report" | sed -nE 's/.*Overall exposure level for [^:]+: ([0-9]+\.[0-9]+).*/\1/p')
    if [ -z "$score" ]; then
        echo "check_units: FAIL: no exposure score for $name:" >&2
        printf '%s\n' "$report" | tail -5 | sed 's/^/    /' >&2
        status=1
        continue
    fi
    if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }'; then
        echo "check_units: security $name: exposure $score (<= $max)"
    else
        echo "check_units: FAIL: security $name: exposure $score > $max; what counts:" >&2
        printf '%s\n' "$report" | grep '✗' | sed 's/^/    /' >&2
        status=1
    fi
done
exit $status
