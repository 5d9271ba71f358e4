#!/usr/bin/env bash
# Installs everything the build and tests need on a fresh Debian 12 machine
# with rustup. Idempotent and quick when everything is present already.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(thumbv6m-none-eabi thumbv7m-none-eabi thumbv7em-none-eabihf
         aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
installed_targets=$(rustup target list --installed)
for t in "${TARGETS[@]}"; do
  grep -qx "$t" <<<"$installed_targets" || rustup target add "$t"
done
installed_components=$(rustup component list --installed)
for c in rustfmt clippy; do
  grep -q "^$c" <<<"$installed_components" || rustup component add "$c"
done

APT=(qemu-system-arm qemu-user gcc-aarch64-linux-gnu g++-aarch64-linux-gnu
     gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf python3-venv
     mosquitto)  # mosquitto: banyan-bench mqtt-latency starts its own broker
missing=()
for p in "${APT[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The benchmark runs mosquitto itself (`-c` its own config on a free
  # port): the system broker the package enables and starts on port 1883
  # is not wanted, so a mosquitto installed here is stopped and disabled.
  if [[ " ${missing[*]} " == *" mosquitto "* ]] && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now mosquitto.service || true
  fi
fi

bash scripts/venv.sh
