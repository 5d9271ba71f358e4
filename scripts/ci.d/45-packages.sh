#!/usr/bin/env bash
# Debian packages of the banyan command (cargo-deb, profile `dist`: release
# code, no debug info, stripped): amd64 always; with --cross also arm64 and
# armhf when their cross toolchains are there (40-cross.sh installs them).
# CI builds amd64 only: a dist build takes ~14 min per target on 2 cores.
# The amd64 package is unpacked into a scratch root (dpkg -x), its `banyan
# --version` is run from there, and its systemd units are checked with
# `systemd-analyze verify`. Packages land in target/debian/.
# Usage: bash scripts/ci.d/45-packages.sh [--cross]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
command -v systemd-analyze >/dev/null || apt_install systemd
command -v dpkg-deb >/dev/null || apt_install dpkg

# Man pages and completions come from the command itself.
cargo build --locked --profile dist -p banyan-cli --bin banyan
BIN=target/dist/banyan
rm -rf target/man target/completions
mkdir -p target/completions
"$BIN" man --dir target/man
"$BIN" completions bash > target/completions/banyan.bash

size=$(stat -c %s "$BIN")
echo "--> banyan (dist profile, stripped): $((size / 1024)) KiB"

targets=(x86_64-unknown-linux-gnu)
if [ "${1:-}" = "--cross" ]; then
  installed=$(rustup target list --installed)
  command -v aarch64-linux-gnu-gcc >/dev/null && grep -qx aarch64-unknown-linux-gnu <<<"$installed" \
    && targets+=(aarch64-unknown-linux-gnu)
  command -v arm-linux-gnueabihf-gcc >/dev/null && grep -qx armv7-unknown-linux-gnueabihf <<<"$installed" \
    && targets+=(armv7-unknown-linux-gnueabihf)
fi

debs=()
for t in "${targets[@]}"; do
  echo "--> cargo deb for $t"
  args=(--locked -p banyan-cli --profile dist)
  [ "$t" = x86_64-unknown-linux-gnu ] || args+=(--target "$t")
  # cargo-deb strips with the target's binutils; the binary is stripped already.
  deb=$(cargo deb "${args[@]}" | tail -n 1)
  echo "    $deb ($(( $(stat -c %s "$deb") / 1024 )) KiB)"
  debs+=("$deb")
done

amd64=${debs[0]}
echo "--> install $amd64 into a scratch root"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
dpkg-deb -x "$amd64" "$SCRATCH"
dpkg-deb -e "$amd64" "$SCRATCH/DEBIAN"
for f in usr/bin/banyan lib/systemd/system/banyan-backplane.service \
         lib/systemd/system/banyan-rpi-gateway.service lib/systemd/system/banyan-serial-gateway.service \
         etc/banyan/rpi-gateway.toml etc/banyan/banyan.env usr/share/man/man1/banyan.1.gz \
         usr/share/doc/banyan/cli.md DEBIAN/postinst; do
  [ -e "$SCRATCH/$f" ] || { echo "package lacks /$f" >&2; exit 1; }
done
version=$("$SCRATCH/usr/bin/banyan" --version)
echo "    $version"
[[ "$version" == "banyan "* ]] || { echo "unexpected --version: $version" >&2; exit 1; }
"$SCRATCH/usr/bin/banyan" rpi-gateway --check-config --config "$SCRATCH/etc/banyan/rpi-gateway.toml" >/dev/null
if file "$SCRATCH/usr/bin/banyan" 2>/dev/null | grep -q 'not stripped'; then
  echo "usr/bin/banyan is not stripped" >&2; exit 1
fi

echo "--> systemd-analyze verify the units"
# The units name /usr/bin/banyan: verify them against the scratch root,
# where the binary is, with this machine's units beside them (targets they
# are ordered against); their man: links are checked by the man page files
# above, not by man(1), which does not know an uninstalled package.
cp -rn /lib/systemd/system/. "$SCRATCH/lib/systemd/system/"
out=$(systemd-analyze verify --man=no --root="$SCRATCH" \
  "$SCRATCH"/lib/systemd/system/banyan-*.service 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "systemd-analyze verify printed warnings" >&2
  exit 1
fi
echo "--> packages OK: ${debs[*]}"
