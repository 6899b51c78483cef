#!/usr/bin/env bash
# Run a throwaway Redis server on 127.0.0.1 for Warden's integration tests
# and CI (no persistence: nothing is saved to disk).
#
# Usage: scripts/redis.sh start|stop|status
#
#   start   Install Debian's redis-server with apt-get if redis-server is
#           missing, start it daemonized and wait until PING answers PONG.
#           Does nothing if a server we started is already answering.
#   stop    SHUTDOWN NOSAVE via redis-cli; falls back to SIGTERM/SIGKILL
#           of the pid in the pid file.
#   status  Exit 0 if the server answers PING on the port.
#
# Environment:
#   WARDEN_CACHE                cache root (default: $HOME/.cache/warden)
#   WARDEN_REDIS_PORT           port (default: 6379)
#   WARDEN_REDIS_DIR            working dir holding the pid and log files
#                               (default: $WARDEN_CACHE/redis-$WARDEN_REDIS_PORT)
#   WARDEN_REDIS_START_TIMEOUT  seconds to wait for PONG (default: 30)
#   WARDEN_REDIS_STOP_TIMEOUT   seconds to wait for exit (default: 15)
set -euo pipefail

# Needs nothing from the repo; all state lives under $WARDEN_CACHE, so the
# script works from any cwd.

cache="${WARDEN_CACHE:-$HOME/.cache/warden}"
port="${WARDEN_REDIS_PORT:-6379}"
dir="${WARDEN_REDIS_DIR:-$cache/redis-$port}"
start_timeout="${WARDEN_REDIS_START_TIMEOUT:-30}"
stop_timeout="${WARDEN_REDIS_STOP_TIMEOUT:-15}"

host="127.0.0.1"
pid_file="$dir/redis.pid"
log_file="$dir/redis.log"

log() { printf 'redis.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cli() { redis-cli -h "$host" -p "$port" "$@"; }

ping_ok() {
  command -v redis-cli >/dev/null 2>&1 || return 1
  [[ "$(timeout 3 redis-cli -h "$host" -p "$port" ping 2>/dev/null || true)" == "PONG" ]]
}

pid_alive() {
  local pid
  [[ -f "$pid_file" ]] || return 1
  pid="$(cat "$pid_file" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

show_log_tail() {
  if [[ -f "$log_file" ]]; then
    log "last 30 lines of $log_file:"
    tail -n 30 "$log_file" >&2 || true
  fi
}

ensure_installed() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "redis-server not found and apt-get is unavailable; install Redis manually"
  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "redis-server not found; need root or sudo to apt-get install it"
    sudo=(sudo)
  fi
  log "installing redis-server with apt-get"
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends redis-server >&2
  # On hosts with an init system the package starts its own service on
  # 127.0.0.1:6379; we never use it, so stop and disable it to free the port.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    log "stopping and disabling the packaged redis-server service"
    ${sudo[@]+"${sudo[@]}"} systemctl disable --now redis-server >&2 || true
  elif [[ -s /run/redis/redis-server.pid ]] && command -v service >/dev/null 2>&1; then
    log "stopping the packaged redis-server service"
    ${sudo[@]+"${sudo[@]}"} service redis-server stop >&2 || true
  fi
  command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
}

cmd_start() {
  local pid deadline
  ensure_installed
  if ping_ok; then
    if pid="$(pid_alive)"; then
      log "already running (pid $pid) on $host:$port"
      return 0
    fi
    die "$host:$port already answers PING but was not started by this script (no live pid in $pid_file); stop it or set WARDEN_REDIS_PORT"
  fi
  if timeout 2 bash -c ": >/dev/tcp/$host/$port" 2>/dev/null; then
    die "$host:$port is already in use by another process; free it or set WARDEN_REDIS_PORT"
  fi
  mkdir -p "$dir"
  rm -f "$pid_file"
  if [[ -f "$log_file" ]]; then mv -f "$log_file" "$log_file.1"; fi
  log "starting redis-server on $host:$port (dir $dir, log $log_file)"
  # --protected-mode stays on: only loopback clients are possible anyway.
  local out
  if ! out="$(redis-server --daemonize yes --bind "$host" --port "$port" \
    --save '' --appendonly no --dir "$dir" \
    --pidfile "$pid_file" --logfile "$log_file" </dev/null 2>&1)"; then
    [[ -z "$out" ]] || printf '%s\n' "$out" >&2
    show_log_tail
    die "redis-server failed to start"
  fi
  SECONDS=0
  deadline=$((SECONDS + start_timeout))
  until ping_ok; do
    if ((SECONDS >= deadline)); then
      show_log_tail
      die "no PONG from $host:$port after ${start_timeout}s"
    fi
    sleep 0.2
  done
  log "ready on $host:$port (pid $(cat "$pid_file" 2>/dev/null || echo '?'), $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'))"
}

cmd_stop() {
  local pid=""
  pid="$(pid_alive || true)"
  if ! ping_ok && [[ -z "$pid" ]]; then
    rm -f "$pid_file"
    log "not running"
    return 0
  fi
  if [[ -z "$pid" ]]; then
    die "$host:$port answers PING but no live pid in $pid_file; not stopping a server this script did not start"
  fi
  log "stopping redis-server (pid $pid)"
  cli shutdown nosave >/dev/null 2>&1 || true
  local deadline=$((SECONDS + stop_timeout))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive; sending SIGTERM"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  fi
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$pid_file"
  log "stopped"
}

cmd_status() {
  if ping_ok; then
    log "running on $host:$port$(pid="$(pid_alive)" && printf ' (pid %s)' "$pid")"
    return 0
  fi
  log "not running on $host:$port"
  return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
