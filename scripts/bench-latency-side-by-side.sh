#!/usr/bin/env bash
# Echo round trip, side by side, in alternating rounds (docs/benchmarks/lan.md):
#   ours:      banyan-bench latency through a `banyan backplane` process
#              (fresh per round), once per component transport
#              (BANYAN_TRANSPORT=libzmq / native when the component has both);
#   mosquitto: banyan-bench mqtt-latency, rumqttc (sync client, QoS 0)
#              through a mosquitto it starts on a free port (fresh per round).
#   floor:     banyan-bench tcp-floor, the same four loopback TCP hops with
#              blocking sockets and nothing else (no bus can beat it; the
#              ratio mosquitto/floor is the most any bus can reach here).
# Same message ({"value": i}, MessagePack), count and 100 warm-up round trips.
# Prints each run, then medians, p99s and the ratio mosquitto median / ours.
# Usage: bash scripts/bench-latency-side-by-side.sh [ROUNDS (5)] [ROUND_TRIPS (10000)]
# Env: TRANSPORTS="libzmq native" to choose the transports; BACKPLANE_ARGS
#      for extra `banyan backplane` options (e.g. "--busy-poll-us 200").
source "$(dirname "$0")/bench-common.sh"
ROUNDS=${1:-5}
COUNT=${2:-10000}
cargo build --release --quiet -p banyan-cli --bins
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] ||
  { echo "mosquitto is not installed (apt-get install mosquitto)" >&2; exit 1; }
RES=$TMP/results
TS=$(transports)
echo "start $(date -u +%H:%M:%S) UTC, $(nproc) cores, load $(load); transports: $TS"
for r in $(seq 1 "$ROUNDS"); do
  for t in $TS; do
    # shellcheck disable=SC2086
    start_backplane "$TMP/bp.log" ${BACKPLANE_ARGS:-}
    out=$(with_transport "$t" "$BIN/banyan-bench" --backplane "127.0.0.1:$BP_PUB:$BP_SUB" latency --count "$COUNT" 2>&1) ||
      out="FAILED: $out"
    stop_pid "$BP_PID"
    echo "round $r [ours, $t] $out (load $(load))"
    echo "$r ours-$t $out" >>"$RES"
  done
  out=$("$BIN/banyan-bench" mqtt-latency --count "$COUNT" 2>&1) || out="FAILED: $out"
  echo "round $r [mosquitto] $out (load $(load))"
  echo "$r mosquitto $out" >>"$RES"
  out=$("$BIN/banyan-bench" tcp-floor --count "$COUNT" 2>&1) || out="FAILED: $out"
  echo "round $r [floor] $out (load $(load))"
  echo "$r floor $out" >>"$RES"
done
echo "end $(date -u +%H:%M:%S) UTC, load $(load)"
echo
python3 - "$RES" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r, kind, rest = line.split(" ", 2)
    if rest.startswith("FAILED"):
        print(f"round {r} {kind} failed (not in the table): {rest.strip()}")
        continue
    med = float(re.search(r"median ([0-9.]+)", rest).group(1))
    p99 = float(re.search(r"p99 ([0-9.]+)", rest).group(1))
    rows.setdefault(kind, []).append((int(r), med, p99))
kinds = [k for k in rows if k != "mosquitto"] + ["mosquitto"]
mq = {r: m for r, m, _ in rows["mosquitto"]}
hdr = ["round"] + [f"{k} median / p99 (us)" for k in kinds] + [f"mosquitto/{k} median" for k in kinds if k != "mosquitto"]
print(" | ".join(hdr))
for r in sorted(mq):
    cells = [str(r)]
    for k in kinds:
        m = [(a, b) for rr, a, b in rows[k] if rr == r]
        cells.append(f"{m[0][0]:.1f} / {m[0][1]:.1f}" if m else "-")
    for k in kinds:
        if k == "mosquitto": continue
        m = [a for rr, a, _ in rows[k] if rr == r]
        cells.append(f"{mq[r] / m[0]:.2f}x" if m else "-")
    print(" | ".join(cells))
cells = ["median of rounds"]
meds = {k: statistics.median(m for _, m, _ in rows[k]) for k in kinds}
p99s = {k: statistics.median(p for _, _, p in rows[k]) for k in kinds}
for k in kinds:
    cells.append(f"{meds[k]:.1f} / {p99s[k]:.1f}")
for k in kinds:
    if k == "mosquitto": continue
    cells.append(f"{meds['mosquitto'] / meds[k]:.2f}x")
print(" | ".join(cells))
others = [k for k in kinds if k.startswith("ours-")]
if len(others) == 2:
    a, b = others
    print(f"{a} median / {b} median: {meds[a] / meds[b]:.2f}x")
PY
