# Shared by the scripts in this directory (sourced).

# Where cargo puts release binaries (CARGO_TARGET_DIR honoured).
REL="${CARGO_TARGET_DIR:-target}/release"

# Installs wrk from Debian when missing.
ensure_wrk() {
  command -v wrk >/dev/null && return
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk
}

# Waits up to 10 s for fraudgate's /readyz on port $1; if it never comes,
# shows the end of the logs in $tmp (fraudgate's, the mock RT's).
wait_ready() {
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "fraudgate did not become ready on port $1" >&2
  local f
  for f in "${tmp:-/nonexistent}"/*.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 5 "$f" >&2; }
  done
  return 1
}

# wrk_row NAME URL [wrk args...]: one wrk run (-t1 -c$CONNS -d${DURATION}s);
# appends "NAME requests/s p50 p99" to $tmp/results. COMPARE_DEBUG=1 shows
# wrk's own output.
wrk_row() {
  local name=$1 url=$2; shift 2
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url" >"$tmp/w.txt"
  [ -n "${COMPARE_DEBUG:-}" ] && cat "$tmp/w.txt" >&2
  awk -v n="$name" '/Requests\/sec/{r=$2} /^ +50%/{p50=$2} /^ +99%/{p99=$2} END{print n, r, p50, p99}' "$tmp/w.txt" >>"$tmp/results"
}

# median_table ROUNDS BASELINE COLUMN: medians over rounds of $tmp/results
# as a Markdown table; each row's ratios are to the first row named
# "<its first word> BASELINE..." (e.g. "check nginx proxy_cache"): the
# requests/s ratio headed COLUMN, then the p99 ratio.
median_table() {
  python3 - "$tmp/results" "$1" "$2" "$3" <<'PY'
import sys, statistics, collections
path, rounds, baseline, column = sys.argv[1:]
rows = collections.OrderedDict()
unit = lambda s: float(s[:-2]) / 1000 if s.endswith("us") else float(s[:-2]) if s.endswith("ms") else float(s[:-1]) * 1000
for line in open(path):
    *name, rps, p50, p99 = line.split()
    rows.setdefault(" ".join(name), []).append((float(rps), unit(p50), unit(p99)))
med = {n: tuple(statistics.median(x[i] for x in v) for i in range(3)) for n, v in rows.items()}
print(f"| trace, target | requests/s (median of {rounds}) | {column} | p50 ms | p99 ms | p99 {column} |")
print("|---|---|---|---|---|---|")
for n, (r, p50, p99) in med.items():
    prefix = n.split()[0] + " " + baseline
    b = next(v for k, v in med.items() if k.startswith(prefix))
    print(f"| {n} | {r:,.0f} | {r / b[0]:.2f} | {p50:.2f} | {p99:.2f} | {p99 / b[2]:.2f} |")
PY
}
