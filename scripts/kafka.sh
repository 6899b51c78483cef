#!/usr/bin/env bash
# Run a real single-node Apache Kafka 4.x broker (KRaft, broker+controller in
# one JVM) on 127.0.0.1 for Warden's integration tests and CI.
#
# Usage: scripts/kafka.sh start|stop|status|delete-topics REGEX
#
#   start   Fetch the Kafka jars from Maven Central once (via
#           scripts/kafka/pom.xml), generate the test TLS material on first
#           use (scripts/test-certs.sh), format the storage on first use
#           (creating the SCRAM user), start the broker in the background
#           and wait until it answers on 127.0.0.1:$WARDEN_KAFKA_PORT. Does
#           nothing if already running with every listener.
#   stop    SIGTERM, wait up to $WARDEN_KAFKA_STOP_TIMEOUT s, then SIGKILL.
#   status  Exit 0 if the broker is running and accepting connections on
#           every listener.
#   delete-topics REGEX
#           Delete the topics whose whole name matches REGEX (the load
#           benchmark's, which would otherwise fill the disk run by run).
#
# Listeners, all on 127.0.0.1:
#   $WARDEN_KAFKA_PORT           PLAINTEXT
#   $WARDEN_KAFKA_SASL_SSL_PORT  SASL_SSL, SCRAM-SHA-512 user
#                                $WARDEN_KAFKA_SASL_USER /
#                                $WARDEN_KAFKA_SASL_PASSWORD
#   $WARDEN_KAFKA_SSL_PORT       SSL, client certificate required (mTLS)
# Both TLS listeners present a server certificate for 127.0.0.1/localhost
# signed by the test CA in $WARDEN_KAFKA_TLS_DIR: ca.crt, client.crt and
# client.key are what a client needs (see scripts/test-certs.sh).
#
# Needs: java (17+), mvn (first start only), openssl, bash, coreutils.
#
# Environment:
#   WARDEN_CACHE                  cache root (default: $HOME/.cache/warden)
#   WARDEN_KAFKA_DATA             data dir: KRaft log dirs, generated config,
#                                 pid file and kafka.log
#                                 (default: $WARDEN_CACHE/kafka-data)
#   WARDEN_KAFKA_PORT             client (PLAINTEXT) port (default: 9092)
#   WARDEN_KAFKA_CONTROLLER_PORT  KRaft controller port (default: 9093); it is
#                                 recorded in the metadata log at format time,
#                                 so changing it needs a fresh data dir
#   WARDEN_KAFKA_SASL_SSL_PORT    SASL_SSL (SCRAM-SHA-512) port (default: 9094)
#   WARDEN_KAFKA_SSL_PORT         SSL port requiring client certificates
#                                 (default: 9095)
#   WARDEN_KAFKA_SASL_USER        SCRAM user (default: warden)
#   WARDEN_KAFKA_SASL_PASSWORD    its password (default: warden-test-secret);
#                                 changing it on an existing data dir updates
#                                 the user at the next start
#   WARDEN_KAFKA_TLS_DIR          test CA, server and client certificates
#                                 (default: $WARDEN_KAFKA_DATA/tls)
#   WARDEN_KAFKA_HEAP             broker max heap (default: 512m)
#   WARDEN_KAFKA_START_TIMEOUT    seconds to wait for readiness (default: 90)
#   WARDEN_KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM (default: 30)
#   JAVA_HOME / JAVA              java to use (default: $JAVA_HOME/bin/java,
#                                 else java on PATH)
#   MVN                           maven to use (default: mvn)
#
# Jars live in $WARDEN_CACHE/kafka-<version>/libs, where <version> is the
# kafka.version property of scripts/kafka/pom.xml. Tools can be run with the
# same classpath, e.g.
#   java -cp "$WARDEN_CACHE/kafka-<version>/libs/*" \
#     org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
pom="$repo_root/scripts/kafka/pom.xml"

