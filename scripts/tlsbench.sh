#!/usr/bin/env bash
# What TLS costs: full handshakes/s and resumed sessions/s (openssl
# s_time), then one hot /v1/check over keep-alive connections with wrk:
# plain HTTP/1.1 (h2c off, the default), plain with h2c on, and HTTPS.
# Keyless (no RT): every answer is the same local/fallback decision, so
# the difference between the runs is the transport alone.
#
#   scripts/tlsbench.sh                  # 10 s each
#   DURATION=20 CONNS=64 scripts/tlsbench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
PORT=${PORT:-18443}

. scripts/lib.sh
ensure_wrk

cargo build --release --quiet --bin fraudgate
tmp=$(mktemp -d)
fg_pid=
cleanup() { [ -n "$fg_pid" ] && kill "$fg_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null

# start NAME [ENV=VALUE...]: a fraudgate on $PORT with the given overrides.
start() {
  [ -n "$fg_pid" ] && { kill -INT "$fg_pid"; wait "$fg_pid" 2>/dev/null || true; }
  env FRAUDGATE_SERVER__LISTEN="127.0.0.1:$PORT" FRAUDGATE_SERVER__DRAIN_DELAY_MS=0 \
    FRAUDGATE_LOG__LEVEL=warn FRAUDGATE_DECISION_LOG__ENABLED=false "$@" \
    "$REL/fraudgate" serve >"$tmp/fg.log" 2>&1 &
  fg_pid=$!
  for _ in $(seq 100); do
    curl -sk -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && return
    curl -sk -o /dev/null "https://127.0.0.1:$PORT/healthz" 2>/dev/null && return
    sleep 0.1
  done
  echo "fraudgate did not start"; cat "$tmp/fg.log"; exit 1
}

q='event_type=click&ip=198.51.100.7&ua=Mozilla%2F5.0%20(Windows%20NT%2010.0)%20Chrome%2F120.0&affiliate_id=1&offer_id=2'
tls=(FRAUDGATE_SERVER__TLS__CERT_FILE="$tmp/cert.pem" FRAUDGATE_SERVER__TLS__KEY_FILE="$tmp/key.pem")

echo "== plain HTTP/1.1, h2c off (the default)"
start
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/v1/check?$q" | grep -E "Requests/sec|50%|99%"

echo "== plain HTTP/1.1, h2c on"
start FRAUDGATE_SERVER__HTTP2__H2C=true
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/v1/check?$q" | grep -E "Requests/sec|50%|99%"

echo "== HTTPS (HTTP/1.1 over TLS 1.3, keep-alive)"
start "${tls[@]}"
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "https://127.0.0.1:$PORT/v1/check?$q" | grep -E "Requests/sec|50%|99%"

echo "== full handshakes (openssl s_time -new, TLS 1.3 and 1.2)"
openssl s_time -connect "127.0.0.1:$PORT" -new -time "$DURATION" 2>/dev/null | grep -E "connections/user sec|connections in"
openssl s_time -connect "127.0.0.1:$PORT" -new -tls1_2 -time "$DURATION" 2>/dev/null | grep -E "connections/user sec|connections in"
echo "== resumed sessions (openssl s_time -reuse, TLS 1.2 tickets)"
openssl s_time -connect "127.0.0.1:$PORT" -reuse -tls1_2 -time "$DURATION" 2>/dev/null | grep -E "connections/user sec|connections in"
