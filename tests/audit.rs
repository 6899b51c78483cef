//! `warden audit verify`: intact logs pass, an altered line fails with its
//! line number and exit code 1.

use std::process::Command;

use warden::respond::audit::AuditLog;

#[test]
fn verify_command_reports_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    for i in 0..3 {
        log.append(
            "release",
            serde_json::json!({"quarantine": i, "actor": "oncall"}),
        )
        .unwrap();
    }
    drop(log);
    let ok = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["audit", "verify"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("3 records, chain intact"));

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"oncall\"", "\"mallory\"")).unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["audit", "verify"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("audit.jsonl:1:") && err.contains("altered"),
        "{err}"
    );
}
