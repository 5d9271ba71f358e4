#!/usr/bin/env bash
# The one test command of banyan-rs. Installs what it needs on a fresh
# Debian 12 machine (rustup targets and components, apt packages, a Python
# venv with python-banyan 3.17), then runs every check:
#   fmt, clippy -D warnings, host tests, docs -D warnings, the no_std core
#   for thumbv6m/thumbv7em with and without defmt, and every step in
#   scripts/ci.d/*.sh (firmware link + QEMU, cross builds, interop, ...).
# Usage: bash scripts/test.sh [--quick]
#   --quick: fmt, clippy and the host tests only (no setup, docs, no_std
#            builds or scripts/ci.d steps): the check to run before a commit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: bash scripts/test.sh [--quick]" >&2; exit 2 ;;
esac

step() { printf '\n==> %s\n' "$*"; }

if [ "$QUICK" = 0 ]; then
  step "setup"
  bash scripts/setup.sh
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The feature sets other builds use: the fuzz workspace takes banyan-component
# without libzmq; the Pi cross builds and packages take banyan-cli without mqtt.
cargo clippy --locked -p banyan-component --no-default-features --lib -- -D warnings
cargo clippy --locked -p banyan-cli --no-default-features --all-targets -- -D warnings

step "host tests (components on the native transport, the default)"
cargo test --workspace --locked

step "component tests again on the libzmq transport (BANYAN_TRANSPORT=libzmq)"
BANYAN_TRANSPORT=libzmq cargo test --locked -p banyan-component --lib
BANYAN_TRANSPORT=libzmq cargo test --locked -p banyan \
  --test lan_backplane --test lan_transport --test lan_interop --test safety \
  --test lan_examples --test cli

if [ "$QUICK" = 1 ]; then
  step "quick checks passed (fmt, clippy, host tests)"
  exit 0
fi

step "docs (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "no_std core for thumbv6m-none-eabi / thumbv7em-none-eabihf (with and without defmt)"
for target in thumbv6m-none-eabi thumbv7em-none-eabihf; do
  cargo build -p banyan-core --locked --target "$target"
  cargo build -p banyan-core --locked --target "$target" --features defmt
done

for s in scripts/ci.d/*.sh; do
  [ -e "$s" ] || continue
  step "$s"
  bash "$s"
done

step "all checks passed"
