//! Outbound calls: the revokers (Vault, OAuth 2.0 RFC 7009, signed webhook)
//! and the notifiers (Slack, PagerDuty), each with its own rule of what is
//! worth retrying, and one retry loop: exponential backoff with jitter,
//! honouring `Retry-After`, until success, a refusal, or the give-up time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use sha2::Sha256;

use super::credential::{scrub, Credential, SecretString};
use super::incident::Quarantine;
use crate::config::{ClientAuth, ResponseConfig, RevokerConfig, VaultMethod};

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Done,
    /// Worth trying again, after at least `after` when the server said so.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Refused: trying again would get the same answer.
    Refused(String),
}

impl Attempt {
    /// The same outcome with every secret in its error replaced: a server
    /// may quote what it was sent (a token, a key) in its error body.
    pub fn scrubbed(self, secrets: &[&str]) -> Self {
        match self {
            Self::Done => Self::Done,
            Self::Retry { error, after } => Self::Retry {
                error: scrub(&error, secrets),
                after,
            },
            Self::Refused(e) => Self::Refused(scrub(&e, secrets)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Done => "ok".to_owned(),
            Self::Retry { error, .. } => format!("retrying: {error}"),
            Self::Refused(e) => format!("refused: {e}"),
        }
    }
}

/// How retries are paced.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

impl RetryPolicy {
    pub fn of(cfg: &ResponseConfig) -> Self {
        Self {
            initial: cfg.initial_backoff,
            max: cfg.max_backoff,
            give_up_after: cfg.give_up_after,
        }
    }

    /// The wait before attempt `n + 1` (n ≥ 1 attempts failed): the doubled
    /// delay with "equal jitter" (half fixed, half random) so a fleet of
    /// retries spreads out, or what `Retry-After` asked when that is longer.
    pub fn delay(&self, n: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(self.max);
        let half = exp / 2;
        let jitter = random_u64() % (half.as_millis() as u64 + 1);
        let d = half + Duration::from_millis(jitter);
        match retry_after {
            Some(ra) => ra.max(d),
            None => d,
        }
    }
}

/// A random number for jitter (not for secrets): std's per-instance
/// random hash keys, no extra dependency.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// The final result of a retried delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub attempts: u32,
    /// `None` on success, else the last error.
    pub error: Option<String>,
}

/// Runs `attempt` until it is done, refused, or `policy.give_up_after`
/// has passed; `observe` sees each attempt (for the audit log), `cancelled`
/// is checked before each one.
pub async fn retry<F, Fut>(
    policy: RetryPolicy,
    mut attempt: F,
    mut observe: impl FnMut(u32, &Attempt),
    cancelled: impl Fn() -> bool,
) -> Delivered
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    let start = Instant::now();
    let mut n = 0;
    loop {
        if cancelled() {
            return Delivered {
                attempts: n,
                error: Some("cancelled".to_owned()),
            };
        }
        n += 1;
        let a = attempt().await;
        observe(n, &a);
        match a {
            Attempt::Done => {
                return Delivered {
                    attempts: n,
                    error: None,
                }
            }
            Attempt::Refused(e) => {
                return Delivered {
                    attempts: n,
                    error: Some(e),
                }
            }
            Attempt::Retry { error, after } => {
                let wait = policy.delay(n, after);
                if start.elapsed() + wait > policy.give_up_after {
                    return Delivered {
                        attempts: n,
                        error: Some(format!("gave up after {n} attempts: {error}")),
                    };
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).clamp(0, 3600);
    Some(Duration::from_secs(secs as u64))
}

/// A short, single-line excerpt of a response body for errors and logs.
fn excerpt(body: &str) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    one_line.trim().to_owned()
}

/// What a transport error means: a timeout or refused connection is worth
/// another try. The URL is stripped: a Slack webhook URL is a secret, and
/// the error is logged, stored and audited.
fn transport(e: reqwest::Error) -> Attempt {
    let e = e.without_url();
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    Attempt::Retry {
        error: format!("{what}: {e}"),
        after: None,
    }
}

/// Statuses worth retrying for every destination: throttling and server
/// trouble. Vault adds its standby statuses.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

async fn classify(
    resp: Result<reqwest::Response, reqwest::Error>,
    ok: impl Fn(StatusCode) -> bool,
    also_retry: &[u16],
) -> Attempt {
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return transport(e),
    };
    let status = resp.status();
    if ok(status) {
        return Attempt::Done;
    }
    let after = retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    let error = format!("HTTP {} {}", status.as_u16(), excerpt(&body));
    if retryable(status) || also_retry.contains(&status.as_u16()) {
        Attempt::Retry { error, after }
    } else {
        Attempt::Refused(error)
    }
}