cache="${WARDEN_CACHE:-$HOME/.cache/warden}"
data="${WARDEN_KAFKA_DATA:-$cache/kafka-data}"
port="${WARDEN_KAFKA_PORT:-9092}"
controller_port="${WARDEN_KAFKA_CONTROLLER_PORT:-9093}"
sasl_ssl_port="${WARDEN_KAFKA_SASL_SSL_PORT:-9094}"
ssl_port="${WARDEN_KAFKA_SSL_PORT:-9095}"
sasl_user="${WARDEN_KAFKA_SASL_USER:-warden}"
sasl_password="${WARDEN_KAFKA_SASL_PASSWORD:-warden-test-secret}"
tls_dir="${WARDEN_KAFKA_TLS_DIR:-$data/tls}"
heap="${WARDEN_KAFKA_HEAP:-512m}"
start_timeout="${WARDEN_KAFKA_START_TIMEOUT:-90}"
stop_timeout="${WARDEN_KAFKA_STOP_TIMEOUT:-30}"
mvn="${MVN:-mvn}"
if [[ -n "${JAVA:-}" ]]; then
  java="$JAVA"
elif [[ -n "${JAVA_HOME:-}" ]]; then
  java="$JAVA_HOME/bin/java"
else
  java="java"
fi

host="127.0.0.1"
bootstrap="$host:$port"
log_dirs="$data/kraft-logs"
config="$data/server.properties"
log4j_config="$data/log4j2.properties"
tools_log4j_config="$data/tools-log4j2.properties"
pid_file="$data/kafka.pid"
# Which SCRAM credential the metadata log holds (sha256 of user:password), so
# a changed password or an older data dir gets the user (re)created.
scram_marker="$data/scram-user.sha256"
keystore="$tls_dir/server.p12"
# Test-only store password; the key it protects is test material too.
keystore_password="warden-test-keystore"
log_file="$data/kafka.log"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

kafka_version() {
  local v
  v="$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$pom" | head -n 1)"
  [[ -n "$v" ]] || die "cannot read kafka.version from $pom"
  printf '%s\n' "$v"
}

version="$(kafka_version)"
libs="$cache/kafka-$version/libs"
classpath="$libs/*"

# Prints the pid of our broker if it is alive, else fails.
running_pid() {
  local pid args
  [[ -f "$pid_file" ]] || return 1
  pid="$(cat "$pid_file" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid belonging to something else.
  args="$(ps -o args= -p "$pid" 2>/dev/null || true)"
  [[ "$args" == *kafka.Kafka* ]] || return 1
  printf '%s\n' "$pid"
}

port_open() {
  timeout 2 bash -c ": >/dev/tcp/$host/$1" 2>/dev/null
}

show_log_tail() {
  if [[ -f "$log_file" ]]; then
    log "last 40 lines of $log_file:"
    tail -n 40 "$log_file" >&2 || true
  fi
}

fail_with_log() {
  log "error: $*"
  show_log_tail
  exit 1
}

fetch_jars() {
  local pom_sum marker tmp
  pom_sum="$(sha256sum "$pom" | cut -d' ' -f1)"
  marker="$libs/.complete"
  if [[ -f "$marker" && "$(cat "$marker")" == "$pom_sum" ]]; then
    return 0
  fi
  command -v "$mvn" >/dev/null 2>&1 || die "'$mvn' not found; Maven is needed to fetch the Kafka jars"
  log "fetching Kafka $version jars from Maven Central into $libs (first run only)"
  mkdir -p "$(dirname "$libs")"
  tmp="$(mktemp -d "$(dirname "$libs")/libs.tmp.XXXXXX")"
  if ! "$mvn" -B -q -f "$pom" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1; then
    cat "$tmp.mvn.log" >&2
    rm -rf "$tmp" "$tmp.mvn.log"
    die "mvn failed to fetch the Kafka jars (see output above)"
  fi
  rm -f "$tmp.mvn.log"
  compgen -G "$tmp/kafka_2.13-$version.jar" >/dev/null || { rm -rf "$tmp"; die "kafka_2.13-$version.jar missing after download"; }
  printf '%s\n' "$pom_sum" >"$tmp/.complete"
  rm -rf "$libs"
  mv "$tmp" "$libs"
  log "fetched $(find "$libs" -name '*.jar' | wc -l) jars"
}

