#!/usr/bin/env bash
# serial-gateway end to end with the QEMU firmware: a python-banyan component
# drives the firmware through our backplane and serial-gateway; QEMU restart
# recovery; motors stop when the gateway goes away; round-trip figures;
# the firmware's services (info, state) through the broker from Rust, Python
# (python/banyan_services.py) and `banyan call`, and a device killed or reset
# mid-request (the client gets an error, then the device serves again), with
# `banyan backplane` and `banyan serial-gateway` as processes.
# Then the demo's MCU twin end to end (`scripts/demo.sh --mcu`: the QEMU
# firmware behind `banyan serial-gateway`; reuses 41-rpi-demo.sh's release
# build) and its "try it yourself" commands run as printed.
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
echo "--> the demo's MCU twin: bash scripts/demo.sh --mcu"
start=$SECONDS
bash scripts/demo.sh --mcu </dev/null
echo "--> demo --mcu took $((SECONDS - start)) s (build included)"
echo "--> its try-it commands against the QEMU firmware"
# --workspace: the host tests' build (same features), nothing compiled again.
cargo test --workspace --locked --test demo -- --ignored --test-threads=1
