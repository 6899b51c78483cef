//! HTTP routes of `warden run`, on two listeners.
//!
//! Ingest listener (`server.listen`), where agents' runtimes post:
//!
//! - `POST /v1/events` (ingest token once any token is set): one JSON
//!   event, a JSON array of events, or NDJSON (`Content-Type` a JSON or
//!   NDJSON type, or none; 415 otherwise). Answers 202 with
//!   accepted/rejected counts and per-item errors (index, field, reason;
//!   one per invalid field) when at least one event is accepted, 422 with
//!   the same body when every event is rejected, 400 when the body holds
//!   no event or is not a JSON array; 429 with `Retry-After` when a worker
//!   queue is full (nothing of that request is queued); 413 past
//!   `server.max-body-bytes`. Every error is JSON: `{"error", …}`.
//! - `GET /live`: the process is up.
//! - `GET /ready`: profiles restored, workers running and, with Kafka,
//!   partitions assigned (503 before).
//! - the quarantine routes below, deprecated there for one release: each
//!   logs a warning once and answers with `Deprecation: true`.
//!
//! Admin listener (`server.admin-listen`), for operators and brokers:
//!
//! - `GET /live`, `GET /ready`.
//! - `GET /metrics` (read): Prometheus text format.
//! - `GET /v1/quarantines[?state=…]`, `GET /v1/quarantines/{id}` (read):
//!   the registry.
//! - `GET /v1/quarantines/agents/{agent_id}` (read): whether a broker may
//!   mint this agent a credential (`quarantined: true` means no; 503 when
//!   the shared registry cannot be read in time).
//! - `POST /v1/quarantines/{id}/release` (admin):
//!   `{"actor","reason","false_positive"}`.
//!
//! The roles and their tokens are in [`super::auth`].

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::mpsc::error::TrySendError;

use super::auth::{require_admin, require_ingest, require_read};
use super::rejects::Rejected;
use super::worker::count_event;
use super::Shared;
use crate::ingest::decode::{decode_body, more_problems, DecodeError};
use crate::pipeline::Msg;
use crate::service::metrics::KindLabel;

