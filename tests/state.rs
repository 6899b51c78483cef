//! `warden run` state across restarts: the deployment's fingerprint key
//! (generated once, never printed, never mixed with another) and
//! checkpoints when the worker count changes.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::*;

fn config(dir: &Path, workers: usize) -> PathBuf {
    let path = dir.join("warden.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\nworkers = {workers}\ndata-dir = {:?}\ndecisions-file = \"\"\n",
            dir.join("state")
        ),
    )
    .unwrap();
    path
}

/// Starts, stops, and returns everything it logged.
fn run_once(config: &Path, train: bool, env: &[(&str, &str)]) -> Vec<String> {
    let svc = Service::start_env(config, train, env);
    let mut logs = svc.startup.clone();
    logs.extend(svc.stop());
    logs
}

fn restored_agents(logs: &[String]) -> Option<u64> {
    logs.iter()
        .find(|l| l.contains("Restored profiles."))
        .and_then(|l| l.split("agents=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn generated_key_is_kept_private_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 2);
    let first = run_once(&config, true, &[]);
    let key_file = dir.path().join("state/hash.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 32, "a 128-bit key in hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let second = run_once(&config, false, &[]);
    assert_eq!(restored_agents(&second), Some(27), "{second:?}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key, "kept");
    for line in first.iter().chain(&second) {
        assert!(!line.contains(key.trim()), "key printed: {line}");
    }
    assert!(
        second.iter().any(|l| l.contains("Fingerprint key loaded.")),
        "{second:?}"
    );
}

#[test]
fn checkpoints_refuse_another_fingerprint_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 2);
    let key_a = "00112233445566778899aabbccddeeff";
    let key_b = "ffeeddccbbaa99887766554433221100";
    run_once(&config, true, &[("WARDEN_HASH_KEY", key_a)]);
    let again = run_once(&config, false, &[("WARDEN_HASH_KEY", key_a)]);
    assert_eq!(restored_agents(&again), Some(27));

    for env in [Some(key_b), None] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.args(["run", "--config"]).arg(&config);
        match env {
            Some(k) => cmd.env("WARDEN_HASH_KEY", k),
            None => cmd.env_remove("WARDEN_HASH_KEY"),
        };
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "started under another key ({env:?})");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("another key") && err.contains("profiles-"),
            "{env:?}: {err}"
        );
        assert!(!err.contains(key_a) && !err.contains(key_b), "{err}");
    }
    let malformed = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "--config"])
        .arg(&config)
        .env("WARDEN_HASH_KEY", "57415244454e2121")
        .output()
        .unwrap();
    assert_eq!(
        malformed.status.code(),
        Some(64),
        "a malformed key is a config error"
    );
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("detector.hash-key"));
}

/// Four workers, then two: the agents of files 2 and 3 move into files 0
/// and 1, the extra files go, and no profile is lost or restored twice.
#[test]
fn fewer_workers_restore_every_agent_once_and_drop_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    run_once(&config(dir.path(), 4), true, &[]);
    let state = dir.path().join("state");
    assert!(state.join("profiles-3.ckpt").exists());
    let logs = run_once(&config(dir.path(), 2), false, &[]);
    assert_eq!(restored_agents(&logs), Some(27), "{logs:?}");
    assert!(!state.join("profiles-2.ckpt").exists() && !state.join("profiles-3.ckpt").exists());
    let logs = run_once(&config(dir.path(), 2), false, &[]);
    assert_eq!(restored_agents(&logs), Some(27), "{logs:?}");
}
