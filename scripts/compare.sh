#!/usr/bin/env bash
# fraudgate against nginx proxy_cache, same machine, same run: the question
# "why not nginx proxy_cache in front of FraudScore RT?". Both sit in front
# of their own local mock RT (same latency); rounds are interleaved, and the
# table shows medians over rounds and fraudgate/nginx ratios (only ratios are
# stable on a shared machine). Run by hand; not part of .ci/run.
#
#   scripts/compare.sh                       # 3 rounds x 10 s per trace
#   ROUNDS=5 DURATION=15 KEYS=1000000 scripts/compare.sh
#
# Traces (TRACES="check rt auth floor zipf miss", any subset): one cached
# ip+ua (the cache-hit path) on /v1/check, the RT drop-in `/` and
# /v1/auth, each against nginx's cache hit; "floor", /healthz against
# nginx's `return 200`; "zipf" (KEYS distinct ip+ua, Zipf s=1, real
# browser UAs: misses, coalescing, hits); "miss" (every request a new ip,
# so an upstream call each, on MISS_CONNS connections; the table's next
# lines give the most upstream connections each side held open).
# fraudgate runs as by default, its decision log on (DECISION_LOG=false
# to compare without it: nginx records nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
export KEYS=${KEYS:-1000000}
RT_DELAY_MS=${RT_DELAY_MS:-10}
TRACES=${TRACES:-check rt auth floor zipf}
MISS_CONNS=${MISS_CONNS:-256}
# Threads (fraudgate) and worker processes (nginx); 0 = one per core.
FG_WORKERS=${FG_WORKERS:-0}
NGX_WORKERS=${NGX_WORKERS:-2}
FG_PORT=18180 NGX_PORT=18182 RT_FG=18181 RT_NGX=18183

. scripts/lib.sh
ensure_wrk
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is needed (Debian: nginx-light)" >&2; exit 1; }

cargo build --release --quiet --bin fraudgate --example mock_rt
tmp=$(mktemp -d)
pids=()
cleanup() {
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
[ -n "${COMPARE_DEBUG:-}" ] && trap 'cat "$tmp/ngx/error.log" >&2; cleanup' EXIT

"$REL/examples/mock_rt" --listen "127.0.0.1:$RT_FG" --delay-ms "$RT_DELAY_MS" >"$tmp/rt-fg.log" 2>&1 &
rt_fg=$!; pids+=("$rt_fg")
"$REL/examples/mock_rt" --listen "127.0.0.1:$RT_NGX" --delay-ms "$RT_DELAY_MS" >"$tmp/rt-ngx.log" 2>&1 &
rt_ngx=$!; pids+=("$rt_ngx")
FRAUDGATE_SERVER__LISTEN="127.0.0.1:$FG_PORT" \
FRAUDGATE_UPSTREAM__URL="http://127.0.0.1:$RT_FG/" \
FRAUDGATE_UPSTREAM__KEY=compare \
FRAUDGATE_LOG__LEVEL=warn \
FRAUDGATE_SERVER__WORKER_THREADS="$FG_WORKERS" \
FRAUDGATE_DECISION_LOG__ENABLED="${DECISION_LOG:-true}" \
FRAUDGATE_DECISION_LOG__PATH="$tmp/decisions" \
  "$REL/fraudgate" serve >"$tmp/fg.log" 2>&1 &
fg=$!; pids+=("$fg")

# nginx: NGX_WORKERS workers (2: one per core), a shared cache
# keyed by ip+ua, the cache lock on (its coalescing), keepalive upstream
# connections enough for the miss trace's MISS_CONNS.
# Workers may run as another user (nobody, when started as root).
chmod 755 "$tmp"
mkdir -p "$tmp/ngx" && chmod 777 "$tmp/ngx"
cat >"$tmp/nginx.conf" <<CONF
worker_processes $NGX_WORKERS;
pid $tmp/nginx.pid;
error_log $tmp/ngx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $tmp/ngx/body; proxy_temp_path $tmp/ngx/proxy;
    fastcgi_temp_path $tmp/ngx/fcgi; uwsgi_temp_path $tmp/ngx/uwsgi; scgi_temp_path $tmp/ngx/scgi;
    proxy_cache_path $tmp/ngx/cache levels=1:2 keys_zone=rt:200m max_size=4g inactive=10m use_temp_path=off;
    upstream rt { server 127.0.0.1:$RT_NGX; keepalive 1024; }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location = /healthz { return 200 "ok"; }
        location / {
            proxy_cache rt;
            proxy_cache_key "\$arg_ip|\$arg_ua";
            proxy_cache_valid 200 5m;
            proxy_cache_lock on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://rt;
        }
    }
}
CONF
"$NGINX" -c "$tmp/nginx.conf" -p "$tmp/ngx" -e "$tmp/ngx/error.log"
wait_ready "$FG_PORT"

UA='Mozilla%2F5.0%20(Windows%20NT%2010.0%3B%20Win64%3B%20x64)%20AppleWebKit%2F537.36%20(KHTML%2C%20like%20Gecko)%20Chrome%2F120.0%20Safari%2F537.36'
BROWSER_UA='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'
ONE="event_type=click&ip=203.0.113.9&ua=$UA&key=k&at=1&affiliate_id=1&offer_id=2"
curl -s "http://127.0.0.1:$FG_PORT/v1/check?$ONE" >/dev/null
curl -s "http://127.0.0.1:$NGX_PORT/?$ONE" >/dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' -A "$BROWSER_UA" "http://127.0.0.1:$FG_PORT/v1/auth?offer_id=2&affiliate_id=1")
[ "$code" = 200 ] || { echo "/v1/auth answered $code, not 200" >&2; exit 1; }


