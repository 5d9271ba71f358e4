#!/usr/bin/env bash
# serial-gateway end to end with the QEMU firmware: a python-banyan component
# drives the firmware through our backplane and serial-gateway; QEMU restart
# recovery; motors stop when the gateway goes away; round-trip figures.
# Builds the lm3s6965 release firmware if 50-firmware.sh has not.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

command -v qemu-system-arm >/dev/null || {
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-system-arm
}
[ -x .venv/bin/python ] || bash scripts/venv.sh
if [ -z "${BANYAN_FIRMWARE_ELF:-}" ]; then
  (cd firmware/boards/qemu && cargo build --release -q)
fi
cargo test --locked --test serial_qemu -- --ignored --test-threads=1 --nocapture
