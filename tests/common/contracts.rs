//! Local stand-ins for the services Warden's response path talks to:
//! Slack incoming webhooks, the PagerDuty Events API v2, HashiCorp Vault's
//! revocation endpoints, an RFC 7009 OAuth 2.0 revocation endpoint and
//! Warden's own signed revocation webhook.
//!
//! Each server listens on 127.0.0.1, implements the documented wire
//! contract (paths, methods, content types, validation, status codes and
//! error bodies), records every request together with the status it
//! answered, and takes a fault plan (fail for a while, fail the next n,
//! hold every response). A request that breaks the contract gets the
//! service's real error, so a test can assert that Warden never sent one:
//! `server.requests().iter().all(Recorded::ok)`.
//!
//! Each server runs its own single-threaded tokio runtime on a background
//! std thread, so it works the same from plain `#[test]`s and from async
//! tests. `stop` (or dropping the server) closes the listener and every
//! open connection, and frees the port; `ContractServer::start(kind, port)`
//! brings a server up on a port chosen earlier, which is how tests model a
//! broker that is down and comes back.
//!
//! State changes (a revocation, an incident) happen before a response is
//! held by `delay`, as with a server that does the work but is slow to
//! answer: a client that times out and retries revokes twice.

use std::collections::{HashMap, HashSet};
use std::future::IntoFuture;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The incoming-webhook path `ContractServer::slack()` serves (the shape
/// of Slack's placeholder URL in its documentation).
pub const SLACK_PATH: &str = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX";
/// A routing key of the right shape (32 characters) for PagerDuty.
pub const PAGERDUTY_ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";
/// How far a signed webhook's timestamp may be from now, in seconds (the
/// timestamp itself is in milliseconds).
pub const WEBHOOK_TOLERANCE_SECS: u64 = 300;
/// The realm the OAuth server names in `WWW-Authenticate`.
pub const OAUTH_REALM: &str = "warden-contracts";

/// The largest request body a server reads; past it, 413.
const MAX_BODY: usize = 4 << 20;
/// PagerDuty's documented event size limit.
const PAGERDUTY_MAX_EVENT: usize = 512 * 1024;

/// One request as the server saw it, and the status it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    /// Why the server refused it, when the answer alone does not say
    /// (Slack's `invalid_blocks` names no block).
    pub reason: Option<String>,
}

impl Recorded {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as `application/x-www-form-urlencoded` pairs, decoded.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server answered 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut body = self.text();
        if body.len() > 300 {
            let mut end = 300;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
            body.push('…');
        }
        let q = if self.query.is_empty() { "" } else { "?" };
        write!(
            f,
            "{} {}{q}{} -> {} {body}",
            self.method, self.path, self.query, self.status
        )?;
        match &self.reason {
            Some(r) => write!(f, " ({r})"),
            None => Ok(()),
        }
    }
}

/// Which service a server stands in for, with its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Slack,
    PagerDuty,
    /// Accepts this token in `X-Vault-Token`.
    Vault {
        token: String,
    },
    /// Accepts this client (HTTP Basic or `client_secret_post`).
    OAuth {
        client_id: String,
        client_secret: String,
    },
    /// Verifies signatures made with this secret.
    Webhook {
        secret: String,
    },
}

impl Kind {
    pub fn vault(token: &str) -> Self {
        Kind::Vault {
            token: token.to_owned(),
        }
    }

    pub fn oauth(client_id: &str, client_secret: &str) -> Self {
        Kind::OAuth {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
        }
    }

    pub fn webhook(secret: &str) -> Self {
        Kind::Webhook {
            secret: secret.to_owned(),
        }
    }

    /// The endpoint path a client is configured with ("" for Vault's base).
    pub fn endpoint_path(&self) -> &'static str {
        match self {
            Kind::Slack => SLACK_PATH,
            Kind::PagerDuty => "/v2/enqueue",
            Kind::Vault { .. } => "",
            Kind::OAuth { .. } => "/oauth2/revoke",
            Kind::Webhook { .. } => "/revoke",
        }
    }
}

/// A PagerDuty alert as the server tracks it.
#[derive(Debug, Clone)]
struct Incident {
    dedup_key: String,
    routing_key: String,
    /// "triggered", "acknowledged" or "resolved".
    state: &'static str,
    triggers: u32,
    /// Resolved by a human ([`ContractServer::resolve_by_human`]), not
    /// by an event.
    resolved_by_human: bool,
}

#[derive(Default)]
struct Faults {
    /// Answer this status (with Retry-After secs) until the instant.
    until: Option<(Instant, u16, Option<u64>)>,
    /// Answer this status to the next n requests.
    next: Option<(usize, u16, Option<u64>)>,
    /// Do the work of the next n accepted requests, then answer this
    /// status instead (the answer is lost on the way back).
    after_work: Option<(usize, u16)>,
}

struct Shared {
    kind: Kind,
    /// The endpoint path served (Slack's is part of its secret URL).
    path: String,
    recorded: Mutex<Vec<Recorded>>,
    faults: Mutex<Faults>,
    delay: Mutex<Duration>,
    incidents: Mutex<Vec<Incident>>,
    /// PagerDuty: dedup keys a trigger re-opened after a human resolved
    /// them, once per such trigger.
    reopened: Mutex<Vec<String>>,
    revoked: Mutex<Vec<String>>,
    /// Webhook: signatures verified so far, and deliveries processed.
    seen_signatures: Mutex<HashSet<String>>,
    processed_deliveries: Mutex<HashSet<String>>,
    reject_replays: AtomicBool,
    /// Slack per webhook, PagerDuty per routing key: the token buckets a
    /// real service keeps (see [`ContractServer::rate_limit`]).
    limiter: Mutex<Option<Limiter>>,
    /// 429 answers the rate limit gave.
    throttled: AtomicU64,
    generated: AtomicU64,
}

