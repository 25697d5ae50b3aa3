#!/usr/bin/env bash
# What the decision log costs a cache hit: PAIRS back-to-back runs of the
# same wrk load with the log off, then on (the order alternates each pair),
# each against a fresh release binary before a mock RT. Prints, per run,
# requests/s, p99, and the CPU time fraudgate spent per request, split into
# the request workers and the decision-log writer thread (from
# /proc/PID/task/*/stat, read before and after the run); then the median
# throughput cost of a pair. CPU per request is the steadier figure on a
# shared machine: throughput swings a few percent run to run.
#
#   scripts/logcost.sh                     # 5 pairs x 10 s, 64 connections
#   PAIRS=9 DURATION=15 scripts/logcost.sh
#   STORE=clickhouse CLICKHOUSE_URL=http://127.0.0.1:8123 scripts/logcost.sh
#   BIN=/tmp/fraudgate-before scripts/logcost.sh   # another build, same load
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
BIN=${BIN:-target/release/fraudgate}

. scripts/lib.sh
ensure_wrk

cargo build --release --quiet --bin fraudgate --example mock_rt
tmp=$(mktemp -d)
fg_pid="" rt_pid=""
cleanup() {
  [ -n "$fg_pid" ] && kill "$fg_pid" 2>/dev/null
  [ -n "$rt_pid" ] && kill "$rt_pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

target/release/examples/mock_rt --listen "127.0.0.1:$RT_PORT" --delay-ms 5 >"$tmp/rt.log" 2>&1 &
rt_pid=$!

# ticks NAME_REGEX: utime+stime (clock ticks) of fraudgate's threads whose
# name matches (or, with -v, does not match).
ticks() {
  local pid=$1 flag=$2 re=$3 sum=0
  for t in /proc/"$pid"/task/*; do
    local comm stat
    comm=$(cat "$t/comm" 2>/dev/null) || continue
    stat=$(cat "$t/stat" 2>/dev/null) || continue
    if [ "$flag" = "-v" ]; then [[ $comm =~ $re ]] && continue; else [[ $comm =~ $re ]] || continue; fi
    # Fields after the ")" of the name: utime is the 12th, stime the 13th.
    local rest=${stat##*) }
    set -- $rest
    sum=$((sum + ${12} + ${13}))
  done
  echo "$sum"
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
  # Warm the cache (every key fetched once) outside the measured run.
  wrk -t"$THREADS" -c"$CONNS" -d2s -s scripts/loadtest.lua "http://127.0.0.1:$FG_PORT" >/dev/null
  local w0 l0 w1 l1
  w0=$(ticks "$fg_pid" -v '^decision-log$')
  l0=$(ticks "$fg_pid" '' '^decision-log$')
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s scripts/loadtest.lua \
    "http://127.0.0.1:$FG_PORT" >"$tmp/wrk.txt"
  w1=$(ticks "$fg_pid" -v '^decision-log$')
  l1=$(ticks "$fg_pid" '' '^decision-log$')
  local metrics dropped
  metrics=$(curl -s "http://127.0.0.1:$FG_PORT/metrics")
  dropped=$(echo "$metrics" | awk '/^fraudgate_log_dropped_total/ {print $2}')
  kill -INT "$fg_pid"; wait "$fg_pid" 2>/dev/null || true; fg_pid=""
  awk -v on="$log" -v w="$((w1 - w0))" -v l="$((l1 - l0))" -v hz="$hz" -v d="${dropped:-0}" '
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { p99 = $2 }
    /requests in/ { n = $1 }
    END {
      printf "log=%-5s %9.0f req/s  p99 %-7s workers %5.2f us/req  writer %5.2f us/req  dropped %s\n",
        on, rps, p99, w * 1e6 / hz / n, l * 1e6 / hz / n, d
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
def us(rs, i):
    return statistics.median(float(r[i]) for r in rs)
offr = [r for r in runs if r[0] == "log=false"]
onr = [r for r in runs if r[0] == "log=true"]
w_off, w_on, wr = us(offr, 6), us(onr, 6), us(onr, 9)
print(f"CPU a request (medians): log off {w_off:.2f} us; log on {w_on:.2f} us workers + {wr:.2f} us writer = +{100 * (w_on + wr - w_off) / w_off:.1f}%")
PY