# The test CA, server and client certificates, and the broker's PKCS#12
# keystore made from them (Java reads it; the CA stays PEM).
make_tls() {
  "$script_dir/test-certs.sh" "$tls_dir"
  if [[ ! -s "$keystore" || "$keystore" -ot "$tls_dir/server.crt" ]]; then
    openssl pkcs12 -export -name broker -in "$tls_dir/server.crt" -inkey "$tls_dir/server.key" \
      -certfile "$tls_dir/ca.crt" -passout "pass:$keystore_password" -out "$keystore.tmp" ||
      die "cannot build the broker keystore $keystore"
    chmod 600 "$keystore.tmp"
    mv -f "$keystore.tmp" "$keystore"
  fi
}

write_configs() {
  mkdir -p "$data" "$log_dirs"
  (umask 077 && : >"$config")
  cat >"$config" <<EOF
# Generated by scripts/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$host:$controller_port
listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller_port,SASL_SSL://$host:$sasl_ssl_port,SSL://$host:$ssl_port
advertised.listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller_port,SASL_SSL://$host:$sasl_ssl_port,SSL://$host:$ssl_port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$keystore
ssl.keystore.password=$keystore_password
ssl.key.password=$keystore_password
ssl.truststore.type=PEM
ssl.truststore.location=$tls_dir/ca.crt
listener.name.ssl.ssl.client.auth=required
log.dirs=$log_dirs
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
EOF
  cat >"$log4j_config" <<'EOF'
# Generated by scripts/kafka.sh. Broker log: stdout, redirected to kafka.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = info
logger.state.name = state.change.logger
logger.state.level = warn
EOF
  cat >"$tools_log4j_config" <<'EOF'
# Generated by scripts/kafka.sh. CLI tools: warnings only, on stderr.
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
EOF
}

run_tool() {
  "$java" -Xmx256m -Dlog4j2.configurationFile="$tools_log4j_config" -cp "$classpath" "$@"
}

format_storage() {
  local cluster_id
  if [[ -f "$log_dirs/meta.properties" ]]; then
    return 0
  fi
  cluster_id="$(run_tool kafka.tools.StorageTool random-uuid)" || die "could not generate a cluster id"
  log "formatting $log_dirs (cluster id $cluster_id, SCRAM user $sasl_user)"
  if ! run_tool kafka.tools.StorageTool format --standalone \
    --config "$config" --cluster-id "$cluster_id" \
    --add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$sasl_password]" >>"$log_file" 2>&1; then
    fail_with_log "storage format failed"
  fi
  scram_sum >"$scram_marker"
}

scram_sum() { printf '%s:%s' "$sasl_user" "$sasl_password" | sha256sum | cut -d' ' -f1; }

# A data dir formatted by an older kafka.sh (or with another password) has
# no such SCRAM user yet: create or update it through the running broker.
ensure_scram_user() {
  if [[ -f "$scram_marker" && "$(cat "$scram_marker")" == "$(scram_sum)" ]]; then
    return 0
  fi
  log "creating SCRAM-SHA-512 user $sasl_user"
  if ! run_tool kafka.admin.ConfigCommand --bootstrap-server "$bootstrap" --alter \
    --entity-type users --entity-name "$sasl_user" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$sasl_password]" >/dev/null; then
    die "could not create the SCRAM user $sasl_user"
  fi
  scram_sum >"$scram_marker"
}

launch() {
  local args=(
    -Xmx"$heap" -Xms128m
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$log4j_config"
    -cp "$classpath"
    kafka.Kafka "$config"
  )
  rm -f "$pid_file"
  # New session so the broker outlives the caller and ignores its Ctrl-C;
  # the inner shell records its own pid and then becomes the JVM via exec.
  local launcher=()
  if command -v setsid >/dev/null 2>&1; then launcher=(setsid); fi
  # shellcheck disable=SC2016 # $$ and $@ are for the inner shell
  ${launcher[@]+"${launcher[@]}"} nohup bash -c 'echo "$$" >"$1"; shift; exec "$@"' \
    kafka-launch "$pid_file" "$java" "${args[@]}" \
    </dev/null >>"$log_file" 2>&1 &
}

