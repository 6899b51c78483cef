//! `warden check` against the contract servers: a marked test alert to
//! Slack and PagerDuty (resolved at once), a dry run to each revoker
//! (Vault lookup-self, an RFC 7009 revocation of a token that never
//! existed, a signed webhook with `"test": true`), nothing revoked, no
//! secret printed, and an exit code that reflects failures.

use std::process::{Command, Output};

mod common;
use common::contracts::*;

const VAULT_TOKEN: &str = "s.check-vault-token-5f1c";
const OAUTH_SECRET: &str = "check-oauth-secret-9b2e";
const WEBHOOK_SECRET: &str = "check-webhook-secret-77aa";
const ROUTING_KEY: &str = "R0UT1NGKEYCHECK000000000000000AB";

struct Servers {
    slack: ContractServer,
    pagerduty: ContractServer,
    vault: ContractServer,
    oauth: ContractServer,
    webhook: ContractServer,
}

fn servers() -> Servers {
    Servers {
        slack: ContractServer::slack(),
        pagerduty: ContractServer::pagerduty(),
        vault: ContractServer::vault(VAULT_TOKEN),
        oauth: ContractServer::oauth("warden", OAUTH_SECRET),
        webhook: ContractServer::webhook(WEBHOOK_SECRET),
    }
}

fn check(dir: &std::path::Path, s: &Servers, vault_token: &str) -> (Output, String) {
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
data-dir = {data:?}

[policy]
mode = "enforce"

[response]
request-timeout = "2s"

[[response.revokers]]
kind = "vault"
addr = "{vault}"
token-env = "CHECK_VAULT_TOKEN"

[[response.revokers]]
kind = "oauth"
endpoint = "{oauth}"
client-id = "warden"
client-secret-env = "CHECK_OAUTH_SECRET"

[[response.revokers]]
kind = "webhook"
url = "{webhook}"
secret-env = "CHECK_WEBHOOK_SECRET"

[[response.revokers]]
kind = "log"
path = {log:?}

[response.pagerduty]
events-url = "{pd}"
"#,
            data = dir.join("state"),
            log = dir.join("state/revocations.jsonl"),
            vault = s.vault.url(),
            oauth = s.oauth.url(),
            webhook = s.webhook.url(),
            pd = s.pagerduty.url(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    for (k, _) in std::env::vars() {
        if k.starts_with("WARDEN_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(["check", "--config"])
        .arg(&config)
        .env("CHECK_VAULT_TOKEN", vault_token)
        .env("CHECK_OAUTH_SECRET", OAUTH_SECRET)
        .env("CHECK_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("WARDEN_SLACK_WEBHOOK_URL", s.slack.url())
        .env("WARDEN_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn line<'a>(text: &'a str, target: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(target))
        .unwrap_or_else(|| panic!("no line for {target}: {text}"))
}

#[test]
fn check_sends_a_marked_test_through_everything_and_revokes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = servers();
    let (out, text) = check(dir.path(), &s, VAULT_TOKEN);
    assert!(out.status.success(), "{text}");
    for target in [
        "slack ",
        "pagerduty ",
        "revoker vault (vault)",
        "revoker oauth (oauth)",
        "revoker webhook (webhook)",
        "revoker local-log (log)",
    ] {
        assert!(line(&text, target).contains(" ok "), "{target}: {text}");
    }
    assert!(
        line(&text, "revoker vault").contains("warden-revoke"),
        "{text}"
    );

    // Slack: one message, marked as a test.
    let slack = s.slack.successes();
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert!(slack[0].json()["text"]
        .as_str()
        .unwrap()
        .starts_with("[TEST]"));
    // PagerDuty: a trigger, resolved at once: nothing left open.
    let pd = s.pagerduty.successes();
    let actions: Vec<String> = pd
        .iter()
        .map(|r| r.json()["event_action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"]);
    assert!(pd[0].json()["payload"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("[TEST]"));
    assert!(s
        .pagerduty
        .incidents()
        .iter()
        .all(|(_, state, _)| state == "resolved"));
    // Vault: a lookup, no revocation.
    let vault = s.vault.successes();
    assert_eq!(vault.len(), 1);
    assert_eq!(vault[0].path, "/v1/auth/token/lookup-self");
    assert!(s.vault.revoked().is_empty());
    // OAuth: the only token revoked is one that never existed.
    let revoked = s.oauth.revoked();
    assert!(
        revoked.len() == 1 && revoked[0].starts_with("warden-check-"),
        "{revoked:?}"
    );
    // Webhook: a signed test request, verified, nothing revoked.
    let hook = s.webhook.successes();
    assert_eq!(hook.len(), 1, "{:?}", s.webhook.requests());
    assert_eq!(hook[0].json()["test"], true);
    assert!(s.webhook.revoked().is_empty());
    // No secret in what it printed.
    for secret in [
        VAULT_TOKEN,
        OAUTH_SECRET,
        WEBHOOK_SECRET,
        ROUTING_KEY,
        &s.slack.url(),
    ] {
        assert!(!text.contains(secret), "printed {secret}: {text}");
    }
}

#[test]
fn check_reports_each_failure_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let s = servers();
    s.slack.fail_next(1, 500, None);
    let (out, text) = check(dir.path(), &s, "s.wrong-token");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(line(&text, "revoker vault").contains("FAILED"), "{text}");
    assert!(line(&text, "revoker vault").contains("403"), "{text}");
    assert!(line(&text, "slack ").contains("FAILED"), "{text}");
    assert!(line(&text, "revoker oauth").contains(" ok "), "{text}");
    assert!(text.contains("2 of 6 checks failed"), "{text}");
    assert!(!text.contains("s.wrong-token"), "{text}");
}

/// Not a test: stands up Slack, PagerDuty and Vault contract servers for a
/// rehearsal of the README's production path, writes the variables that
/// point Warden at them to `$WARDEN_REHEARSAL_ENV` (default
/// `rehearsal.env`), and serves for `$WARDEN_REHEARSAL_SECS` (default
/// 900), then prints what each received:
///
/// cargo test --test check -- --ignored --nocapture rehearsal_servers
#[test]
#[ignore]
fn rehearsal_servers() {
    let s = servers();
    let path = std::env::var("WARDEN_REHEARSAL_ENV").unwrap_or_else(|_| "rehearsal.env".into());
    let secs: u64 = std::env::var("WARDEN_REHEARSAL_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(900);
    std::fs::write(
        &path,
        format!(
            "export WARDEN_VAULT_ADDR={}\nexport WARDEN_VAULT_TOKEN={VAULT_TOKEN}\n\
             export WARDEN_SLACK_WEBHOOK_URL={}\nexport WARDEN_PAGERDUTY_ROUTING_KEY={ROUTING_KEY}\n\
             export WARDEN_PAGERDUTY_EVENTS_URL={}\n",
            s.vault.url(),
            s.slack.url(),
            s.pagerduty.url()
        ),
    )
    .unwrap();
    println!("contract servers up; source {path}; serving {secs} s");
    std::thread::sleep(std::time::Duration::from_secs(secs));
    for (name, server) in [
        ("slack", &s.slack),
        ("pagerduty", &s.pagerduty),
        ("vault", &s.vault),
    ] {
        for r in server.requests() {
            println!("{name}: {r}");
        }
    }
    println!("vault revoked: {:?}", s.vault.revoked());
}
