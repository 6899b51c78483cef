//! HTTP routes of `warden run`.
//!
//! - `POST /v1/events`: one JSON event, a JSON array of events, or NDJSON.
//!   Answers 202 with accepted/rejected counts and per-item errors (index,
//!   field, reason); 429 with `Retry-After` when a worker queue is full
//!   (nothing of that request is queued); 413 past the body limit.
//! - `GET /live`: the process is up.
//! - `GET /ready`: profiles restored, workers running and, with Kafka,
//!   partitions assigned (503 before).
//! - `GET /metrics`: Prometheus text format.
//! - `GET /v1/quarantines[?state=…]`, `GET /v1/quarantines/{id}`: the
//!   registry (a read or admin token when read tokens are configured).
//! - `GET /v1/quarantines/agents/{agent_id}`: whether a broker may mint this
//!   agent a credential (`quarantined: true` means no).
//! - `POST /v1/quarantines/{id}/release`: `{"actor","reason","false_positive"}`
//!   with an admin bearer token.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::mpsc::error::TrySendError;

use super::worker::{count_event, Msg};
use super::{route, Shared};
use crate::ingest::decode::{decode_bytes, DecodeError};
use crate::service::metrics::KindLabel;

/// The router, with its state.
pub fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.config.server.max_body_bytes;
    Router::new()
        .route("/v1/events", post(ingest))
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/quarantines", get(list_quarantines))
        .route("/v1/quarantines/{id}", get(get_quarantine))
        .route("/v1/quarantines/{id}/release", post(release))
        .route("/v1/quarantines/agents/{agent_id}", get(agent_status))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if !shared.ready.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "restoring\n").into_response()
    } else if !shared.assigned.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "waiting for partitions\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Serialize)]
struct ItemError {
    index: usize,
    kind: &'static str,
    field: Option<&'static str>,
    reason: String,
}

#[derive(Debug, Serialize)]
struct IngestReply {
    accepted: usize,
    rejected: usize,
    errors: Vec<ItemError>,
}

/// Splits a body into the byte ranges of its items: the elements of a JSON
/// array, or the non-empty lines of NDJSON (a single object is one line).
fn split_items(body: &[u8]) -> Result<Vec<Range<usize>>, String> {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    if body.get(start) == Some(&b'[') {
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body)
            .map_err(|e| format!("body is not a JSON array of events: {e}"))?;
        let base = body.as_ptr() as usize;
        return Ok(items
            .iter()
            .map(|raw| {
                let at = raw.get().as_ptr() as usize - base;
                at..at + raw.get().len()
            })
            .collect());
    }
    let mut out = Vec::new();
    let mut at = 0;
    for line in body.split(|b| *b == b'\n') {
        let end = at + line.len();
        if !line.iter().all(u8::is_ascii_whitespace) {
            out.push(at..end);
        }
        at = end + 1;
    }
    Ok(out)
}

async fn ingest(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let items = match split_items(&body) {
        Ok(items) => items,
        Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
    };
    let max = shared.config.ingest.max_event_bytes;
    let workers = shared.senders.len();
    let mut routed: Vec<Vec<Range<usize>>> = vec![Vec::new(); workers];
    let mut errors = Vec::new();
    for (index, r) in items.into_iter().enumerate() {
        match decode_bytes(&body[r.clone()], max) {
            Ok(ev) => {
                count_event(&shared, &ev);
                routed[route(ev.agent_id(), workers)].push(r);
            }
            Err(e) => {
                reject(&shared, index, &body[r], &e);
                errors.push(ItemError {
                    index,
                    kind: e.kind.as_str(),
                    field: e.field,
                    reason: e.to_string(),
                });
            }
        }
    }
    // Reserve a slot in every queue first: a request is queued whole or not
    // at all, so a client retrying after 429 causes no partial duplicates.
    let mut permits = Vec::new();
    for (w, batch) in routed.iter().enumerate() {
        if batch.is_empty() {
            continue;
        }
        match shared.senders[w].try_reserve() {
            Ok(p) => permits.push((w, p)),
            Err(TrySendError::Full(())) => {
                shared.metrics.throttled.inc();
                let retry = shared.config.server.retry_after_secs.to_string();
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, retry)],
                    "worker queue full; retry later\n",
                )
                    .into_response();
            }
            Err(TrySendError::Closed(())) => {
                return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
            }
        }
    }
    let mut accepted = 0;
    for (w, permit) in permits {
        let batch = std::mem::take(&mut routed[w]);
        accepted += batch.len();
        permit.send(Msg::Batch {
            body: body.clone(),
            items: batch,
            partition: -1,
        });
    }
    let reply = IngestReply {
        accepted,
        rejected: errors.len(),
        errors,
    };
    (StatusCode::ACCEPTED, Json(reply)).into_response()
}

