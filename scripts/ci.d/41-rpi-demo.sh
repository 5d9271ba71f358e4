#!/usr/bin/env bash
# The README's first command must keep working: run the robot demo
# (backplane + rpi-gateway --sim + driver); it exits non-zero if the gateway
# misbehaves (no state reports, no error reports for bad commands, deadman
# not firing, no safe state on SIGTERM). It builds the release profile, the
# quick start's `cargo build --release -p banyan-cli`, which 45-packages.sh
# then packages without compiling again. About 6 s after the build.
# The MCU twin (`scripts/demo.sh --mcu`) runs in 60-serial-qemu.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/demo.sh </dev/null

# Again with nobody reading: stdout and stderr a pipe whose reader has gone
# (`| true`). println! would panic there; the demo must run to its end, motors
# stopped, exit code 0.
echo "-- the demo again, its output into a dead pipe"
# (robot-demo itself: a shell script's echo is killed by SIGPIPE there.)
if ! target/release/robot-demo --banyan target/release/banyan </dev/null 2>&1 | true; then
  echo "ERROR: the demo failed with its stdout/stderr a dead pipe" >&2
  exit 1
fi
echo "-- ok: the demo ran to its end with nobody reading"
