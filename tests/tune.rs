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
    // Each agent's own threshold meets the target on this week; the
    // recommendation is it shrunk toward the class by n / (n + n0), never
    // below min-threshold-bits, and only for agents with enough evidence.
    let n0 = report["prior_sessions"].as_f64().unwrap();
    assert_eq!(n0, 50.0, "n0 = 1 / target: {report}");
    let min = report["min_sessions"].as_u64().unwrap();
    let class = report["classes"][0]["own"]["threshold"].as_f64().unwrap();
    let mut set = 0;
    for a in agents {
        let own = &a["own"];
        let (flagged, sessions) = (
            own["benign_flagged"].as_f64().unwrap(),
            own["benign_sessions"].as_f64().unwrap(),
        );
        let at_max = own["threshold"].as_f64().unwrap() >= 60.0;
        assert!(
            sessions == 0.0 || flagged / sessions <= 0.02 || at_max,
            "{}: {own}",
            a["name"]
        );
        let n = a["evidence"].as_u64().unwrap();
        assert_eq!(n as f64, sessions, "{a}");
        if a["set"] != true {
            assert!(n < min, "{}: {n} sessions and no entry", a["name"]);
            continue;
        }
        set += 1;
        let w = n as f64 / (n as f64 + n0);
        assert!((a["weight"].as_f64().unwrap() - w).abs() < 1e-9, "{a}");
        let t = a["recommended"]["threshold"].as_f64().unwrap();
        let shrunk = w * own["threshold"].as_f64().unwrap() + (1.0 - w) * class;
        assert!(t >= 14.0, "{}: {t} below the floor", a["name"]);
        assert!(
            (t - shrunk.max(14.0)).abs() < 0.051,
            "{}: {t} vs {shrunk}",
            a["name"]
        );
    }
    assert!(set >= 4, "{report}");
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
