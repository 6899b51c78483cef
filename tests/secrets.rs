//! No secret leaves Warden. Random secrets are planted as every event's
//! `credential_id` (the bearer token itself, as with Vault `method =
//! "token"` and RFC 7009) and as every configured secret (Slack webhook
//! URL, PagerDuty routing key, Vault token, OAuth client secret, webhook
//! secret, admin and read tokens, hash key). `warden run` then handles a
//! stream with attacks, in enforce and in shadow mode, while Slack first
//! hangs (its timeouts are errors that name the URL) and the OAuth server
//! throttles. No planted secret may appear in what the Slack and PagerDuty
//! servers received, Warden's stdout and stderr, `/metrics`, any answer of
//! the quarantine API, the audit log, or any file under the data
//! directory; the revokers alone receive the real token, and alerts show
//! its fingerprint. The Redis registry's revocation queue is checked on a
//! real Redis server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::contracts::*;
use common::*;

/// 32 random hex digits (std's per-instance random hash keys).
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..2u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(i);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// The configuration secrets of one run.
struct Planted {
    vault_token: String,
    oauth_secret: String,
    hook_secret: String,
    slack_path: String,
    pd_key: String,
    admin_token: String,
    read_token: String,
    ingest_token: String,
    hash_key: String,
}

impl Planted {
    fn new() -> Self {
        Self {
            vault_token: format!("hvs.root-{}", random_hex()),
            oauth_secret: format!("oauth-{}", random_hex()),
            hook_secret: format!("hook-{}", random_hex()),
            slack_path: format!("/services/T0SECRET/B0SECRET/{}", random_hex()),
            pd_key: random_hex(),
            admin_token: format!("admin-{}", random_hex()),
            read_token: format!("read-{}", random_hex()),
            ingest_token: format!("ingest-{}", random_hex()),
            hash_key: random_hex(),
        }
    }

