#!/usr/bin/env bash
# Fuzz smoke run (fuzz/ is its own cargo workspace, see docs/fuzzing.md):
# rustfmt --check of fuzz/, builds every cargo-fuzz target with overflow checks and debug assertions,
# then runs each for FUZZ_SECONDS (default 15) starting from the committed
# seeds in fuzz/seeds/<target>/. Fails on any crash, panic, timeout or OOM.
#
# Installs the nightly toolchain and cargo-fuzz only if missing; if they
# cannot be installed this script FAILS (it never skips).
# Knobs: FUZZ_SECONDS=<per target>, FUZZ_TARGETS="a b" (default: all),
# FUZZ_SEED=<libFuzzer seed> (default 1, so CI explores the same way each run).
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
t0=$SECONDS
secs=${FUZZ_SECONDS:-15}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "-- fuzz: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal || {
    echo "ERROR: cannot install the nightly toolchain that cargo-fuzz needs" >&2
    exit 1
  }
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "-- fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked || {
    echo "ERROR: cannot install cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
    exit 1
  }
fi
echo "-- fuzz: $(cargo fuzz --version), $(rustup run nightly rustc --version) ($((SECONDS - t0)) s)"

echo "-- fuzz: fmt"
cargo fmt --check

# -O -a: optimised, with debug assertions and overflow checks.
# -s none: no AddressSanitizer; the code under test is safe Rust (the core is
# #![deny(unsafe_code)]) and a sanitizer build takes much longer on the CI
# machine (figures in docs/fuzzing.md). Local long runs may drop `-s none`.
build=(-O -a -s none)
echo "-- fuzz: build"
cargo +nightly fuzz build "${build[@]}"
echo "-- fuzz: built ($((SECONDS - t0)) s)"

targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
n=0
for t in $targets; do
  [ -d "seeds/$t" ] || { echo "ERROR: no seed corpus fuzz/seeds/$t" >&2; exit 1; }
  mkdir -p "corpus/$t"
  echo "-- fuzz: $t for ${secs} s"
  # New inputs go to corpus/<t> (gitignored); seeds/<t> is only read.
  if ! cargo +nightly fuzz run "${build[@]}" "$t" "corpus/$t" "seeds/$t" -- \
      -seed="${FUZZ_SEED:-1}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"corpus/$t.log" 2>&1; then
    grep -A3 "panicked at" "corpus/$t.log" >&2 || true
    tail -n 20 "corpus/$t.log" >&2
    echo "ERROR: fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^(#[0-9]+\s+DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' \
    "corpus/$t.log" || true
  n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "ERROR: no fuzz target ran" >&2; exit 1; }
echo "-- fuzz: $n targets, no crash ($((SECONDS - t0)) s in all)"