/// A running stand-in service. Stops (port freed) on `stop` or drop.
pub struct ContractServer {
    kind: Kind,
    port: u16,
    path: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ContractServer {
    /// A Slack incoming webhook at [`SLACK_PATH`].
    pub fn slack() -> Self {
        Self::start(Kind::Slack, 0)
    }

    /// The PagerDuty Events API v2 at `/v2/enqueue`.
    pub fn pagerduty() -> Self {
        Self::start(Kind::PagerDuty, 0)
    }

    /// Vault's token and lease revocation endpoints, accepting `token`.
    pub fn vault(token: &str) -> Self {
        Self::start(Kind::vault(token), 0)
    }

    /// An RFC 7009 revocation endpoint at `/oauth2/revoke`.
    pub fn oauth(client_id: &str, client_secret: &str) -> Self {
        Self::start(Kind::oauth(client_id, client_secret), 0)
    }

    /// Warden's signed revocation webhook at `/revoke`.
    pub fn webhook(secret: &str) -> Self {
        Self::start(Kind::webhook(secret), 0)
    }

    /// A Slack incoming webhook at `path` (a webhook URL's path is its
    /// secret: tests plant one).
    pub fn slack_at(path: &str) -> Self {
        Self::start_at(Kind::Slack, 0, path)
    }

    /// Starts a server of `kind` on 127.0.0.1:`port` (0: any free port).
    /// Retries a busy fixed port for up to 5 s (a just-stopped server's
    /// port), then panics.
    pub fn start(kind: Kind, port: u16) -> Self {
        let path = kind.endpoint_path();
        Self::start_at(kind, port, path)
    }

    /// Like `start`, serving the endpoint at `path`.
    pub fn start_at(kind: Kind, port: u16, path: &str) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(_) if port != 0 && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("contract server cannot bind {addr}: {e}"),
            }
        };
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            kind: kind.clone(),
            path: path.to_owned(),
            recorded: Mutex::default(),
            faults: Mutex::default(),
            delay: Mutex::new(Duration::ZERO),
            incidents: Mutex::default(),
            reopened: Mutex::default(),
            revoked: Mutex::default(),
            seen_signatures: Mutex::default(),
            processed_deliveries: Mutex::default(),
            reject_replays: AtomicBool::new(false),
            limiter: Mutex::new(None),
            throttled: AtomicU64::new(0),
            generated: AtomicU64::new(0),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("contract-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::select! {
                        r = axum::serve(listener, app).into_future() => {
                            if let Err(e) = r {
                                eprintln!("contract server on {port}: {e}");
                            }
                        }
                        _ = rx => {}
                    }
                });
                // Dropping the runtime cancels every connection task and
                // closes their sockets.
                drop(rt);
            })
            .unwrap();
        ContractServer {
            kind,
            port,
            path: path.to_owned(),
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// A port that was free a moment ago (bind, read, release).
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub fn kind(&self) -> Kind {
        self.kind.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The URL a client is configured with: the Slack webhook URL,
    /// `.../v2/enqueue`, Vault's base address, `.../oauth2/revoke` or
    /// `.../revoke`.
    pub fn url(&self) -> String {
        format!("{}{}", self.base_url(), self.path)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// The requests answered 2xx.
    pub fn successes(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(Recorded::ok).collect()
    }

    /// Forgets recorded requests (not revocations, incidents or replays).
    pub fn clear_requests(&self) {
        self.shared.recorded.lock().unwrap().clear();
    }

    /// Answers `status` (with that service's error body, and `Retry-After`
    /// when given) to every request for `d` from now. `Duration::ZERO`
    /// ends an earlier plan.
    pub fn fail_for(&self, status: u16, d: Duration, retry_after_secs: Option<u64>) {
        let mut f = self.shared.faults.lock().unwrap();
        f.until = (!d.is_zero()).then(|| (Instant::now() + d, status, retry_after_secs));
    }

    /// Answers `status` to the next `n` requests (before any `fail_for`).
    pub fn fail_next(&self, n: usize, status: u16, retry_after_secs: Option<u64>) {
        let mut f = self.shared.faults.lock().unwrap();
        f.next = (n > 0).then_some((n, status, retry_after_secs));
    }

    /// Does the work of the next `n` requests it accepts (a revocation is
    /// recorded, a webhook delivery processed), then answers `status` with
    /// the service's error body instead of success: the answer was lost.
    pub fn fail_next_after_work(&self, n: usize, status: u16) {
        let mut f = self.shared.faults.lock().unwrap();
        f.after_work = (n > 0).then_some((n, status));
    }

    /// Webhook only: the receiver's replay duties. A signature seen before
    /// (also on a request that then failed) is answered 409 `replayed
    /// signature`, a delivery id already processed 409 `duplicate
    /// delivery`. Off by default: every valid request is processed.
    pub fn reject_replays(&self, on: bool) {
        self.shared.reject_replays.store(on, Ordering::SeqCst);
    }

    /// Holds every response this long (after recording it and doing its
    /// work); `Duration::ZERO` stops holding.
    pub fn delay(&self, d: Duration) {
        *self.shared.delay.lock().unwrap() = d;
    }

    /// Slack only: answer 429 `rate_limited` (Retry-After: 1) to a message
    /// less than a second after the last accepted one. Off by default.
    pub fn enforce_rate_limit(&self, on: bool) {
        if on {
            self.rate_limit(1.0, 1);
        } else {
            *self.shared.limiter.lock().unwrap() = None;
        }
    }

    /// Rate-limits valid requests as the service does: Slack per webhook,
    /// PagerDuty per routing key, `burst` back to back then `per_second`;
    /// beyond, 429 with `Retry-After` (whole seconds, as both send it) and
    /// the service's own error body. Off by default.
    pub fn rate_limit(&self, per_second: f64, burst: u32) {
        *self.shared.limiter.lock().unwrap() = Some(Limiter {
            per_second,
            burst: f64::from(burst),
            buckets: HashMap::new(),
        });
    }

    /// 429 answers the rate limit gave so far.
    pub fn throttled(&self) -> u64 {
        self.shared.throttled.load(Ordering::SeqCst)
    }

    /// Polls (every 20 ms) until `pred` holds for the recorded requests and
    /// returns them; on timeout panics listing every recorded request.
    pub fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let reqs = self.requests();
            if pred(&reqs) {
                return reqs;
            }
            if Instant::now() >= deadline {
                let list: Vec<String> = reqs.iter().map(|r| format!("  {r}")).collect();
                panic!(
                    "{:?} server on {}: condition not met within {timeout:?}; {} requests:\n{}",
                    self.kind,
                    self.port,
                    reqs.len(),
                    list.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// PagerDuty: every alert, oldest first, as (dedup_key, state,
    /// trigger events). State is "triggered", "acknowledged" or
    /// "resolved"; a trigger after a resolve opens a new entry.
    pub fn incidents(&self) -> Vec<(String, String, u32)> {
        self.shared
            .incidents
            .lock()
            .unwrap()
            .iter()
            .map(|i| (i.dedup_key.clone(), i.state.to_owned(), i.triggers))
            .collect()
    }

    /// PagerDuty: a human resolves the open alert `dedup_key` in the web
    /// UI, as on-call does; false when none is open.
    pub fn resolve_by_human(&self, dedup_key: &str) -> bool {
        let mut incidents = self.shared.incidents.lock().unwrap();
        match incidents
            .iter_mut()
            .rev()
            .find(|i| i.dedup_key == dedup_key && i.state != "resolved")
        {
            Some(i) => {
                i.state = "resolved";
                i.resolved_by_human = true;
                true
            }
            None => false,
        }
    }

    /// PagerDuty: dedup keys that a later trigger re-opened after a human
    /// resolved them (one entry per re-opening trigger).
    pub fn reopened(&self) -> Vec<String> {
        self.shared.reopened.lock().unwrap().clone()
    }

    /// Vault: tokens, accessors and lease ids revoked; OAuth: tokens
    /// revoked; webhook: the `credential_id` of accepted bodies, once per
    /// delivery id. In order, duplicates kept.
    pub fn revoked(&self) -> Vec<String> {
        self.shared.revoked.lock().unwrap().clone()
    }

    /// Stops listening and closes every connection; the port is free when
    /// this returns.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ContractServer {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

/// `v2=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<delivery>.<body>")>`,
/// the `X-Warden-Signature` of Warden's revocation webhook (timestamp in
/// unix milliseconds, delivery the `X-Warden-Delivery` id).
pub fn sign_webhook(secret: &str, timestamp_ms: u64, delivery: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(delivery.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v2={}", hex::encode(mac.finalize().into_bytes()))
}

/// The `Authorization` value for OAuth client authentication with HTTP
/// Basic, encoded as RFC 6749 §2.3.1 requires (form-urlencode id and
/// secret, then base64 "id:secret").
pub fn oauth_basic(client_id: &str, client_secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64_encode(format!("{}:{}", enc(client_id), enc(client_secret)).as_bytes())
    )
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Milliseconds since the Unix epoch (the webhook's timestamps).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---------------------------------------------------------------------------
// Request handling

/// What to answer.
struct Reply {
    status: u16,
    reason: Option<String>,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, body: &str) -> Self {
        Reply {
            status,
            reason: None,
            content_type: Some("text/plain; charset=utf-8"),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            reason: None,
            content_type: Some("application/json"),
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    fn empty(status: u16) -> Self {
        Reply {
            status,
            reason: None,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self) -> Response {
        let mut b = Response::builder().status(StatusCode::from_u16(self.status).unwrap());
        if let Some(ct) = self.content_type {
            b = b.header("content-type", ct);
        }
        for (n, v) in self.headers {
            b = b.header(n, v);
        }
        b.body(Body::from(self.body)).unwrap()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await;
    let mut rec = Recorded {
        at,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
        status: 0,
        reason: None,
    };
    let reply = match body {
        Err(_) => Reply::text(413, "request body too large"),
        Ok(b) => {
            rec.body = b.to_vec();
            match shared.fault() {
                Some((status, retry_after)) => {
                    // A receiver notes a valid signature before anything
                    // else can fail: the retry of a failed request must
                    // be signed afresh.
                    if let Kind::Webhook { secret } = &shared.kind {
                        if let Ok(v) = webhook_verify(secret, &parts.headers, &rec.body) {
                            shared.seen_signatures.lock().unwrap().insert(v.signature);
                        }
                    }
                    fault_reply(&shared.kind, status, retry_after)
                }
                None => {
                    let reply = shared.serve(&parts.method, &parts.headers, &rec);
                    match shared.answer_lost(&reply) {
                        Some(status) => {
                            let mut r = fault_reply(&shared.kind, status, None);
                            r.reason = Some("processed, answer lost".to_owned());
                            r
                        }
                        None => reply,
                    }
                }
            }
        }
    };
    rec.status = reply.status;
    rec.reason = reply.reason.clone();
    shared.recorded.lock().unwrap().push(rec);
    let delay = *shared.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    reply.into_response()
}

impl Shared {
    /// The fault the plan says to answer this request with, if any.
    fn fault(&self) -> Option<(u16, Option<u64>)> {
        let mut f = self.faults.lock().unwrap();
        if let Some((n, status, ra)) = f.next {
            f.next = (n > 1).then_some((n - 1, status, ra));
            return Some((status, ra));
        }
        match f.until {
            Some((until, status, ra)) if Instant::now() < until => Some((status, ra)),
            Some(_) => {
                f.until = None;
                None
            }
            None => None,
        }
    }

    /// The status `fail_next_after_work` says to answer instead of this
    /// successful reply, if any.
    fn answer_lost(&self, reply: &Reply) -> Option<u16> {
        if !(200..300).contains(&reply.status) {
            return None;
        }
        let mut f = self.faults.lock().unwrap();
        let (n, status) = f.after_work?;
        f.after_work = (n > 1).then_some((n - 1, status));
        Some(status)
    }

    fn serve(&self, method: &Method, headers: &HeaderMap, rec: &Recorded) -> Reply {
        match &self.kind {
            Kind::Slack => self.slack(method, headers, rec),
            Kind::PagerDuty => self.pagerduty(method, headers, rec),
            Kind::Vault { token } => self.vault(token, method, headers, rec),
            Kind::OAuth {
                client_id,
                client_secret,
            } => self.oauth(client_id, client_secret, method, headers, rec),
            Kind::Webhook { secret } => self.webhook(secret, method, headers, rec),
        }
    }
}

/// A token bucket per webhook or routing key.
struct Limiter {
    per_second: f64,
    burst: f64,
    /// key → (tokens, when counted).
    buckets: HashMap<String, (f64, Instant)>,
}

impl Shared {
    /// The 429 the rate limit answers for `key`, if over it.
    fn limit(&self, key: &str) -> Option<Reply> {
        let mut g = self.limiter.lock().unwrap();
        let l = g.as_mut()?;
        let now = Instant::now();
        let (rate, burst) = (l.per_second, l.burst);
        let (tokens, at) = l.buckets.entry(key.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return None;
        }
        self.throttled.fetch_add(1, Ordering::SeqCst);
        let wait = ((1.0 - *tokens) / rate).ceil().max(1.0) as u64;
        Some(fault_reply(&self.kind, 429, Some(wait)))
    }
}

/// The error a service answers when the fault plan says `status`.
fn fault_reply(kind: &Kind, status: u16, retry_after: Option<u64>) -> Reply {
    let reply = match kind {
        // Incoming webhooks answer a bare error string as text/plain.
        Kind::Slack => Reply::text(
            status,
            match status {
                400 => "invalid_payload",
                403 => "action_prohibited",
                404 => "channel_not_found",
                410 => "channel_is_archived",
                429 => "rate_limited",
                _ => "rollup_error",
            },
        ),
        Kind::PagerDuty => Reply::json(
            status,
            match status {
                429 => json!({
                    "status": "throttle exceeded",
                    "message": "Requests for this service are arriving too quickly.  Please retry later."
                }),
                400 => json!({
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": ["Invalid routing key"]
                }),
                _ => json!({
                    "status": "Internal Server Error",
                    "message": "An internal error occurred while processing the event. Please retry later."
                }),
            },
        ),
        Kind::Vault { .. } => Reply::json(
            status,
            json!({ "errors": [match status {
                403 => "permission denied",
                429 => "rate limit quota exceeded",
                503 => "Vault is sealed",
                _ => "internal error",
            }] }),
        ),
        Kind::OAuth { .. } => {
            let error = match status {
                400 => "invalid_request",
                401 => "invalid_client",
                503 | 429 => "temporarily_unavailable",
                _ => "server_error",
            };
            let r =
                Reply::json(status, json!({ "error": error })).header("cache-control", "no-store");
            if status == 401 {
                r.header("www-authenticate", format!("Basic realm=\"{OAUTH_REALM}\""))
            } else {
                r
            }
        }
        Kind::Webhook { .. } => Reply::json(
            status,
            json!({ "error": match status {
                401 => "bad signature",
                409 => "replayed signature",
                429 => "rate limited",
                400..=499 => "rejected",
                _ => "unavailable",
            } }),
        ),
    };
    // RFC 7009 §2.2.1: a 503 tells the client when to retry.
    let retry_after = match (kind, status) {
        (Kind::OAuth { .. }, 503) => Some(retry_after.unwrap_or(1)),
        _ => retry_after,
    };
    match retry_after {
        Some(s) => reply.header("retry-after", s.to_string()),
        None => reply,
    }
}

/// The media type of `Content-Type`, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

// ---------------------------------------------------------------------------
// Slack incoming webhook

const BLOCK_TYPES: &[&str] = &[
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "table",
    "video",
];

impl Shared {
    fn slack(&self, method: &Method, headers: &HeaderMap, rec: &Recorded) -> Reply {
        if rec.path != self.path {
            return Reply::text(404, "no_service");
        }
        if method != Method::POST {
            return Reply::text(405, "invalid_method").header("allow", "POST");
        }
        if media_type(headers) != "application/json" {
            return Reply::text(400, "invalid_payload");
        }
        let Ok(Value::Object(msg)) = serde_json::from_slice::<Value>(&rec.body) else {
            return Reply::text(400, "invalid_payload");
        };
        let text = match msg.get("text") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Reply::text(400, "invalid_payload"),
        };
        let blocks = match msg.get("blocks") {
            None | Some(Value::Null) => None,
            Some(Value::Array(b)) => Some(b),
            Some(_) => return Reply::text(400, "invalid_blocks_format"),
        };
        let attachments = match msg.get("attachments") {
            None | Some(Value::Null) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => return Reply::text(400, "invalid_attachments"),
        };
        if let Some(blocks) = blocks {
            if let Err(why) = check_blocks(blocks) {
                let mut r = Reply::text(400, "invalid_blocks");
                r.reason = Some(why);
                return r;
            }
        }
        let has_text = text.is_some_and(|t| !t.trim().is_empty());
        let has_blocks = blocks.is_some_and(|b| !b.is_empty());
        if !has_text && !has_blocks && !attachments {
            return Reply::text(400, "no_text");
        }
        if let Some(r) = self.limit(&self.path.clone()) {
            return r;
        }
        Reply::text(200, "ok")
    }
}

/// Block Kit limits Slack enforces on messages (the subset Warden's alerts
/// can reach): at most 50 blocks of known types; header plain_text of at
/// most 150 characters; section text at most 3000, at most 10 fields of at
/// most 2000; context at most 10 elements; text objects with a `type` of
/// plain_text/mrkdwn and a non-empty `text`.
fn check_blocks(blocks: &[Value]) -> Result<(), String> {
    if blocks.len() > 50 {
        return Err(format!("{} blocks (max 50)", blocks.len()));
    }
    for (i, b) in blocks.iter().enumerate() {
        let b = b
            .as_object()
            .ok_or_else(|| format!("block {i} is not an object"))?;
        let ty = b
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("block {i} has no type"))?;
        if !BLOCK_TYPES.contains(&ty) {
            return Err(format!("block {i}: unknown type {ty:?}"));
        }
        if let Some(id) = b.get("block_id") {
            match id.as_str() {
                Some(s) if !s.is_empty() && chars(s) <= 255 => {}
                _ => return Err(format!("block {i}: bad block_id")),
            }
        }
        match ty {
            "header" => {
                let t = text_object(b.get("text"), 150).map_err(|e| format!("header {i}: {e}"))?;
                if t != "plain_text" {
                    return Err(format!("header {i}: text must be plain_text"));
                }
            }
            "section" => {
                let text = b.get("text");
                let fields = b.get("fields");
                if text.is_none() && fields.is_none() {
                    return Err(format!("section {i}: needs text or fields"));
                }
                if text.is_some() {
                    text_object(text, 3000).map_err(|e| format!("section {i}: {e}"))?;
                }
                if let Some(f) = fields {
                    let f = f
                        .as_array()
                        .ok_or_else(|| format!("section {i}: fields not an array"))?;
                    if f.is_empty() || f.len() > 10 {
                        return Err(format!("section {i}: {} fields (1..=10)", f.len()));
                    }
                    for x in f {
                        text_object(Some(x), 2000)
                            .map_err(|e| format!("section {i} field: {e}"))?;
                    }
                }
            }
            "context" => {
                let els = b
                    .get("elements")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("context {i}: no elements"))?;
                if els.is_empty() || els.len() > 10 {
                    return Err(format!("context {i}: {} elements (1..=10)", els.len()));
                }
                for e in els {
                    if e.get("type").and_then(Value::as_str) == Some("image") {
                        if e.get("alt_text").and_then(Value::as_str).is_none()
                            || (e.get("image_url").is_none() && e.get("slack_file").is_none())
                        {
                            return Err(format!("context {i}: image needs image_url and alt_text"));
                        }
                    } else {
                        text_object(Some(e), 3000).map_err(|e| format!("context {i}: {e}"))?;
                    }
                }
            }
            "image" => {
                let url = b.get("image_url").and_then(Value::as_str);
                let alt = b.get("alt_text").and_then(Value::as_str);
                match (url, alt) {
                    (Some(u), Some(a)) if chars(u) <= 3000 && chars(a) <= 2000 => {}
                    _ if b.get("slack_file").is_some() && alt.is_some() => {}
                    _ => return Err(format!("image {i}: needs image_url and alt_text")),
                }
                if let Some(t) = b.get("title") {
                    text_object(Some(t), 2000).map_err(|e| format!("image {i} title: {e}"))?;
                }
            }
            "actions" => {
                let els = b
                    .get("elements")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("actions {i}: no elements"))?;
                if els.is_empty() || els.len() > 25 {
                    return Err(format!("actions {i}: {} elements (1..=25)", els.len()));
                }
            }
            "markdown" => match b.get("text").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && chars(t) <= 12000 => {}
                _ => return Err(format!("markdown {i}: text")),
            },
            "rich_text" if !b.get("elements").is_some_and(Value::is_array) => {
                return Err(format!("rich_text {i}: no elements"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a text object; returns its type.
fn text_object(v: Option<&Value>, max: usize) -> Result<&str, String> {
    let o = v
        .and_then(Value::as_object)
        .ok_or("text object missing or not an object")?;
    let ty = o
        .get("type")
        .and_then(Value::as_str)
        .ok_or("text object without type")?;
    if ty != "plain_text" && ty != "mrkdwn" {
        return Err(format!("text object type {ty:?}"));
    }
    let text = o
        .get("text")
        .and_then(Value::as_str)
        .ok_or("text object without text")?;
    let n = chars(text);
    if n == 0 || n > max {
        return Err(format!("text of {n} characters (1..={max})"));
    }
    Ok(ty)
}

// ---------------------------------------------------------------------------
// PagerDuty Events API v2

fn pd_invalid(errors: Vec<String>) -> Reply {
    Reply::json(
        400,
        json!({ "status": "invalid event", "message": "Event object is invalid", "errors": errors }),
    )
}

fn pd_unrecognized() -> Reply {
    Reply::json(
        400,
        json!({
            "status": "Unrecognized object",
            "message": "Event object format is unrecognized",
            "errors": ["JSON parse error"]
        }),
    )
}

/// ISO 8601 as PagerDuty takes it: RFC 3339, or the documented
/// `2015-07-17T08:42:58.315+0000` (offset without a colon).
fn iso8601(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").is_ok()
}

impl Shared {
    fn pagerduty(&self, method: &Method, headers: &HeaderMap, rec: &Recorded) -> Reply {
        if rec.path != "/v2/enqueue" {
            return Reply::json(
                404,
                json!({ "status": "Not Found", "message": "Not Found" }),
            );
        }
        if method != Method::POST {
            return Reply::json(
                405,
                json!({ "status": "Method Not Allowed", "message": "Method Not Allowed" }),
            )
            .header("allow", "POST");
        }
        if rec.body.len() > PAGERDUTY_MAX_EVENT {
            return pd_invalid(vec![format!(
                "Event object is too large ({} bytes; the limit is 512 KB)",
                rec.body.len()
            )]);
        }
        if media_type(headers) != "application/json" {
            return pd_unrecognized();
        }
        let Ok(Value::Object(ev)) = serde_json::from_slice::<Value>(&rec.body) else {
            return pd_unrecognized();
        };
        let errors = pd_validate(&ev);
        if !errors.is_empty() {
            return pd_invalid(errors);
        }
        let routing_key = ev["routing_key"].as_str().unwrap().to_owned();
        if let Some(r) = self.limit(&routing_key) {
            return r;
        }
        let action = ev["event_action"].as_str().unwrap();
        let dedup_key = match ev.get("dedup_key").and_then(Value::as_str) {
            Some(k) if !k.is_empty() => k.to_owned(),
            _ => {
                let n = self.generated.fetch_add(1, Ordering::SeqCst);
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64;
                format!("{nanos:016x}{n:016x}")
            }
        };
        let mut incidents = self.incidents.lock().unwrap();
        let open = incidents
            .iter_mut()
            .rev()
            .find(|i| i.dedup_key == dedup_key && i.state != "resolved");
        match (action, open) {
            ("trigger", Some(i)) => i.triggers += 1,
            ("trigger", None) => {
                if incidents
                    .iter()
                    .any(|i| i.dedup_key == dedup_key && i.resolved_by_human)
                {
                    self.reopened.lock().unwrap().push(dedup_key.clone());
                }
                incidents.push(Incident {
                    dedup_key: dedup_key.clone(),
                    routing_key,
                    state: "triggered",
                    triggers: 1,
                    resolved_by_human: false,
                })
            }
            // Follow-ups only apply through the routing key that opened
            // the alert; otherwise (and with no open alert) they are
            // accepted and dropped.
            ("acknowledge", Some(i)) if i.routing_key == routing_key => i.state = "acknowledged",
            ("resolve", Some(i)) if i.routing_key == routing_key => i.state = "resolved",
            _ => {}
        }
        Reply::json(
            202,
            json!({ "status": "success", "message": "Event processed", "dedup_key": dedup_key }),
        )
    }
}

fn pd_validate(ev: &Map<String, Value>) -> Vec<String> {
    let mut errors = Vec::new();
    match ev.get("routing_key") {
        None | Some(Value::Null) => errors.push("'routing_key' is missing or blank".to_owned()),
        Some(Value::String(k)) if k.is_empty() => {
            errors.push("'routing_key' is missing or blank".to_owned())
        }
        Some(Value::String(k)) if chars(k) == 32 => {}
        Some(Value::String(_)) => {
            errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".to_owned())
        }
        Some(_) => errors.push("'routing_key' must be a string".to_owned()),
    }
    let action = match ev.get("event_action") {
        Some(Value::String(a)) if ["trigger", "acknowledge", "resolve"].contains(&a.as_str()) => {
            Some(a.as_str())
        }
        Some(Value::String(a)) if !a.is_empty() => {
            errors.push(
                "'event_action' is invalid (must be one of trigger, acknowledge, resolve)"
                    .to_owned(),
            );
            None
        }
        _ => {
            errors.push("'event_action' is missing or blank".to_owned());
            None
        }
    };
    match ev.get("dedup_key") {
        None | Some(Value::Null) => {
            if matches!(action, Some("acknowledge" | "resolve")) {
                errors.push("'dedup_key' is missing or blank".to_owned());
            }
        }
        Some(Value::String(k)) => {
            if k.is_empty() && matches!(action, Some("acknowledge" | "resolve")) {
                errors.push("'dedup_key' is missing or blank".to_owned());
            }
            if chars(k) > 255 {
                errors.push("'dedup_key' is too long (maximum is 255 characters)".to_owned());
            }
        }
        Some(_) => errors.push("'dedup_key' must be a string".to_owned()),
    }
    for k in ["client", "client_url"] {
        if ev.get(k).is_some_and(|v| !v.is_string()) {
            errors.push(format!("'{k}' must be a string"));
        }
    }
    if action == Some("trigger") {
        match ev.get("payload") {
            Some(Value::Object(p)) => pd_validate_payload(p, &mut errors),
            _ => errors.push("'payload' is missing or blank".to_owned()),
        }
    }
    if let Some(links) = ev.get("links") {
        match links.as_array() {
            Some(a) => {
                for (i, l) in a.iter().enumerate() {
                    let ok = l
                        .get("href")
                        .and_then(Value::as_str)
                        .is_some_and(|h| !h.is_empty())
                        && l.get("text").is_none_or(Value::is_string);
                    if !ok {
                        errors.push(format!(
                            "'links[{i}]' must have a string 'href' (and optional string 'text')"
                        ));
                    }
                }
            }
            None => errors.push("'links' must be an array".to_owned()),
        }
    }
    if let Some(images) = ev.get("images") {
        match images.as_array() {
            Some(a) => {
                for (i, im) in a.iter().enumerate() {
                    let ok = im
                        .get("src")
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty())
                        && im.get("href").is_none_or(Value::is_string)
                        && im.get("alt").is_none_or(Value::is_string);
                    if !ok {
                        errors.push(format!("'images[{i}]' must have a string 'src'"));
                    }
                }
            }
            None => errors.push("'images' must be an array".to_owned()),
        }
    }
    errors
}

fn pd_validate_payload(p: &Map<String, Value>, errors: &mut Vec<String>) {
    match p.get("summary") {
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push("'payload.summary' is missing or blank".to_owned())
        }
        // PagerDuty's own wording, typo included.
        Some(Value::String(s)) if chars(s) > 1024 => {
            errors.push("'summary' is too long (maiximum is 1024 characters)".to_owned())
        }
        Some(Value::String(_)) => {}
        _ => errors.push("'payload.summary' is missing or blank".to_owned()),
    }
    match p.get("source") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        _ => errors.push("'payload.source' is missing or blank".to_owned()),
    }
    match p.get("severity").and_then(Value::as_str) {
        Some("critical" | "error" | "warning" | "info") => {}
        Some(_) => errors.push(
            "'payload.severity' is invalid (must be one of critical, error, warning, info)"
                .to_owned(),
        ),
        None => errors.push("'payload.severity' is missing or blank".to_owned()),
    }
    match p.get("timestamp") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if iso8601(t) => {}
        Some(_) => errors.push("'payload.timestamp' is invalid (must be ISO 8601)".to_owned()),
    }
    for k in ["component", "group", "class"] {
        if p.get(k).is_some_and(|v| !v.is_string() && !v.is_null()) {
            errors.push(format!("'payload.{k}' must be a string"));
        }
    }
    if p.get("custom_details")
        .is_some_and(|v| !v.is_object() && !v.is_null())
    {
        errors.push("'payload.custom_details' must be an object".to_owned());
    }
}

// ---------------------------------------------------------------------------
// Vault

/// `GET /v1/auth/token/lookup-self` (also `POST`, Vault's "update"): the
/// calling token's own properties, per Vault's token auth API. An invalid
/// token is 403 "permission denied"; the answer includes the token itself
/// (`data.id`), as Vault's does, so a client must not print it whole.
fn vault_lookup_self(token: &str, method: &Method, headers: &HeaderMap) -> Reply {
    if method != Method::GET && method != Method::POST {
        return vault_error(405, "unsupported operation");
    }
    let given = headers.get("x-vault-token").map(|v| v.as_bytes());
    if !given.is_some_and(|g| bool::from(g.ct_eq(token.as_bytes()))) {
        return vault_error(403, "permission denied");
    }
    Reply::json(
        200,
        json!({
            "request_id": "00000000-0000-0000-0000-000000000001",
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": {
                "accessor": "8609694a-cdbc-db9b-d345-e782dbb562ed",
                "creation_time": 1_700_000_000u64,
                "creation_ttl": 2_764_800,
                "display_name": "token-warden",
                "entity_id": "",
                "expire_time": null,
                "explicit_max_ttl": 0,
                "id": token,
                "meta": null,
                "num_uses": 0,
                "orphan": true,
                "path": "auth/token/create",
                "policies": ["default", "warden-revoke"],
                "renewable": true,
                "ttl": 2_764_000,
                "type": "service"
            },
            "wrap_info": null,
            "warnings": null,
            "auth": null
        }),
    )
}

fn vault_error(status: u16, msg: &str) -> Reply {
    Reply::json(status, json!({ "errors": [msg] }))
}

impl Shared {
    fn vault(&self, token: &str, method: &Method, headers: &HeaderMap, rec: &Recorded) -> Reply {
        if rec.path == "/v1/auth/token/lookup-self" {
            return vault_lookup_self(token, method, headers);
        }
        // (field, error when missing, id from the URL for the legacy form)
        let (field, missing, url_id) = match rec.path.as_str() {
            "/v1/auth/token/revoke" => ("token", "missing token ID", None),
            "/v1/auth/token/revoke-accessor" => ("accessor", "missing accessor", None),
            "/v1/sys/leases/revoke" => ("lease_id", "lease_id must be specified", None),
            p => match p
                .strip_prefix("/v1/sys/leases/revoke/")
                .or_else(|| p.strip_prefix("/v1/sys/revoke/"))
            {
                Some(id) if !id.is_empty() => (
                    "lease_id",
                    "lease_id must be specified",
                    Some(id.to_owned()),
                ),
                // Vault answers unknown paths 404 with an empty list.
                _ => return Reply::json(404, json!({ "errors": [] })),
            },
        };
        // Writes are PUT or POST (both are Vault's "update" operation).
        if method != Method::PUT && method != Method::POST {
            return vault_error(405, "unsupported operation");
        }
        let given = headers.get("x-vault-token").map(|v| v.as_bytes());
        if !given.is_some_and(|g| bool::from(g.ct_eq(token.as_bytes()))) {
            return vault_error(403, "permission denied");
        }
        let data = if rec.body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(&rec.body) {
                Ok(Value::Object(m)) => m,
                _ => return vault_error(400, "error parsing JSON"),
            }
        };
        let target = match data.get(field) {
            None | Some(Value::Null) => url_id.unwrap_or_default(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return vault_error(
                    400,
                    &format!("error converting input {v} for field \"{field}\": expected a string"),
                )
            }
        };
        if target.is_empty() {
            return vault_error(400, missing);
        }
        self.revoked.lock().unwrap().push(target);
        Reply::empty(204)
    }
}

// ---------------------------------------------------------------------------
// OAuth 2.0 token revocation (RFC 7009)

fn oauth_error(status: u16, error: &str) -> Reply {
    let r = Reply::json(status, json!({ "error": error }))
        .header("cache-control", "no-store")
        .header("pragma", "no-cache");
    if status == 401 {
        r.header("www-authenticate", format!("Basic realm=\"{OAUTH_REALM}\""))
    } else {
        r
    }
}

impl Shared {
    fn oauth(
        &self,
        client_id: &str,
        client_secret: &str,
        method: &Method,
        headers: &HeaderMap,
        rec: &Recorded,
    ) -> Reply {
        if rec.path != "/oauth2/revoke" {
            return Reply::json(404, json!({ "error": "not_found" }));
        }
        if method != Method::POST {
            return oauth_error(405, "invalid_request").header("allow", "POST");
        }
        if media_type(headers) != "application/x-www-form-urlencoded" {
            return oauth_error(400, "invalid_request");
        }
        let form: Vec<(String, String)> = form_urlencoded::parse(&rec.body).into_owned().collect();
        // RFC 6749 §3.2: parameters MUST NOT be included more than once.
        let mut names = HashSet::new();
        if !form.iter().all(|(k, _)| names.insert(k.as_str())) {
            return oauth_error(400, "invalid_request");
        }
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        // Client authentication (RFC 6749 §2.3.1): HTTP Basic with the
        // form-urlencoded id and secret, or both in the body; never both.
        let basic = headers.get("authorization").map(|v| v.as_bytes());
        let creds = match basic {
            Some(h) => {
                if get("client_secret").is_some() {
                    return oauth_error(400, "invalid_request");
                }
                match parse_basic(h) {
                    Some(c) => Some(c),
                    None => return oauth_error(401, "invalid_client"),
                }
            }
            None => match (get("client_id"), get("client_secret")) {
                (Some(id), Some(secret)) => Some((id.to_owned(), secret.to_owned())),
                _ => None,
            },
        };
        let authed = creds.is_some_and(|(id, secret)| {
            bool::from(id.as_bytes().ct_eq(client_id.as_bytes()))
                & bool::from(secret.as_bytes().ct_eq(client_secret.as_bytes()))
        });
        if !authed {
            return oauth_error(401, "invalid_client");
        }
        let token = match get("token") {
            Some(t) if !t.is_empty() => t.to_owned(),
            _ => return oauth_error(400, "invalid_request"),
        };
        match get("token_type_hint") {
            None | Some("access_token" | "refresh_token") => {}
            Some(_) => return oauth_error(400, "unsupported_token_type"),
        }
        // Unknown tokens are answered 200 too (RFC 7009 §2.2).
        self.revoked.lock().unwrap().push(token);
        Reply::empty(200)
            .header("cache-control", "no-store")
            .header("pragma", "no-cache")
    }
}

/// (client_id, client_secret) from `Basic base64(urlenc(id):urlenc(secret))`.
fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(header).ok()?;
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(rest.trim())?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// application/x-www-form-urlencoded decoding of one component.
fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding; None when malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (ci, chunk) in s.chunks(4).enumerate() {
        let last = ci == s.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad {
                0
            } else {
                B64.iter().position(|&x| x == c)? as u32
            };
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Warden's signed revocation webhook

/// The receiver's error; `Recorded::reason` repeats it for assertions.
fn webhook_error(status: u16, msg: &str) -> Reply {
    let mut r = Reply::json(status, json!({ "error": msg }));
    r.reason = Some(msg.to_owned());
    r
}

/// A request whose signature verified.
struct Verified {
    timestamp_ms: u64,
    delivery: String,
    signature: String,
}

/// The receiver's first duty: `X-Warden-Signature: v2=<hex>` is the
/// HMAC-SHA256 of "<X-Warden-Timestamp>.<X-Warden-Delivery>.<body>",
/// compared in constant time. Anything missing or malformed is 401.
fn webhook_verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Reply> {
    let bad = || webhook_error(401, "bad signature");
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(delivery), Some(sig)) = (
        header("x-warden-timestamp"),
        header("x-warden-delivery"),
        header("x-warden-signature"),
    ) else {
        return Err(bad());
    };
    let Ok(timestamp_ms) = ts.parse::<u64>() else {
        return Err(bad());
    };
    let Some(hex_sig) = sig.strip_prefix("v2=") else {
        return Err(bad());
    };
    let lower_hex = hex_sig.len() == 64
        && hex_sig
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if delivery.is_empty() || !lower_hex {
        return Err(bad());
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(delivery.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let given = hex::decode(hex_sig).map_err(|_| bad())?;
    if !bool::from(expected.as_slice().ct_eq(&given)) {
        return Err(bad());
    }
    Ok(Verified {
        timestamp_ms,
        delivery: delivery.to_owned(),
        signature: hex_sig.to_owned(),
    })
}

impl Shared {
    fn webhook(&self, secret: &str, method: &Method, headers: &HeaderMap, rec: &Recorded) -> Reply {
        if rec.path != "/revoke" {
            return webhook_error(404, "not found");
        }
        if method != Method::POST {
            return webhook_error(405, "method not allowed").header("allow", "POST");
        }
        if media_type(headers) != "application/json" {
            return webhook_error(415, "content-type must be application/json");
        }
        let v = match webhook_verify(secret, headers, &rec.body) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let replays = self.reject_replays.load(Ordering::SeqCst);
        // Every verified signature is noted, whatever the answer.
        let fresh_signature = self.seen_signatures.lock().unwrap().insert(v.signature);
        if unix_now_ms().abs_diff(v.timestamp_ms) > WEBHOOK_TOLERANCE_SECS * 1000 {
            return webhook_error(400, "stale timestamp");
        }
        if replays && !fresh_signature {
            return webhook_error(409, "replayed signature");
        }
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&rec.body) else {
            return webhook_error(400, "body must be a JSON object");
        };
        // A receiver acts on a delivery once: a retry of one it already
        // processed (Warden timed out waiting) revokes nothing again.
        let fresh_delivery = self.processed_deliveries.lock().unwrap().insert(v.delivery);
        if !fresh_delivery && replays {
            return webhook_error(409, "duplicate delivery");
        }
        // `warden check`: verified like any other request, revokes nothing.
        if body.get("test") == Some(&Value::Bool(true)) {
            return Reply::json(200, json!({ "status": "test ok" }));
        }
        if let Some(c) = body.get("credential_id").and_then(Value::as_str) {
            if fresh_delivery {
                self.revoked.lock().unwrap().push(c.to_owned());
            }
        }
        Reply::json(200, json!({ "status": "revoked" }))
    }
}