/// The ingest listener's router. `admin_addr` is named in the deprecation
/// warnings of the quarantine routes still served here.
pub fn ingest_router(shared: Arc<Shared>, admin_addr: String) -> Router {
    let limit = shared.config.server.max_body_bytes;
    let events = Router::new()
        .route("/v1/events", post(ingest))
        .route_layer(from_fn_with_state(shared.clone(), require_ingest));
    let warned: Arc<Mutex<HashSet<String>>> = Arc::default();
    let deprecated =
        quarantine_routes(&shared).route_layer(from_fn(move |req: Request, next: Next| {
            let warned = warned.clone();
            let admin_addr = admin_addr.clone();
            async move { deprecated(&warned, &admin_addr, req, next).await }
        }));
    Router::new()
        .merge(events)
        .merge(deprecated)
        .fallback(not_found)
        .layer(from_fn_with_state(limit, json_errors))
        .merge(probes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

/// The admin listener's router.
pub fn admin_router(shared: Arc<Shared>) -> Router {
    let limit = shared.config.server.max_body_bytes;
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(from_fn_with_state(shared.clone(), require_read));
    Router::new()
        .merge(metrics)
        .merge(super::admin::routes(&shared))
        .merge(quarantine_routes(&shared))
        .fallback(not_found)
        .layer(from_fn_with_state(limit, json_errors))
        .merge(probes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

async fn not_found(req: Request) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

/// Makes every error answer JSON (`{"error": …}`): axum's own rejections
/// (body too large, bad query string, wrong method) are plain text. A body
/// over the limit is named with its limit and key.
async fn json_errors(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return (
            status,
            Json(serde_json::json!({
                "error": format!("request body is larger than {limit} bytes (server.max-body-bytes); send fewer events per request"),
                "limit_bytes": limit,
                "key": "server.max-body-bytes",
            })),
        )
            .into_response();
    }
    let (parts, body) = resp.into_parts();
    // axum's rejection texts are short; cap what is read anyway.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut out = json_error(status, text);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

fn probes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
}

/// The quarantine API, each route behind the role it needs.
fn quarantine_routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    let reads = Router::new()
        .route("/v1/quarantines", get(list_quarantines))
        .route("/v1/quarantines/{id}", get(get_quarantine))
        .route("/v1/quarantines/agents/{agent_id}", get(agent_status))
        .route_layer(from_fn_with_state(shared.clone(), require_read));
    let release = Router::new()
        .route("/v1/quarantines/{id}/release", post(release))
        .route_layer(from_fn_with_state(shared.clone(), require_admin));
    reads.merge(release)
}

/// Serves a route that moved to the admin listener, warning once per
/// route (not per request) and marking every answer `Deprecation: true`.
async fn deprecated(
    warned: &Mutex<HashSet<String>>,
    admin_addr: &str,
    req: Request,
    next: Next,
) -> Response {
    let route = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map_or("", MatchedPath::as_str)
    );
    let first = warned
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(route.clone());
    if first {
        tracing::warn!(
            %route,
            admin_addr,
            "Deprecated: this route moved to the admin listener (server.admin-listen); the ingest listener stops serving it in the next release."
        );
    }
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert("deprecation", HeaderValue::from_static("true"));
    resp
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

/// OpenMetrics when the scraper asks for it (Prometheus does), else the
/// Prometheus text format 0.0.4.
async fn metrics(State(shared): State<Arc<Shared>>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = shared.metrics.negotiate(accept);
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
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

/// The media types `POST /v1/events` takes: JSON (one event or an array)
/// and the names NDJSON / JSON Lines go by. No `Content-Type` at all is
/// taken too, the body telling which it is.
const EVENT_TYPES: [&str; 6] = [
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/jsonlines",
];

/// Refuses a body declared as something else (curl's default
/// `application/x-www-form-urlencoded`, say): 415, naming the types taken.
fn refuse_content_type(headers: &axum::http::HeaderMap) -> Option<Response> {
    let value = headers.get(header::CONTENT_TYPE)?;
    let declared = value.to_str().unwrap_or("");
    let essence = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if EVENT_TYPES.contains(&essence.as_str()) {
        return None;
    }
    Some(json_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Type {declared:?} is not taken: send events as application/json (one event or an array) or application/x-ndjson (one per line)"
        ),
    ))
}

async fn ingest(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(resp) = refuse_content_type(&headers) {
        return resp;
    }
    let items = match split_items(&body) {
        Ok(items) => items,
        Err(reason) => return json_error(StatusCode::BAD_REQUEST, reason),
    };
    if items.is_empty() {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the body holds no event: send one JSON event, an array of events, or one per line",
        );
    }
    let max = shared.config.ingest.max_event_bytes;
    let workers = shared.router.workers();
    // Decoded once, here: the workers read the same events, borrowed from
    // the body, instead of decoding them again.
    let decoded = decode_body(body, items, max);
    let mut routed: Vec<Vec<u32>> = vec![Vec::new(); workers];
    let mut errors = Vec::new();
    let mut rejected = Vec::new();
    let mut rejected_items = 0;
    {
        let body = decoded.backing_cart();
        for (index, (r, ev)) in decoded.get().0.iter().enumerate() {
            match ev {
                Ok(ev) => {
                    count_event(&shared, ev);
                    routed[shared.router.owner(ev.agent_id())].push(index as u32);
                }
                Err(e) => {
                    let raw = &body[r.clone()];
                    rejected_items += 1;
                    for e in std::iter::once(e.clone()).chain(more_problems(raw, e)) {
                        errors.push(ItemError {
                            index,
                            kind: e.kind.as_str(),
                            field: e.field,
                            reason: e.to_string(),
                        });
                    }
                    rejected.push(reject(&shared, index, raw, e.clone()));
                }
            }
        }
    }
    shared.rejects.write(rejected).await;
    // Reserve a slot in every queue first: a request is queued whole or not
    // at all, so a client retrying after 429 causes no partial duplicates.
    let mut permits = Vec::new();
    for (w, batch) in routed.iter().enumerate() {
        if batch.is_empty() {
            continue;
        }
        match shared.router.queue(w).try_reserve() {
            Ok(p) => permits.push((w, p)),
            Err(TrySendError::Full(())) => {
                shared.metrics.throttled.inc();
                let retry = shared.config.server.retry_after_secs.to_string();
                let mut resp = json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "a worker queue is full; nothing of this request was queued: retry it after Retry-After seconds",
                );
                if let Ok(v) = HeaderValue::from_str(&retry) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return resp;
            }
            Err(TrySendError::Closed(())) => {
                return json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
            }
        }
    }
    let mut accepted = 0;
    let decoded = Arc::new(decoded);
    for (w, permit) in permits {
        let items = std::mem::take(&mut routed[w]);
        accepted += items.len();
        permit.send(Msg::Events {
            batch: decoded.clone(),
            items,
        });
    }
    let reply = IngestReply {
        accepted,
        rejected: rejected_items,
        errors,
    };
    // Nothing taken: the sender must fix the events, not retry them.
    let status = if accepted == 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(reply)).into_response()
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
    Query(q): Query<ListQuery>,
) -> Response {
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

async fn get_quarantine(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(r) = &shared.responder else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "responder not running");
    };
    if let Some(q) = r.board.get(&id) {
        return Json(public_view(q)).into_response();
    }
    // Not in memory: older released ones are only in the registry.
    let found = match &shared.redis_lookup {
        Some(lookup) => lookup.get(id).await,
        None => super::lookup::file_get(shared.config.server.data_dir.clone(), id).await,
    };
    match found {
        Ok(Some(q)) => Json(public_view(Arc::new(q))).into_response(),
        Ok(None) => json_error(StatusCode::NOT_FOUND, "no such quarantine"),
        Err(e) => registry_unavailable(&e),
    }
}

