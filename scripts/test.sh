#!/usr/bin/env bash
# Runs Warden's test suite: unit, property and integration tests, including
# `warden replay` on the committed replay-data with its detection figures,
# `warden run` as a process, and `warden run` against a real Kafka broker,
# which this script starts on 127.0.0.1:9092 (scripts/kafka.sh) and stops.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

started_kafka=0
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start
  started_kafka=1
fi
cleanup() {
  if [ "$started_kafka" = 1 ]; then
    scripts/kafka.sh stop || true
  fi
}
trap cleanup EXIT

cargo test --locked --features kafka-tests "$@"
