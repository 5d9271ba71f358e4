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
