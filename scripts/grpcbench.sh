#!/usr/bin/env bash
# What a gRPC ext_authz Check costs next to /v1/auth: the release binary
# with doors.grpc.listen set, in front of the example mock RT, one visitor
# (one source IP + User-Agent) warmed into the cache, then
# examples/grpc_load.rs at CONCURRENCY concurrent Checks on CONNECTIONS
# HTTP/2 connections, then wrk on /v1/auth (the cache-hit path of the same
# door logic over HTTP/1.1). Default config otherwise (decision log on).
# Each run also prints the CPU fraudgate spent a request (its utime+stime
# from /proc over the run): steadier than requests/s when the load
# generator shares the cores, as it does here.
# Run by hand; not part of .ci/run.
#
#   scripts/grpcbench.sh                      # 64 concurrent, 10 s each
#   CONCURRENCY=64 CONNECTIONS=2 DURATION=10 WRK=false scripts/grpcbench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-64}
CONNECTIONS=${CONNECTIONS:-2}
RT_DELAY_MS=${RT_DELAY_MS:-10}
FG_PORT=${FG_PORT:-18190} GRPC_PORT=${GRPC_PORT:-18191} RT_PORT=${RT_PORT:-18192}

. scripts/lib.sh
[ "${WRK:-true}" = true ] && ensure_wrk

cargo build --release --quiet --bin fraudgate --example mock_rt --example grpc_load
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

"$REL/examples/mock_rt" --listen "127.0.0.1:$RT_PORT" --delay-ms "$RT_DELAY_MS" >"$tmp/rt.log" 2>&1 &
pids+=($!)
FRAUDGATE_SERVER__LISTEN="127.0.0.1:$FG_PORT" \
FRAUDGATE_DOORS__GRPC__LISTEN="127.0.0.1:$GRPC_PORT" \
FRAUDGATE_UPSTREAM__URL="http://127.0.0.1:$RT_PORT/" \
FRAUDGATE_UPSTREAM__KEY=grpcbench \
FRAUDGATE_LOG__LEVEL=warn \
FRAUDGATE_DECISION_LOG__ENABLED="${DECISION_LOG:-true}" \
FRAUDGATE_DECISION_LOG__PATH="$tmp/decisions" \
  "$REL/fraudgate" serve >"$tmp/fg.log" 2>&1 &
fg=$!; pids+=("$fg")
wait_ready "$FG_PORT"

# fraudgate's CPU time so far, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$fg/stat"; }
# cpu_per_request TICKS_BEFORE REQUESTS: fraudgate's CPU us a request since.
cpu_per_request() {
  awk -v t0="$1" -v t1="$(ticks)" -v hz="$(getconf CLK_TCK)" -v n="$2" \
    'BEGIN{printf "fraudgate CPU: %.1f us a request\n", (t1 - t0) / hz * 1e6 / n}'
}

# The example's first Check warms its visitor (and says whether it was
# allowed); every Check timed after it is a cache hit.
echo "== gRPC Check: grpc_load 127.0.0.1:$GRPC_PORT $CONCURRENCY $DURATION $CONNECTIONS"
t0=$(ticks)
"$REL/examples/grpc_load" "127.0.0.1:$GRPC_PORT" "$CONCURRENCY" "$DURATION" "$CONNECTIONS" | tee "$tmp/g.txt"
cpu_per_request "$t0" "$(sed -n 's/^checks \([0-9]*\) .*/\1/p' "$tmp/g.txt")"

if [ "${WRK:-true}" = true ]; then
  BROWSER_UA='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'
  url="http://127.0.0.1:$FG_PORT/v1/auth?offer_id=2&affiliate_id=1"
  code=$(curl -s -o /dev/null -w '%{http_code}' -A "$BROWSER_UA" "$url")
  [ "$code" = 200 ] || { echo "/v1/auth answered $code, not 200" >&2; exit 1; }
  echo "== /v1/auth: wrk -t1 -c$CONCURRENCY -d${DURATION}s"
  t0=$(ticks)
  wrk -t1 -c"$CONCURRENCY" -d"${DURATION}s" --latency -H "User-Agent: $BROWSER_UA" "$url" >"$tmp/w.txt"
  grep -E "Requests/sec|50%|99%" "$tmp/w.txt"
  cpu_per_request "$t0" "$(awk '/requests in/{print $1}' "$tmp/w.txt")"
fi