wait_ready() {
  local deadline pid
  deadline=$((SECONDS + start_timeout))
  # The pid file is written by the launcher shell right before exec.
  while [[ ! -s "$pid_file" ]] && ((SECONDS < deadline)); do sleep 0.1; done
  while ((SECONDS < deadline)); do
    if ! pid="$(running_pid)"; then
      rm -f "$pid_file"
      fail_with_log "broker process exited during startup"
    fi
    if port_open "$port"; then
      # The port opens a little before the broker can serve metadata; make
      # sure it actually answers an admin request.
      if timeout 30 "$java" -Xmx128m -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$tools_log4j_config" -cp "$classpath" \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --list \
        >/dev/null 2>&1; then
        log "broker ready on $bootstrap (pid $pid, ${SECONDS}s)"
        return 0
      fi
    fi
    sleep 1
  done
  log "error: broker not ready on $bootstrap after ${start_timeout}s" \
    "(raise WARDEN_KAFKA_START_TIMEOUT if the machine is slow)"
  show_log_tail
  cmd_stop
  exit 1
}

cmd_start() {
  local pid p
  if pid="$(running_pid)"; then
    for p in "$sasl_ssl_port" "$ssl_port"; do
      port_open "$p" ||
        die "the broker in $data (pid $pid) runs without a listener on $host:$p (started by an older kafka.sh?); restart it: $0 stop && $0 start"
    done
    log "already running (pid $pid) on $bootstrap"
    return 0
  fi
  command -v "$java" >/dev/null 2>&1 || die "'$java' not found; Java 17+ is required"
  for p in "$port" "$controller_port" "$sasl_ssl_port" "$ssl_port"; do
    if port_open "$p"; then
      die "$host:$p is already in use by another process (not the broker in $data); free it or set WARDEN_KAFKA_PORT / WARDEN_KAFKA_CONTROLLER_PORT / WARDEN_KAFKA_SASL_SSL_PORT / WARDEN_KAFKA_SSL_PORT"
    fi
  done
  SECONDS=0
  fetch_jars
  make_tls
  write_configs
  # Keep the previous run's log next to the fresh one.
  if [[ -f "$log_file" ]]; then mv -f "$log_file" "$log_file.1"; fi
  format_storage
  log "starting Kafka $version on $bootstrap (controller $host:$controller_port, data $data, log $log_file)"
  launch
  wait_ready
  ensure_scram_user
  log "TLS listeners: SASL_SSL (SCRAM-SHA-512, user $sasl_user) on $host:$sasl_ssl_port," \
    "SSL with client certificates on $host:$ssl_port; CA and client certificate in $tls_dir"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$pid_file"
    log "not running"
    return 0
  fi
  log "stopping broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + stop_timeout))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after ${stop_timeout}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$pid_file"
  log "stopped"
}

cmd_status() {
  local pid p
  if ! pid="$(running_pid)"; then
    log "not running"
    return 1
  fi
  for p in "$port" "$sasl_ssl_port" "$ssl_port"; do
    if ! port_open "$p"; then
      log "process $pid is up but $host:$p is not accepting connections"
      return 1
    fi
  done
  log "running (pid $pid) on $bootstrap, SASL_SSL $host:$sasl_ssl_port, SSL $host:$ssl_port"
  return 0
}

cmd_delete_topics() {
  [[ -n "${1:-}" ]] || die "delete-topics needs a regular expression"
  running_pid >/dev/null || die "the broker is not running"
  run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
    --delete --if-exists --topic "$1" >/dev/null || die "could not delete topics matching $1"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  delete-topics) cmd_delete_topics "${2:-}" ;;
  *)
    echo "usage: $0 start|stop|status|delete-topics REGEX" >&2
    exit 2
    ;;
esac
