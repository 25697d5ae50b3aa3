#!/usr/bin/env bash
# What the decision log costs a cache hit: PAIRS back-to-back runs of the
# same wrk load (scripts/loadtest.lua on /v1/check: one decision a
# request) with the log off, then on (the order alternates each pair),
# each against a freshly started release binary before a mock RT. Each run
# prints requests/s, p99, decisions written and dropped, and fraudgate's
# CPU time, read from /proc before and after the run:
#   workers  every thread of fraudgate but the log's writer (request
#            workers, runtime, timers), in us a request;
#   writer   the decision-log writer thread, in us a decision it wrote in
#            the same window.
# Then the median throughput cost of a pair and the median CPU a request
# (workers + writer: one decision a request). CPU a request is the
# steadier figure on a shared machine: throughput swings a few percent
# run to run.
#
#   scripts/logcost.sh                     # 5 pairs x 10 s, 64 connections
#   PAIRS=9 DURATION=15 scripts/logcost.sh
#   STORE=clickhouse CLICKHOUSE_URL=http://127.0.0.1:8123 scripts/logcost.sh
#   BIN=/tmp/fraudgate-before scripts/logcost.sh   # another build, same load
# Also: CONNS, THREADS (wrk), KEYS (distinct IP/UA keys, Zipf s=1),
# FG_PORT, RT_PORT (default 18090, 18091). The current tree's release
# binary and mock RT are built first, into $CARGO_TARGET_DIR if set
# (with BIN= too: the mock RT is always this tree's).
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
export KEYS=${KEYS:-20000}
FG_PORT=${FG_PORT:-18090}
RT_PORT=${RT_PORT:-18091}
STORE=${STORE:-sqlite}

. scripts/lib.sh
BIN=${BIN:-$REL/fraudgate}
ensure_wrk

cargo build --release --quiet --bin fraudgate --example mock_rt
tmp=$(mktemp -d)
fg_pid="" rt_pid=""
cleanup() {
  if [ -n "$fg_pid" ]; then kill "$fg_pid" 2>/dev/null || true; fi
  if [ -n "$rt_pid" ]; then kill "$rt_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

"$REL/examples/mock_rt" --listen "127.0.0.1:$RT_PORT" --delay-ms 5 >"$tmp/rt.log" 2>&1 &
rt_pid=$!

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
# A counter of fraudgate's /metrics (0 when absent: the log is off).
metric() {
  curl -s "http://127.0.0.1:$FG_PORT/metrics" | awk -v m="$1" '$1 == m {n = $2} END {print n + 0}'
}

hz=$(getconf CLK_TCK)
run() {
  local log=$1
  FRAUDGATE_SERVER__LISTEN="127.0.0.1:$FG_PORT" \
  FRAUDGATE_UPSTREAM__URL="http://127.0.0.1:$RT_PORT/" \
  FRAUDGATE_UPSTREAM__KEY=logcost \
  FRAUDGATE_LOG__LEVEL=warn \
  FRAUDGATE_DECISION_LOG__ENABLED="$log" \
  FRAUDGATE_DECISION_LOG__STORE="$STORE" \
  FRAUDGATE_DECISION_LOG__CLICKHOUSE__URL="${CLICKHOUSE_URL:-http://127.0.0.1:8123}" \
  FRAUDGATE_DECISION_LOG__CLICKHOUSE__DATABASE=fraudgate_logcost \
  FRAUDGATE_DECISION_LOG__PATH="$tmp/decisions-$log-$RANDOM" \
    "$BIN" serve >"$tmp/fg.log" 2>&1 &
  fg_pid=$!
  wait_ready "$FG_PORT"
  # Warm up (most keys fetched once: the measured run is mostly cache
  # hits) outside the measured run.
  wrk -t"$THREADS" -c"$CONNS" -d2s -s scripts/loadtest.lua "http://127.0.0.1:$FG_PORT" >/dev/null
  local p0 l0 n0 p1 l1 n1
  p0=$(process_ticks "$fg_pid"); l0=$(writer_ticks "$fg_pid"); n0=$(metric fraudgate_log_written_total)
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s scripts/loadtest.lua \
    "http://127.0.0.1:$FG_PORT" >"$tmp/wrk.txt"
  p1=$(process_ticks "$fg_pid"); l1=$(writer_ticks "$fg_pid"); n1=$(metric fraudgate_log_written_total)
  local dropped
  dropped=$(metric fraudgate_log_dropped_total)
  kill -INT "$fg_pid"; wait "$fg_pid" 2>/dev/null || true; fg_pid=""
  # workers: all of fraudgate's CPU but the writer's, per request; writer:
  # its CPU per decision it wrote in the same window.
  awk -v on="$log" -v p="$((p1 - p0))" -v l="$((l1 - l0))" -v w="$((n1 - n0))" -v hz="$hz" -v d="$dropped" '
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
