//! `warden check`: proves the wiring before a real incident. Sends a
//! clearly marked test alert through each configured notifier and a dry
//! run to each revoker that has one, and reports what each answered:
//!
//! - Slack: a message headed `[TEST]`;
//! - PagerDuty: a `trigger` of severity `info` headed `[TEST]`, resolved at
//!   once with the same `dedup_key`;
//! - Vault: `GET /v1/auth/token/lookup-self` with Warden's token (valid,
//!   its policies and TTL; never the token);
//! - OAuth (RFC 7009): revokes a random token that never existed, which
//!   the server answers 200 once the client authenticates;
//! - webhook: a signed `POST` whose body carries `"test": true` and no
//!   credential: the receiver verifies it as any other and revokes nothing;
//! - the local revocation log: its directory is writable (nothing called).
//!
//! Nothing a check prints carries a secret: URLs are named by their config
//! key, answers are cut short and scrubbed of every configured secret.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::{ClientAuth, Config, RevokerConfig};

/// What one target answered.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `slack`, `pagerduty`, or `revoker <name> (<kind>)`.
    pub target: String,
    pub ok: bool,
    /// What it answered, or why it could not be reached.
    pub detail: String,
    pub elapsed: Duration,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<32} {:<6} {} ({} ms)",
            self.target,
            if self.ok { "ok" } else { "FAILED" },
            self.detail,
            self.elapsed.as_millis()
        )
    }
}

/// Runs every check of `cfg`, in order: notifiers, then revokers.
pub async fn run(cfg: &Config) -> Vec<Outcome> {
    let client = match reqwest::Client::builder()
        .timeout(cfg.response.request_timeout)
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION"), " (check)"))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return vec![Outcome {
                target: "http client".into(),
                ok: false,
                detail: e.to_string(),
                elapsed: Duration::ZERO,
            }]
        }
    };
    let secrets = secrets(cfg);
    let mut out = Vec::new();
    if !cfg.response.slack.webhook_url.is_empty() {
        out.push(timed("slack", slack(&client, cfg)).await);
    }
    if !cfg.response.pagerduty.routing_key.is_empty() {
        out.push(timed("pagerduty", pagerduty(&client, cfg)).await);
    }
    for r in &cfg.response.revokers {
        let target = format!("revoker {} ({})", r.name(), kind(r));
        out.push(timed(&target, revoker(&client, r)).await);
    }
    if cfg.response.revokers.is_empty() && cfg.may_enforce() {
        out.push(Outcome {
            target: "revokers".into(),
            ok: true,
            detail: format!(
                "none configured: enforce writes what to revoke to {}",
                cfg.server.data_dir.join("revocations.jsonl").display()
            ),
            elapsed: Duration::ZERO,
        });
    }
    for o in &mut out {
        o.detail = scrub(&o.detail, &secrets);
    }
    out
}

async fn timed(
    target: &str,
    f: impl std::future::Future<Output = Result<String, String>>,
) -> Outcome {
    let start = Instant::now();
    let r = f.await;
    Outcome {
        target: target.to_owned(),
        ok: r.is_ok(),
        detail: r.unwrap_or_else(|e| e),
        elapsed: start.elapsed(),
    }
}

fn kind(r: &RevokerConfig) -> &'static str {
    match r {
        RevokerConfig::Vault(_) => "vault",
        RevokerConfig::Oauth(_) => "oauth",
        RevokerConfig::Webhook(_) => "webhook",
        RevokerConfig::Log(_) => "log",
    }
}

/// Every configured secret, to be kept out of what is printed.
fn secrets(cfg: &Config) -> Vec<String> {
    let mut v = vec![
        cfg.response.slack.webhook_url.clone(),
        cfg.response.pagerduty.routing_key.clone(),
    ];
    for r in &cfg.response.revokers {
        if let Some(s) = revoker_secret(r) {
            v.push(s);
        }
    }
    v.retain(|s| s.len() >= 4);
    v
}

fn revoker_secret(r: &RevokerConfig) -> Option<String> {
    let var = match r {
        RevokerConfig::Vault(v) => &v.token_env,
        RevokerConfig::Oauth(o) => &o.client_secret_env,
        RevokerConfig::Webhook(w) => &w.secret_env,
        RevokerConfig::Log(_) => return None,
    };
    std::env::var(var).ok().filter(|s| !s.is_empty())
}

fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "<redacted>"))
}

/// A transport failure, without the URL (it may be the secret).
fn unreachable(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        "no answer within response.request-timeout".to_owned()
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        e.to_string()
    }
}

/// An answer's status and the start of its body.
async fn answer(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let mut body = body.trim().replace('\n', " ");
    if body.len() > 200 {
        let mut end = 200;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
        body.push('…');
    }
    (status, body)
}

fn judged(status: u16, body: String, ok: bool) -> Result<String, String> {
    let text = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    };
    if ok {
        Ok(text)
    } else {
        Err(text)
    }
}

const TEST_HEADLINE: &str =
    "[TEST] Warden check: this is a test alert, not an incident. No agent is quarantined.";

async fn slack(client: &reqwest::Client, cfg: &Config) -> Result<String, String> {
    let body = json!({
        "text": TEST_HEADLINE,
        "blocks": [{
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*{TEST_HEADLINE}*\nSent by `warden check` to prove this webhook works. Explain links point to {}.", cfg.response.public_url)}
        }]
    });
    let resp = client
        .post(&cfg.response.slack.webhook_url)
        .json(&body)
        .send()
        .await
        .map_err(unreachable)?;
    let (status, body) = answer(resp).await;
    judged(status, body, status == 200)
}

