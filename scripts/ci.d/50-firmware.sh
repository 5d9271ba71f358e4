#!/usr/bin/env bash
# Firmware checks (firmware/ is its own cargo workspace):
#   fmt + clippy -D warnings, host tests of the application, release builds of
#   both boards (the link step proves no allocator is needed), section sizes,
#   the QEMU smoke test (lm3s6965 firmware over its UART on a TCP port), and
#   run-qemu.sh's terminal output (printable text only: scripts/qemu-tty-check.py).
# Installs binutils-arm-none-eabi (for arm-none-eabi-size) if missing.
# No --locked: firmware/Cargo.lock is committed, but the core it builds is
# edited in the host workspace; cargo adds what a core change needs.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
cd "$(dirname "$0")/../../firmware"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

if ! command -v arm-none-eabi-size >/dev/null; then
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q binutils-arm-none-eabi
fi
command -v qemu-system-arm >/dev/null || {
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-system-arm
}

echo "-- firmware: fmt"
# Only the firmware packages: `--all` would also check the core and the whole
# host workspace (path dependencies), which scripts/test.sh checks itself.
cargo fmt --check -p banyan-firmware-app -p banyan-firmware-qemu -p banyan-firmware-pico

echo "-- firmware: clippy (host app + both boards)"
cargo clippy -p banyan-firmware-app --all-targets -- -D warnings
cargo clippy -p banyan-firmware-app --all-targets --features services -- -D warnings
(cd boards/qemu && cargo clippy --release -- -D warnings)
(cd boards/pico && cargo clippy --release -- -D warnings)

echo "-- firmware: docs"
RUSTDOCFLAGS="-D warnings" cargo doc -p banyan-firmware-app --no-deps -q

echo "-- firmware: host tests (the Pico's feature set, then the QEMU board's)"
cargo test -p banyan-firmware-app
cargo test -p banyan-firmware-app --features services

echo "-- firmware: release builds (link without a heap allocator)"
(cd boards/qemu && cargo build --release)
(cd boards/pico && cargo build --release)
QEMU_ELF=$PWD/target/thumbv7m-none-eabi/release/banyan-firmware-qemu
PICO_ELF=$PWD/target/thumbv6m-none-eabi/release/banyan-firmware-pico
for elf in "$QEMU_ELF" "$PICO_ELF"; do
  if arm-none-eabi-nm "$elf" | grep -qE '__rust_alloc|__rg_alloc|__rust_no_alloc_shim'; then
    echo "error: $elf links a heap allocator" >&2
    exit 1
  fi
done
arm-none-eabi-size "$QEMU_ELF" "$PICO_ELF"
python3 size-report.py "$PICO_ELF" "$QEMU_ELF"
# Budgets of the Pico application (issue #5): flash <= 32 KiB, static RAM
# <= 8 KiB. Flash = text (vector table, boot2, .text, .rodata) + .data.
read -r ptext pdata pbss _ < <(arm-none-eabi-size "$PICO_ELF" | awk 'NR == 2')
echo "-- firmware: pico flash $((ptext + pdata)) B (budget 32768), static RAM $((pdata + pbss)) B (budget 8192)"
if [ $((ptext + pdata)) -gt 32768 ] || [ $((pdata + pbss)) -gt 8192 ]; then
  echo "error: the Pico firmware is over its flash or RAM budget" >&2
  exit 1
fi

echo "-- firmware: QEMU link test (the gateway end of the link against the firmware)"
# The test starts QEMU itself and kills it on drop; its own process group lets
# the trap stop QEMU as well should the test be interrupted.
defmt_out=$(mktemp)
BANYAN_FIRMWARE_ELF=$QEMU_ELF BANYAN_QEMU_DEFMT_OUT=$defmt_out \
  setsid cargo test -p banyan-firmware-app --test qemu -- --ignored --nocapture &
test_pid=$!
trap 'kill -TERM -- "-$test_pid" 2>/dev/null || true; rm -f "$defmt_out"' EXIT
wait "$test_pid"
echo "-- firmware: run-qemu.sh writes only text to a terminal (defmt frames decoded or sent to a file)"
python3 ../scripts/qemu-tty-check.py "$PWD/run-qemu.sh" "$QEMU_ELF"

# defmt logs (semihosting) are decoded when defmt-print is installed
# (`cargo install defmt-print`, ~4 min, so not done here).
if command -v defmt-print >/dev/null; then
  echo "-- firmware: defmt log of the QEMU run"
  defmt-print -e "$QEMU_ELF" < "$defmt_out" || true
else
  echo "-- firmware: defmt-print not installed; $(wc -c < "$defmt_out") bytes of defmt log not decoded"
fi
