#!/bin/bash
# LAN benchmark rounds, alternating: in-process backplane, then a backplane
# process per setting (native, native with busy polling, libzmq engine), each
# with our components and with raw ZeroMQ ones. Figures: docs/benchmarks/lan.md.
# Usage: bash scripts/bench-backplane.sh [ROUNDS (default 3)]
cd "$(dirname "$0")/.."
set -euo pipefail
cargo build --release --quiet --workspace --bins
B=target/release/banyan-bench
R=${1:-3}
echo "start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
bp() {
  P=$(free_port); S=$(free_port)
  target/release/banyan backplane -p "$P" -s "$S" --bind 127.0.0.1 "$@" >"$LOG" 2>&1 & BPP=$!
  for _ in $(seq 1 100); do grep -q "Publisher  Port" "$LOG" && return 0; sleep 0.05; done
  echo "backplane did not start:" >&2; cat "$LOG" >&2; exit 1
}
stop() { kill -INT "$BPP"; wait "$BPP" 2>/dev/null || true; }
for r in $(seq 1 $R); do
  echo "== round $r"
  echo -n "in-process throughput: "; $B throughput
  echo -n "in-process latency:    "; $B latency
  for e in "--engine native" "--engine native --busy-poll-us 200" "--engine libzmq"; do
    # shellcheck disable=SC2086
    bp $e
    echo -n "[$e] throughput:     "; $B --backplane 127.0.0.1:$P:$S throughput
    echo -n "[$e] throughput raw: "; $B --backplane 127.0.0.1:$P:$S throughput --raw
    echo -n "[$e] latency:        "; $B --backplane 127.0.0.1:$P:$S latency
    echo -n "[$e] latency raw:    "; $B --backplane 127.0.0.1:$P:$S latency --raw
    stop
  done
done
echo "end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