# upstream_row NAME RT_PORT URL [wrk args...]: wrk_row, sampling meanwhile
# how many connections to RT_PORT are open; the most seen goes to
# $tmp/upstream.
upstream_row() {
  local name=$1 port=$2; shift 2
  ( most=0; while :; do
      n=$(ss -Htn state established "( dport = :$port )" | wc -l)
      [ "$n" -gt "$most" ] && { most=$n; echo "$most" >"$tmp/most"; }
      sleep 0.2
    done ) &
  local sampler=$!
  wrk_row "$name" "$@"
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  echo "$name: at most $(cat "$tmp/most" 2>/dev/null || echo 0) upstream connections" >>"$tmp/upstream"
  rm -f "$tmp/most"
}

: >"$tmp/results"
: >"$tmp/upstream"
# Each door is measured next to nginx (a pair per door per round), so a
# noisy moment hits both sides of a ratio.
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  for t in $TRACES; do
    case $t in
      check)
        wrk_row "check fraudgate /v1/check" "http://127.0.0.1:$FG_PORT/v1/check?$ONE"
        wrk_row "check nginx proxy_cache" "http://127.0.0.1:$NGX_PORT/?$ONE" ;;
      rt)
        wrk_row "rt fraudgate / (RT drop-in)" "http://127.0.0.1:$FG_PORT/?$ONE"
        wrk_row "rt nginx proxy_cache" "http://127.0.0.1:$NGX_PORT/?$ONE" ;;
      auth)
        # The client is the TCP peer (no trusted proxy), the UA its
        # header, the offer and affiliate from the query.
        wrk_row "auth fraudgate /v1/auth" "http://127.0.0.1:$FG_PORT/v1/auth?offer_id=2&affiliate_id=1" -H "User-Agent: $BROWSER_UA"
        wrk_row "auth nginx proxy_cache" "http://127.0.0.1:$NGX_PORT/?$ONE" ;;
      floor)
        wrk_row "floor fraudgate /healthz" "http://127.0.0.1:$FG_PORT/healthz"
        wrk_row "floor nginx return 200" "http://127.0.0.1:$NGX_PORT/healthz" ;;
      zipf)
        TARGET_PATH=/v1/check wrk_row "zipf fraudgate /v1/check" "http://127.0.0.1:$FG_PORT" -s scripts/loadtest.lua
        TARGET_PATH=/ wrk_row "zipf nginx proxy_cache" "http://127.0.0.1:$NGX_PORT" -s scripts/loadtest.lua ;;
      miss)
        # Every request a new key: decisions/s are bound by the upstream's
        # 10 ms and the connections; how many upstream connections each
        # side opens is sampled meanwhile.
        CONNS=$MISS_CONNS TARGET_PATH=/v1/check upstream_row "miss fraudgate /v1/check" "$RT_FG" \
          "http://127.0.0.1:$FG_PORT" -s scripts/misses.lua
        CONNS=$MISS_CONNS TARGET_PATH=/ upstream_row "miss nginx proxy_cache" "$RT_NGX" \
          "http://127.0.0.1:$NGX_PORT" -s scripts/misses.lua ;;
      *) echo "unknown trace $t (check rt auth floor zipf miss)" >&2; exit 2 ;;
    esac
  done
done

fg_rss=$(ps -o rss= -p "$fg" | awk '{printf "%.0f", $1/1024}')
ngx_rss=$(ps -o rss= --ppid "$(cat "$tmp/nginx.pid")" | awk '{s+=$1} END{printf "%.0f", s/1024}')
kill -INT "$rt_fg" "$rt_ngx"; wait "$rt_fg" "$rt_ngx" 2>/dev/null || true
calls() { sed -n 's/.*calls=\([0-9]*\) distinct_ips=\([0-9]*\).*/\1 \2/p' "$1"; }
read -r fg_calls fg_distinct < <(calls "$tmp/rt-fg.log")
read -r ngx_calls ngx_distinct < <(calls "$tmp/rt-ngx.log")

median_table "$ROUNDS" "nginx" "x nginx"
echo
[ -s "$tmp/upstream" ] && cat "$tmp/upstream"
echo "upstream calls per distinct key: fraudgate $fg_calls / $fg_distinct = $(awk -v c="$fg_calls" -v d="$fg_distinct" 'BEGIN{printf "%.3f", c/d}'), nginx $ngx_calls / $ngx_distinct = $(awk -v c="$ngx_calls" -v d="$ngx_distinct" 'BEGIN{printf "%.3f", c/d}')"
echo "RSS at the end: fraudgate ${fg_rss} MiB, nginx workers ${ngx_rss} MiB"
echo "(${ROUNDS} rounds x ${DURATION} s per trace, wrk -t1 -c${CONNS} (miss: -c${MISS_CONNS}), ${KEYS} Zipf keys, RT ${RT_DELAY_MS} ms, $(nproc) cores, $(date -u +%F))"