/// A configured revoker with its secret read from the environment.
pub struct Revoker {
    pub cfg: RevokerConfig,
    secret: String,
    /// The webhook's last `X-Warden-Timestamp` (unix ms): each attempt
    /// takes a later one, so no two attempts share a signature.
    webhook_clock: AtomicU64,
}

impl Revoker {
    /// Reads the revoker's secret; a missing one is an error naming the
    /// variable, at start, not at the first quarantine.
    pub fn new(cfg: &RevokerConfig) -> Result<Self, String> {
        let var = match cfg {
            RevokerConfig::Vault(v) => &v.token_env,
            RevokerConfig::Oauth(o) => &o.client_secret_env,
            RevokerConfig::Webhook(w) => &w.secret_env,
            RevokerConfig::Log(_) => {
                return Ok(Self {
                    cfg: cfg.clone(),
                    secret: String::new(),
                    webhook_clock: AtomicU64::new(0),
                })
            }
        };
        let secret = std::env::var(var)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                format!(
                    "revoker {:?} needs its secret in the environment variable {var}",
                    cfg.name()
                )
            })?;
        Ok(Self {
            cfg: cfg.clone(),
            secret,
            webhook_clock: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &str {
        self.cfg.name()
    }

    /// What this revoker revokes for `q`, as it may be shown: the event's
    /// `credential_id`, by fingerprint unless it is a handle.
    pub fn target(&self, credential: Option<&Credential>) -> Option<String> {
        credential.map(|c| c.shown().to_owned())
    }

    /// One revocation attempt of `credential` (the raw value, from the
    /// revocation queue; `shown` is what may be shown of it), for `q`. Its
    /// error never quotes the credential or this revoker's secret.
    pub async fn attempt(
        &self,
        http: &reqwest::Client,
        q: &Quarantine,
        credential: Option<&SecretString>,
        shown: Option<&Credential>,
    ) -> Attempt {
        let raw = credential.map(SecretString::expose);
        self.attempt_raw(http, q, raw, shown)
            .await
            .scrubbed(&[raw.unwrap_or_default(), &self.secret])
    }

    async fn attempt_raw(
        &self,
        http: &reqwest::Client,
        q: &Quarantine,
        credential: Option<&str>,
        shown: Option<&Credential>,
    ) -> Attempt {
        let target = match (&self.cfg, credential) {
            (RevokerConfig::Webhook(_) | RevokerConfig::Log(_), _) => None,
            (_, Some(t)) => Some(t),
            (_, None) => {
                return Attempt::Refused(
                    "no credential to revoke: the flagged event carried no credential_id, \
                     or it is no longer in the revocation queue"
                        .to_owned(),
                )
            }
        };
        match &self.cfg {
            RevokerConfig::Log(l) => {
                let line = serde_json::json!({
                    "ts": super::incident::now_rfc3339(),
                    "quarantine": q.id,
                    "agent_id": q.agent_id,
                    "agent_instance": q.agent_instance,
                    // This file is the embedded default's revocation
                    // queue: it keeps the value a human must revoke.
                    "credential_id": credential,
                    "credential": shown,
                    "note": "no credential broker configured: revoke this credential by hand",
                });
                match append_line(&l.path, &line) {
                    Ok(()) => Attempt::Done,
                    Err(e) => Attempt::Retry {
                        error: format!("cannot append to {}: {e}", l.path.display()),
                        after: None,
                    },
                }
            }
            RevokerConfig::Vault(v) => {
                let target = target.unwrap_or_default();
                let base = v.addr.trim_end_matches('/');
                let (method, path, body) = match v.method {
                    VaultMethod::Token => (
                        reqwest::Method::POST,
                        "/v1/auth/token/revoke",
                        serde_json::json!({ "token": target }),
                    ),
                    VaultMethod::Accessor => (
                        reqwest::Method::POST,
                        "/v1/auth/token/revoke-accessor",
                        serde_json::json!({ "accessor": target }),
                    ),
                    VaultMethod::Lease => (
                        reqwest::Method::PUT,
                        "/v1/sys/leases/revoke",
                        serde_json::json!({ "lease_id": target }),
                    ),
                };
                let mut req = http
                    .request(method, format!("{base}{path}"))
                    .header("X-Vault-Token", &self.secret)
                    .json(&body);
                if !v.namespace.is_empty() {
                    req = req.header("X-Vault-Namespace", &v.namespace);
                }
                // 412: a performance standby is not yet consistent; 472/473:
                // standby redirection. All clear up by themselves.
                classify(req.send().await, |s| s.is_success(), &[412, 472, 473]).await
            }
            RevokerConfig::Oauth(o) => {
                let token = target.unwrap_or_default();
                let mut form: Vec<(&str, &str)> = vec![("token", token)];
                if !o.token_type_hint.is_empty() {
                    form.push(("token_type_hint", &o.token_type_hint));
                }
                let mut req = http.post(&o.endpoint);
                match o.client_auth {
                    ClientAuth::ClientSecretBasic => {
                        // RFC 6749 §2.3.1: id and secret are form-encoded
                        // before they are joined and base64-encoded.
                        let id: String =
                            form_urlencoded::byte_serialize(o.client_id.as_bytes()).collect();
                        let secret: String =
                            form_urlencoded::byte_serialize(self.secret.as_bytes()).collect();
                        req = req.basic_auth(id, Some(secret));
                    }
                    ClientAuth::ClientSecretPost => {
                        form.push(("client_id", &o.client_id));
                        form.push(("client_secret", &self.secret));
                    }
                }
                let body: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish();
                let req = req
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body);
                // RFC 7009 §2.2: 200 even for an unknown token.
                classify(req.send().await, |s| s == StatusCode::OK, &[]).await
            }
            RevokerConfig::Webhook(w) => {
                let body = webhook_body(q, credential);
                // The raw credential (from the revocation queue, the same
                // after a restart) keeps the id stable across retries.
                let delivery = delivery_id(&q.id, self.name(), credential);
                // Signed afresh on every attempt: a receiver that rejects
                // replayed signatures still accepts the retry.
                let ts = self.webhook_timestamp().to_string();
                let sig = sign(&self.secret, &ts, &delivery, &body);
                let req = http
                    .post(&w.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("X-Warden-Timestamp", &ts)
                    .header("X-Warden-Delivery", &delivery)
                    .header("X-Warden-Signature", format!("v2={sig}"))
                    .body(body);
                match req.send().await {
                    // The receiver already processed this delivery (the
                    // answer to an earlier attempt was lost): revoked.
                    Ok(resp) if resp.status() == StatusCode::CONFLICT => {
                        let body = resp.text().await.unwrap_or_default();
                        if is_duplicate_delivery(&body) {
                            Attempt::Done
                        } else {
                            Attempt::Refused(format!("HTTP 409 {}", excerpt(&body)))
                        }
                    }
                    sent => classify(sent, |s| s.is_success(), &[]).await,
                }
            }
        }
    }
}

impl Revoker {
    /// Unix milliseconds for the webhook's next attempt, later than any this
    /// revoker used before, even for two attempts within one millisecond.
    fn webhook_timestamp(&self) -> u64 {
        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let prev = self
            .webhook_clock
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .unwrap_or_else(|last| last);
        now.max(prev.saturating_add(1))
    }
}

/// Whether a webhook's 409 body is the receiver's "duplicate delivery"
/// answer (`{"error":"duplicate delivery"}`), not a refusal.
fn is_duplicate_delivery(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(|e| e == "duplicate delivery"))
        .unwrap_or(false)
}

