//! The principal-binding channel in `warden run` exactly as in `warden
//! replay`: the multi-customer set (replay-data/customers-11), tool calls
//! and their prompts and tool results, posted over HTTP, decided the same
//! call for call; and the alert for an agent that reached into another
//! customer's things names whose they were.

use std::process::Command;
use std::time::Duration;

mod common;
use common::contracts::*;
use common::*;

fn set(name: &str) -> String {
    format!(
        "{}/replay-data/customers-11/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// event_id → (flagged, score, binding bits) of a decisions file.
fn decided(path: &std::path::Path) -> std::collections::BTreeMap<String, (bool, f64, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let d: serde_json::Value = serde_json::from_str(l).unwrap();
            let binding = d["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["signal"] == "binding")
                .map(|r| r["bits"].as_f64().unwrap())
                .sum();
            (
                d["event_id"].as_str().unwrap().to_owned(),
                (
                    d["flagged"].as_bool().unwrap(),
                    d["score"].as_f64().unwrap(),
                    binding,
                ),
            )
        })
        .collect()
}

#[test]
fn run_scores_binding_as_replay_does_and_the_alert_says_whose() {
    let dir = tempfile::tempdir().unwrap();
    // One fingerprint key for both: a capped table may keep other values
    // under another key, and the comparison is call for call.
    let key = "[detector]\nhash-key = \"57415244454e2d62696e64696e672d31\"\n";
    let keyed = dir.path().join("key.toml");
    std::fs::write(&keyed, key).unwrap();
    let replayed = dir.path().join("replay.jsonl");
    assert_ran(
        &Command::new(env!("CARGO_BIN_EXE_warden"))
            .args([
                "replay",
                "--train",
                &set("train.jsonl.gz"),
                &set("test.jsonl.gz"),
            ])
            .arg("--config")
            .arg(&keyed)
            .arg("--decisions")
            .arg(&replayed)
            .output()
            .unwrap(),
    );

    let slack = ContractServer::slack();
    let config = dir.path().join("warden.toml");
    let ran = dir.path().join("run.jsonl");
    std::fs::write(
        &config,
        format!(
            r#"{key}[server]
listen = "127.0.0.1:0"
workers = 2
data-dir = {:?}
decisions-file = {ran:?}
[policy]
mode = "shadow"
[response]
credential-id = "handle"
alert-delay = "1s"
[response.pacing]
slack-per-second = 100
slack-burst = 100
[response.slack]
webhook-url = "{}"
"#,
            dir.path().join("state"),
            slack.url()
        ),
    )
    .unwrap();
    let svc = Service::start_trained(&config, Some(&set("train.jsonl.gz")), &[]);
    let mut lines = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(set("test.jsonl.gz")).unwrap()),
        &mut lines,
    )
    .unwrap();
    // In order, in batches: the router keeps each agent's events in order.
    let all: Vec<&str> = lines.lines().collect();
    for batch in all.chunks(1000) {
        let (status, body) = svc.request("POST", "/v1/events", &(batch.join("\n") + "\n"));
        assert_eq!(status, 202, "{body}");
    }
    let calls = tool_calls(&lines) as f64;
    svc.wait_metric("warden_decisions_total", calls);

    // The shadow alerts of agents that touched another customer's things
    // say whose: the binding reason travels into Slack.
    let alerts = slack.wait_until(Duration::from_secs(60), |rs| {
        rs.iter().any(|r| r.text().contains("while acting for"))
    });
    let text = alerts
        .iter()
        .map(|r| r.text())
        .find(|t| t.contains("while acting for"))
        .unwrap();
    assert!(text.contains("bound to"), "{text}");
    svc.stop();

    // Call for call, the service decided what replay decided.
    let (r, s) = (decided(&replayed), decided(&ran));

    assert_eq!(r.len() as f64, calls);
    assert_eq!(s.len(), r.len(), "one decision per call in both");
    let mut binding_flags = 0;
    for (id, (flagged, score, binding)) in &r {
        let (f2, s2, b2) = s
            .get(id)
            .unwrap_or_else(|| panic!("{id} not decided by run"));
        assert_eq!(flagged, f2, "{id}: replay {score} vs run {s2}");
        assert!(
            (score - s2).abs() < 0.011,
            "{id}: replay {score} vs run {s2}"
        );
        assert!(
            (binding - b2).abs() < 0.011,
            "{id}: binding {binding} vs {b2}"
        );
        binding_flags += (*flagged && *binding > 0.0) as usize;
    }
    assert!(
        binding_flags >= 100,
        "binding flagged {binding_flags} calls"
    );
}
