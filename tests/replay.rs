//! `warden replay` end to end on the committed report split
//! (replay-data/seed-11): every test tool call gets exactly one decision in
//! the documented shape, and the detection figures stay at or above what
//! this version measured (a regression guard, not a target: see the README).

use std::process::Command;

use serde_json::Value;

fn data(set: &str, name: &str) -> String {
    format!("{}/replay-data/{set}/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `warden replay` on a committed set; returns its JSON report.
fn replay(set: &str, extra: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "replay",
            "--train",
            &data(set, "train.jsonl.gz"),
            &data(set, "test.jsonl.gz"),
        ])
        .args(["--labels", &data(set, "labels.jsonl"), "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn share(f: &Value, k: &str, of: &str) -> f64 {
    f[k].as_f64().unwrap() / f[of].as_f64().unwrap()
}

#[test]
fn replay_on_the_report_split() {
    let dir = tempfile::tempdir().unwrap();
    let decisions = dir.path().join("decisions.jsonl");
    let report = replay("seed-11", &["--decisions", decisions.to_str().unwrap()]);

    // One decision per tool call, in the documented shape, explainable.
    let lines: Vec<Value> = std::fs::read_to_string(&decisions)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, report["tool_calls"].as_u64().unwrap());
    assert_eq!(report["rejected"], 0);
    let mut ids = std::collections::HashSet::new();
    for d in &lines {
        assert!(
            ids.insert(d["event_id"].as_str().unwrap().to_owned()),
            "one decision per event"
        );
        let score = d["score"].as_f64().unwrap();
        let threshold = d["threshold"].as_f64().unwrap();
        // Scores and thresholds are printed to 0.01 bit.
        match d["flagged"].as_bool().unwrap() {
            true => assert!(score >= threshold - 0.01, "{d}"),
            false => assert!(score < threshold + 0.01, "{d}"),
        }
        let reasons = d["reasons"].as_array().unwrap();
        let sum: f64 = reasons.iter().map(|r| r["bits"].as_f64().unwrap()).sum();
        assert!(
            (sum - score).abs() < 0.05 * reasons.len() as f64 + 0.05,
            "reasons add up: {d}"
        );
        for r in reasons {
            assert!(!r["signal"].as_str().unwrap().is_empty());
            assert!(!r["detail"].as_str().unwrap().is_empty());
        }
        if d["flagged"] == true {
            assert!(!reasons.is_empty(), "a flag always says why: {d}");
        }
    }

    // Detection figures (measured 94.2% / 0 / 1 / 0.08% / 0.61% on this split).
    let attack = &report["attack"];
    let sessions = attack["sessions"].as_f64().unwrap();
    let detected = attack["detected"].as_f64().unwrap();
    assert_eq!(sessions, 240.0);
    assert!(detected / sessions >= 0.94, "{}", report);
    assert!(attack["calls_before_flag_median"].as_f64().unwrap() <= 0.0);
    assert!(attack["calls_before_flag_p90"].as_f64().unwrap() <= 1.0);
    let rate =
        |k: &str| report[k]["flagged"].as_f64().unwrap() / report[k]["sessions"].as_f64().unwrap();
    assert!(rate("benign_known") <= 0.01, "{}", report["benign_known"]);
    // Unseen task types: 1/163 since a new tool's lone novelty no longer
    // pages and delegation (an object made now for a colleague) is not
    // foreign; the target is 3%.
    assert!(rate("benign_unseen") <= 0.03, "{}", report["benign_unseen"]);
    let scenarios = report["scenarios"].as_object().unwrap();
    assert_eq!(scenarios.len(), 12, "every scenario reported");
    for s in [
        "mass-deletion",
        "never-used-tool",
        "off-hours",
        "privilege-change",
        "scraping-burst",
        "exfil-new-recipient",
    ] {
        let f = &scenarios[s];
        let share = f["detected"].as_f64().unwrap() / f["sessions"].as_f64().unwrap();
        assert!(share >= 0.9, "{s}: {f}");
    }
    // Profiles stay in the kilobytes.
    // Principal bindings (up to `detector.binding.values-per-agent`) made
    // the customer-facing profiles larger.
    assert!(report["profile_median_bytes"].as_u64().unwrap() <= 24 * 1024);
}

/// The multi-customer set (replay-data/customers-11, where the binding
/// channel is developed): attacks on another customer's booking, order or
/// card are seen through what each customer's own profile lists, and the
/// channel's contribution shows against a run with it switched off.
#[test]
fn replay_on_the_multi_customer_set() {
    let on = replay("customers-11", &[]);
    // Measured 221/280 (78.9%), known 2/501, unseen 2/55 with binding on.
    let attacked = share(&on["attack"], "detected", "sessions");
    assert!(attacked >= 0.75, "{on}");
    // Harvesting stops at its first read of another customer's profile.
    let harvest = &on["scenarios"]["harvest:records"];
    assert!(
        harvest["calls_before_flag_median"].as_f64().unwrap() <= 0.0,
        "{harvest}"
    );
    for s in [
        "foreign-object:cancel",
        "foreign-object:redirect",
        "harvest:records",
    ] {
        assert!(
            share(&on["scenarios"][s], "detected", "sessions") >= 0.85,
            "{s}: {on}"
        );
    }
    assert!(
        share(&on["benign_known"], "flagged", "sessions") <= 0.01,
        "{on}"
    );
    assert!(
        share(&on["benign_unseen"], "flagged", "sessions") <= 0.05,
        "{on}"
    );

    let dir = tempfile::tempdir().unwrap();
    let off_toml = dir.path().join("off.toml");
    std::fs::write(&off_toml, "[detector.binding]\nenabled = false\n").unwrap();
    let off = replay("customers-11", &["--config", off_toml.to_str().unwrap()]);
    // Measured 136/280 (48.6%) without the channel.
    let without = share(&off["attack"], "detected", "sessions");
    assert!(attacked - without >= 0.2, "on {attacked}, off {without}");
}
