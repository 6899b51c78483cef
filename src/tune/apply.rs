//! `warden tune --apply URL`: the recommended thresholds, set through a
//! running service's admin API (`PUT /v1/policy/agents/{id}`), each change
//! audited there with the actor `warden-tune`. A dry run unless `--yes`:
//! it reads the live policy and prints what it would change.
//!
//! The admin token comes from an environment variable only, never from a
//! flag (a flag's value shows in process lists and shell history).

use std::time::Duration;

use serde_json::{json, Value};

use super::TuneReport;

/// The actor every change is audited under.
pub const ACTOR: &str = "warden-tune";

/// Why applying failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{var} is not set: it must hold the service's admin token (WARDEN_ADMIN_TOKEN on the service)")]
    NoToken { var: String },
    #[error("--apply {url}: not an http(s) URL of the admin listener")]
    Url { url: String },
    #[error("{what}: {reason}")]
    Http { what: String, reason: String },
    #[error("{what}: HTTP {status}: {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
}

/// One threshold to set.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub agent_id: String,
    /// The live API override before, if any.
    pub current: Option<f64>,
    pub threshold_bits: f32,
}

/// What `--apply` did (or would do).
#[derive(Debug, Default)]
pub struct Applied {
    pub changes: Vec<Change>,
    /// Agents whose live override already equals the recommendation.
    pub unchanged: usize,
    pub dry_run: bool,
}

impl Applied {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verb = if self.dry_run { "Would set" } else { "Set" };
        for c in &self.changes {
            let was = c
                .current
                .map_or_else(|| "no API override".to_owned(), |t| format!("{t:.1}"));
            out.push_str(&format!(
                "  {verb} {} threshold-bits {:.1} (was {was})\n",
                c.agent_id, c.threshold_bits
            ));
        }
        out.push_str(&format!(
            "{} {} agent threshold(s) through the admin API as {ACTOR:?}; {} already set.\n",
            if self.dry_run { "Dry run:" } else { "Applied:" },
            self.changes.len(),
            self.unchanged
        ));
        if self.dry_run && !self.changes.is_empty() {
            out.push_str("Nothing was changed. Run again with --yes to apply.\n");
        }
        out
    }
}

/// A path segment, percent-encoded (agent ids are free text).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads the live overrides, then (unless `dry_run`) sets each agent's
/// recommended threshold that differs from its live API override.
pub async fn apply(
    report: &TuneReport,
    url: &str,
    token_env: &str,
    dry_run: bool,
    reason: &str,
) -> Result<Applied, ApplyError> {
    let token = std::env::var(token_env)
        .ok()
        .map(|t| t.split(',').next().unwrap_or("").trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApplyError::NoToken {
            var: token_env.to_owned(),
        })?;
    let base = url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(ApplyError::Url {
            url: url.to_owned(),
        });
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("warden-tune/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ApplyError::Http {
            what: "HTTP client".into(),
            reason: e.to_string(),
        })?;
    let token = &token;
    let send = |req: reqwest::RequestBuilder, what: String| async move {
        let resp = req
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| ApplyError::Http {
                what: what.clone(),
                reason: e.without_url().to_string(),
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(ApplyError::Refused { what, status, body });
        }
        Ok(serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    let policy = send(
        client.get(format!("{base}/v1/policy")),
        format!("GET {base}/v1/policy"),
    )
    .await?;
    let mut applied = Applied {
        dry_run,
        ..Default::default()
    };
    for s in &report.agents {
        if !s.set {
            continue;
        }
        let t = s.recommended.threshold;
        let current = policy["overrides"]["agents"][&s.name]["threshold_bits"].as_f64();
        if current.is_some_and(|c| (c - f64::from(t)).abs() < 1e-3) {
            applied.unchanged += 1;
            continue;
        }
        if !dry_run {
            let path = format!("{base}/v1/policy/agents/{}", segment(&s.name));
            send(
                client
                    .put(&path)
                    .json(&json!({"threshold_bits": t, "actor": ACTOR, "reason": reason})),
                format!("PUT {path}"),
            )
            .await?;
        }
        applied.changes.push(Change {
            agent_id: s.name.clone(),
            current,
            threshold_bits: t,
        });
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_are_one_path_segment() {
        assert_eq!(segment("bank-assist_1.a"), "bank-assist_1.a");
        assert_eq!(segment("a/b c?d"), "a%2Fb%20c%3Fd");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
