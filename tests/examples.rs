//! The emitters of examples/ against a running `warden run`: the Python
//! hook (examples/python/warden_emitter.py) over HTTP ingest and Kafka,
//! and the Rust one (examples/emit.rs) over both. Every event they send is
//! accepted and counted by kind.
#![cfg(feature = "integration-tests")]

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::*;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `warden run` with HTTP ingest and a fresh Kafka topic.
fn start(dir: &std::path::Path, topic: &str) -> Service {
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\ndata-dir = {:?}\ndecisions-file = \"\"\n\
             [kafka]\nenabled = true\nbrokers = {:?}\ntopic = {:?}\ngroup = {:?}\ndecisions-topic = \"\"\n\
             commit-interval = \"500ms\"\ninstance-id = \"examples\"\n",
            dir.join("state"),
            brokers(),
            topic,
            unique("examples-group"),
        ),
    )
    .unwrap();
    Service::start(&config, false)
}

fn events(svc: &Service, kind: &str) -> f64 {
    svc.metric(&format!("warden_events_total{{kind=\"{kind}\"}}"))
}

#[test]
fn python_emitter_reaches_warden_over_http_and_kafka() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED python_emitter_reaches_warden_over_http_and_kafka: python3 is not installed"
        );
        return;
    }
    let import = Command::new("python3")
        .args(["-c", "import kafka"])
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "the Python example needs kafka-python: pip install 'kafka-python>=2.1,<3' (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("examples-py");
    let svc = start(dir.path(), &topic);
    let script = repo("examples/python/warden_emitter.py");

    // HTTP: two sessions, each a prompt, two calls and their two results.
    let stdout = assert_ran(
        &Command::new("python3")
            .arg(&script)
            .args(["--http", &format!("http://{}", svc.addr), "--sessions", "2"])
            .output()
            .unwrap(),
    );
    let reply: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (reply["accepted"].as_u64(), reply["rejected"].as_u64()),
        (Some(10), Some(0))
    );
    svc.wait_metric("warden_events_total{kind=\"tool_call\"}", 4.0);
    assert_eq!(events(&svc, "prompt"), 2.0);
    assert_eq!(events(&svc, "tool_result"), 4.0);
    svc.wait_metric("warden_decisions_total", 4.0);

    // Kafka: the same session, produced with key = agent_id.
    assert_ran(
        &Command::new("python3")
            .arg(&script)
            .args(["--kafka", &brokers(), "--topic", &topic])
            .output()
            .unwrap(),
    );
    svc.wait_metric_for(
        "warden_events_total{kind=\"tool_call\"}",
        6.0,
        std::time::Duration::from_secs(60),
    );
    svc.wait_metric("warden_events_total{kind=\"tool_result\"}", 6.0);
    assert_eq!(events(&svc, "prompt"), 3.0);
    assert_eq!(svc.metric("warden_rejected_total"), 0.0);
    svc.stop();
}

#[test]
fn rust_emitter_reaches_warden_over_http_and_kafka() {
    // Built by `cargo test` beside the test binaries.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_warden"))
        .parent()
        .unwrap()
        .join("examples/emit");
    assert!(
        bin.exists(),
        "{bin:?}: build it with cargo build --example emit"
    );
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("examples-rs");
    let svc = start(dir.path(), &topic);
    let stdout = assert_ran(
        &Command::new(&bin)
            .arg(format!("http://{}", svc.addr))
            .output()
            .unwrap(),
    );
    assert!(stdout.contains("\"accepted\":3"), "{stdout}");
    assert_ran(
        &Command::new(&bin)
            .args(["kafka", &brokers(), &topic])
            .output()
            .unwrap(),
    );
    svc.wait_metric_for(
        "warden_events_total{kind=\"tool_call\"}",
        2.0,
        std::time::Duration::from_secs(60),
    );
    svc.wait_metric("warden_events_total{kind=\"tool_result\"}", 2.0);
    assert_eq!(events(&svc, "prompt"), 2.0);
    svc.stop();
}
