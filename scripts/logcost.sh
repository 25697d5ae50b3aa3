#!/usr/bin/env bash
# What the decision log costs a cache hit: two release binaries before
# one mock RT, started once and kept warm, one with the log off and one
# with it on, and PAIRS pairs of the same wrk load (scripts/loadtest.lua
# on /v1/check: one decision a request) run against each in turn (the
# order alternates each pair). The instance not under load sits idle, so
# the two runs of a pair are seconds apart on the same machine: what the
# neighbours of a shared VM do changes little between them. After a run
# with the log on, the next waits until its writer has written every
# decision (its last batch is not left to run during the other's run).
# Each run prints requests/s, p99, decisions written and dropped, and
# that instance's CPU time, read from /proc before and after the run:
#   workers  every thread of fraudgate but the log's writer (request
#            workers, runtime, timers), in us a request;
#   writer   the decision-log writer thread, in us a decision it wrote in
#            the same window (its last batch included).
# Then the median throughput cost of a pair and the median CPU a request
# (workers + writer: one decision a request). CPU a request is the
# steadier figure on a shared machine: throughput swings run to run.
#
#   scripts/logcost.sh                     # 9 pairs x 8 s, 64 connections
#   PAIRS=15 DURATION=10 scripts/logcost.sh
#   STORE=clickhouse CLICKHOUSE_URL=http://127.0.0.1:8123 scripts/logcost.sh
#   BIN=/tmp/fraudgate-before scripts/logcost.sh   # another build, same load
# Also: CONNS, THREADS (wrk), KEYS (distinct IP/UA keys, Zipf s=1),
# FG_PORT (default 18090, the log off; FG_PORT+1 has it on), RT_PORT
# (default 18092).
# The current tree's release binary and mock RT are built first, into
# $CARGO_TARGET_DIR if set (with BIN= too: the mock RT is always this
# tree's).
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-9}
DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
export KEYS=${KEYS:-20000}
FG_PORT=${FG_PORT:-18090}
RT_PORT=${RT_PORT:-18092}
STORE=${STORE:-sqlite}
if ((RT_PORT == FG_PORT || RT_PORT == FG_PORT + 1)); then
  echo "RT_PORT $RT_PORT clashes with the instances' ports $FG_PORT/$((FG_PORT + 1)) (FG_PORT=$FG_PORT): choose another RT_PORT or FG_PORT" >&2
  exit 2
fi

. scripts/lib.sh
BIN=${BIN:-$REL/fraudgate}
ensure_wrk

echo "building the release fraudgate and mock RT (minutes on a fresh tree)..." >&2
cargo build --release --quiet --bin fraudgate --example mock_rt
tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

"$REL/examples/mock_rt" --listen "127.0.0.1:$RT_PORT" --delay-ms 5 >"$tmp/rt.log" 2>&1 &
pids+=($!)

# utime+stime (clock ticks) of a /proc stat line: the 12th and 13th
# fields after the ")" that ends the (thread) name.
stat_ticks() {
  local rest=${1##*) }
  set -- $rest
  echo $((${12} + ${13}))
}
# The whole process (threads that have ended included).
process_ticks() { stat_ticks "$(cat /proc/"$1"/stat)"; }
# The decision log's writer thread (0 when there is none).
writer_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    if [ "$(cat "$t/comm" 2>/dev/null)" = decision-log ]; then
      stat_ticks "$(cat "$t/stat")"
      return
    fi
  done
  echo 0
}
# A counter of the instance on port $1's /metrics, summed over its
# labels (0 when absent: the log is off).
metric() {
  curl -s "http://127.0.0.1:$1/metrics" |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 {n += $2} END {print n + 0}'
}

