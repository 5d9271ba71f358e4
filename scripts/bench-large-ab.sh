#!/usr/bin/env bash
# Large messages, two builds side by side (docs/benchmarks/lan.md): like
# scripts/bench-large.sh (one publisher, one subscriber, `banyan-bench
# large`, MIB_PER_RUN MiB of MessagePack `bin` payloads per run), but each
# round runs, in rotating order,
#   before:        DIR_BEFORE/banyan backplane, DIR_BEFORE's components
#   proxy/before:  pyzmq's zmq.proxy(XSUB, XPUB), DIR_BEFORE's components
#   after:         target/release/banyan backplane (built here), its components
#   proxy/after:   the proxy with target/release's components
# so that each build's ratio to the proxy is taken with its own components,
# in the same minutes. Prints per run: payload MB/s, losses, the broker's
# peak RSS (VmHWM) and CPU time (utime + stime, 10 ms ticks), the load;
# then medians and ratios.
# Usage: bash scripts/bench-large-ab.sh DIR_BEFORE [ROUNDS (3)] [MIB_PER_RUN (256)]
#   DIR_BEFORE holds `banyan` and `banyan-bench` release binaries of the
#   other build (e.g. copied from target/release before a change).
#   Env: SIZES (default "65536 1048576 16777216"), BANYAN_TRANSPORT of the
#   components (default native), BANYAN_PYTHON.
source "$(dirname "$0")/bench-common.sh"
BEFORE=${1:?usage: bench-large-ab.sh DIR_BEFORE [ROUNDS] [MIB_PER_RUN]}
ROUNDS=${2:-3}
MIB=${3:-256}
SIZES=${SIZES:-65536 1048576 16777216}
TRANSPORT=${BANYAN_TRANSPORT:-native}
require_python
[ -x "$BEFORE/banyan" ] && [ -x "$BEFORE/banyan-bench" ] || { echo "no banyan, banyan-bench in $BEFORE" >&2; exit 1; }
cargo build --release --quiet -p banyan-cli --bins
RES=$TMP/results

# run NAME SIZE COUNT ROUND
run() {
  local name=$1 size=$2 count=$3 r=$4 dir out peak cpu
  case $name in *before) dir=$BEFORE ;; *) dir=target/release ;; esac
  case $name in
    proxy/*) start_proxy "$TMP/b.log" ;;
    *) BIN=$dir start_backplane "$TMP/b.log" ;;
  esac
  out=$(BANYAN_TRANSPORT=$TRANSPORT "$dir/banyan-bench" --backplane "127.0.0.1:$BP_PUB:$BP_SUB" \
          large --size "$size" --count "$count")
  peak=$(hwm_kb "$BP_PID"); cpu=$(cpu_ms "$BP_PID")
  case $name in
    proxy/*) kill -TERM "$BP_PID"; wait "$BP_PID" 2>/dev/null || true ;;
    *) stop_pid "$BP_PID" ;;
  esac
  echo "round $r [$name] $out; broker peak RSS $((peak / 1024)) MB, CPU $cpu ms (load $(load))"
  echo "$r $name $size $peak $cpu $out" >>"$RES"
}

echo "start $(date -u +%H:%M:%S) UTC, $(nproc) cores, load $(load); before: $BEFORE, transport $TRANSPORT"
NAMES=(before proxy/before after proxy/after)
for r in $(seq 1 "$ROUNDS"); do
  for size in $SIZES; do
    count=$(large_count "$MIB" "$size")
    for k in 0 1 2 3; do run "${NAMES[$(( (k + r) % 4 ))]}" "$size" "$count" "$r"; done
  done
done
echo "end $(date -u +%H:%M:%S) UTC, load $(load)"
echo
python3 - "$RES" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r, name, size, peak, cpu, rest = line.split(" ", 5)
    mbs = float(re.search(r"= ([0-9.]+) MB/s", rest).group(1))
    lost = int(re.search(r"lost ([0-9]+)", rest).group(1))
    runs.setdefault(int(size), {}).setdefault(name, []).append((mbs, int(peak), int(cpu), lost))
def human(n):
    return f"{n // 1048576} MiB" if n >= 1048576 else f"{n // 1024} KiB" if n >= 1024 else f"{n} B"
print("payload | build | ours MB/s | proxy MB/s | ours/proxy | ours CPU ms | proxy CPU ms | ours / proxy peak RSS MB | lost ours / proxy")
for size, b in sorted(runs.items()):
    for build in ("before", "after"):
        o, p = b.get(build, []), b.get("proxy/" + build, [])
        if not o or not p:
            continue
        med = lambda xs, i: statistics.median(x[i] for x in xs)
        om, pm = med(o, 0), med(p, 0)
        print(f"{human(size)} | {build} | {om:.1f} | {pm:.1f} | {om / pm:.2f}x | "
              f"{med(o, 2):.0f} | {med(p, 2):.0f} | "
              f"{max(x[1] for x in o) / 1024:.0f} / {max(x[1] for x in p) / 1024:.0f} | "
              f"{sum(x[3] for x in o)} / {sum(x[3] for x in p)}")
PY
