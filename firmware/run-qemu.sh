#!/usr/bin/env bash
# Runs the lm3s6965 firmware under QEMU with UART0 on a TCP port.
#
#   firmware/run-qemu.sh PORT [ELF]
#   firmware/run-qemu.sh pty [ELF]
#
# Builds the release firmware if needed (unless ELF is given), then execs
# qemu-system-arm (so this script's pid is QEMU's) with UART0 on
# tcp:127.0.0.1:PORT (server, nowait, nodelay: QEMU starts at once; connect
# in a retry loop and set TCP_NODELAY), or with `pty` on a pseudo-terminal:
# QEMU prints "char device redirected to /dev/pts/N (label serial0)" as the
# first line on stdout; open that device like a serial port. QEMU keeps
# running until killed (or the firmware panics: it then exits with status 1).
#
# The firmware's defmt logs come out of QEMU's stdout (semihosting) as binary
# defmt frames, which never go to a terminal:
# - stdout is a terminal and defmt-print is installed
#   (`cargo install defmt-print --locked`): decoded to text lines;
# - stdout is a terminal, no defmt-print: written to a file (named on stderr;
#   decode it later with `defmt-print -e ELF < FILE`);
# - BANYAN_DEFMT_LOG=FILE: written to FILE in any case;
# - otherwise (a pipe or a file): the raw frames, for `| defmt-print -e ELF`.
# In pty mode the "char device redirected" line stays on stdout as text.
#
# BANYAN_QEMU_QMP=PATH adds a QMP socket (unix:PATH, server, nowait) through
# which a test can pause, reset and resume the machine (`stop`,
# `system_reset`, `cont`) while the UART's TCP connection stays open: a
# microcontroller resetting behind a serial port that stays open.
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

# The filter between QEMU's stdout and the terminal: copies the pty line
# (pty mode), then decodes the frames ($1 = decode) or writes them to $log.
filter() {
  if [ "$port" = pty ]; then
    local first
    IFS= read -r first || true
    printf '%s\n' "$first"
  fi
  if [ "$1" = decode ]; then
    exec defmt-print -e "$elf"
  fi
  exec cat >"$log"
}

log=${BANYAN_DEFMT_LOG:-}
if [ -z "$log" ] && [ -t 1 ]; then
  if command -v defmt-print >/dev/null; then
    exec > >(filter decode)
  else
    log=$here/target/qemu-defmt-$port.bin
    echo "run-qemu.sh: defmt log (binary frames) -> $log; decode: defmt-print -e $elf < $log" \
         "(cargo install defmt-print --locked)" >&2
  fi
fi
if [ -n "$log" ]; then
  mkdir -p "$(dirname "$log")"
  : >"$log"
  exec > >(filter file)
fi
qmp=()
if [ -n "${BANYAN_QEMU_QMP:-}" ]; then
  qmp=(-qmp "unix:${BANYAN_QEMU_QMP},server=on,wait=off")
fi
exec qemu-system-arm -machine lm3s6965evb -nographic -monitor none \
  -semihosting-config enable=on,target=native \
  -serial "$serial" \
  ${qmp[@]+"${qmp[@]}"} \
  -kernel "$elf"