fn append_line(path: &std::path::Path, v: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    // It holds raw credentials: the owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    let mut line = serde_json::to_vec(v)?;
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()
}

/// The webhook's body: the quarantine, without the raw events (they stay
/// in the registry for learning), with the raw `credential_id` to revoke:
/// the receiver is a revoker.
pub fn webhook_body(q: &Quarantine, credential: Option<&str>) -> Vec<u8> {
    let mut v = serde_json::to_value(q).expect("quarantine serialises");
    if let Some(o) = v.as_object_mut() {
        o.remove("flagged_events");
        o.remove("seen_events");
        o.insert("type".to_owned(), "warden.quarantine".into());
        o.insert("credential_id".to_owned(), credential.into());
    }
    serde_json::to_vec(&v).expect("value serialises")
}

/// `X-Warden-Delivery`: one id per revocation (quarantine, revoker,
/// credential), the same on every attempt and after a restart that resumes
/// it, so a receiver can tell a retry from a new request. 32 hex digits of
/// SHA-256 over the length-prefixed parts.
pub fn delivery_id(quarantine: &str, revoker: &str, credential: Option<&str>) -> String {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(b"warden-delivery-v1");
    for part in [Some(quarantine), Some(revoker), credential] {
        match part {
            Some(p) => {
                h.update([1u8]);
                h.update((p.len() as u64).to_be_bytes());
                h.update(p.as_bytes());
            }
            None => h.update([0u8]),
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// `hex(HMAC-SHA256(secret, "<timestamp>.<delivery id>.<body>"))`, the
/// `v2=` signature: the receiver recomputes it, compares in constant time,
/// and rejects timestamps far from its clock and signatures it has seen.
pub fn sign(secret: &str, ts: &str, delivery: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(delivery.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Posts a JSON body to Slack's incoming webhook: 200 is delivered; 429
/// and 5xx are retried (honouring `Retry-After`); other 4xx (invalid
/// payload, archived channel, revoked webhook) are refused. The URL is a
/// secret: no error quotes it.
pub async fn post_slack(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> Attempt {
    classify(
        http.post(url).json(body).send().await,
        |s| s == StatusCode::OK,
        &[],
    )
    .await
    .scrubbed(&[url, url_path(url)])
}

/// The path of `url` (without its leading `/`), when long enough to be
/// worth scrubbing on its own: a server may quote only that.
fn url_path(url: &str) -> &str {
    let path = url.splitn(4, '/').nth(3).unwrap_or_default();
    if path.len() >= 8 {
        path
    } else {
        ""
    }
}

/// Sends an event to PagerDuty Events API v2: 202 is accepted; 400 is a
/// malformed event (refused, logged with the body); 429 and 5xx are retried.
pub async fn post_pagerduty(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Attempt {
    let routing_key = body["routing_key"].as_str().unwrap_or_default();
    classify(
        http.post(url).json(body).send().await,
        |s| s == StatusCode::ACCEPTED,
        &[],
    )
    .await
    .scrubbed(&[routing_key])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let p = RetryPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
            give_up_after: Duration::from_secs(60),
        };
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200));
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
            let d20 = p.delay(20, None);
            assert!(d20 >= Duration::from_secs(1) && d20 <= Duration::from_secs(2));
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d >= Duration::from_secs(28) && d <= Duration::from_secs(31),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_delivery_and_body() {
        let sig = sign("key", "The", "quick", b"brown fox jumps over the lazy dog");
        // Every part, and the key, is covered.
        for other in [
            sign("key", "The", "quick", b"brown fox jumps over the lazy cat"),
            sign("key", "The", "quack", b"brown fox jumps over the lazy dog"),
            sign("key", "Thy", "quick", b"brown fox jumps over the lazy dog"),
            sign("kez", "The", "quick", b"brown fox jumps over the lazy dog"),
        ] {
            assert_ne!(sig, other);
        }
        // HMAC over the dot-joined string, checked against an independently
        // computed value (RFC 4231-style).
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"The.quick.brown fox jumps over the lazy dog");
        assert_eq!(sig, hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            sig,
            "32563cdea4ac199d6db6a8bd99d7483cccd442459101c69fd8ea4cc021adbb6b"
        );
    }

    #[test]
    fn delivery_id_is_stable_and_differs_per_revocation() {
        let id = delivery_id("q-1", "gateway", Some("cred-42"));
        // Stable: a fixed function of its parts (so also after a restart).
        assert_eq!(id, "1f51653441d5b5f0072a3110687b55aa");
        assert_eq!(id, delivery_id("q-1", "gateway", Some("cred-42")));
        // Differs per credential, revoker and quarantine.
        let others = [
            delivery_id("q-1", "gateway", Some("cred-43")),
            delivery_id("q-1", "gateway", None),
            delivery_id("q-1", "gateway", Some("")),
            delivery_id("q-1", "gateway-2", Some("cred-42")),
            delivery_id("q-2", "gateway", Some("cred-42")),
            // The parts are framed: moving a boundary changes the id.
            delivery_id("q-1g", "ateway", Some("cred-42")),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(&id, o, "{i}");
            for p in &others[i + 1..] {
                assert_ne!(o, p);
            }
        }
    }

    #[test]
    fn webhook_timestamps_are_milliseconds_and_never_repeat() {
        let r = Revoker::new(&RevokerConfig::Log(crate::config::LogRevokerConfig {
            name: "local-log".to_owned(),
            path: "revocations.jsonl".into(),
        }))
        .unwrap();
        let now = chrono::Utc::now().timestamp_millis() as u64;
        let ts: Vec<u64> = (0..1000).map(|_| r.webhook_timestamp()).collect();
        assert!(ts[0] >= now && ts[0] < now + 5_000, "{} vs {now}", ts[0]);
        assert!(ts.windows(2).all(|w| w[1] > w[0]), "strictly increasing");
    }

    #[test]
    fn only_the_duplicate_delivery_answer_counts_as_delivered() {
        assert!(is_duplicate_delivery(r#"{"error":"duplicate delivery"}"#));
        assert!(is_duplicate_delivery(
            r#"{ "error": "duplicate delivery", "delivery": "ab" }"#
        ));
        for refusal in [
            r#"{"error":"replayed signature"}"#,
            r#"{"error":"duplicate"}"#,
            r#"{"error":["duplicate delivery"]}"#,
            "duplicate delivery",
            "",
        ] {
            assert!(!is_duplicate_delivery(refusal), "{refusal}");
        }
    }

    #[tokio::test]
    async fn retry_stops_on_refusal_and_gives_up_in_time() {
        let p = RetryPolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
            give_up_after: Duration::from_millis(50),
        };
        let mut seen = Vec::new();
        let mut n = 0;
        let d = retry(
            p,
            || {
                n += 1;
                let a = if n < 3 {
                    Attempt::Retry {
                        error: "503".into(),
                        after: None,
                    }
                } else {
                    Attempt::Refused("403".into())
                };
                async move { a }
            },
            |i, a| seen.push((i, a.clone())),
            || false,
        )
        .await;
        assert_eq!(d.attempts, 3);
        assert_eq!(d.error.as_deref(), Some("403"));
        assert_eq!(seen.len(), 3);
        let d = retry(
            p,
            || async {
                Attempt::Retry {
                    error: "down".into(),
                    after: None,
                }
            },
            |_, _| {},
            || false,
        )
        .await;
        assert!(d.error.unwrap().starts_with("gave up"));
    }
}
