#!/usr/bin/env bash
# Runs the lm3s6965 firmware under QEMU with UART0 on a TCP port.
#
#   firmware/run-qemu.sh PORT [ELF]
#   firmware/run-qemu.sh pty [ELF]
#
# Builds the release firmware if needed (unless ELF is given), then execs
# qemu-system-arm with UART0 on tcp:127.0.0.1:PORT (server, nowait, nodelay:
# QEMU starts at once; connect in a retry loop and set TCP_NODELAY), or with
# `pty` on a pseudo-terminal: QEMU 7.2 prints "char device redirected to
# /dev/pts/N (label serial0)" as the first line on stdout, before the defmt
# frames; open that device like a serial port. defmt logs arrive on stdout via
# semihosting as raw defmt frames: pipe them to `defmt-print -e ELF` to read
# them, or discard them. QEMU keeps running until killed (or the firmware
# panics: it then exits with status 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${1:?usage: run-qemu.sh PORT|pty [ELF]}
elf=${2:-}
if [ -z "$elf" ]; then
  (cd "$here/boards/qemu" && cargo build --release -q)
  elf=$here/target/thumbv7m-none-eabi/release/banyan-firmware-qemu
fi
if [ "$port" = pty ]; then
  serial=pty
else
  serial="tcp:127.0.0.1:${port},server,nowait,nodelay"
fi
exec qemu-system-arm -machine lm3s6965evb -nographic -monitor none \
  -semihosting-config enable=on,target=native \
  -serial "$serial" \
  -kernel "$elf"
