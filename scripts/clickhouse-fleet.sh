#!/usr/bin/env bash
# A fleet's decision logs on one ClickHouse (issue #37): the
# clickhouse_fleet example (WRITERS writer instances, each inserting
# every 500 ms what RATE decisions a second queued) for SECONDS, once
# per MODE, each against a freshly started clickhouse-server (Debian's;
# data in a temporary directory, removed after the run: 20 x 1000/s for
# 300 s leaves 3 to 4 GB; random ports) run under nice -n 15, as the
# example is. Prints each run's parts samples and summary.
#
#   scripts/clickhouse-fleet.sh                        # direct, then buffer: 20 x 1000/s, 300 s
#   MODES="buffer" SECONDS_EACH=60 scripts/clickhouse-fleet.sh
# Also: WRITERS, RATE. The example is built first, into $CARGO_TARGET_DIR
# if set.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MODES=${MODES:-direct buffer}
WRITERS=${WRITERS:-20}
RATE=${RATE:-1000}
SECONDS_EACH=${SECONDS_EACH:-300}
CH=$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)

nice -n 15 cargo build -q --release --example clickhouse_fleet
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for mode in $MODES; do
  dir="$tmp/$mode"; mkdir -p "$dir"
  http=$(free_port); tcp=$(free_port)
  cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>$http</http_port>
  <tcp_port>$tcp</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
  <timezone>UTC</timezone>
</yandex>
XML
  cat >"$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
XML
  nice -n 15 "$CH" --config-file="$dir/config.xml" >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$http/ping" >/dev/null && break
    sleep 0.1
  done
  echo "=== insert = $mode"
  CLICKHOUSE_URL="http://127.0.0.1:$http" nice -n 15 "$REL/examples/clickhouse_fleet" \
    "$mode" "$WRITERS" "$RATE" "$SECONDS_EACH"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  # (A run's data is several GB: gone before the next run starts.)
  rm -rf "$dir"
done
