//! `warden run` with profiles in a real Redis server (scripts/redis.sh):
//! an instance with an empty data directory continues from the profiles
//! another instance stored, and a Redis outage is waited out with nothing
//! lost.
#![cfg(feature = "integration-tests")]

use std::process::Command;
use std::time::Duration;

mod common;
use common::*;

fn redis_url() -> String {
    std::env::var("WARDEN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn config(dir: &std::path::Path, prefix: &str) -> std::path::PathBuf {
    let path = dir.join("warden.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\ndata-dir = {:?}\ndecisions-file = {:?}\ncheckpoint-interval = \"1s\"\n\
             [redis]\nenabled = true\nurl = {:?}\nkey-prefix = {:?}\n",
            dir.join("state"),
            dir.join("decisions.jsonl"),
            redis_url(),
            prefix
        ),
    )
    .unwrap();
    path
}

fn redis_sh(arg: &str) {
    let script = format!("{}/scripts/redis.sh", env!("CARGO_MANIFEST_DIR"));
    assert!(
        Command::new(script).arg(arg).status().unwrap().success(),
        "redis.sh {arg}"
    );
}

/// The tests of this file share one Redis server, which one of them stops:
/// they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn profiles_follow_through_redis_and_an_outage_loses_nothing() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let prefix = format!("warden-test-{}", std::process::id());

    // Instance A learns the history and decides the first events.
    let a_dir = tempfile::tempdir().unwrap();
    let a = Service::start(&config(a_dir.path(), &prefix), true);
    let first = test_lines(0, 2000);
    a.request("POST", "/v1/events", &first);
    a.wait_metric("warden_decisions_total", tool_calls(&first) as f64);
    a.stop();

    // Instance B has an empty data directory: its agents come from Redis,
    // already past warm-up.
    let b_dir = tempfile::tempdir().unwrap();
    let b = Service::start(&config(b_dir.path(), &prefix), false);
    let next = test_lines(2000, 2000);
    b.request("POST", "/v1/events", &next);
    let calls = tool_calls(&next) as f64;
    b.wait_metric("warden_decisions_total", calls);
    let decided = std::fs::read_to_string(b_dir.path().join("decisions.jsonl")).unwrap();
    assert!(
        !decided.contains("\"threshold\":1000.0"),
        "no agent restarted its warm-up"
    );

    // Redis goes away while events arrive: they wait, then are decided.
    redis_sh("stop");
    let later = test_lines(4000, 1000);
    let (status, _) = b.request("POST", "/v1/events", &later);
    assert_eq!(status, 202);
    std::thread::sleep(Duration::from_secs(3));
    redis_sh("start");
    b.wait_metric("warden_decisions_total", calls + tool_calls(&later) as f64);
    let logs = b.stop();
    assert!(
        logs.iter().any(|l| l.contains("Redis is back.")),
        "the outage was met and its end logged: {logs:?}"
    );
    let decided = std::fs::read_to_string(b_dir.path().join("decisions.jsonl")).unwrap();
    assert_eq!(
        decided.lines().count(),
        tool_calls(&next) + tool_calls(&later)
    );
}

