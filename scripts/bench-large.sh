#!/usr/bin/env bash
# Large messages, side by side (docs/benchmarks/lan.md): a burst of
# MessagePack `bin` payloads of 16 B, 1 KiB, 64 KiB, 1 MiB and 16 MiB from one
# publisher to one subscriber (`banyan-bench large`, our components) through
#   ours:  a `banyan backplane` process (default settings), and
#   proxy: pyzmq's plain zmq.proxy(XSUB, XPUB) (tests/zmtp_peers/proxy.py),
# each started fresh for every run, in alternating order; once per component
# transport (BANYAN_TRANSPORT=libzmq / native when the component has both).
# Prints payload MB/s, the broker's peak RSS (VmHWM) and losses per run, then
# a table with the medians over the rounds and the ratios ours / proxy.
# Usage: bash scripts/bench-large.sh [ROUNDS (3)] [MIB_PER_RUN (512)]
#   Each run sends MIB_PER_RUN MiB of payload (at most 1,000,000 messages, at
#   least 32). Env: SIZES="16 1024 ..." to choose sizes; TRANSPORTS.
source "$(dirname "$0")/bench-common.sh"
ROUNDS=${1:-3}
MIB=${2:-512}
SIZES=${SIZES:-16 1024 65536 1048576 16777216}
require_python
cargo build --release --quiet -p banyan-cli --bins
RES=$TMP/results
TS=$(transports)

# run BROKER TRANSPORT SIZE COUNT ROUND
run() {
  local broker=$1 t=$2 size=$3 count=$4 r=$5 out idle peak
  if [ "$broker" = ours ]; then start_backplane "$TMP/b.log"; else start_proxy "$TMP/b.log"; fi
  idle=$(rss_kb "$BP_PID")
  out=$(with_transport "$t" "$BIN/banyan-bench" --backplane "127.0.0.1:$BP_PUB:$BP_SUB" \
          large --size "$size" --count "$count")
  peak=$(hwm_kb "$BP_PID")
  if [ "$broker" = ours ]; then stop_pid "$BP_PID"
  else kill -TERM "$BP_PID"; wait "$BP_PID" 2>/dev/null || true; fi  # in the background, python ignores SIGINT
  echo "round $r [$broker, $t] $out; broker RSS idle $((idle / 1024)) MB, peak $((peak / 1024)) MB (load $(load))"
  echo "$r $t $broker $size $peak $out" >>"$RES"
}

echo "start $(date -u +%H:%M:%S) UTC, $(nproc) cores, load $(load); transports: $TS"
for r in $(seq 1 "$ROUNDS"); do
  for size in $SIZES; do
    count=$(large_count "$MIB" "$size")
    for t in $TS; do
      # Alternate which broker goes first.
      if [ $(( r % 2 )) = 1 ]; then order="ours proxy"; else order="proxy ours"; fi
      for b in $order; do run "$b" "$t" "$size" "$count" "$r"; done
    done
  done
done
echo "end $(date -u +%H:%M:%S) UTC, load $(load)"
echo
python3 - "$RES" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r, t, broker, size, peak, rest = line.split(" ", 5)
    mbs = float(re.search(r"= ([0-9.]+) MB/s", rest).group(1))
    lost = int(re.search(r"lost ([0-9]+)", rest).group(1))
    count = int(re.search(r"payloads: ([0-9]+) sent", rest).group(1))
    runs.setdefault((t, int(size)), {}).setdefault(broker, []).append((mbs, int(peak), lost, count))
def human(n):
    return f"{n // 1048576} MiB" if n >= 1048576 else f"{n // 1024} KiB" if n >= 1024 else f"{n} B"
print("transport | payload | ours MB/s | proxy MB/s | ours/proxy | ours peak RSS | proxy peak RSS | lost ours / proxy (of count x rounds)")
meds = {}
for (t, size), b in sorted(runs.items()):
    o, p = b.get("ours", []), b.get("proxy", [])
    om = statistics.median(x[0] for x in o); pm = statistics.median(x[0] for x in p)
    meds[(t, size)] = om
    print(f"{t} | {human(size)} | {om:.1f} | {pm:.1f} | {om / pm:.2f}x | "
          f"{max(x[1] for x in o) / 1024:.1f} MB | {max(x[1] for x in p) / 1024:.1f} MB | "
          f"{sum(x[2] for x in o)} / {sum(x[2] for x in p)} (of {o[0][3]} x {len(o)})")
ts = sorted({t for t, _ in meds})
if len(ts) == 2:
    a, b = ts
    for size in sorted({s for _, s in meds}):
        if (a, size) in meds and (b, size) in meds:
            print(f"ours MB/s, {human(size)}: {b} / {a} = {meds[(b, size)] / meds[(a, size)]:.2f}x")
PY
