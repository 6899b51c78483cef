//! Every configuration in config/ passes `warden validate` with the
//! environment its header names (`# Requires:`), and fails it, exit 64
//! naming the variable, without each of those. `warden validate` checks
//! what `warden run` checks before binding: revoker secrets, URLs,
//! writable state, half-configured environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn warden(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.args(args).current_dir(dir);
    // Only what the test sets: nothing from the runner's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("WARDEN_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

fn required(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# Requires:"))
        .map(|l| {
            l.split_whitespace()
                .filter(|w| w.starts_with("WARDEN_"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_example_validates_with_its_environment_and_names_what_is_missing() {
    let examples = examples();
    for name in [
        "enforce.toml",
        "kafka-redis.toml",
        "revoker-vault.toml",
        "revoker-oauth.toml",
        "revoker-webhook.toml",
        "revoker-log.toml",
    ] {
        assert!(
            examples.iter().any(|p| p.ends_with(name)),
            "config/{name} is missing"
        );
    }
    for path in examples {
        let dir = tempfile::tempdir().unwrap();
        let config = path.to_str().unwrap();
        let vars = required(&path);
        let env: Vec<(&str, &str)> = vars
            .iter()
            .map(|v| (v.as_str(), "example-secret"))
            .collect();
        let out = warden(dir.path(), &["validate", "--config", config], &env);
        assert!(out.status.success(), "{config}: {}", text(&out));
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains("[policy]"), "{config}: {printed}");
        assert!(
            !printed.contains("example-secret"),
            "{config} printed a secret"
        );
        for missing in &vars {
            let env: Vec<(&str, &str)> =
                env.iter().filter(|(k, _)| k != missing).copied().collect();
            let out = warden(dir.path(), &["validate", "--config", config], &env);
            assert_eq!(
                out.status.code(),
                Some(64),
                "{config} without {missing}: {}",
                text(&out)
            );
            assert!(
                text(&out).contains(missing.as_str()),
                "{config}: {}",
                text(&out)
            );
        }
    }
}

#[test]
fn run_and_validate_refuse_an_unset_revoker_secret_alike() {
    let dir = tempfile::tempdir().unwrap();
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/revoker-webhook.toml");
    let config = config.to_str().unwrap();
    for cmd in ["validate", "run"] {
        let out = warden(dir.path(), &[cmd, "--config", config], &[]);
        assert_eq!(out.status.code(), Some(64), "{cmd}: {}", text(&out));
        let t = text(&out);
        assert!(
            t.contains("response.revokers[0].secret-env") && t.contains("WARDEN_WEBHOOK_SECRET"),
            "{cmd}: {t}"
        );
    }
}

#[test]
fn half_configured_environment_names_the_missing_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = warden(dir.path(), &["validate"], &[("WARDEN_VAULT_TOKEN", "s.x")]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("WARDEN_VAULT_ADDR is not"),
        "{}",
        text(&out)
    );
    let out = warden(
        dir.path(),
        &["validate"],
        &[("WARDEN_VAULT_ADDR", "http://127.0.0.1:8200")],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("WARDEN_VAULT_TOKEN is not set"),
        "{}",
        text(&out)
    );
    let out = warden(
        dir.path(),
        &["validate"],
        &[
            ("WARDEN_VAULT_ADDR", "http://127.0.0.1:8200"),
            ("WARDEN_VAULT_TOKEN", "s.x"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn validate_refuses_state_it_cannot_write_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("taken"), "a file").unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(&config, "[server]\ndata-dir = \"taken/state\"\n").unwrap();
    let out = warden(
        dir.path(),
        &["validate", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("server.data-dir"), "{}", text(&out));
    // An OS error is printed once, not once per layer.
    let out = warden(dir.path(), &["validate", "--config", "nowhere.toml"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert_eq!(
        text(&out).matches("os error 2").count(),
        1,
        "{}",
        text(&out)
    );
}