/// The fail-closed answer: the cause is logged, not sent (it may name
/// hosts).
fn registry_unavailable(e: &super::lookup::LookupError) -> Response {
    tracing::warn!(error = %e, "Quarantine registry unreadable; answering 503.");
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the quarantine registry cannot be read; treat the agent as quarantined and retry",
    )
}

/// The broker's question before it mints a credential: is this agent
/// quarantined? Answered from the shared registry when there is one.
async fn agent_status(State(shared): State<Arc<Shared>>, Path(agent_id): Path<String>) -> Response {
    let Some(r) = &shared.responder else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "responder not running");
    };
    let all: Vec<Arc<crate::respond::incident::Quarantine>> = match &shared.redis_lookup {
        Some(lookup) => match lookup.of_agent(agent_id.clone()).await {
            Ok(v) => v.into_iter().map(Arc::new).collect(),
            // Fail closed: a broker that cannot learn the answer must
            // not take it as "not quarantined".
            Err(e) => return registry_unavailable(&e),
        },
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
            // Every credential of the agent in it, each with its own
            // revocation state (fingerprints, or handles).
            "credentials": q.credentials,
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
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
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

/// Counts a rejected item and keeps what the rejects file records of it.
fn reject(shared: &Shared, index: usize, raw: &[u8], error: DecodeError) -> Rejected {
    shared
        .metrics
        .rejected
        .get_or_create(&KindLabel {
            kind: error.kind.as_str(),
        })
        .inc();
    let keep = raw.len().min(shared.config.ingest.reject_sample_bytes);
    Rejected {
        index: index as u64,
        sample: raw[..keep].to_vec(),
        error,
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
