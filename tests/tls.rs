//! `warden run` over the TLS listeners of scripts/kafka.sh and
//! scripts/redis.sh: consuming over SASL_SSL (SCRAM-SHA-512) and over mTLS
//! with decisions end to end, a wrong SASL password and an untrusted
//! broker refused with the cause named, and Redis over TLS as the profile
//! store, refused when its certificate is not signed by the configured CA.
//!
//! Ports and certificate directories come from the scripts' own variables
//! (same defaults), so one set of exports points both at private instances.
#![cfg(feature = "integration-tests")]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;

mod common;
use common::*;

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn cache() -> String {
    env_or(
        "WARDEN_CACHE",
        &format!("{}/.cache/warden", env_or("HOME", "/root")),
    )
}

/// The test CA, server and client certificates of scripts/kafka.sh.
fn kafka_tls(file: &str) -> PathBuf {
    let data = env_or("WARDEN_KAFKA_DATA", &format!("{}/kafka-data", cache()));
    PathBuf::from(env_or("WARDEN_KAFKA_TLS_DIR", &format!("{data}/tls"))).join(file)
}

/// The same for scripts/redis.sh.
fn redis_tls(file: &str) -> PathBuf {
    let port = env_or("WARDEN_REDIS_PORT", "6379");
    let dir = env_or("WARDEN_REDIS_DIR", &format!("{}/redis-{port}", cache()));
    PathBuf::from(env_or("WARDEN_REDIS_TLS_DIR", &format!("{dir}/tls"))).join(file)
}

fn sasl_password() -> String {
    env_or("WARDEN_KAFKA_SASL_PASSWORD", "warden-test-secret")
}

/// Runs `warden run` expecting it to stop by itself; its exit status and
/// log, at most `limit` later.
fn run_to_exit(config: &Path, env: &[(&str, &str)], limit: Duration) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("warden run still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    (status.success(), log)
}

fn kafka_config(dir: &Path, topic: &str, decisions: &str, transport: &str) -> PathBuf {
    let path = dir.join("warden.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\nworkers = 2\ndata-dir = {:?}\ndecisions-file = \"\"\n\
             [kafka]\nenabled = true\ntopic = {topic:?}\ngroup = {:?}\ndecisions-topic = {decisions:?}\n\
             commit-interval = \"500ms\"\ninstance-id = \"tls-test\"\n{transport}",
            dir.join("state"),
            unique("warden-tls"),
        ),
    )
    .unwrap();
    path
}

fn sasl_ssl(password_env: &str, ca: &str) -> String {
    format!(
        "brokers = \"127.0.0.1:{}\"\nsecurity-protocol = \"sasl_ssl\"\nsasl-mechanism = \"SCRAM-SHA-512\"\n\
         sasl-username = {:?}\nsasl-password-env = {password_env:?}\nssl-ca-location = {:?}\n",
        env_or("WARDEN_KAFKA_SASL_SSL_PORT", "9094"),
        env_or("WARDEN_KAFKA_SASL_USER", "warden"),
        kafka_tls(ca),
    )
}

fn mtls() -> String {
    format!(
        "brokers = \"127.0.0.1:{}\"\nsecurity-protocol = \"ssl\"\nssl-ca-location = {:?}\n\
         ssl-certificate-location = {:?}\nssl-key-location = {:?}\n",
        env_or("WARDEN_KAFKA_SSL_PORT", "9095"),
        kafka_tls("ca.crt"),
        kafka_tls("client.crt"),
        kafka_tls("client.key"),
    )
}

