#!/usr/bin/env bash
# LAN benchmarks, banyan-rs vs python-banyan 3.17, same scenarios side by side:
#   throughput: one publisher sends COUNT {"value": i} messages to one subscriber
#               through a backplane on loopback (msgs/s and messages lost);
#   latency:    echo round trips (median, p99).
# banyan-rs: `banyan backplane` + `banyan-bench --backplane`.
# python-banyan: its unmodified backplane + BanyanBase components
#               (tests/lan_py/bench.py), at its default loop time (0.1 s) and at 1 ms.
# Usage: bash scripts/bench-lan.sh [COUNT (default 1000000)] [ROUND_TRIPS (default 1000)]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-1000000}
RTTS=${2:-1000}
PY=${BANYAN_PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { echo "python-banyan venv missing: run bash scripts/venv.sh" >&2; exit 1; }
cargo build --release --quiet --workspace --bins
BIN=target/release
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # file pattern
  for _ in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timeout waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- banyan-rs ----
P=$(free_port); S=$(free_port)
"$BIN/banyan" backplane --bind 127.0.0.1 -p "$P" -s "$S" > "$TMP/rs-bp.log" 2>&1 & PIDS+=($!)
wait_for "$TMP/rs-bp.log" "Publisher  Port"
RS_TP=$("$BIN/banyan-bench" --backplane "127.0.0.1:$P:$S" throughput --count "$COUNT")
RS_LAT=$("$BIN/banyan-bench" --backplane "127.0.0.1:$P:$S" latency --count "$RTTS")
echo "banyan-rs:     $RS_TP"
echo "banyan-rs:     $RS_LAT"
# The same backplane with busy polling (see docs/lan.md).
P=$(free_port); S=$(free_port)
"$BIN/banyan" backplane --bind 127.0.0.1 -p "$P" -s "$S" --busy-poll-us 200 > "$TMP/rs-bp2.log" 2>&1 & PIDS+=($!)
wait_for "$TMP/rs-bp2.log" "Publisher  Port"
RS_LAT_BUSY=$("$BIN/banyan-bench" --backplane "127.0.0.1:$P:$S" latency --count "$RTTS")
echo "banyan-rs:     busy-poll 200 us: $RS_LAT_BUSY"

# ---- python-banyan ----
P=$(free_port); S=$(free_port)
"$PY" -u tests/lan_py/py_backplane.py -p "$P" -s "$S" > "$TMP/py-bp.log" 2>&1 & PIDS+=($!)
wait_for "$TMP/py-bp.log" "Backplane IP address"
ADDR=$(grep "Backplane IP address" "$TMP/py-bp.log" | awk '{print $NF}')
sleep 0.5  # python's backplane prints its banner before binding
"$PY" -u tests/lan_py/bench.py sub "$ADDR" "$P" "$S" "$COUNT" 0.1 > "$TMP/py-sub.log" 2>&1 & SUBPID=$!; PIDS+=($SUBPID)
wait_for "$TMP/py-sub.log" READY
sleep 1  # let the subscription settle (python-banyan has no way to know)
"$PY" -u tests/lan_py/bench.py pub "$ADDR" "$P" "$S" "$COUNT" > "$TMP/py-pub.log" 2>&1
wait "$SUBPID" || true
read -r PY_START PY_SENT_S < <(awk '/^SENT/ {print $4, $6}' "$TMP/py-pub.log")
read -r PY_RECV PY_LAST < <(awk '/^RECEIVED/ {print $2, $4}' "$TMP/py-sub.log")
PY_TP=$("$PY" -c "r=$PY_RECV; c=$COUNT; e=$PY_LAST-$PY_START; print(f'throughput: {c} msgs sent in {$PY_SENT_S:.3f} s, {r} received in {e:.3f} s = {r/e:.0f} msgs/s; lost {c-r} ({(c-r)*100/c:.2f} %)')")
echo "python-banyan: $PY_TP"

"$PY" -u tests/lan_py/bench.py echo_server "$ADDR" "$P" "$S" 0.1 > "$TMP/py-echo.log" 2>&1 & EPID=$!; PIDS+=($EPID)
wait_for "$TMP/py-echo.log" READY
PY_LAT_DEF=$("$PY" -u tests/lan_py/bench.py echo_client "$ADDR" "$P" "$S" 50 0.1 | grep '^RTT')
kill "$EPID"
"$PY" -u tests/lan_py/bench.py echo_server "$ADDR" "$P" "$S" 0.001 > "$TMP/py-echo2.log" 2>&1 & EPID=$!; PIDS+=($EPID)
wait_for "$TMP/py-echo2.log" READY
PY_LAT_1MS=$("$PY" -u tests/lan_py/bench.py echo_client "$ADDR" "$P" "$S" "$RTTS" 0.001 | grep '^RTT')
kill "$EPID"
echo "python-banyan: latency, loop_time 0.1 s (50 round trips): $PY_LAT_DEF"
echo "python-banyan: latency, loop_time 1 ms ($RTTS round trips): $PY_LAT_1MS"

# ---- side by side ----
num() { echo "$1" | grep -o "$2 [0-9.]*" | awk '{printf "%.1f", $NF}'; }
RS_RATE=$(echo "$RS_TP" | grep -o '= [0-9]* msgs/s' | awk '{print $2}')
PY_RATE=$(echo "$PY_TP" | grep -o '= [0-9]* msgs/s' | awk '{print $2}')
RS_LOST=$(echo "$RS_TP" | grep -o 'lost [0-9]* ([0-9.]* %)')
PY_LOST=$(echo "$PY_TP" | grep -o 'lost [0-9]* ([0-9.]* %)')
RS_MED=$(num "$RS_LAT" median); RS_P99=$(num "$RS_LAT" p99)
PY_MED=$(num "$PY_LAT_1MS" median_us); PY_P99=$(num "$PY_LAT_1MS" p99_us)
PY_MED_DEF=$(num "$PY_LAT_DEF" median_us)
RS_MED_BUSY=$(num "$RS_LAT_BUSY" median); RS_P99_BUSY=$(num "$RS_LAT_BUSY" p99)
echo
printf '%-32s %-24s %-24s %s\n' "scenario" "banyan-rs" "python-banyan" "ratio"
printf '%-32s %-24s %-24s %s\n' "throughput (msgs/s)" "$RS_RATE" "$PY_RATE" "$("$PY" -c "print(f'{$RS_RATE/$PY_RATE:.1f}x')")"
printf '%-32s %-24s %-24s\n' "lost of $COUNT" "$RS_LOST" "$PY_LOST"
printf '%-32s %-24s %-24s %s\n' "round trip median (us), 1 ms" "$RS_MED" "$PY_MED" "$("$PY" -c "print(f'{$PY_MED/$RS_MED:.1f}x faster')")"
printf '%-32s %-24s %-24s %s\n' "round trip p99 (us), 1 ms" "$RS_P99" "$PY_P99" "$("$PY" -c "print(f'{$PY_P99/$RS_P99:.1f}x faster')")"
printf '%-32s %-24s %-24s %s\n' "round trip median (us), default" "$RS_MED" "$PY_MED_DEF" "$("$PY" -c "print(f'{$PY_MED_DEF/$RS_MED:.0f}x faster')")"
printf '%-32s %-24s\n' "round trip, --busy-poll-us 200" "median $RS_MED_BUSY, p99 $RS_P99_BUSY"
