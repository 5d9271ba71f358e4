#!/usr/bin/env bash
# The README's first command must keep working: run the robot demo
# (backplane + rpi-gateway --sim + driver); it exits non-zero if the gateway
# misbehaves (no state reports, no error reports for bad commands, deadman
# not firing, no safe state on SIGTERM). About 5 s after the build.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/demo.sh </dev/null
