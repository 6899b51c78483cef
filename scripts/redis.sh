#!/usr/bin/env bash
# Run a throwaway Redis server on 127.0.0.1 for Warden's integration tests
# and CI (no persistence: nothing is saved to disk), with a plain port and a
# TLS port.
#
# Usage: scripts/redis.sh start|stop|status
#
#   start   Install Debian's redis-server with apt-get if redis-server is
#           missing, generate the test TLS material on first use
#           (scripts/test-certs.sh), start it daemonized and wait until PING
#           answers PONG on both ports. Does nothing if a server we started
#           is already answering on both.
#   stop    SHUTDOWN NOSAVE via redis-cli; falls back to SIGTERM/SIGKILL
#           of the pid in the pid file.
#   status  Exit 0 if the server answers PING on both ports.
#
# The TLS port presents a certificate for 127.0.0.1/localhost signed by the
# test CA in $WARDEN_REDIS_TLS_DIR (ca.crt); a client certificate signed by
# it (client.crt, client.key) is checked when sent, not required. Besides
# the passwordless default user, the ACL user $WARDEN_REDIS_ACL_USER with
# password $WARDEN_REDIS_ACL_PASSWORD may do everything.
#
# Environment:
#   WARDEN_CACHE                cache root (default: $HOME/.cache/warden)
#   WARDEN_REDIS_PORT           plain port (default: 6379)
#   WARDEN_REDIS_TLS_PORT       TLS port (default: 6380)
#   WARDEN_REDIS_DIR            working dir holding the pid and log files
#                               (default: $WARDEN_CACHE/redis-$WARDEN_REDIS_PORT)
#   WARDEN_REDIS_TLS_DIR        test CA, server and client certificates
#                               (default: $WARDEN_REDIS_DIR/tls)
#   WARDEN_REDIS_ACL_USER       password-protected user (default: warden)
#   WARDEN_REDIS_ACL_PASSWORD   its password (default: warden-test-secret)
#   WARDEN_REDIS_START_TIMEOUT  seconds to wait for PONG (default: 30)
#   WARDEN_REDIS_STOP_TIMEOUT   seconds to wait for exit (default: 15)
set -euo pipefail

# All state lives under $WARDEN_CACHE, so the script works from any cwd;
# certificates come from scripts/test-certs.sh next to it.
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

cache="${WARDEN_CACHE:-$HOME/.cache/warden}"
port="${WARDEN_REDIS_PORT:-6379}"
tls_port="${WARDEN_REDIS_TLS_PORT:-6380}"
dir="${WARDEN_REDIS_DIR:-$cache/redis-$port}"
tls_dir="${WARDEN_REDIS_TLS_DIR:-$dir/tls}"
acl_user="${WARDEN_REDIS_ACL_USER:-warden}"
acl_password="${WARDEN_REDIS_ACL_PASSWORD:-warden-test-secret}"
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

tls_ping_ok() {
  [[ -f "$tls_dir/ca.crt" ]] || return 1
  [[ "$(timeout 3 redis-cli -h "$host" -p "$tls_port" --tls --cacert "$tls_dir/ca.crt" \
    ping 2>/dev/null || true)" == "PONG" ]]
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
      tls_ping_ok ||
        die "the server on $host:$port (pid $pid) does not answer TLS on $host:$tls_port (started by an older redis.sh?); restart it: $0 stop && $0 start"
      log "already running (pid $pid) on $host:$port, TLS $host:$tls_port"
      return 0
    fi
    die "$host:$port already answers PING but was not started by this script (no live pid in $pid_file); stop it or set WARDEN_REDIS_PORT"
  fi
  local p
  for p in "$port" "$tls_port"; do
    if timeout 2 bash -c ": >/dev/tcp/$host/$p" 2>/dev/null; then
      die "$host:$p is already in use by another process; free it or set WARDEN_REDIS_PORT / WARDEN_REDIS_TLS_PORT"
    fi
  done
  mkdir -p "$dir"
  "$script_dir/test-certs.sh" "$tls_dir"
  rm -f "$pid_file"
  if [[ -f "$log_file" ]]; then mv -f "$log_file" "$log_file.1"; fi
  log "starting redis-server on $host:$port and TLS $host:$tls_port (dir $dir, log $log_file, CA and client certificate in $tls_dir)"
  # --protected-mode stays on: only loopback clients are possible anyway.
  # The config goes through stdin ("-") so the ACL password is not in ps.
  local out
  if ! out="$(redis-server - --daemonize yes --bind "$host" --port "$port" \
    --save '' --appendonly no --dir "$dir" \
    --pidfile "$pid_file" --logfile "$log_file" \
    --tls-port "$tls_port" --tls-cert-file "$tls_dir/server.crt" \
    --tls-key-file "$tls_dir/server.key" --tls-ca-cert-file "$tls_dir/ca.crt" \
    --tls-auth-clients optional \
    <<<"user $acl_user on >$acl_password ~* &* +@all" 2>&1)"; then
    [[ -z "$out" ]] || printf '%s\n' "$out" >&2
    show_log_tail
    die "redis-server failed to start"
  fi
  SECONDS=0
  deadline=$((SECONDS + start_timeout))
  until ping_ok && tls_ping_ok; do
    if ((SECONDS >= deadline)); then
      show_log_tail
      die "no PONG from $host:$port and TLS $host:$tls_port after ${start_timeout}s"
    fi
    sleep 0.2
  done
  log "ready on $host:$port and TLS $host:$tls_port (pid $(cat "$pid_file" 2>/dev/null || echo '?'), $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'))"
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
  if ping_ok && tls_ping_ok; then
    log "running on $host:$port and TLS $host:$tls_port$(pid="$(pid_alive)" && printf ' (pid %s)' "$pid")"
    return 0
  fi
  if ping_ok; then
    log "running on $host:$port, but not answering TLS on $host:$tls_port"
    return 1
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