# start LOG PORT: an instance with the decision log on (true) or off.
declare -A pid_of
start() {
  FRAUDGATE_SERVER__LISTEN="127.0.0.1:$2" \
  FRAUDGATE_UPSTREAM__URL="http://127.0.0.1:$RT_PORT/" \
  FRAUDGATE_UPSTREAM__KEY=logcost \
  FRAUDGATE_LOG__LEVEL=warn \
  FRAUDGATE_SERVER__DRAIN_DELAY_MS=0 \
  FRAUDGATE_DECISION_LOG__ENABLED="$1" \
  FRAUDGATE_DECISION_LOG__STORE="$STORE" \
  FRAUDGATE_DECISION_LOG__CLICKHOUSE__URL="${CLICKHOUSE_URL:-http://127.0.0.1:8123}" \
  FRAUDGATE_DECISION_LOG__CLICKHOUSE__DATABASE=fraudgate_logcost \
  FRAUDGATE_DECISION_LOG__PATH="$tmp/decisions-$1" \
    "$BIN" serve >"$tmp/fg-$1.log" 2>&1 &
  pids+=($!)
  pid_of[$1]=$!
  wait_ready "$2"
  # Warm up (most keys fetched once: the measured runs are mostly cache
  # hits).
  wrk -t"$THREADS" -c"$CONNS" -d3s -s scripts/loadtest.lua "http://127.0.0.1:$2" >/dev/null
}
declare -A port_of=([false]=$FG_PORT [true]=$((FG_PORT + 1)))
start false "${port_of[false]}"
start true "${port_of[true]}"

# Waits (at most 10 s) until the instance on port $1 has written (or
# dropped) every decision it made.
settle() {
  local want
  want=$(metric "$1" fraudgate_decisions_total)
  for _ in $(seq 100); do
    (( $(metric "$1" fraudgate_log_written_total) + $(metric "$1" fraudgate_log_dropped_total) >= want )) && return
    sleep 0.1
  done
  echo "the log on port $1 did not catch up within 10 s" >&2
}
# (The warm-up's last batch is not the first run's.)
settle "${port_of[true]}"

hz=$(getconf CLK_TCK)
run() {
  local log=$1 port=${port_of[$1]} pid=${pid_of[$1]}
  local p0 l0 n0 d0 p1 l1 n1 d1
  p0=$(process_ticks "$pid"); l0=$(writer_ticks "$pid"); n0=$(metric "$port" fraudgate_log_written_total)
  d0=$(metric "$port" fraudgate_log_dropped_total)
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s scripts/loadtest.lua \
    "http://127.0.0.1:$port" >"$tmp/wrk.txt"
  # The writer's last batch of this run is this run's cost.
  [ "$log" = true ] && settle "$port"
  p1=$(process_ticks "$pid"); l1=$(writer_ticks "$pid"); n1=$(metric "$port" fraudgate_log_written_total)
  d1=$(metric "$port" fraudgate_log_dropped_total)
  # workers: all of fraudgate's CPU but the writer's, per request; writer:
  # its CPU per decision it wrote in the same window.
  awk -v on="$log" -v p="$((p1 - p0))" -v l="$((l1 - l0))" -v w="$((n1 - n0))" -v hz="$hz" -v d="$((d1 - d0))" '
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { p99 = $2 }
    / requests in / { n = $1 }
    END {
      if (n == 0) { print "wrk reported no requests" > "/dev/stderr"; exit 1 }
      printf "log=%-5s %9.0f req/s  p99 %-7s workers %5.2f us/req  writer %5.2f us/decision  written %d  dropped %s\n",
        on, rps, p99, (p - l) * 1e6 / hz / n, (w > 0 ? l * 1e6 / hz / w : 0), w, d
    }' "$tmp/wrk.txt" | tee -a "$tmp/runs"
}

echo "== $PAIRS off/on pairs, ${DURATION}s each, $CONNS connections, $KEYS keys, store $STORE"
for i in $(seq "$PAIRS"); do
  if ((i % 2)); then run false; run true; else run true; run false; fi
done
python3 - "$tmp/runs" <<'PY'
import sys, statistics
runs = [l.split() for l in open(sys.argv[1])]
off = [float(r[1]) for r in runs if r[0] == "log=false"]
on = [float(r[1]) for r in runs if r[0] == "log=true"]
costs = [100 * (a - b) / a for a, b in zip(off, on)]
print("cost a pair (%):", ", ".join(f"{c:.1f}" for c in costs))
print(f"median cost {statistics.median(costs):.1f}%  (off median {statistics.median(off):.0f}, on median {statistics.median(on):.0f} req/s)")
offr = [r for r in runs if r[0] == "log=false"]
onr = [r for r in runs if r[0] == "log=true"]
base = statistics.median(float(r[6]) for r in offr)
total = statistics.median(float(r[6]) + float(r[9]) for r in onr)
print(f"CPU a request (medians): log off {base:.2f} us; log on {total:.2f} us "
      f"(workers {statistics.median(float(r[6]) for r in onr):.2f} + writer "
      f"{statistics.median(float(r[9]) for r in onr):.2f}) = +{100 * (total - base) / base:.1f}%")
PY
