# Shared by the scripts/bench-*.sh side-by-side benchmarks (sourced, not run).
# Provides: BIN (release binaries, built), TMP (removed on exit), PIDS and
# stop_all (every process started here is stopped on exit, error or signal),
# start_backplane, stop_pid, load, transports; for the large-message
# benchmarks also require_python, start_proxy, large_count and the /proc
# readers hwm_kb, rss_kb, cpu_ms.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=target/release
TMP=$(mktemp -d)
PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap stop_all EXIT
trap 'exit 130' INT TERM HUP

load() { cut -d' ' -f1-3 /proc/loadavg; }

# stop_pid PID: SIGINT (a clean exit); SIGTERM after 5 s, SIGKILL after
# 10 s; then reaps it.
stop_pid() {
  local i
  kill -INT "$1" 2>/dev/null || true
  for i in $(seq 1 200); do
    kill -0 "$1" 2>/dev/null || break
    [ "$i" = 100 ] && kill -TERM "$1" 2>/dev/null
    [ "$i" = 199 ] && kill -KILL "$1" 2>/dev/null
    sleep 0.05
  done
  wait "$1" 2>/dev/null || true
}

# start_backplane LOG [backplane options...]: a `banyan backplane` on free
# ports of 127.0.0.1; sets BP_PID, BP_PUB, BP_SUB once it listens.
start_backplane() {
  local log=$1; shift
  "$BIN/banyan" backplane --bind 127.0.0.1 -p 0 -s 0 "$@" >"$log" 2>&1 &
  BP_PID=$!; PIDS+=("$BP_PID")
  for _ in $(seq 1 200); do
    BP_PUB=$(awk '/Publisher  Port = [0-9]+$/ {print $NF}' "$log")
    BP_SUB=$(awk '/Subscriber Port = [0-9]+$/ {print $NF}' "$log")
    [ -n "$BP_PUB" ] && [ -n "$BP_SUB" ] && return 0
    kill -0 "$BP_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "backplane did not start:" >&2; cat "$log" >&2; exit 1
}

# The component transports to compare: $TRANSPORTS if set, else
# "libzmq native" once the component crate reads BANYAN_TRANSPORT, else
# "default" (whatever the component uses; BANYAN_TRANSPORT not set).
transports() {
  if [ -n "${TRANSPORTS:-}" ]; then echo "$TRANSPORTS"
  elif grep -rqs BANYAN_TRANSPORT gateways/component/src; then echo "libzmq native"
  else echo "default"; fi
}

# with_transport T CMD...: runs CMD with BANYAN_TRANSPORT=T (not set for
# "default"). For a background process use `env $(transport_env T) CMD &`
# instead (a function run with & is a subshell: $! would be its pid).
with_transport() {
  local t=$1; shift
  env $(transport_env "$t") "$@"
}
transport_env() { [ "$1" = default ] || echo "BANYAN_TRANSPORT=$1"; }

# require_python: sets PY to $BANYAN_PYTHON, else the repository's venv;
# exits when it is not there.
require_python() {
  PY=${BANYAN_PYTHON:-.venv/bin/python}
  [ -x "$PY" ] || { echo "venv missing: run bash scripts/venv.sh (or set BANYAN_PYTHON)" >&2; exit 1; }
}

# start_proxy LOG: pyzmq's plain zmq.proxy(XSUB, XPUB)
# (tests/zmtp_peers/proxy.py, with $PY) on free ports; sets BP_PID, BP_PUB,
# BP_SUB once it listens. Stop it with SIGTERM (in the background, python
# ignores SIGINT).
start_proxy() {
  local log=$1
  "$PY" -u tests/zmtp_peers/proxy.py >"$log" 2>&1 &
  BP_PID=$!; PIDS+=("$BP_PID")
  for _ in $(seq 1 200); do
    if grep -q "^ports " "$log"; then
      read -r _ BP_PUB BP_SUB < <(grep "^ports " "$log"); return 0
    fi
    kill -0 "$BP_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "proxy did not start:" >&2; cat "$log" >&2; exit 1
}

# large_count MIB SIZE: how many SIZE-byte payloads make MIB MiB, at most
# 1,000,000 and at least 32.
large_count() {
  local count=$(( $1 * 1048576 / $2 ))
  [ "$count" -le 1000000 ] || count=1000000
  [ "$count" -ge 32 ] || count=32
  echo "$count"
}

# Of process PID: peak RSS (VmHWM) and RSS in KiB, CPU time (utime +
# stime, 10 ms ticks) in ms.
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ms() { awk '{print ($14 + $15) * 10}' "/proc/$1/stat"; }
