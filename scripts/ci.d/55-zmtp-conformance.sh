#!/usr/bin/env bash
# ZMTP conformance (docs/zmtp-conformance.md): every scenario of
# tests/zmtp_conformance.rs against the native backplane and against
# pyzmq's zmq.proxy(XSUB, XPUB), with peers of four independent ZMTP
# implementations: libzmq 4.3.5 (the venv's pyzmq), libzmq 4.3.4 (Debian's
# python3-zmq), JeroMQ 0.3.6 (Debian's libjeromq-java, ZMTP 2.0) and zmq.rs
# (crate zeromq, ZMTP 3.0; tests/zmtp_peers/zmqrs, its own workspace).
#
# Installs what is missing (apt-get, with sudo when not root); fails, never
# skips, when it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
t0=$SECONDS

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
missing=()
[ -f /usr/share/java/jeromq.jar ] || missing+=(libjeromq-java)
/usr/bin/python3 -c 'import zmq' 2>/dev/null || missing+=(python3-zmq)
command -v javac >/dev/null || missing+=(default-jdk-headless)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "-- zmtp-conformance: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
bash scripts/venv.sh >/dev/null

echo "-- zmtp-conformance: peers"
/usr/bin/python3 -c 'import zmq; print("   python3-zmq: pyzmq", zmq.__version__, "libzmq", zmq.zmq_version())'
.venv/bin/python -c 'import zmq; print("   venv pyzmq:", zmq.__version__, "libzmq", zmq.zmq_version())'
echo "   JeroMQ: $(readlink -f /usr/share/java/jeromq.jar)"
cargo fmt --check --manifest-path tests/zmtp_peers/zmqrs/Cargo.toml
cargo build --release --locked --quiet --manifest-path tests/zmtp_peers/zmqrs/Cargo.toml
echo "   zmq.rs peer built ($((SECONDS - t0)) s)"

# The suite: the #[ignore]d scenarios need the peers above, the others run
# in every `cargo test` too; --include-ignored runs both.
cargo test --locked --test zmtp_conformance -- --include-ignored
echo "-- zmtp-conformance: passed ($((SECONDS - t0)) s)"