/// Bearer tokens allowed to read and to release, from the environment.
#[derive(Default)]
pub struct Tokens {
    pub admin: Vec<String>,
    pub read: Vec<String>,
}

impl Tokens {
    pub fn from_env(admin_var: &str, read_var: &str) -> Self {
        let list = |var: &str| -> Vec<String> {
            std::env::var(var)
                .unwrap_or_default()
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect()
        };
        Self {
            admin: list(admin_var),
            read: list(read_var),
        }
    }
}

/// Compares the presented token with every allowed one in constant time
/// (no early exit on the first match or the first differing byte).
fn token_ok(headers: &HeaderMap, allowed: &[String]) -> bool {
    use subtle::ConstantTimeEq;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if presented.is_empty() {
        return false;
    }
    let mut ok = subtle::Choice::from(0);
    for t in allowed {
        ok |= t.as_bytes().ct_eq(presented.as_bytes());
    }
    ok.into()
}

fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"warden\"")],
        Json(serde_json::json!({ "error": why })),
    )
        .into_response()
}

/// Reads need a read or admin token only when read tokens are configured.
fn may_read(shared: &Shared, headers: &HeaderMap) -> bool {
    shared.tokens.read.is_empty()
        || token_ok(headers, &shared.tokens.read)
        || token_ok(headers, &shared.tokens.admin)
}

fn json_error(status: StatusCode, error: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": error.into() }))).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    state: Option<String>,
    /// Newest first, at most this many (default 200, at most 5000).
    limit: Option<usize>,
}

async fn list_quarantines(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if !may_read(&shared, &headers) {
        return unauthorized("a read or admin bearer token is required");
    }
    let Some(r) = &shared.responder else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "responder not running");
    };
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => match serde_json::from_value(serde_json::Value::String(s.to_owned())) {
            Ok(st) => Some(st),
            Err(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown state {s:?}: pending, revoked, revoke_failed, shadow or released"
                    ),
                )
            }
        },
    };
    let all = r.board.list(state);
    let total = all.len();
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    let list: Vec<_> = all.into_iter().take(limit).map(public_view).collect();
    Json(serde_json::json!({ "total": total, "quarantines": list })).into_response()
}

/// A quarantine as the API shows it: without the raw events and the dedup
/// hashes, which are for learning and bookkeeping.
fn public_view(q: Arc<crate::respond::incident::Quarantine>) -> serde_json::Value {
    let mut v = serde_json::to_value(&*q).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("flagged_events");
        o.remove("seen_events");
    }
    v
}