async fn pagerduty(client: &reqwest::Client, cfg: &Config) -> Result<String, String> {
    let pd = &cfg.response.pagerduty;
    let dedup_key = format!(
        "warden-check-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let trigger = json!({
        "routing_key": pd.routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": TEST_HEADLINE,
            "source": "warden check",
            "severity": "info",
            "component": "warden",
            "class": "test",
            "custom_details": {"test": true, "resolved_at_once": true}
        }
    });
    let resp = client
        .post(&pd.events_url)
        .json(&trigger)
        .send()
        .await
        .map_err(unreachable)?;
    let (status, body) = answer(resp).await;
    if status != 202 {
        return judged(status, body, false);
    }
    let resolve = json!({
        "routing_key": pd.routing_key,
        "event_action": "resolve",
        "dedup_key": dedup_key,
    });
    let resp = client
        .post(&pd.events_url)
        .json(&resolve)
        .send()
        .await
        .map_err(|e| format!("trigger accepted, resolve failed: {}", unreachable(e)))?;
    let (rstatus, rbody) = answer(resp).await;
    if rstatus != 202 {
        return Err(format!(
            "trigger accepted (HTTP 202), resolve refused: HTTP {rstatus}: {rbody}; resolve {dedup_key} by hand"
        ));
    }
    Ok(format!(
        "HTTP 202 trigger and resolve accepted (dedup_key {dedup_key})"
    ))
}

async fn revoker(client: &reqwest::Client, r: &RevokerConfig) -> Result<String, String> {
    let secret = revoker_secret(r);
    match r {
        RevokerConfig::Vault(v) => {
            let url = format!("{}/v1/auth/token/lookup-self", v.addr.trim_end_matches('/'));
            let mut req = client
                .get(url)
                .header("X-Vault-Token", secret.unwrap_or_default());
            if !v.namespace.is_empty() {
                req = req.header("X-Vault-Namespace", &v.namespace);
            }
            let resp = req.send().await.map_err(unreachable)?;
            let status = resp.status().as_u16();
            if status != 200 {
                let (status, body) = answer(resp).await;
                return judged(status, body, false);
            }
            // The answer holds the token itself (`data.id`): print only
            // what helps.
            let v: serde_json::Value =
                resp.json().await.map_err(|e| e.without_url().to_string())?;
            let d = &v["data"];
            Ok(format!(
                "HTTP 200 lookup-self: token valid, policies {}, ttl {}s; revocation itself is not tried",
                d["policies"], d["ttl"]
            ))
        }
        RevokerConfig::Oauth(o) => {
            // Revoking a token that never existed: RFC 7009 answers 200
            // for it, once the client has authenticated.
            let probe = format!("warden-check-{}", random_id());
            let secret = secret.unwrap_or_default();
            let mut form = vec![("token", probe.as_str())];
            if !o.token_type_hint.is_empty() {
                form.push(("token_type_hint", o.token_type_hint.as_str()));
            }
            let mut req = client.post(&o.endpoint);
            match o.client_auth {
                ClientAuth::ClientSecretBasic => {
                    req = req.basic_auth(
                        form_urlencoded::byte_serialize(o.client_id.as_bytes()).collect::<String>(),
                        Some(
                            form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
                        ),
                    )
                }
                ClientAuth::ClientSecretPost => {
                    form.push(("client_id", o.client_id.as_str()));
                    form.push(("client_secret", secret.as_str()));
                }
            }
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            let resp = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .map_err(unreachable)?;
            let (status, body) = answer(resp).await;
            judged(status, body, status == 200).map(|t| {
                format!("{t} (revoked a token that never existed: client authentication works)")
            })
        }
        RevokerConfig::Webhook(w) => {
            let body = serde_json::to_vec(&json!({
                "test": true,
                "message": "warden check: verify this request as any other, revoke nothing, answer 2xx",
                "revoker": w.name,
            }))
            .unwrap_or_default();
            let ts = chrono::Utc::now().timestamp_millis().to_string();
            let delivery = random_id();
            let sig = crate::respond::revoke::webhook::sign(
                &secret.unwrap_or_default(),
                &ts,
                &delivery,
                &body,
            );
            let resp = client
                .post(&w.url)
                .header("Content-Type", "application/json")
                .header("X-Warden-Timestamp", &ts)
                .header("X-Warden-Delivery", &delivery)
                .header("X-Warden-Signature", format!("v2={sig}"))
                .body(body)
                .send()
                .await
                .map_err(unreachable)?;
            let (status, body) = answer(resp).await;
            judged(status, body, (200..300).contains(&status))
        }
        RevokerConfig::Log(l) => {
            let path = &l.path;
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            Ok(format!(
                "local file {}: writable; nothing to call",
                path.display()
            ))
        }
    }
}

/// 128 random bits as 32 hex digits.
fn random_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_from_answers() {
        let s = vec!["hooks.slack.com/services/T0/B0/XYZ".to_owned()];
        assert_eq!(
            scrub("bad url hooks.slack.com/services/T0/B0/XYZ here", &s),
            "bad url <redacted> here"
        );
    }
}
