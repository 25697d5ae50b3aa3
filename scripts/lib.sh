# Shared by loadtest.sh and soak.sh (sourced).

# Installs wrk from Debian when missing.
ensure_wrk() {
  command -v wrk >/dev/null && return
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk
}

# Waits up to 10 s for fraudgate's /readyz on port $1.
wait_ready() {
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "fraudgate did not become ready on port $1" >&2
  return 1
}
