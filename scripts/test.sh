#!/usr/bin/env bash
# Runs Warden's test suite: unit, property and integration tests, including
# `warden replay` on the committed replay-data with its detection figures,
# `warden run` as a process, and `warden run` against a real Kafka broker
# and Redis server, which this script starts on 127.0.0.1 (scripts/kafka.sh,
# scripts/redis.sh) and stops again if it started them.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

started=()
for svc in kafka redis; do
  if ! "scripts/$svc.sh" status >/dev/null 2>&1; then
    "scripts/$svc.sh" start
    started+=("$svc")
  fi
done
cleanup() {
  for svc in "${started[@]}"; do
    "scripts/$svc.sh" stop || true
  done
}
trap cleanup EXIT

cargo test --locked --no-fail-fast --features integration-tests "$@"
