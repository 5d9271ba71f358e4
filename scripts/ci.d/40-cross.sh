#!/usr/bin/env bash
# Cross builds of the gateways for the Raspberry Pi and the rpi-gateway's
# unit tests under qemu-user, for aarch64 (64-bit Raspberry Pi OS) and armv7
# (32-bit). Linkers and runners are in .cargo/config.toml. The first run per
# target compiles bundled libzmq with the cross g++ (minutes on 2 cores;
# cached afterwards, see docs/benchmarks/rpi-gateway.md).
# Everything is built with the release profile, the one the packages ship:
# 45-packages.sh packages these very `banyan` binaries (arm64, armhf)
# without compiling again, and the unit tests run the optimised code the Pi
# runs (the host tests run the same tests with overflow checks and debug
# assertions).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# Tools (installed by scripts/setup.sh; checked here so a failure says why).
need=()
for pair in aarch64-linux-gnu-g++:g++-aarch64-linux-gnu arm-linux-gnueabihf-g++:g++-arm-linux-gnueabihf \
            qemu-aarch64:qemu-user qemu-arm:qemu-user; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
installed=$(rustup target list --installed)
for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  echo "--> $t: build the gateways and the banyan command"
  start=$SECONDS
  # The banyan command holds both gateways (a separate `-p banyan-rpi -p
  # banyan-serial --lib` build compiled them a second time, with other
  # features: ~1 min per target).
  # --no-default-features: not banyan-bench's MQTT client (rumqttc, tokio),
  # which the Pi's banyan binary does not need.
  cargo build --locked --release -p banyan-cli --no-default-features --target "$t" --bin banyan
  echo "--> $t: rpi-gateway unit tests under qemu-user"
  cargo test --locked --release -p banyan-rpi --target "$t" --lib
  echo "--> $t: banyan rpi-gateway --check-config under qemu-user"
  runner=$([ "$t" = armv7-unknown-linux-gnueabihf ] && echo "qemu-arm -L /usr/arm-linux-gnueabihf" || echo "qemu-aarch64 -L /usr/aarch64-linux-gnu")
  $runner "target/$t/release/banyan" rpi-gateway --check-config --config deploy/rpi-gateway.toml >/dev/null
  echo "--> $t: done in $((SECONDS - start)) s"
done
