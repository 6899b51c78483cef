//! `warden run` as a process: HTTP ingest, decisions, dedup, metrics,
//! graceful shutdown with a checkpoint, and restart from it.

use std::process::Command;

mod common;
use common::*;

#[test]
fn serves_decides_dedups_checkpoints_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    let state = dir.path().join("state");
    let decisions = dir.path().join("decisions.jsonl");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\ndata-dir = {:?}\ndecisions-file = {:?}\ncheckpoint-interval = \"1s\"\n",
            state, decisions
        ),
    )
    .unwrap();

    let svc = Service::start(&config, true);
    assert_eq!(svc.request("GET", "/live", "").0, 200);
    assert_eq!(svc.request("GET", "/ready", "").0, 200);

    let first = test_lines(0, 3000);
    let (status, body) = svc.request("POST", "/v1/events", &first);
    assert_eq!(status, 202, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["accepted"], 3000);
    let calls = tool_calls(&first) as f64;
    svc.wait_metric("warden_decisions_total", calls);

    // A JSON array with bad items: per-item errors, the good one accepted.
    let bad = r#"[{"event_id":"x1","ts":"2026-10-27T10:00:00Z","agent_id":"mail-assist-acme","tool":"read_email"},
                 {"event_id":5,"ts":"2026-10-27T10:00:00Z","agent_id":"a","tool":"t"},
                 {"event_id":"x2","ts":"not a time","agent_id":"a","tool":"t"}]"#;
    let (status, body) = svc.request("POST", "/v1/events", bad);
    assert_eq!(status, 202);
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (reply["accepted"].as_u64(), reply["rejected"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(reply["errors"][0]["index"], 1);
    assert_eq!(reply["errors"][0]["field"], "event_id");
    assert_eq!(reply["errors"][1]["kind"], "bad_timestamp");
    assert_eq!(svc.request("POST", "/v1/events", "[1,").0, 400);

    // Redelivery: no second decision.
    svc.request("POST", "/v1/events", &first);
    svc.wait_metric("warden_duplicates_total", calls);
    assert_eq!(svc.metric("warden_decisions_total"), calls + 1.0);
    assert!(svc.metric("warden_decisions_total{flagged=\"true\"}") > 0.0);
    let logs = svc.stop();
    assert!(
        logs.iter().any(|l| l.contains("Shut down cleanly.")),
        "{logs:?}"
    );

    let decided = std::fs::read_to_string(&decisions).unwrap();
    assert_eq!(
        decided.lines().count() as f64,
        calls + 1.0,
        "one decision per call"
    );
    let flagged = decided
        .lines()
        .filter(|l| l.contains("\"flagged\":true"))
        .count();
    assert!(flagged > 0);
    assert!(state.join("profiles-0.ckpt").exists() && state.join("profiles-1.ckpt").exists());
    // The two bad items of the array, with their reasons.
    let rejects = std::fs::read_to_string(state.join("rejects.jsonl")).unwrap();
    assert_eq!(rejects.lines().count(), 2, "{rejects}");
    assert!(rejects.contains("\"kind\":\"bad_timestamp\""), "{rejects}");

    // Restart: profiles and the dedup window come back from the checkpoint.
    let svc = Service::start(&config, false);
    let (_, m) = svc.admin("GET", "/metrics", "");
    assert!(m.contains("warden_agents 27"), "{m}");
    svc.request("POST", "/v1/events", &first);
    svc.wait_metric("warden_duplicates_total", calls);
    let next = test_lines(3000, 2000);
    svc.request("POST", "/v1/events", &next);
    svc.wait_metric("warden_decisions_total", tool_calls(&next) as f64);
    svc.stop();
    let decided = std::fs::read_to_string(&decisions).unwrap();
    assert_eq!(
        decided.lines().count(),
        tool_calls(&first) + 1 + tool_calls(&next),
        "restart decided only new events"
    );
    // Restored agents are out of warm-up: no decision carries the warm-up
    // threshold.
    assert!(!decided.contains("\"threshold\":1000.0"));
}

#[test]
fn config_errors_name_the_key_and_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[server]\nlisten = \"nowhere\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listen"), "{err}");
    std::fs::write(&config, "[server]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
}
