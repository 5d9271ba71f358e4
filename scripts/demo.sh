#!/usr/bin/env bash
# The robot demo: a backplane, a simulated robot and a driver that sends a
# motor/LED sequence, printing each message it sends and the robot's reports
# live, then a "try it yourself" list of `banyan` commands (docs/demo.md).
#   default: the robot is `banyan rpi-gateway --sim` (OneGPIO commands too);
#   --mcu:   its microcontroller twin, the QEMU firmware (lm3s6965evb) behind
#            `banyan serial-gateway` (needs qemu-system-arm and the
#            thumbv7m-none-eabi target; builds the firmware).
# Runs on any machine (no Raspberry Pi, no TTY), on free loopback ports, in
# about 10 seconds after the build; exits non-zero if the robot misbehaves.
# The build is the quick start's (`cargo build --release -p banyan-cli`), so
# the `banyan` it leaves in target/release is the one the quick start uses.
# Usage: bash scripts/demo.sh [--mcu] [-v]   (-v also shows the gateway's log)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
mcu=0
for a in "$@"; do [ "$a" = --mcu ] && mcu=1; done

if [ "$mcu" = 1 ]; then
  command -v qemu-system-arm >/dev/null || {
    echo "demo --mcu needs qemu-system-arm: sudo apt-get install qemu-system-arm" >&2
    exit 1
  }
  rustup target list --installed 2>/dev/null | grep -qx thumbv7m-none-eabi || rustup target add thumbv7m-none-eabi
  echo "==> building the QEMU firmware (firmware/boards/qemu)"
  (cd firmware/boards/qemu && cargo build --release --quiet)
fi
echo "==> building banyan and robot-demo (cargo build --release -p banyan-cli)"
cargo build --release --quiet -p banyan-cli
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
echo "==> running the demo"
exec timeout --kill-after=5 90 "$target_dir/release/robot-demo" --banyan "$target_dir/release/banyan" \
  --firmware firmware/target/thumbv7m-none-eabi/release/banyan-firmware-qemu --run-qemu firmware/run-qemu.sh "$@"