/// Event ids on the decisions topic, read (committed only) over PLAINTEXT.
fn decided_ids(topic: &str, expect: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("tls-reader"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut settle: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if ids.len() >= expect && settle.is_none() {
            settle = Some(now + Duration::from_secs(2));
        }
        if now > deadline || settle.is_some_and(|s| now > s) {
            break;
        }
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let d: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            ids.push(d["event_id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// Events produced over PLAINTEXT, consumed by Warden over `transport`:
/// every call gets exactly one decision on the decisions topic.
fn decides_end_to_end(transport: &str, env: &[(&str, &str)]) -> Vec<String> {
    let topic = unique("tls-calls");
    let decisions = unique("tls-decisions");
    let lines = test_lines(0, 1500);
    produce(&topic, &lines, &[]);
    let calls = tool_calls(&lines);
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_env(
        &kafka_config(dir.path(), &topic, &decisions, transport),
        true,
        env,
    );
    svc.wait_metric_for(
        "warden_decisions_total",
        calls as f64,
        Duration::from_secs(90),
    );
    let logs = svc.stop();
    let ids = decided_ids(&decisions, calls);
    assert_eq!(
        ids.len(),
        calls,
        "one decision per call; the service logged:\n{}",
        logs.join("\n")
    );
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), calls);
    logs
}

#[test]
fn consumes_over_sasl_ssl_scram_sha_512_and_decides_end_to_end() {
    let password = sasl_password();
    let logs = decides_end_to_end(
        &sasl_ssl("WARDEN_TEST_KAFKA_PASSWORD", "ca.crt"),
        &[("WARDEN_TEST_KAFKA_PASSWORD", &password)],
    );
    assert!(
        !logs.iter().any(|l| l.contains(&password)),
        "the password was logged"
    );
}

#[test]
fn consumes_over_mutual_tls_and_decides_end_to_end() {
    decides_end_to_end(&mtls(), &[]);
}

#[test]
fn a_wrong_sasl_password_stops_start_up_naming_the_cause_not_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = "not-the-Password-4711";
    let config = kafka_config(
        dir.path(),
        &unique("tls-calls"),
        &unique("tls-decisions"),
        &sasl_ssl("WARDEN_TEST_KAFKA_PASSWORD", "ca.crt"),
    );
    let (ok, log) = run_to_exit(
        &config,
        &[("WARDEN_TEST_KAFKA_PASSWORD", wrong)],
        Duration::from_secs(60),
    );
    assert!(!ok, "started with a wrong password: {log}");
    assert!(
        log.contains("refused SASL SCRAM-SHA-512 as `")
            && log.contains("WARDEN_TEST_KAFKA_PASSWORD")
            && log.contains("Authentication failed"),
        "the cause is named: {log}"
    );
    assert!(!log.contains(wrong), "the password was printed: {log}");

    // No variable at all: a configuration error naming it (exit 64).
    let (ok, log) = run_to_exit(&config, &[], Duration::from_secs(30));
    assert!(!ok);
    assert!(
        log.contains("kafka.sasl-password-env")
            && log.contains("WARDEN_TEST_KAFKA_PASSWORD is not set"),
        "{log}"
    );
}

#[test]
fn a_broker_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = kafka_config(
        dir.path(),
        &unique("tls-calls"),
        &unique("tls-decisions"),
        &sasl_ssl("WARDEN_TEST_KAFKA_PASSWORD", "untrusted-ca.crt"),
    );
    let password = sasl_password();
    let (ok, log) = run_to_exit(
        &config,
        &[("WARDEN_TEST_KAFKA_PASSWORD", &password)],
        Duration::from_secs(60),
    );
    assert!(!ok, "trusted a broker the CA did not sign: {log}");
    assert!(
        log.contains("TLS with the Kafka brokers") && log.contains("certificate verify failed"),
        "{log}"
    );
}

#[test]
fn mutual_tls_without_a_client_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let no_cert = format!(
        "brokers = \"127.0.0.1:{}\"\nsecurity-protocol = \"ssl\"\nssl-ca-location = {:?}\n",
        env_or("WARDEN_KAFKA_SSL_PORT", "9095"),
        kafka_tls("ca.crt"),
    );
    let config = kafka_config(
        dir.path(),
        &unique("tls-calls"),
        &unique("tls-decisions"),
        &no_cert,
    );
    let (ok, log) = run_to_exit(&config, &[], Duration::from_secs(60));
    assert!(!ok, "started without the client certificate: {log}");
    assert!(
        log.contains("TLS with the Kafka brokers")
            && log.contains("kafka.ssl-certificate-location"),
        "{log}"
    );
}

