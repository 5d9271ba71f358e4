#!/usr/bin/env bash
# Idle CPU (docs/benchmarks/lan.md): a `banyan backplane` and one idle
# component (`banyan sub` subscribed to a topic nobody publishes), nothing
# sent, for WINDOW seconds after they have connected. For each process:
# CPU time (utime+stime from /proc/PID/stat, in clock ticks, and the
# nanosecond run time of all its threads from /proc/PID/task/*/schedstat),
# as % of one core, and wake-ups: the voluntary context switches of all its
# threads (each one a sleep that something later woke), per second.
# Runs the backplane with its default heartbeats (PING every 1,000 ms) and
# with --heartbeat-ivl-ms 0, so the difference is the heartbeat's cost; once
# per component transport (BANYAN_TRANSPORT=libzmq / native when the
# component has both).
# Usage: bash scripts/bench-idle.sh [WINDOW_SECONDS (10)]
source "$(dirname "$0")/bench-common.sh"
WINDOW=${1:-10}
cargo build --release --quiet -p banyan-cli --bins
TS=$(transports)

# sample PID: "ticks run_ns voluntary nonvoluntary threads"
sample() {
  python3 - "$1" <<'PY'
import os, sys
pid = sys.argv[1]
stat = open(f"/proc/{pid}/stat").read()
fields = stat[stat.rindex(")") + 2:].split()
ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
run_ns = vol = invol = threads = 0
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        run_ns += int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        for line in open(f"/proc/{pid}/task/{tid}/status"):
            if line.startswith("voluntary_ctxt_switches"): vol += int(line.split()[1])
            if line.startswith("nonvoluntary_ctxt_switches"): invol += int(line.split()[1])
        threads += 1
    except (FileNotFoundError, ProcessLookupError):
        pass
print(ticks, run_ns, vol, invol, threads)
PY
}

# report NAME BEFORE AFTER SECONDS
report() {
  python3 - "$1" "$4" "$(getconf CLK_TCK)" $2 $3 <<'PY'
import sys
name, secs, hz = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
a = list(map(int, sys.argv[4:9])); b = list(map(int, sys.argv[9:14]))
ticks, ns, vol, invol = (b[i] - a[i] for i in range(4))
print(f"  {name}: {ticks} ticks = {ticks / hz:.2f} s CPU ({ticks / hz / secs * 100:.2f} %); "
      f"run time {ns / 1e6:.2f} ms ({ns / 1e9 / secs * 100:.3f} %); "
      f"wake-ups {vol} ({vol / secs:.1f}/s), preempted {invol}; {b[4]} threads")
PY
}

echo "start $(date -u +%H:%M:%S) UTC, $(nproc) cores, load $(load); window ${WINDOW} s; transports: $TS"
for t in $TS; do
  for hb in default 0; do
    if [ "$hb" = default ]; then start_backplane "$TMP/bp.log"; what="backplane heartbeats on (default, 1000 ms)"
    else start_backplane "$TMP/bp.log" --heartbeat-ivl-ms 0; what="backplane heartbeats off"; fi
    # shellcheck disable=SC2046
    env $(transport_env "$t") "$BIN/banyan" sub -b 127.0.0.1 -p "$BP_PUB" -s "$BP_SUB" --summary 0 \
      bench/idle/nobody >"$TMP/sub.out" 2>"$TMP/sub.err" &
    SUB_PID=$!; PIDS+=("$SUB_PID")
    # Wait until it says it is connected, then 1 s more for the handshakes
    # and subscription to settle.
    for _ in $(seq 1 200); do grep -qs "connected to the backplane" "$TMP/sub.err" && break; sleep 0.05; done
    grep -q "connected to the backplane" "$TMP/sub.err" ||
      { echo "banyan sub did not connect:" >&2; cat "$TMP/sub.err" >&2; exit 1; }
    sleep 1
    kill -0 "$SUB_PID" || { echo "banyan sub exited:" >&2; cat "$TMP/sub.err" >&2; exit 1; }
    b0=$(sample "$BP_PID"); s0=$(sample "$SUB_PID")
    sleep "$WINDOW"
    b1=$(sample "$BP_PID"); s1=$(sample "$SUB_PID")
    echo "[$t transport, $what] ${WINDOW} s idle (load $(load)):"
    report "backplane" "$b0" "$b1" "$WINDOW"
    report "banyan sub (idle component)" "$s0" "$s1" "$WINDOW"
    stop_pid "$SUB_PID"; stop_pid "$BP_PID"
  done
done
echo "end $(date -u +%H:%M:%S) UTC, load $(load)"
