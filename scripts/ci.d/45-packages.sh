#!/usr/bin/env bash
# Debian packages of the banyan command (cargo-deb) for amd64, arm64 and
# armhf, from the release builds the steps before made: the host's
# (41-rpi-demo.sh, `cargo build --release -p banyan-cli`, the quick start's)
# and the Pi cross builds (40-cross.sh), so nothing is compiled again when
# they ran. cargo-deb strips the binary it packages (the binaries in
# target/ keep their line tables).
# Checks every package: its Architecture field; that usr/bin/banyan is an
# ELF for that architecture (x86-64, ARM aarch64, ARM EABI5 hard-float),
# stripped; `banyan --version` from the unpacked package (qemu-user for
# the ARM ones). The amd64 package is also unpacked into a scratch root
# (dpkg -x): its files are all there, its rpi-gateway config parses, and its
# systemd units pass `systemd-analyze verify`. Packages land in target/debian/.
# Usage: bash scripts/ci.d/45-packages.sh [--amd64-only]
#   (--cross, the old way to ask for the ARM packages, is accepted: they are
#   built by default now.)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}
cross=1
case "${1:-}" in
  --amd64-only) cross=0 ;;
  --cross | "") ;;
  *) echo "usage: bash scripts/ci.d/45-packages.sh [--amd64-only]" >&2; exit 2 ;;
esac

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
command -v systemd-analyze >/dev/null || apt_install systemd
command -v dpkg-deb >/dev/null || apt_install dpkg
command -v file >/dev/null || apt_install file
command -v readelf >/dev/null || apt_install binutils

# Man pages and completions come from the command itself.
cargo build --locked --release -p banyan-cli --bin banyan
BIN=target/release/banyan
rm -rf target/man target/completions
mkdir -p target/completions
"$BIN" man --dir target/man
"$BIN" completions bash > target/completions/banyan.bash

# target triple, Debian architecture, what `file` says, how to run it here.
targets=("x86_64-unknown-linux-gnu amd64 x86-64 -")
if [ "$cross" = 1 ]; then
  for tool in aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc qemu-aarch64 qemu-arm; do
    command -v "$tool" >/dev/null || {
      echo "$tool missing: run scripts/ci.d/40-cross.sh (or scripts/setup.sh) first, or use --amd64-only" >&2
      exit 1
    }
  done
  targets+=("aarch64-unknown-linux-gnu arm64 ARM_aarch64 qemu-aarch64_-L_/usr/aarch64-linux-gnu"
            "armv7-unknown-linux-gnueabihf armhf ARM,_EABI5 qemu-arm_-L_/usr/arm-linux-gnueabihf")
fi

SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
debs=()
report=()
for spec in "${targets[@]}"; do
  read -r triple arch elf runner <<<"$spec"
  elf=${elf//_/ }
  runner=${runner//_/ }
  args=(--locked -p banyan-cli --no-build --strip)
  if [ "$triple" != x86_64-unknown-linux-gnu ]; then
    args+=(--target "$triple")
    # 40-cross.sh built it already: then this is a no-op.
    cargo build --locked --release -p banyan-cli --no-default-features --target "$triple" --bin banyan
  fi
  echo "--> cargo deb for $triple"
  deb=$(cargo deb "${args[@]}" | tail -n 1)
  debs+=("$deb")
  got=$(dpkg-deb -f "$deb" Architecture)
  [ "$got" = "$arch" ] || { echo "$deb: Architecture $got, expected $arch" >&2; exit 1; }
  root=$SCRATCH/$arch
  dpkg-deb -x "$deb" "$root"
  desc=$(file -b "$root/usr/bin/banyan")
  case "$desc" in
    ELF*"$elf"*", stripped"*) ;;
    *) echo "$deb: usr/bin/banyan is not a stripped $elf ELF: $desc" >&2; exit 1 ;;
  esac
  # (.debug_gdb_scripts, rustc's loadable section naming gdb helpers, stays.)
  if readelf -SW "$root/usr/bin/banyan" | grep -qE ' \.(symtab|debug_(info|line|str|abbrev|ranges|rnglists|loc|loclists)) '; then
    echo "$deb: usr/bin/banyan has symbols or debug info" >&2; exit 1
  fi
  if [ "$arch" = armhf ]; then
    readelf -h "$root/usr/bin/banyan" | grep -q 'Version5 EABI, hard-float ABI' || {
      echo "$deb: usr/bin/banyan is not EABI5 hard-float:" >&2
      readelf -h "$root/usr/bin/banyan" | grep Flags >&2; exit 1
    }
    elf="$elf hard-float"
  fi
  if [ "$runner" = - ]; then
    version=$("$root/usr/bin/banyan" --version)
  else
    version=$($runner "$root/usr/bin/banyan" --version)
  fi
  [[ "$version" == "banyan "* ]] || { echo "$deb: unexpected --version: $version" >&2; exit 1; }
  line="$arch: $deb $(( $(stat -c %s "$deb") / 1024 )) KiB, usr/bin/banyan $(( $(stat -c %s "$root/usr/bin/banyan") / 1024 )) KiB ($elf, stripped), $version"
  echo "    $line"
  report+=("$line")
done

amd64=$SCRATCH/amd64
echo "--> the amd64 package unpacked into a scratch root"
dpkg-deb -e "${debs[0]}" "$amd64/DEBIAN"
for f in usr/bin/banyan lib/systemd/system/banyan-backplane.service \
         lib/systemd/system/banyan-rpi-gateway.service lib/systemd/system/banyan-serial-gateway.service \
         etc/banyan/rpi-gateway.toml etc/banyan/banyan.env usr/share/man/man1/banyan.1.gz \
         usr/share/doc/banyan/cli.md DEBIAN/postinst; do
  [ -e "$amd64/$f" ] || { echo "package lacks /$f" >&2; exit 1; }
done
"$amd64/usr/bin/banyan" rpi-gateway --check-config --config "$amd64/etc/banyan/rpi-gateway.toml" >/dev/null

echo "--> systemd-analyze verify the units"
# The units name /usr/bin/banyan: verify them against the scratch root,
# where the binary is, with this machine's units beside them (targets they
# are ordered against); their man: links are checked by the man page files
# above, not by man(1), which does not know an uninstalled package.
cp -rn /lib/systemd/system/. "$amd64/lib/systemd/system/"
out=$(systemd-analyze verify --man=no --root="$amd64" \
  "$amd64"/lib/systemd/system/banyan-*.service 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "systemd-analyze verify printed warnings" >&2
  exit 1
fi
echo "--> packages OK:"
printf '    %s\n' "${report[@]}"