fn redis_url() -> String {
    format!(
        "rediss://{}@127.0.0.1:{}",
        env_or("WARDEN_REDIS_ACL_USER", "warden"),
        env_or("WARDEN_REDIS_TLS_PORT", "6380")
    )
}

fn redis_password() -> String {
    env_or("WARDEN_REDIS_ACL_PASSWORD", "warden-test-secret")
}

fn redis_config(dir: &Path, prefix: &str, ca: &str) -> PathBuf {
    let path = dir.join("warden.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\nworkers = 2\ndata-dir = {:?}\ndecisions-file = {:?}\ncheckpoint-interval = \"1s\"\n\
             [redis]\nenabled = true\nurl = {:?}\nkey-prefix = {prefix:?}\nca-file = {:?}\n\
             client-cert-file = {:?}\nclient-key-file = {:?}\npassword-env = \"WARDEN_TEST_REDIS_PASSWORD\"\n",
            dir.join("state"),
            dir.join("decisions.jsonl"),
            redis_url(),
            redis_tls(ca),
            redis_tls("client.crt"),
            redis_tls("client.key"),
        ),
    )
    .unwrap();
    path
}

/// A TLS client of our own, trusting only the test CA.
fn redis_tls_client() -> redis::Client {
    let mut info = redis::IntoConnectionInfo::into_connection_info(redis_url().as_str()).unwrap();
    info.redis.password = Some(redis_password());
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(redis_tls("ca.crt")).unwrap()),
        },
    )
    .unwrap()
}

#[test]
fn profiles_are_stored_and_restored_through_redis_over_tls() {
    let prefix = unique("warden-tls");
    let password = redis_password();
    let env = [("WARDEN_TEST_REDIS_PASSWORD", password.as_str())];

    let a_dir = tempfile::tempdir().unwrap();
    let a = Service::start_env(&redis_config(a_dir.path(), &prefix, "ca.crt"), true, &env);
    let first = test_lines(0, 2000);
    a.request("POST", "/v1/events", &first);
    a.wait_metric("warden_decisions_total", tool_calls(&first) as f64);
    let logs = a.stop();
    assert!(!logs.iter().any(|l| l.contains(&password)));

    let mut con = redis_tls_client()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:profile:*"))
        .query(&mut con)
        .unwrap();
    assert!(keys.len() >= 10, "profiles written over TLS: {keys:?}");

    // An empty data directory: every agent comes back from Redis, past
    // its warm-up.
    let b_dir = tempfile::tempdir().unwrap();
    let b = Service::start_env(&redis_config(b_dir.path(), &prefix, "ca.crt"), false, &env);
    let next = test_lines(2000, 1000);
    b.request("POST", "/v1/events", &next);
    b.wait_metric("warden_decisions_total", tool_calls(&next) as f64);
    b.stop();
    let decided = std::fs::read_to_string(b_dir.path().join("decisions.jsonl")).unwrap();
    assert_eq!(decided.lines().count(), tool_calls(&next));
    assert!(
        !decided.contains("\"threshold\":1000.0"),
        "no agent restarted its warm-up"
    );
    let _: () = redis::cmd("DEL").arg(&keys).query(&mut con).unwrap();
}

#[test]
fn a_redis_certificate_the_ca_did_not_sign_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let password = redis_password();
    let (ok, log) = run_to_exit(
        &redis_config(dir.path(), &unique("warden-tls"), "untrusted-ca.crt"),
        &[("WARDEN_TEST_REDIS_PASSWORD", &password)],
        Duration::from_secs(30),
    );
    assert!(!ok, "trusted a server the CA did not sign: {log}");
    assert!(
        log.contains("Redis at 127.0.0.1:") && log.contains("refused Warden"),
        "{log}"
    );
    assert!(log.to_lowercase().contains("certificate"), "{log}");
    assert!(!log.contains(&password));
}
