#!/usr/bin/env bash
# Load benchmark of `warden run` through real Kafka (not a test: it prints
# figures). Produces EVENTS events from AGENTS agents (the report split
# replicated under new ids) while Warden consumes them, decides, commits
# decisions and offsets transactionally, and checkpoints; then reports
# produce rate, end-to-end throughput, produce-to-decision latency and
# Warden's resident memory.
# Usage: scripts/bench-kafka.sh [EVENTS=1000000] [AGENTS=10000] [RATE]
# RATE (events/s) paces the producer, to measure latency below capacity.
# WARDEN_BENCH_MODE=learn|shadow|enforce (default shadow) is the policy
# mode: a fleet with no history (no --train) flags about 10% of its calls
# while it learns, so shadow and enforce measure the response path under a
# flag storm, and learn the same stream with no response.
# WARDEN_BENCH_THRESHOLD=BITS fixes every agent's threshold (calibration
# off), e.g. 8 for a storm of a badly tuned rollout with over 10% flagged.
# WARDEN_BENCH_BACKLOG=1 produces every event before Warden starts, so the
# first-to-last decision rate is Warden's own, not the producer's (compare
# modes with it: a producer on the same 2 cores caps whichever mode is
# fastest).
# WARDEN_BENCH_LOG=FILE keeps Warden's log (level warn) there.
# WARDEN_BENCH_PERF=FILE records a perf profile of Warden
# while the load runs; WARDEN_BENCH_PERF_ARGS adds perf record options,
# e.g. "-F 499 --call-graph dwarf" for call graphs.
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"
agents="${2:-10000}"
rate="${3:-}"

started_kafka=0
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start
  started_kafka=1
fi
work="$(mktemp -d)"
warden_pid=""
load_pid=""
topic=""
cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null || true
  [ -n "$warden_pid" ] && kill -TERM "$warden_pid" 2>/dev/null && wait "$warden_pid" 2>/dev/null || true
  # Each run's topics hold about 1 GB: keep the broker's disk for the next.
  [ -n "$topic" ] && scripts/kafka.sh delete-topics "$topic(\..*)?" || true
  [ "$started_kafka" = 1 ] && scripts/kafka.sh stop || true
  rm -rf "$work"
}
trap cleanup EXIT

mode="${WARDEN_BENCH_MODE:-shadow}"
# The target directory cargo really uses (a wrapper may set its own).
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c "import json,sys; print(json.load(sys.stdin)[\"target_directory\"])")/release"
cargo build --release --locked --bin warden --example kafka_load
# Run copies: engineers sharing a target directory may rebuild meanwhile.
cp "$bin/warden" "$bin/examples/kafka_load" "$work/"
bin="$work"
topic="bench-$(date +%s)"
port=18099
admin_port=18098
cat > "$work/warden.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
admin-listen = "127.0.0.1:$admin_port"
data-dir = "$work/state"
decisions-file = ""
checkpoint-interval = "30s"
queue-depth = 4096
[kafka]
enabled = true
brokers = "127.0.0.1:9092"
topic = "$topic"
group = "$topic-warden"
decisions-topic = "$topic.decisions"
commit-interval = "5s"
instance-id = "bench"
[policy]
mode = "$mode"
TOML
if [ -n "${WARDEN_BENCH_THRESHOLD:-}" ]; then
  printf 'calibrate = false\nthreshold-bits = %s\nmin-threshold-bits = %s\n' \
    "$WARDEN_BENCH_THRESHOLD" "$WARDEN_BENCH_THRESHOLD" >> "$work/warden.toml"
fi
start_warden() {
  WARDEN_LOG=warn "$bin/warden" run --config "$work/warden.toml" 2> "$work/warden.log" &
  warden_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
    sleep 0.2
  done
}
perf_pid=""
start_perf() {
  if [ -n "${WARDEN_BENCH_PERF:-}" ]; then
    # shellcheck disable=SC2086
    perf record ${WARDEN_BENCH_PERF_ARGS:-} -o "$WARDEN_BENCH_PERF" -p "$warden_pid" 2>/dev/null &
    perf_pid=$!
  fi
}
if [ -n "${WARDEN_BENCH_BACKLOG:-}" ]; then
  # shellcheck disable=SC2086
  "$bin/kafka_load" 127.0.0.1:9092 "$topic" "$topic.decisions" "$events" "$agents" $rate > "$work/load.out" &
  load_pid=$!
  for _ in $(seq 1 3600); do
    grep -q '^produced' "$work/load.out" && break
    kill -0 "$load_pid" 2>/dev/null || break
    sleep 0.5
  done
  start_warden
  start_perf
  load_rc=0
  wait "$load_pid" || load_rc=$?
  load_pid=""
  cat "$work/load.out"
  [ "$load_rc" = 0 ] || exit "$load_rc"
else
  start_warden
  start_perf
  # shellcheck disable=SC2086
  "$bin/kafka_load" 127.0.0.1:9092 "$topic" "$topic.decisions" "$events" "$agents" $rate
fi
[ -n "$perf_pid" ] && kill -INT "$perf_pid" && wait "$perf_pid" || true
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$warden_pid/status")
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$warden_pid/status")
n_agents=$(curl -s "http://127.0.0.1:$admin_port/metrics" | awk '/^warden_agents / {print $2}')
echo "warden resident memory: $((rss_kb / 1024)) MiB for $n_agents agents ($((rss_kb * 10000 / (n_agents > 0 ? n_agents : 1) / 1024)) MiB per 10,000 agents)"
curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E '^warden_(decisions_total|duplicates_total|checkpoints_total|score_seconds_(sum|count)|quarantines_opened_total|flags_rolled_up_total|revocation_attempts_total|response_queue_full_total|kafka_slow_commits_total)'
echo "warden peak resident memory: $((hwm_kb / 1024)) MiB"
echo "mode $mode; warden log lines: $(wc -l < "$work/warden.log")"
[ -n "${WARDEN_BENCH_LOG:-}" ] && cp "$work/warden.log" "$WARDEN_BENCH_LOG" || true
