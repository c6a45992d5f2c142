#!/usr/bin/env bash
# Install the Debian packages the build and the tests need, when missing.
#   libasound2-dev, pkg-config: cpal (ALSA) for live capture
#   python3-pip: fetching the torch wheel (scripts/setup-libtorch.sh)
#   patchelf: the cpu libtorch's shim library stops asking for libtorch_cuda (setup-libtorch.sh)
#   mosquitto: the real MQTT broker the alarm-delivery tests start
#   fonts-dejavu-core: the font report plots are labelled with
#   python3-pymodbus: an independent Modbus TCP client for the Modbus sink's test
#   chromium: the real browser the console test drives (through playwright-core from npm)
#   prometheus: its promtool checks the shipped alert rules (config/prometheus)
#   (systemd-analyze, when present, verifies the service unit; that test skips otherwise)
set -euo pipefail
packages=(libasound2-dev pkg-config patchelf mosquitto fonts-dejavu-core python3-pymodbus chromium prometheus)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup-system: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
