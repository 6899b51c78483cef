//! `warden tune` end to end on the report split (replay-data/seed-11): a
//! table per agent and per class, a recommendation that meets the target
//! on the data it was tuned on, a snippet `warden validate` accepts, and
//! labels from the admin API's feedback export taken as labels too.

use std::process::Command;

use serde_json::Value;

fn data(name: &str) -> String {
    format!("{}/replay-data/seed-11/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn tune_recommends_thresholds_within_the_target_and_writes_a_valid_snippet() {
    let dir = tempfile::tempdir().unwrap();
    let snippet = dir.path().join("tuned.toml");
    // A feedback export: one more call labelled an attack.
    let feedback = dir.path().join("feedback.jsonl");
    std::fs::write(
        &feedback,
        "{\"event_id\":\"no-such-event\",\"attack\":true,\"scenario\":\"feedback:true_positive\"}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "tune",
            "--train",
            &data("train.jsonl.gz"),
            &data("test.jsonl.gz"),
        ])
        .args(["--labels", &data("labels.jsonl"), "--labels"])
        .arg(&feedback)
        .args(["--target-fp", "0.02", "--json", "--out"])
        .arg(&snippet)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("attacked sessions flagged"), "{stdout}");
    assert!(stdout.contains("incidents/agent-week"), "{stdout}");
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let agents = report["agents"].as_array().unwrap();
    assert!(agents.len() >= 4, "{report}");
    assert!(!report["classes"].as_array().unwrap().is_empty());
    for a in agents {
        let r = &a["recommended"];
        let (flagged, sessions) = (
            r["benign_flagged"].as_f64().unwrap(),
            r["benign_sessions"].as_f64().unwrap(),
        );
        let at_max = r["threshold"].as_f64().unwrap() >= 60.0;
        assert!(
            sessions == 0.0 || flagged / sessions <= 0.02 || at_max,
            "{}: {r}",
            a["name"]
        );
    }
    // Replayed with the recommendation: the same sessions judged (the
    // figures are the replay's own, which the sweep approximates).
    let (before, after) = (&report["before"], &report["after"]);
    for k in ["attacked_sessions", "benign_sessions"] {
        assert_eq!(before[k], after[k], "{k}: {before} {after}");
    }
    assert!(after["incidents_per_agent_week"].as_f64().unwrap() > 0.0);

    // The snippet is a configuration `warden validate` accepts.
    let text = std::fs::read_to_string(&snippet).unwrap();
    assert!(text.contains("[policy.agents."), "{text}");
    let check = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["validate", "--config"])
        .arg(&snippet)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // A bad target is refused with its flag named.
    let bad = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "tune",
            &data("test.jsonl.gz"),
            "--labels",
            &data("labels.jsonl"),
        ])
        .args(["--target-fp", "1.5"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--target-fp"));
}
