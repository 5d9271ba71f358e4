#!/usr/bin/env bash
# The robot demo: a backplane, `rpi-gateway --sim` and a driver that sends a
# motor/LED/OneGPIO sequence, printing the simulated robot's state live.
# Runs on any machine (no Raspberry Pi, no TTY), on free loopback ports, in
# about 5 seconds after the build; exits non-zero if the gateway misbehaves.
# Usage: bash scripts/demo.sh [-v]   (-v also shows every simulated pin change)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
echo "==> building banyan and robot-demo"
cargo build --quiet -p banyan-cli --bin banyan --bin robot-demo
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
echo "==> running the demo"
exec timeout --kill-after=5 60 "$target_dir/debug/robot-demo" --banyan "$target_dir/debug/banyan" "$@"
