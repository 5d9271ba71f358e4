#!/usr/bin/env bash
# Runs the lm3s6965 firmware under QEMU with UART0 on a TCP port.
#
#   firmware/run-qemu.sh PORT [ELF]
#
# Builds the release firmware if needed (unless ELF is given), then execs
# qemu-system-arm with UART0 on tcp:127.0.0.1:PORT (server, nowait: QEMU
# starts at once; connect in a retry loop). defmt logs arrive on stdout via
# semihosting as raw defmt frames: pipe them to `defmt-print -e ELF` to read
# them, or discard them. QEMU keeps running until killed (or the firmware
# panics: it then exits with status 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${1:?usage: run-qemu.sh PORT [ELF]}
elf=${2:-}
if [ -z "$elf" ]; then
  (cd "$here/boards/qemu" && cargo build --release -q)
  elf=$here/target/thumbv7m-none-eabi/release/banyan-firmware-qemu
fi
exec qemu-system-arm -machine lm3s6965evb -nographic -monitor none \
  -semihosting-config enable=on,target=native \
  -serial "tcp:127.0.0.1:${port},server,nowait,nodelay" \
  -kernel "$elf"
