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

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
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
