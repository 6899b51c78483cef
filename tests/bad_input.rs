//! Bad input through `warden replay`: every kind of fault is rejected with a
//! clear error naming file, line and field, counted, written to the rejects
//! file, and the run completes with every valid event decided.

use std::io::Write;
use std::process::Command;

fn call(id: &str, minute: u32) -> String {
    format!(
        r#"{{"event_id":"{id}","ts":"2026-11-24T09:{minute:02}:00Z","agent_id":"a","session_id":"s","tool":"read_file","resource_type":"file","resource_id":"/srv/x","action":"read"}}"#
    )
}

#[test]
fn bad_lines_are_rejected_counted_and_the_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("test.jsonl");
    let mut f = std::fs::File::create(&test).unwrap();
    let good = call("ok-1", 0);
    let mut lines: Vec<Vec<u8>> = vec![
        call("ok-1", 0).into_bytes(),
        good.as_bytes()[..good.len() / 2].to_vec(), // truncated JSON
        br#"{"ts":"2026-11-24T09:00:00Z","agent_id":"a","tool":"t"}"#.to_vec(), // no event_id
        br#"{"event_id":7,"ts":"2026-11-24T09:00:00Z","agent_id":"a","tool":"t"}"#.to_vec(), // wrong type
        br#"{"event_id":"x","ts":"24/11/2026","agent_id":"a","tool":"t"}"#.to_vec(), // bad time
        format!(r#"{{"event_id":"big","ts":"2026-11-24T09:00:00Z","agent_id":"a","tool":"t","args":{{"blob":"{}"}}}}"#, "x".repeat(200_000)).into_bytes(),
        b"{\"event_id\":\"\xff\xfe\",\"ts\":\"2026-11-24T09:00:00Z\",\"agent_id\":\"a\",\"tool\":\"t\"}".to_vec(), // not UTF-8
        br#"[1,2,3]"#.to_vec(),
        br#"{"event_id":"x","ts":"2026-11-24T09:00:00Z","agent_id":"a","tool":"t","action":"nuke"}"#.to_vec(),
        call("ok-2", 1).into_bytes(),
        br#"{"kind":"prompt","event_id":"p","ts":"2026-11-24T09:02:00Z","agent_id":"a","session_id":"s","text":"hi"}"#.to_vec(),
        call("ok-3", 3).into_bytes(),
    ];
    lines.push(Vec::new()); // blank line: skipped, not an error
    for l in &lines {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
    drop(f);
    let decisions = dir.path().join("decisions.jsonl");
    let rejects = dir.path().join("rejects.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("replay")
        .arg(&test)
        .arg("--decisions")
        .arg(&decisions)
        .arg("--rejects")
        .arg(&rejects)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    // Every valid tool call was decided, in order.
    let decided: Vec<serde_json::Value> = std::fs::read_to_string(&decisions)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = decided
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ok-1", "ok-2", "ok-3"]);
    for d in &decided {
        for key in ["agent_id", "score", "threshold", "flagged", "reasons"] {
            assert!(d.get(key).is_some(), "decision lacks {key}: {d}");
        }
    }

    // Every bad line is in the rejects file with its line number and reason.
    let rejected: Vec<serde_json::Value> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(u64, &str, Option<&str>)> = rejected
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["kind"].as_str().unwrap(),
                r["field"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (2, "syntax", None),
            (3, "missing_field", Some("event_id")),
            (4, "wrong_type", Some("event_id")),
            (5, "bad_timestamp", Some("ts")),
            (6, "too_large", None),
            (7, "not_utf8", None),
            (8, "not_object", None),
            (9, "bad_value", Some("action")),
        ]
    );
    for r in &rejected {
        assert!(r["source"].as_str().unwrap().ends_with("test.jsonl"));
        assert!(!r["error"].as_str().unwrap().is_empty());
        assert!(r["sample"].as_str().unwrap().len() <= 1024 + 3);
    }
    // The report counts them per kind, and the log names file and line once
    // per kind.
    assert!(stdout.contains("rejected 8"), "{stdout}");
    assert!(stdout.contains("missing_field: 1"), "{stdout}");
    assert!(
        stderr.contains("test.jsonl") && stderr.contains("line=3"),
        "{stderr}"
    );
}