/// The quarantine registry in Redis: an instance that never saw the flag
/// answers the broker's question, and a release through it is seen by all.
#[test]
fn quarantines_are_shared_through_redis() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let prefix = format!("warden-qtest-{}", std::process::id());
    let vault = common::contracts::ContractServer::vault("root");
    let enforce = |dir: &std::path::Path, instance: &str| {
        let path = config(dir, &prefix);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "[kafka]\ninstance-id = \"{instance}\"\n[policy]\nmode = \"enforce\"\n\
             [[response.revokers]]\nkind = \"vault\"\naddr = \"{}\"\n",
            vault.base_url()
        ));
        std::fs::write(&path, text).unwrap();
        path
    };
    let env = [
        ("WARDEN_VAULT_TOKEN", "root"),
        ("WARDEN_ADMIN_TOKEN", "adm"),
        ("WARDEN_INGEST_TOKEN", "ing"),
    ];
    let a_dir = tempfile::tempdir().unwrap();
    let a = Service::start_env(&enforce(a_dir.path(), "a"), true, &env);
    a.request("POST", "/v1/events", &test_lines(0, 1500));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let q = loop {
        let (_, body) = a.admin("GET", "/v1/quarantines?state=revoked", "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if !v["quarantines"][0].is_null() {
            break v["quarantines"][0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "nothing revoked: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let agent = q["agent_id"].as_str().unwrap().to_owned();
    let id = q["id"].as_str().unwrap().to_owned();

    let b_dir = tempfile::tempdir().unwrap();
    let b = Service::start_env(&enforce(b_dir.path(), "b"), false, &env);
    let ask = |svc: &Service| -> serde_json::Value {
        let (status, body) = svc.admin("GET", &format!("/v1/quarantines/agents/{agent}"), "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let seen = ask(&b);
    assert_eq!(seen["quarantined"], true, "{seen}");
    // Every instance answers with the incident and each of its
    // credentials, as recorded by A.
    let entry = seen["quarantines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(entry["credentials"], q["credentials"], "{seen}");
    let listed = entry["credentials"].as_array().unwrap();
    assert!(!listed.is_empty(), "{seen}");
    assert!(listed.iter().all(|c| c["state"] == "revoked"), "{seen}");
    let (status, body) = b.admin("GET", &format!("/v1/quarantines/{id}"), "");
    assert_eq!(status, 200, "{body}");

    // Released through B; A (and anyone asking) sees it released.
    let (status, body) = b.admin_with(
        "POST",
        &format!("/v1/quarantines/{id}/release"),
        &[("Authorization", "Bearer adm")],
        r#"{"actor":"oncall","reason":"checked with the owner"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let after = ask(&a);
    assert!(
        !after["quarantines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id.as_str()),
        "{after}"
    );
    b.stop();
    a.stop();
}

/// `has_profiles` decides whether `--train` runs: a store that holds
/// profiles must say so even when the first SCAN page matches nothing (a
/// large keyspace), else a restart would learn the training files twice.
#[test]
fn has_profiles_looks_past_the_first_scan_page() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("warden-scan-{}", std::process::id());
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let mut pipe = redis::pipe();
    for i in 0..20_000 {
        pipe.cmd("SET")
            .arg(format!("{prefix}:other:{i}"))
            .arg(1)
            .ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();

    let mut store = warden::state::redis::RedisStore::open(&warden::config::RedisConfig {
        url: redis_url(),
        key_prefix: prefix.clone(),
        ..Default::default()
    })
    .unwrap();
    assert!(!store.has_profiles(), "no profile stored yet");
    redis::cmd("SET")
        .arg(format!("{prefix}:profile:agent-x"))
        .arg(1)
        .query::<()>(&mut conn)
        .unwrap();
    assert!(store.has_profiles(), "the one profile key is found");

    let mut pipe = redis::pipe();
    for i in 0..20_000 {
        pipe.cmd("UNLINK")
            .arg(format!("{prefix}:other:{i}"))
            .ignore();
    }
    pipe.cmd("UNLINK")
        .arg(format!("{prefix}:profile:agent-x"))
        .ignore();
    pipe.query::<()>(&mut conn).unwrap();
}

/// `warden train --from-redis` retrains peer groups from the profiles a
/// running deployment stores, under the key it shares there; a prefix
/// nobody wrote is an error that names it.
#[test]
fn warden_train_retrains_peer_groups_from_the_profiles_in_redis() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let prefix = format!("warden-train-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &prefix);
    Service::start(&cfg, true).stop();

    let out = dir.path().join("models");
    let train = |cfg: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["train", "--from-redis", "--config"])
            .arg(cfg)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let stdout = assert_ran(&train(&cfg));
    assert!(stdout.contains("from 27 agents"), "{stdout}");
    let text = assert_ran(
        &Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["models", "inspect"])
            .arg(out.join("fleet.json"))
            .output()
            .unwrap(),
    );
    assert!(
        text.contains(&format!("redis:{prefix}:profile:*")),
        "{text}"
    );

    let nobody = tempfile::tempdir().unwrap();
    let o = train(&config(nobody.path(), &format!("{prefix}-nobody")));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains(&format!("{prefix}-nobody"))
            && stderr.contains("no Warden has stored profiles"),
        "{stderr}"
    );
}