async fn get_quarantine(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !may_read(&shared, &headers) {
        return unauthorized("a read or admin bearer token is required");
    }
    let Some(r) = &shared.responder else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "responder not running");
    };
    if let Some(q) = r.board.get(&id) {
        return Json(public_view(q)).into_response();
    }
    if let Some((url, prefix)) = r.shared_registry.clone() {
        let found = tokio::task::spawn_blocking(move || {
            crate::respond::registry::Registry::redis(&url, &prefix)
                .and_then(|mut reg| reg.get(&id))
                .map_err(|e| e.to_string())
        })
        .await;
        return match found {
            Ok(Ok(Some(q))) => Json(public_view(Arc::new(q))).into_response(),
            Ok(Ok(None)) => json_error(StatusCode::NOT_FOUND, "no such quarantine"),
            Ok(Err(e)) => json_error(StatusCode::SERVICE_UNAVAILABLE, e),
            Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    json_error(StatusCode::NOT_FOUND, "no such quarantine")
}

/// The broker's question before it mints a credential: is this agent
/// quarantined? Answered from the shared registry when there is one.
async fn agent_status(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(agent_id): Path<String>,
) -> Response {
    if !may_read(&shared, &headers) {
        return unauthorized("a read or admin bearer token is required");
    }
    let Some(r) = &shared.responder else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "responder not running");
    };
    let all: Vec<Arc<crate::respond::incident::Quarantine>> = match r.shared_registry.clone() {
        Some((url, prefix)) => {
            let id = agent_id.clone();
            let found = tokio::task::spawn_blocking(move || {
                crate::respond::registry::Registry::redis(&url, &prefix)
                    .and_then(|mut reg| reg.of_agent(&id))
                    .map_err(|e| e.to_string())
            })
            .await;
            match found {
                Ok(Ok(v)) => v.into_iter().map(Arc::new).collect(),
                // Fail closed: a broker that cannot learn the answer must
                // not take it as "not quarantined".
                Ok(Err(e)) => return json_error(StatusCode::SERVICE_UNAVAILABLE, e),
                Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        None => r.board.of_agent(&agent_id),
    };
    let blocking: Vec<_> = all.iter().filter(|q| q.state.blocks()).collect();
    let body = serde_json::json!({
        "agent_id": agent_id,
        "quarantined": !blocking.is_empty(),
        "quarantines": blocking.iter().map(|q| serde_json::json!({
            "id": q.id,
            "state": q.state.as_str(),
            "credential": q.credential,
            "agent_instance": q.agent_instance,
            "created_at": q.created_at,
        })).collect::<Vec<_>>(),
    });
    Json(body).into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    actor: String,
    reason: String,
    #[serde(default)]
    false_positive: bool,
}

async fn release(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if shared.tokens.admin.is_empty() {
        return json_error(
            StatusCode::FORBIDDEN,
            "releases are disabled: set admin tokens in the environment (WARDEN_ADMIN_TOKEN)",
        );
    }
    if !token_ok(&headers, &shared.tokens.admin) {
        return unauthorized("an admin bearer token is required");
    }
    let req: ReleaseRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("body must be {{\"actor\", \"reason\", \"false_positive\"}}: {e}"),
            )
        }
    };
    if req.actor.trim().is_empty() || req.reason.trim().is_empty() {
        return json_error(
            StatusCode::BAD_REQUEST,
            "actor and reason must not be empty",
        );
    }
    // They travel into the audit log, Slack and PagerDuty: keep them short.
    if req.actor.chars().count() > 200 || req.reason.chars().count() > 2000 {
        return json_error(
            StatusCode::BAD_REQUEST,
            "actor is limited to 200 characters and reason to 2000",
        );
    }
    let Some(r) = &shared.responder else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "responder not running");
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let msg = crate::respond::responder::Msg::Release {
        id,
        actor: req.actor,
        reason: req.reason,
        false_positive: req.false_positive,
        reply: tx,
    };
    if r.tx.send(msg).await.is_err() {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "responder not running");
    }
    use crate::respond::responder::ReleaseError;
    match rx.await {
        Ok(Ok(q)) => Json(public_view(Arc::new(q))).into_response(),
        Ok(Err(e @ ReleaseError::NotFound(_))) => json_error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e @ ReleaseError::AlreadyReleased(_))) => {
            json_error(StatusCode::CONFLICT, e.to_string())
        }
        Ok(Err(e)) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => json_error(StatusCode::SERVICE_UNAVAILABLE, "responder stopped"),
    }
}

fn reject(shared: &Shared, index: usize, raw: &[u8], e: &DecodeError) {
    shared
        .metrics
        .rejected
        .get_or_create(&KindLabel {
            kind: e.kind.as_str(),
        })
        .inc();
    let mut sink = shared.rejects.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(err) = sink
        .reject("http", index as u64, raw, e)
        .and_then(|()| sink.flush())
    {
        tracing::error!(error = %err, "Cannot write the rejects file.");
    }
}

#[cfg(test)]
mod tests {
    use super::split_items;

    #[test]
    fn splits_arrays_lines_and_objects() {
        let body = br#" [ {"a":1}, {"b":[2,3]} ] "#;
        let items = split_items(body).unwrap();
        assert_eq!(&body[items[0].clone()], br#"{"a":1}"#);
        assert_eq!(&body[items[1].clone()], br#"{"b":[2,3]}"#);
        let body = b"{\"a\":1}\n\n{\"b\":2}\r\n";
        let items = split_items(body).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(&body[items[0].clone()], br#"{"a":1}"#);
        assert_eq!(split_items(br#"{"a":1}"#).unwrap().len(), 1);
        assert!(split_items(b"[1,").is_err());
    }
}
