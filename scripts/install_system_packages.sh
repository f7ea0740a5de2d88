#!/usr/bin/env bash
# The system packages the checks use beyond pip, installed here and only here (.ci/run calls this; tests never
# install anything, and skip saying which package is missing):
#   mosquitto  tests/test_mqtt.py's broker (mosquitto, mosquitto_passwd)
#   chromium   tests/test_preview.py's headless browser
#   systemd    scripts/check_units.sh (systemd-analyze)
# Debian/Ubuntu with apt-get, as root. Installs only what is missing; without root or apt-get it says what is
# missing and exits 0 (the tests that need it then skip). An apt-get failure exits 1.
#
# Usage: scripts/install_system_packages.sh [--check]   (--check: only say what is missing)
set -uo pipefail

# package:binary that proves it is installed
PACKAGES=(mosquitto:mosquitto chromium:chromium systemd:systemd-analyze)

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

missing=()
for entry in "${PACKAGES[@]}"; do
    have "${entry#*:}" || missing+=("${entry%%:*}")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages: all present (${PACKAGES[*]%%:*})"
    exit 0
fi
echo "system packages missing: ${missing[*]}"
[ "${1:-}" = "--check" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "not root with apt-get: install them with 'apt-get install --no-install-recommends ${missing[*]}'; their tests skip until then"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || { echo "apt-get update failed" >&2; exit 1; }
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
    echo "apt-get install ${missing[*]} failed" >&2
    exit 1
}
echo "system packages installed: ${missing[*]}"
