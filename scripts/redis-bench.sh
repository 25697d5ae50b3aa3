#!/usr/bin/env bash
# Redis on vs off, same machine, same run, interleaved rounds: what sharing
# state costs. Two fraudgates in front of their own mock RT (same latency),
# one with [redis] url, one without; decision log off on both.
#
#   scripts/redis-bench.sh                  # 3 rounds x 10 s per trace
#   ROUNDS=5 DURATION=15 scripts/redis-bench.sh
#
# Traces: "one key" (one cached ip+ua: the local-hit path, which must not
# touch Redis) and "zipf" (1M keys, Zipf s=1: local misses that ask Redis).
# Run by hand; not part of .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
export KEYS=${KEYS:-1000000}
RT_DELAY_MS=${RT_DELAY_MS:-10}
OFF_PORT=18280 ON_PORT=18282 RT_OFF=18281 RT_ON=18283 REDIS_PORT=18284

. scripts/lib.sh
ensure_wrk
command -v redis-server >/dev/null || { echo "redis-server is needed (Debian: redis-server)" >&2; exit 1; }

cargo build --release --quiet --bin fraudgate --example mock_rt
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$tmp/redis.log" 2>&1 &
pids+=("$!")
"$REL/examples/mock_rt" --listen "127.0.0.1:$RT_OFF" --delay-ms "$RT_DELAY_MS" >"$tmp/rt-off.log" 2>&1 &
pids+=("$!")
"$REL/examples/mock_rt" --listen "127.0.0.1:$RT_ON" --delay-ms "$RT_DELAY_MS" >"$tmp/rt-on.log" 2>&1 &
pids+=("$!")
start() { # port rt-port redis-url
  FRAUDGATE_SERVER__LISTEN="127.0.0.1:$1" \
  FRAUDGATE_UPSTREAM__URL="http://127.0.0.1:$2/" \
  FRAUDGATE_UPSTREAM__KEY=bench \
  FRAUDGATE_LOG__LEVEL=warn \
  FRAUDGATE_DECISION_LOG__ENABLED=false \
  FRAUDGATE_REDIS__URL="$3" \
  FRAUDGATE_REDIS__HASH_KEY=bench-hash-key-0123456789 \
    "$REL/fraudgate" serve >"$tmp/fg-$1.log" 2>&1 &
  pids+=("$!")
}
start "$OFF_PORT" "$RT_OFF" ""
start "$ON_PORT" "$RT_ON" "redis://127.0.0.1:$REDIS_PORT/0"
wait_ready "$OFF_PORT"
wait_ready "$ON_PORT"
for _ in $(seq 50); do
  curl -s "http://127.0.0.1:$ON_PORT/readyz" | grep -q '"redis":"up"' && break
  sleep 0.1
done

UA='Mozilla%2F5.0%20(Windows%20NT%2010.0%3B%20Win64%3B%20x64)%20AppleWebKit%2F537.36%20(KHTML%2C%20like%20Gecko)%20Chrome%2F120.0%20Safari%2F537.36'
ONE="event_type=click&ip=203.0.113.9&ua=$UA&key=k&at=1&affiliate_id=1&offer_id=2"
curl -s "http://127.0.0.1:$OFF_PORT/v1/check?$ONE" >/dev/null
curl -s "http://127.0.0.1:$ON_PORT/v1/check?$ONE" >/dev/null

: >"$tmp/results"
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  wrk_row "one-key redis-off" "http://127.0.0.1:$OFF_PORT/v1/check?$ONE"
  wrk_row "one-key redis-on" "http://127.0.0.1:$ON_PORT/v1/check?$ONE"
  TARGET_PATH=/v1/check wrk_row "zipf redis-off" "http://127.0.0.1:$OFF_PORT" -s scripts/loadtest.lua
  TARGET_PATH=/v1/check wrk_row "zipf redis-on" "http://127.0.0.1:$ON_PORT" -s scripts/loadtest.lua
done
redis_hits=$(curl -s "http://127.0.0.1:$ON_PORT/metrics" | awk '/^fraudgate_redis_verdicts_total/{print}' | tr '\n' ' ')

median_table "$ROUNDS" "redis-off" "x redis off"
echo
echo "redis verdicts: $redis_hits"
echo "(${ROUNDS} rounds x ${DURATION} s per trace, wrk -t1 -c${CONNS}, ${KEYS} Zipf keys, RT ${RT_DELAY_MS} ms, redis-server $(redis-server --version | awk '{print $3}'), $(nproc) cores, $(date -u +%F))"
