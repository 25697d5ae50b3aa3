#!/usr/bin/env bash
# Whole-service load test: the release binary against the mock RT, driven
# by wrk with a Zipf-like mix of IPs/UAs. Prints throughput, latency
# percentiles, and upstream calls per distinct key (1.00 = every key was
# fetched once: cache + coalescing working).
#
#   scripts/loadtest.sh            # 20 s, 64 connections, 20k keys, RT delay 5 ms
#   DURATION=60 CONNS=128 KEYS=50000 RT_DELAY_MS=20 scripts/loadtest.sh
#   SCRIPT=scripts/loadtest-openrtb.lua RT_DELAY_MS=100 scripts/loadtest.sh   # pre-bid, slow RT
#   DECISION_LOG=false scripts/loadtest.sh    # the same without the decision log
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
export KEYS=${KEYS:-20000}
RT_DELAY_MS=${RT_DELAY_MS:-5}
SCRIPT=${SCRIPT:-scripts/loadtest.lua}
FG_PORT=${FG_PORT:-18080}
RT_PORT=${RT_PORT:-18081}

. scripts/lib.sh
ensure_wrk

cargo build --release --quiet --bin fraudgate --example mock_rt
tmp=$(mktemp -d)
cleanup() { kill "$fg_pid" "$rt_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

"$REL/examples/mock_rt" --listen "127.0.0.1:$RT_PORT" --delay-ms "$RT_DELAY_MS" >"$tmp/rt.log" 2>&1 &
rt_pid=$!
FRAUDGATE_SERVER__LISTEN="127.0.0.1:$FG_PORT" \
FRAUDGATE_UPSTREAM__URL="http://127.0.0.1:$RT_PORT/" \
FRAUDGATE_UPSTREAM__KEY=loadtest \
FRAUDGATE_LOG__LEVEL=warn \
FRAUDGATE_DECISION_LOG__ENABLED="${DECISION_LOG:-true}" \
FRAUDGATE_DECISION_LOG__PATH="$tmp/decisions" \
  "$REL/fraudgate" serve >"$tmp/fg.log" 2>&1 &
fg_pid=$!
wait_ready "$FG_PORT"

echo "== wrk $SCRIPT: ${DURATION}s, $CONNS connections, $THREADS threads, $KEYS keys (Zipf s=1), RT delay ${RT_DELAY_MS} ms"
wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$SCRIPT" "http://127.0.0.1:$FG_PORT" | tee "$tmp/wrk.txt"

metrics=$(curl -s "http://127.0.0.1:$FG_PORT/metrics")
kill -INT "$rt_pid"; wait "$rt_pid" || true
calls=$(sed -n 's/.*calls=\([0-9]*\).*/\1/p' "$tmp/rt.log")
distinct=$(sed -n 's/.*distinct_ips=\([0-9]*\).*/\1/p' "$tmp/rt.log")
hits=$(echo "$metrics" | awk '/^fraudgate_cache_requests_total\{result="hit"\}/ {print $2}')
misses=$(echo "$metrics" | awk '/^fraudgate_cache_requests_total\{result="miss"\}/ {print $2}')
coalesced=$(echo "$metrics" | awk '/^fraudgate_coalesced_waiters_total/ {print $2}')
deadline=$(echo "$metrics" | awk '/^fraudgate_deadline_misses_total/ {print $2}')
late=$(echo "$metrics" | awk '/^fraudgate_late_fills_total/ {print $2}')
non2xx=$(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$tmp/wrk.txt" || echo "Non-2xx or 3xx responses: 0")
echo "== fraudgate"
echo "cache hits=${hits:-0} misses=${misses:-0} coalesced_waiters=${coalesced:-0} deadline_misses=${deadline:-0} late_fills=${late:-0}"
echo "upstream calls=$calls distinct keys=$distinct calls/key=$(awk -v c="$calls" -v d="$distinct" 'BEGIN{ if (d>0) printf "%.3f", c/d; else print "n/a" }')"
echo "$non2xx"
echo "decision log (${DECISION_LOG:-true}): written=$(echo "$metrics" | awk '/^fraudgate_log_written_total/ {print $2}') dropped=$(echo "$metrics" | awk '/^fraudgate_log_dropped_total/ {print $2}')"
echo "fraudgate RSS: $(ps -o rss= -p "$fg_pid" | awk '{printf "%.1f MiB", $1/1024}')"