    fn env(&self, slack: &ContractServer) -> Vec<(String, String)> {
        [
            ("WARDEN_VAULT_TOKEN", self.vault_token.clone()),
            ("WARDEN_OAUTH_CLIENT_SECRET", self.oauth_secret.clone()),
            ("WARDEN_WEBHOOK_SECRET", self.hook_secret.clone()),
            ("WARDEN_SLACK_WEBHOOK_URL", slack.url()),
            ("WARDEN_PAGERDUTY_ROUTING_KEY", self.pd_key.clone()),
            ("WARDEN_ADMIN_TOKEN", self.admin_token.clone()),
            ("WARDEN_READ_TOKEN", self.read_token.clone()),
            ("WARDEN_INGEST_TOKEN", self.ingest_token.clone()),
            ("WARDEN_HASH_KEY", self.hash_key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Every configuration secret by name. The Slack URL's secret is its
    /// path (the part after the host).
    fn named(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("vault token", &self.vault_token),
            ("oauth client secret", &self.oauth_secret),
            ("webhook secret", &self.hook_secret),
            ("slack webhook path", &self.slack_path[1..]),
            ("pagerduty routing key", &self.pd_key),
            ("admin token", &self.admin_token),
            ("read token", &self.read_token),
            ("ingest token", &self.ingest_token),
            ("hash key", &self.hash_key),
        ]
    }
}

/// The fingerprints alerts show for `tokens`, under the run's key, from
/// `warden fingerprint-credential` (tokens on stdin, one per line).
fn fingerprints(config: &Path, env: &[(String, String)], tokens: &[String]) -> Vec<String> {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("fingerprint-credential")
        .arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for t in tokens {
        writeln!(stdin, "{t}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let fps: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(fps.len(), tokens.len());
    fps
}

/// The report split's first calls, each original credential replaced by a
/// random token per session (a broker minting one per session, so an
/// incident holds several); plus one malformed event carrying a token
/// (rejected, so it lands in rejects.jsonl). Returns the stream and every
/// planted token.
fn planted_stream() -> (String, Vec<String>) {
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    let mut out = String::new();
    for line in test_lines(0, 3000).lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(orig) = v["credential_id"].as_str() {
            let session = v["session_id"].as_str().unwrap_or_default();
            let t = tokens
                .entry(format!("{orig}\n{session}"))
                .or_insert_with(|| format!("hvs.CAES{}", random_hex()))
                .clone();
            v["credential_id"] = t.into();
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    let bad = format!("hvs.CAESbad{}", random_hex());
    out.push_str(&format!(
        r#"{{"event_id":"bad-1","agent_id":"a","ts":"not a time","tool":"t","credential_id":"{bad}"}}"#
    ));
    out.push('\n');
    let mut all: Vec<String> = tokens.into_values().collect();
    assert!(all.len() >= 5, "the stream carries credentials");
    all.push(bad);
    (out, all)
}

fn write_config(dir: &Path, mode: &str, b: &Brokers) -> PathBuf {
    let config = dir.join("warden.toml");
    let state = dir.join("state");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin-listen = "127.0.0.1:0"
workers = 2
data-dir = {state:?}
decisions-file = {decisions:?}
[policy]
mode = "{mode}"
[response]
public-url = "http://warden.test:8080"
alert-delay = "1s"
update-interval = "2s"
request-timeout = "1s"
initial-backoff = "200ms"
max-backoff = "2s"
give-up-after = "60s"
# Fast: this test is about secrets; tests/respond.rs covers pacing.
[response.pacing]
slack-per-second = 100
slack-burst = 100
pagerduty-per-minute = 6000
pagerduty-burst = 100
[response.pagerduty]
events-url = "{pd}"
[[response.revokers]]
kind = "vault"
addr = "{vault}"
method = "token"
[[response.revokers]]
kind = "oauth"
endpoint = "{oauth}"
client-id = "warden"
client-auth = "client_secret_post"
[[response.revokers]]
kind = "webhook"
url = "{hook}"
"#,
            decisions = state.join("decisions.jsonl"),
            pd = b.pd.url(),
            vault = b.vault.base_url(),
            oauth = b.oauth.url(),
            hook = b.hook.url(),
        ),
    )
    .unwrap();
    config
}

struct Brokers {
    vault: ContractServer,
    oauth: ContractServer,
    hook: ContractServer,
    slack: ContractServer,
    pd: ContractServer,
}

impl Brokers {
    fn start(p: &Planted) -> Self {
        Self {
            vault: ContractServer::vault(&p.vault_token),
            oauth: ContractServer::oauth("warden", &p.oauth_secret),
            hook: ContractServer::webhook(&p.hook_secret),
            slack: ContractServer::slack_at(&p.slack_path),
            pd: ContractServer::pagerduty(),
        }
    }
}

/// `warden run` (trained) with stdout and stderr kept whole in files.
fn start(config: &Path, env: &[(String, String)], out: &Path, err: &Path) -> Service {
    let child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--train")
        .arg(data("train.jsonl.gz"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::from(std::fs::File::create(out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(err).unwrap()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (addr, admin_addr) = loop {
        let log = std::fs::read_to_string(err).unwrap_or_default();
        if log.contains("Ready.") {
            let field = |name| log.lines().find_map(|l| log_field(l, name)).unwrap();
            break (field("addr"), field("admin_addr"));
        }
        assert!(Instant::now() < deadline, "not ready within 120 s: {log}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (_, log) = std::sync::mpsc::channel();
    let token = |var: &str| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone());
    Service {
        child,
        addr,
        admin_addr,
        log,
        startup: Vec::new(),
        read_token: token("WARDEN_READ_TOKEN"),
        ingest_token: token("WARDEN_INGEST_TOKEN"),
    }
}

/// Everything Warden let out during a run, by where it was found.
#[derive(Default)]
struct Outputs(Vec<(String, Vec<u8>)>);

impl Outputs {
    fn add(&mut self, at: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.0.push((at.into(), bytes.into()));
    }

    /// Every file under `dir`, recursively.
    fn add_dir(&mut self, dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                self.add_dir(&path);
            } else {
                self.add(path.display().to_string(), std::fs::read(&path).unwrap());
            }
        }
    }

    /// Panics naming the first place `secret` was found.
    fn assert_absent(&self, name: &str, secret: &str, except: &[&str]) {
        for (at, bytes) in &self.0 {
            if except.iter().any(|e| at.starts_with(e)) {
                continue;
            }
            let found = bytes
                .windows(secret.len())
                .position(|w| w == secret.as_bytes());
            if let Some(i) = found {
                let from = i.saturating_sub(120);
                let to = (i + secret.len() + 120).min(bytes.len());
                panic!(
                    "planted {name} found in {at}: …{}…",
                    String::from_utf8_lossy(&bytes[from..to])
                );
            }
        }
    }
}

fn get(svc: &Service, path: &str, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    svc.admin_with("GET", path, &[("Authorization", auth.as_str())], "")
}

/// Waits (bounded) until the quarantines stop changing and none is pending.
fn settled(svc: &Service, token: &str, limit: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + limit;
    let mut last = usize::MAX;
    loop {
        let (status, body) = get(svc, "/v1/quarantines?limit=5000", token);
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let qs = v["quarantines"].as_array().unwrap().clone();
        let pending = qs.iter().filter(|q| q["state"] == "pending").count();
        if !qs.is_empty() && pending == 0 && qs.len() == last {
            return qs;
        }
        assert!(Instant::now() < deadline, "never settled: {qs:?}");
        last = qs.len();
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs Warden in `mode` on the planted stream and checks every output.
fn no_planted_secret_leaves(mode: &str) {
    let p = Planted::new();
    let b = Brokers::start(&p);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), mode, &b);
    let env = p.env(&b.slack);
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    // Slack hangs at first: its timeouts are errors that would name the
    // webhook URL. The OAuth server throttles: errors quote its answer.
    b.slack.delay(Duration::from_secs(5));
    b.oauth.fail_next(2, 503, Some(1));
    let svc = start(&config, &env, &out_path, &err_path);
    let mut outputs = Outputs::default();

    let (stream, tokens) = planted_stream();
    let (status, answer) = svc.request("POST", "/v1/events", &stream);
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("\"rejected\":1"), "{answer}");
    outputs.add("POST /v1/events answer", answer);
    svc.wait_metric(
        "warden_alert_attempts_total{destination=\"slack\",outcome=\"retry\"}",
        1.0,
    );
    b.slack.delay(Duration::ZERO);

    let qs = settled(&svc, &p.read_token, Duration::from_secs(90));
    let want_state = if mode == "enforce" {
        "revoked"
    } else {
        "shadow"
    };
    assert!(qs.iter().all(|q| q["state"] == want_state), "{qs:?}");
    // Each quarantine shows its credential's fingerprint, never a handle.
    let fp_of: BTreeMap<String, &str> = fingerprints(&config, &env, &tokens)
        .into_iter()
        .zip(tokens.iter().map(String::as_str))
        .collect();
    assert_eq!(
        fp_of.len(),
        tokens.len(),
        "distinct tokens, distinct fingerprints"
    );
    // The first credential of each, which every alert shows.
    let shown: BTreeSet<String> = qs
        .iter()
        .map(|q| {
            assert!(q["credential"]["handle"].is_null(), "{q}");
            q["credential"]["fingerprint"].as_str().unwrap().to_owned()
        })
        .collect();
    // Every credential rolled into them, each listed by fingerprint.
    let listed: BTreeSet<String> = qs
        .iter()
        .flat_map(|q| q["credentials"].as_array().unwrap().iter())
        .map(|c| {
            assert!(c["handle"].is_null(), "{c}");
            c["fingerprint"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(listed.is_superset(&shown));
    assert!(
        qs.iter()
            .any(|q| q["credentials"].as_array().unwrap().len() >= 2),
        "an incident holds several sessions' credentials: {qs:?}"
    );
    for fp in &listed {
        assert!(
            fp_of.contains_key(fp),
            "{fp} is no planted token's fingerprint"
        );
    }

    if mode == "enforce" {
        // The revokers, and they alone, got the real tokens: exactly those
        // of the quarantined credentials, every one of each incident.
        let want: BTreeSet<&str> = listed.iter().map(|fp| fp_of[fp]).collect();
        for (name, s) in [
            ("vault", &b.vault),
            ("oauth", &b.oauth),
            ("webhook", &b.hook),
        ] {
            let got: BTreeSet<String> = s.revoked().into_iter().collect();
            let got: BTreeSet<&str> = got.iter().map(String::as_str).collect();
            assert_eq!(got, want, "{name} revoked the quarantined tokens");
            let bad: Vec<_> = s.requests().into_iter().filter(|r| !r.ok()).collect();
            assert!(
                bad.iter().all(|r| r.status == 503),
                "{name} contract violations: {bad:?}"
            );
        }
    } else {
        for s in [&b.vault, &b.oauth, &b.hook] {
            assert!(s.requests().is_empty(), "shadow mode revokes nothing");
        }
    }

    // Alerts show the fingerprint: on Slack (after its outage) and in
    // PagerDuty's custom details.
    b.slack.wait_until(Duration::from_secs(30), |rs| {
        shown
            .iter()
            .all(|fp| rs.iter().any(|r| r.ok() && r.text().contains(fp.as_str())))
    });
    b.pd.wait_until(Duration::from_secs(30), |rs| {
        shown.iter().all(|fp| {
            rs.iter().any(|r| {
                r.ok()
                    && r.json()["payload"]["custom_details"]
                        .to_string()
                        .contains(fp.as_str())
            })
        })
    });

    // Every answer of the quarantine API, and the metrics.
    let mut agents = BTreeSet::new();
    for q in &qs {
        let id = q["id"].as_str().unwrap();
        let (status, body) = get(&svc, &format!("/v1/quarantines/{id}"), &p.read_token);
        assert_eq!(status, 200, "{body}");
        outputs.add(format!("GET /v1/quarantines/{id}"), body);
        agents.insert(q["agent_id"].as_str().unwrap().to_owned());
    }
    for agent in &agents {
        let path = format!("/v1/quarantines/agents/{agent}");
        let (status, body) = get(&svc, &path, &p.read_token);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("cred:") || mode == "shadow", "{body}");
        outputs.add(format!("GET {path}"), body);
    }
    let (_, list) = get(&svc, "/v1/quarantines?limit=5000", &p.read_token);
    outputs.add("GET /v1/quarantines", list);
    let (_, metrics) = svc.admin("GET", "/metrics", "");
    outputs.add("GET /metrics", metrics);

    // A release as false positive: its raw events are learned, its reply
    // is an API answer, and PagerDuty resolves.
    let id = qs[0]["id"].as_str().unwrap().to_owned();
    let admin = format!("Bearer {}", p.admin_token);
    let (status, reply) = svc.admin_with(
        "POST",
        &format!("/v1/quarantines/{id}/release"),
        &[("Authorization", admin.as_str())],
        r#"{"actor":"oncall","reason":"checked","false_positive":true}"#,
    );
    assert_eq!(status, 200, "{reply}");
    outputs.add("POST release answer", reply);
    b.pd.wait_until(Duration::from_secs(20), |rs| {
        rs.iter()
            .any(|r| r.json()["event_action"] == "resolve" && r.json()["dedup_key"] == id.as_str())
    });
    svc.stop();

    // Nothing is left in the revocation queue once every revocation has
    // its outcome, so the data directory is scanned whole.
    let state = dir.path().join("state");
    let queued = warden::respond::registry::Registry::file(&state)
        .unwrap()
        .queued_revocations()
        .unwrap();
    assert!(
        queued.is_empty(),
        "revocation queue not emptied: {queued:?}"
    );
    outputs.add_dir(&state);
    let rejects = std::fs::read_to_string(state.join("rejects.jsonl")).unwrap();
    assert!(
        rejects.contains("bad-1"),
        "the malformed event was kept: {rejects}"
    );
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    assert!(audit.contains("cred:"), "the audit log names credentials");
    // Slack's timeouts were audited: the check below covers reqwest's
    // errors, which name the URL unless it is stripped.
    assert!(audit.contains("timed out"), "Slack's outage was hit");
    outputs.add("stdout", std::fs::read(&out_path).unwrap());
    outputs.add("stderr", std::fs::read(&err_path).unwrap());

    // `warden validate` prints the configuration with the same secrets.
    let validate = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("validate")
        .arg("--config")
        .arg(&config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(validate.status.success());
    outputs.add("validate stdout", validate.stdout);
    outputs.add("validate stderr", validate.stderr);

    for s in [&b.slack, &b.pd] {
        for r in s.requests() {
            let at = format!("{:?} request {} {}", s.kind(), r.method, r.path);
            let headers = format!("{:?}", r.headers);
            outputs.add(format!("{at} headers"), headers);
            outputs.add(format!("{at} body"), r.body.clone());
        }
    }
    // Each destination holds its own credential (PagerDuty's routing key
    // is in its event bodies by contract); nothing else does.
    for t in &tokens {
        outputs.assert_absent("credential token", t, &[]);
    }
    for (name, secret) in p.named() {
        let except: &[&str] = if name == "pagerduty routing key" {
            &["PagerDuty request"]
        } else {
            &[]
        };
        outputs.assert_absent(name, secret, except);
    }
}

#[test]
fn enforce_lets_no_planted_secret_out() {
    no_planted_secret_leaves("enforce");
}

#[test]
fn shadow_lets_no_planted_secret_out() {
    no_planted_secret_leaves("shadow");
}

/// With Redis, each credential of a quarantine is its own key in the
/// revocation queue, `<prefix>:revoke:<id>:<n>`, and nothing of it is left
/// once dequeued.
#[test]
fn redis_revocation_queue_is_one_key_and_goes() {
    use warden::respond::credential::SecretString;
    use warden::respond::registry::Registry;
    let url =
        std::env::var("WARDEN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    // The registry waits out outages: fail now, boundedly, if Redis is down.
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("Redis on 127.0.0.1:6379 (scripts/redis.sh)");
    let prefix = unique("warden-secrets");
    let mut keys = || -> Vec<String> {
        redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query(&mut c)
            .unwrap()
    };
    let mut reg = Registry::redis(&warden::config::RedisConfig {
        url: url.clone(),
        key_prefix: prefix.clone(),
        ..Default::default()
    })
    .unwrap();
    let id = "q-0123456789abcdef01234567";
    let token = format!("hvs.CAES{}", random_hex());
    let second = format!("hvs.CAES{}", random_hex());
    reg.queue_revocation(id, 0, &SecretString::new(token.clone()))
        .unwrap();
    reg.queue_revocation(id, 1, &SecretString::new(second.clone()))
        .unwrap();
    // Staged until the group commit, then both in one pipeline.
    assert!(keys().is_empty());
    reg.commit().unwrap();
    let mut k = keys();
    k.sort();
    assert_eq!(
        k,
        [
            format!("{prefix}:revoke:{id}:0"),
            format!("{prefix}:revoke:{id}:1")
        ]
    );
    let mut queued = reg.queued_revocations().unwrap();
    queued.sort();
    assert_eq!(queued, [(id.to_owned(), 0), (id.to_owned(), 1)]);
    assert_eq!(
        reg.queued_revocation(id, 0).unwrap().unwrap().expose(),
        token
    );
    assert_eq!(
        reg.queued_revocation(id, 1).unwrap().unwrap().expose(),
        second
    );
    // Each credential goes once its own revocation settles.
    reg.dequeue_revocation(id, 0).unwrap();
    reg.commit().unwrap();
    assert_eq!(keys(), [format!("{prefix}:revoke:{id}:1")]);
    assert_eq!(reg.queued_revocation(id, 0).unwrap(), None);
    reg.dequeue_revocation(id, 1).unwrap();
    reg.commit().unwrap();
    assert!(keys().is_empty());
    assert!(reg.queued_revocations().unwrap().is_empty());
    assert_eq!(reg.queued_revocation(id, 1).unwrap(), None);
}
