//! The admin API on the admin listener (`server.admin-listen`): explain an
//! agent, live thresholds and modes, suppressions, feedback, and the
//! OpenAPI document. Reads need the `read` role, changes the `admin` role
//! ([`super::auth`]); every change is written to the audit log with its
//! actor, the old and the new value.
//!
//! - `GET /openapi.json` (read): OpenAPI 3.1 of every admin-listener route.
//! - `GET /v1/agents/{agent_id}/explain[?decisions=N]` (read): the profile
//!   in human terms, threshold and mode with their sources, the last N
//!   calls and the flagged ones with reasons.
//! - `GET /v1/policy` (read); `PUT`/`DELETE /v1/policy/default`,
//!   `/v1/policy/classes/{class}`, `/v1/policy/agents/{agent_id}` (admin).
//! - `GET /v1/suppressions` (read); `POST /v1/suppressions`,
//!   `DELETE /v1/suppressions/{id}` (admin).
//! - `POST /v1/feedback` (admin); `GET /v1/feedback` (read): labelled
//!   examples as JSON Lines, for `warden replay --labels`.

pub mod habits;
pub mod openapi;
pub mod policy;
pub mod suppress;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{require_admin, require_read};
use super::Shared;
use crate::decide::Mode;
use policy::{PolicyStore, Setting};
use suppress::{Rule, Skip, SuppressionStore};

/// The admin API's state, shared with the workers.
pub struct Admin {
    pub policy: Arc<PolicyStore>,
    pub suppressions: Arc<SuppressionStore>,
    /// Labelled examples from feedback (JSON Lines).
    pub feedback_path: std::path::PathBuf,
    /// With Redis on: the shared list of labelled examples
    /// (`<prefix>:feedback`), which any instance exports.
    feedback_redis: Option<(redis::Client, String)>,
    /// Serialises appends to the feedback file.
    feedback_lock: tokio::sync::Mutex<()>,
}

/// Why the admin state could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("policy overrides: {0}")]
    Policy(#[from] policy::PolicyStoreError),
    #[error("suppressions: {0}")]
    Suppressions(#[from] suppress::SuppressionStoreError),
}

impl Admin {
    pub fn open(
        cfg: &crate::config::Config,
        redis: Option<(redis::Client, String)>,
    ) -> Result<Self, AdminError> {
        let dir = &cfg.server.data_dir;
        Ok(Self {
            feedback_redis: redis
                .clone()
                .map(|(c, prefix)| (c, format!("{prefix}:feedback"))),
            suppressions: Arc::new(SuppressionStore::open(dir, redis.clone())?),
            policy: Arc::new(PolicyStore::open(dir, redis)?),
            feedback_path: dir.join("feedback.jsonl"),
            feedback_lock: tokio::sync::Mutex::new(()),
        })
    }
}

/// Warns about a failing admin sync (Redis) once, then at most once a
/// minute while it lasts, and says when it recovers: a Redis outage must
/// not print a line every 3 s.
#[derive(Debug, Default)]
pub struct SyncLog {
    failing_since: Option<std::time::Instant>,
    last_warned: Option<std::time::Instant>,
}

impl SyncLog {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    /// Logs what this round's outcome calls for; returns what it logged.
    pub fn record(&mut self, errors: &[String], now: std::time::Instant) -> Option<&'static str> {
        if errors.is_empty() {
            let since = self.failing_since.take()?;
            self.last_warned = None;
            tracing::info!(
                failed_for_secs = now.duration_since(since).as_secs(),
                "Admin state in sync with Redis again."
            );
            return Some("recovered");
        }
        let since = *self.failing_since.get_or_insert(now);
        if self
            .last_warned
            .is_none_or(|t| now.duration_since(t) >= Self::EVERY)
        {
            self.last_warned = Some(now);
            tracing::warn!(
                errors = ?errors,
                failing_for_secs = now.duration_since(since).as_secs(),
                "Cannot sync policy overrides or suppressions with Redis; the last ones stay in force and hits are kept for the next sync."
            );
            return Some("warned");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::SyncLog;
    use std::time::{Duration, Instant};

    #[test]
    fn a_sync_outage_warns_once_a_minute_and_says_when_it_ends() {
        let mut log = SyncLog::default();
        let t0 = Instant::now();
        let err = vec!["Redis: connection refused".to_owned()];
        assert_eq!(log.record(&[], t0), None);
        assert_eq!(log.record(&err, t0), Some("warned"));
        for s in (3..60).step_by(3) {
            assert_eq!(log.record(&err, t0 + Duration::from_secs(s)), None, "{s}");
        }
        assert_eq!(
            log.record(&err, t0 + Duration::from_secs(60)),
            Some("warned")
        );
        assert_eq!(
            log.record(&[], t0 + Duration::from_secs(63)),
            Some("recovered")
        );
        assert_eq!(log.record(&[], t0 + Duration::from_secs(66)), None);
        assert_eq!(
            log.record(&err, t0 + Duration::from_secs(69)),
            Some("warned")
        );
    }
}

/// The admin API routes, each behind the role it needs.
pub fn routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    let reads = Router::new()
        .route("/openapi.json", get(openapi_doc))
        .route("/v1/agents/{agent_id}/explain", get(explain))
        .route("/v1/policy", get(get_policy))
        .route("/v1/suppressions", get(list_suppressions))
        .route("/v1/feedback", get(export_feedback))
        .route_layer(from_fn_with_state(shared.clone(), require_read));
    let writes = Router::new()
        .route(
            "/v1/policy/default",
            put(put_default).delete(delete_default),
        )
        .route(
            "/v1/policy/classes/{class}",
            put(put_class).delete(delete_class),
        )
        .route(
            "/v1/policy/agents/{agent_id}",
            put(put_agent).delete(delete_agent),
        )
        .route("/v1/suppressions", post(add_suppression))
        .route(
            "/v1/suppressions/{id}",
            axum::routing::delete(delete_suppression),
        )
        .route("/v1/feedback", post(feedback))
        .route_layer(from_fn_with_state(shared.clone(), require_admin));
    reads.merge(writes)
}

/// A 4xx/5xx answer: `{"error", "field"}` (`field` names the offending
/// body field when there is one).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The change cannot be made in this deployment (409).
    #[error("{message}")]
    Conflict {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Invalid {
        field,
        message: message.into(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, field) = match &self {
            Self::Invalid { field, .. } => (StatusCode::BAD_REQUEST, Some(*field)),
            Self::Conflict { field, .. } => (StatusCode::CONFLICT, Some(*field)),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, None),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        let mut body = json!({ "error": self.to_string() });
        if let Some(f) = field {
            body["field"] = f.into();
        }
        (status, Json(body)).into_response()
    }
}

/// Parses a JSON body, naming the field at fault.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        // serde names the field in "unknown field `x`" / "missing field `x`".
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .map_or("body", field_name);
        invalid(field, format!("invalid body: {msg}"))
    })
}

/// Field names known to the API, so the error names one without leaking
/// memory per request.
fn field_name(f: &str) -> &'static str {
    const KNOWN: [&str; 16] = [
        "actor",
        "reason",
        "threshold_bits",
        "mode",
        "agent",
        "tool",
        "resource",
        "signal",
        "skip",
        "expires_at",
        "expires_in",
        "verdict",
        "incident",
        "event_id",
        "note",
        "body",
    ];
    KNOWN.iter().find(|k| **k == f).copied().unwrap_or("body")
}

fn check_actor_reason(actor: &str, reason: &str) -> Result<(), ApiError> {
    if actor.trim().is_empty() || actor.chars().count() > 200 {
        return Err(invalid("actor", "actor must be 1 to 200 characters"));
    }
    if reason.trim().is_empty() || reason.chars().count() > 2000 {
        return Err(invalid("reason", "reason must be 1 to 2000 characters"));
    }
    Ok(())
}

fn audit(shared: &Shared, kind: &str, body: Value) {
    match &shared.responder {
        Some(r) => r.audit.record(kind, body),
        None => tracing::error!(kind, "No audit log; an admin change was not audited."),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

// === policy ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingRequest {
    /// Checked by hand so that a wrong type names the field.
    #[serde(default)]
    threshold_bits: Option<Value>,
    #[serde(default)]
    mode: Option<String>,
    actor: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActorRequest {
    actor: String,
    reason: String,
}

/// Where a setting applies.
#[derive(Debug, Clone)]
enum Level {
    Default,
    Class(String),
    Agent(String),
}

impl Level {
    fn describe(&self) -> Value {
        match self {
            Self::Default => json!({"level": "default"}),
            Self::Class(c) => json!({"level": "class", "class": c}),
            Self::Agent(a) => json!({"level": "agent", "agent_id": a}),
        }
    }
}

fn parse_mode(s: &str) -> Result<Mode, ApiError> {
    match s {
        "learn" => Ok(Mode::Learn),
        "shadow" => Ok(Mode::Shadow),
        "enforce" => Ok(Mode::Enforce),
        _ => Err(invalid(
            "mode",
            format!("unknown mode {s:?}: learn, shadow or enforce"),
        )),
    }
}

async fn get_policy(State(shared): State<Arc<Shared>>) -> Response {
    let p = &shared.config.policy;
    let overrides = shared.admin.policy.snapshot();
    Json(json!({
        "config": {
            "mode": p.mode,
            "threshold_bits": p.threshold_bits,
            "calibrate": p.calibrate,
            "classes": p.classes.iter().map(|c| json!({
                "name": c.name, "agents": c.agents, "threshold_bits": c.threshold_bits, "mode": c.mode,
            })).collect::<Vec<_>>(),
        },
        "overrides": &*overrides,
        "precedence": "api agent > config agent > api class > config class > calibration > api default > config default",
    }))
    .into_response()
}

/// Why this deployment cannot enforce, if it cannot: enforce without a
/// revoker would quarantine on paper only (the config's own enforce is
/// refused at start for the same open-ingest reason).
fn enforce_refusal(shared: &Shared) -> Option<&'static str> {
    if shared.config.response.revokers.is_empty() {
        return Some(
            "no revoker is configured (response.revokers): enforce would revoke nothing; \
             configure one (Vault, OAuth, webhook or kind = \"log\") and restart",
        );
    }
    let mut cfg = shared.config.clone();
    cfg.policy.mode = Mode::Enforce;
    if cfg
        .check_exposure(!shared.tokens.ingest.is_empty())
        .is_err()
    {
        return Some(
            "HTTP ingest is off loopback without an ingest token (server.ingest-tokens-env): \
             anyone reaching it could get credentials revoked",
        );
    }
    None
}

async fn set_level(shared: Arc<Shared>, level: Level, body: Bytes) -> Result<Response, ApiError> {
    let req: SettingRequest = parse(&body)?;
    check_actor_reason(&req.actor, &req.reason)?;
    if req.threshold_bits.is_none() && req.mode.is_none() {
        return Err(invalid(
            "threshold_bits",
            "set threshold_bits, mode, or both",
        ));
    }
    let threshold_bits = match &req.threshold_bits {
        None => None,
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=200.0).contains(&t) => Some(t as f32),
            _ => {
                return Err(invalid(
                    "threshold_bits",
                    "threshold_bits must be a number from 0 to 200",
                ))
            }
        },
    };
    let mode = req.mode.as_deref().map(parse_mode).transpose()?;
    if mode == Some(Mode::Enforce) {
        if let Some(why) = enforce_refusal(&shared) {
            audit(
                &shared,
                "policy_refused",
                json!({"actor": req.actor, "reason": req.reason, "target": level.describe(),
                       "requested": {"mode": "enforce", "threshold_bits": threshold_bits}, "refused": why}),
            );
            tracing::warn!(actor = %req.actor, target = %level.describe(), refused = why, "Switch to enforce refused.");
            return Err(ApiError::Conflict {
                field: "mode",
                message: why.to_owned(),
            });
        }
    }
    if let Level::Class(c) | Level::Agent(c) = &level {
        if c.is_empty() || c.len() > 256 {
            return Err(invalid(
                "body",
                "the class or agent id must be 1 to 256 bytes",
            ));
        }
    }
    let setting = Setting {
        threshold_bits,
        mode,
        set_by: req.actor.clone(),
        set_at: now(),
        reason: req.reason.clone(),
    };
    let store = shared.admin.policy.clone();
    let lv = level.clone();
    let ((old, set), now_set) = tokio::task::spawn_blocking(move || {
        store.update(|o| {
            let old = match &lv {
                Level::Default => o.default.take(),
                Level::Class(c) => o.classes.remove(c),
                Level::Agent(a) => o.agents.remove(a),
            };
            // A field left out keeps its value: setting a threshold does
            // not reset a mode set before.
            let mut next = setting;
            if let Some(prev) = &old {
                next.threshold_bits = next.threshold_bits.or(prev.threshold_bits);
                next.mode = next.mode.or(prev.mode);
            }
            let set = next.clone();
            match &lv {
                Level::Default => o.default = Some(next),
                Level::Class(c) => {
                    o.classes.insert(c.clone(), next);
                }
                Level::Agent(a) => {
                    o.agents.insert(a.clone(), next);
                }
            }
            Ok::<_, ApiError>((old, set))
        })
    })
    .await
    .map_err(|e| ApiError::Unavailable(e.to_string()))?
    .map_err(|e| ApiError::Unavailable(e.to_string()))??;
    audit(
        &shared,
        "policy_set",
        json!({"actor": req.actor, "reason": req.reason, "target": level.describe(),
               "old": old, "new": set}),
    );
    tracing::info!(actor = %req.actor, target = %level.describe(), "Policy override set.");
    Ok(
        Json(json!({"target": level.describe(), "old": old, "overrides": &*now_set}))
            .into_response(),
    )
}

async fn clear_level(shared: Arc<Shared>, level: Level, body: Bytes) -> Result<Response, ApiError> {
    let req: ActorRequest = parse(&body)?;
    check_actor_reason(&req.actor, &req.reason)?;
    let store = shared.admin.policy.clone();
    let lv = level.clone();
    let (old, now_set) = tokio::task::spawn_blocking(move || {
        store.update(|o| {
            let old = match &lv {
                Level::Default => o.default.take(),
                Level::Class(c) => o.classes.remove(c),
                Level::Agent(a) => o.agents.remove(a),
            };
            old.ok_or_else(|| ApiError::NotFound("no such override".into()))
        })
    })
    .await
    .map_err(|e| ApiError::Unavailable(e.to_string()))?
    .map_err(|e| ApiError::Unavailable(e.to_string()))??;
    audit(
        &shared,
        "policy_cleared",
        json!({"actor": req.actor, "reason": req.reason, "target": level.describe(), "old": old, "new": null}),
    );
    Ok(Json(json!({"target": level.describe(), "overrides": &*now_set})).into_response())
}

async fn put_default(State(s): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    set_level(s, Level::Default, body).await
}
async fn delete_default(State(s): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    clear_level(s, Level::Default, body).await
}
async fn put_class(
    State(s): State<Arc<Shared>>,
    Path(c): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    set_level(s, Level::Class(c), body).await
}
async fn delete_class(
    State(s): State<Arc<Shared>>,
    Path(c): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    clear_level(s, Level::Class(c), body).await
}
async fn put_agent(
    State(s): State<Arc<Shared>>,
    Path(a): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    set_level(s, Level::Agent(a), body).await
}
async fn delete_agent(
    State(s): State<Arc<Shared>>,
    Path(a): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    clear_level(s, Level::Agent(a), body).await
}

// === suppressions ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressionRequest {
    agent: String,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    signal: Option<String>,
    /// `alert` (default) or `learning`.
    #[serde(default)]
    skip: Option<String>,
    reason: String,
    actor: String,
    /// RFC 3339.
    #[serde(default)]
    expires_at: Option<String>,
    /// A duration from now, e.g. `"7d"`, `"2h"`.
    #[serde(default)]
    expires_in: Option<String>,
}

/// Longest a suppression may run: a forgotten rule must not hide attacks
/// for ever.
const MAX_SUPPRESSION: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

fn rule_view(r: &Rule, now_ms: i64) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["expired"] = r.expired(now_ms).into();
    v
}

async fn list_suppressions(State(shared): State<Arc<Shared>>) -> Response {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let rules = shared.admin.suppressions.snapshot();
    Json(json!({
        "suppressions": rules.iter().map(|r| rule_view(r, now_ms)).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn add_suppression(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SuppressionRequest = parse(&body)?;
    check_actor_reason(&req.actor, &req.reason)?;
    if req.agent.trim().is_empty() || req.agent.len() > 256 {
        return Err(invalid(
            "agent",
            "agent (an agent id, a class, or an id pattern with *) must be 1 to 256 bytes",
        ));
    }
    let skip = match req.skip.as_deref() {
        None | Some("alert") => Skip::Alert,
        Some("learning") => Skip::Learning,
        Some(other) => {
            return Err(invalid(
                "skip",
                format!("unknown skip {other:?}: alert or learning"),
            ))
        }
    };
    let now = chrono::Utc::now();
    let expires = match (&req.expires_at, &req.expires_in) {
        (Some(at), None) => chrono::DateTime::parse_from_rfc3339(at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| invalid("expires_at", format!("expires_at is not RFC 3339: {e}")))?,
        (None, Some(d)) => {
            let d = humantime_serde::re::humantime::parse_duration(d)
                .map_err(|e| invalid("expires_in", format!("expires_in is not a duration: {e}")))?;
            now + chrono::Duration::from_std(d)
                .map_err(|_| invalid("expires_in", "expires_in is too long"))?
        }
        _ => return Err(invalid(
            "expires_at",
            "a suppression needs an expiry: expires_at (RFC 3339) or expires_in (\"7d\"), not both",
        )),
    };
    if expires <= now {
        return Err(invalid("expires_at", "the expiry is in the past"));
    }
    if (expires - now).to_std().unwrap_or_default() > MAX_SUPPRESSION {
        return Err(invalid(
            "expires_at",
            "a suppression may last at most 90 days",
        ));
    }
    let id = format!(
        "s-{:016x}",
        xxhash_rust::xxh3::xxh3_64(
            format!(
                "{}{}{}",
                req.agent,
                req.actor,
                now.timestamp_nanos_opt().unwrap_or(0)
            )
            .as_bytes()
        )
    );
    let rule = Rule {
        id,
        agent: req.agent,
        tool: req.tool.filter(|t| !t.is_empty()),
        resource: req.resource.filter(|r| !r.is_empty()),
        signal: req.signal.filter(|s| !s.is_empty()),
        skip,
        reason: req.reason,
        created_by: req.actor,
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        expires_ms: expires.timestamp_millis(),
        hits: Default::default(),
        unsynced: Default::default(),
    };
    let store = shared.admin.suppressions.clone();
    let rule = tokio::task::spawn_blocking(move || store.add(rule))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let view = rule_view(&rule, now.timestamp_millis());
    audit(
        &shared,
        "suppression_added",
        json!({"actor": rule.created_by, "reason": rule.reason, "old": null, "new": view}),
    );
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn delete_suppression(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: ActorRequest = parse(&body)?;
    check_actor_reason(&req.actor, &req.reason)?;
    let store = shared.admin.suppressions.clone();
    let removed = tokio::task::spawn_blocking(move || store.remove(&id))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound("no such suppression".into()))?;
    let view = rule_view(&removed, chrono::Utc::now().timestamp_millis());
    audit(
        &shared,
        "suppression_removed",
        json!({"actor": req.actor, "reason": req.reason, "old": view, "new": null}),
    );
    Ok(Json(view).into_response())
}

// === explain ===

#[derive(Debug, Deserialize)]
struct ExplainQuery {
    decisions: Option<usize>,
}

async fn explain(
    State(shared): State<Arc<Shared>>,
    Path(agent_id): Path<String>,
    Query(q): Query<ExplainQuery>,
) -> Result<Response, ApiError> {
    let n = q.decisions.unwrap_or(20).clamp(1, 200);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let w = shared.router.owner(&agent_id);
    shared
        .router
        .send(
            w,
            crate::pipeline::Msg::Explain {
                agent_id: agent_id.clone(),
                decisions: n,
                reply: tx,
            },
        )
        .await;
    match tokio::time::timeout(std::time::Duration::from_secs(5), rx).await {
        Ok(Ok(Some(v))) => Ok(Json(v).into_response()),
        Ok(Ok(None)) => Err(ApiError::NotFound(format!(
            "no profile for agent {agent_id:?} on this instance"
        ))),
        _ => Err(ApiError::Unavailable(
            "the worker did not answer in 5 s".into(),
        )),
    }
}

// === feedback ===

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Verdict {
    FalsePositive,
    TruePositive,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    /// A quarantine id.
    #[serde(default)]
    incident: Option<String>,
    /// A decided call's event id.
    #[serde(default)]
    event_id: Option<String>,
    /// `false_positive` or `true_positive`.
    verdict: String,
    actor: String,
    #[serde(default)]
    note: String,
}

async fn feedback(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let req: FeedbackRequest = parse(&body)?;
    check_actor_reason(&req.actor, "-")?;
    let verdict = match req.verdict.as_str() {
        "false_positive" => Verdict::FalsePositive,
        "true_positive" => Verdict::TruePositive,
        other => {
            return Err(invalid(
                "verdict",
                format!("unknown verdict {other:?}: false_positive or true_positive"),
            ))
        }
    };
    if req.note.chars().count() > 2000 {
        return Err(invalid("note", "note is limited to 2000 characters"));
    }
    let Some(r) = &shared.responder else {
        return Err(ApiError::Unavailable("responder not running".into()));
    };
    // The calls the feedback labels.
    let (agent_id, event_ids) = match (&req.incident, &req.event_id) {
        (Some(id), None) => {
            let q = r
                .board
                .get(id)
                .ok_or_else(|| ApiError::NotFound(format!("no open quarantine {id:?}")))?;
            let ids: Vec<String> = q
                .flagged_events
                .iter()
                .filter_map(|e| serde_json::from_str::<Value>(e).ok())
                .filter_map(|v| v["event_id"].as_str().map(str::to_owned))
                .collect();
            (Some(q.agent_id.clone()), ids)
        }
        (None, Some(e)) => {
            if e.is_empty() || e.len() > 256 {
                return Err(invalid("event_id", "event_id must be 1 to 256 bytes"));
            }
            (None, vec![e.clone()])
        }
        _ => {
            return Err(invalid(
                "incident",
                "give exactly one of incident and event_id",
            ))
        }
    };
    let attack = verdict == Verdict::TruePositive;
    let label = if attack {
        "true_positive"
    } else {
        "false_positive"
    };
    let at = now();
    let mut lines = String::new();
    for id in &event_ids {
        let rec = json!({"event_id": id, "attack": attack, "scenario": format!("feedback:{label}"),
                         "agent_id": agent_id, "actor": req.actor, "note": req.note, "at": at});
        lines.push_str(&rec.to_string());
        lines.push('\n');
    }
    if let Some((client, key)) = shared.admin.feedback_redis.clone() {
        let items: Vec<String> = lines.lines().map(str::to_owned).collect();
        tokio::task::spawn_blocking(move || {
            let mut con = client
                .get_connection_with_timeout(std::time::Duration::from_secs(2))
                .map_err(|e| e.to_string())?;
            redis::pipe()
                .cmd("RPUSH")
                .arg(&key)
                .arg(items)
                .ignore()
                // Bounded: labels are for tuning, not an archive.
                .cmd("LTRIM")
                .arg(&key)
                .arg(-(FEEDBACK_KEPT as i64))
                .arg(-1)
                .ignore()
                .query::<()>(&mut con)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map_err(|e| ApiError::Unavailable(format!("cannot store feedback in Redis: {e}")))?;
    } else {
        let _g = shared.admin.feedback_lock.lock().await;
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&shared.admin.feedback_path)
            .await
            .map_err(|e| ApiError::Unavailable(format!("cannot write feedback: {e}")))?;
        f.write_all(lines.as_bytes())
            .await
            .map_err(|e| ApiError::Unavailable(format!("cannot write feedback: {e}")))?;
    }
    audit(
        &shared,
        "feedback",
        json!({"actor": req.actor, "verdict": label, "incident": req.incident,
               "event_ids": event_ids, "note": req.note}),
    );
    let mut released = Value::Null;
    let mut learned = Value::Null;
    if let (Verdict::FalsePositive, Some(e)) = (verdict, &req.event_id) {
        learned = learn_flagged_call(&shared, r, e).await;
    }
    if let (Verdict::FalsePositive, Some(id)) = (verdict, &req.incident) {
        // Learned the way a release with false_positive is.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = crate::respond::responder::Msg::Release {
            id: id.clone(),
            actor: req.actor.clone(),
            reason: format!("feedback: false positive. {}", req.note),
            false_positive: true,
            reply: tx,
        };
        if r.tx.send(msg).await.is_err() {
            return Err(ApiError::Unavailable("responder not running".into()));
        }
        released = match rx.await {
            Ok(Ok(q)) => json!(q.id),
            Ok(Err(e)) => json!(e.to_string()),
            Err(_) => return Err(ApiError::Unavailable("responder stopped".into())),
        };
    }
    Ok(Json(
        json!({"verdict": label, "labelled": event_ids.len(), "released": released,
                    "learned": learned}),
    )
    .into_response())
}

/// A false positive on one decided call: the call is learned into its
/// agent's profile as a release with `false_positive` learns its incident's
/// calls (as a session of its own), without releasing the incident. The
/// call's event is held only by the quarantines this instance keeps in
/// memory (open, and released ones until they are dropped); a call flagged
/// in learn mode or under a suppression opened none, so it cannot be
/// learned, and the answer says so (the label is recorded either way).
async fn learn_flagged_call(
    shared: &Arc<Shared>,
    r: &crate::respond::responder::Handle,
    event_id: &str,
) -> Value {
    let found = r.board.list(None).into_iter().find_map(|q| {
        q.flagged_events
            .iter()
            .find(|e| {
                serde_json::from_str::<Value>(e)
                    .is_ok_and(|v| v["event_id"].as_str() == Some(event_id))
            })
            .map(|e| (q.agent_id.clone(), e.clone()))
    });
    let Some((agent_id, event)) = found else {
        return json!({"learned": false, "why": "the call's event is not held by an incident on this instance (flagged in learn mode or under a suppression, or its incident was dropped): recorded as a benign label for warden tune only"});
    };
    let w = shared.router.owner(&agent_id);
    shared
        .router
        .send(
            w,
            crate::pipeline::Msg::Learn {
                events: vec![event],
                session: format!("feedback:{event_id}"),
            },
        )
        .await;
    json!({"learned": true, "agent_id": agent_id})
}

/// Labelled examples kept in Redis (the newest).
const FEEDBACK_KEPT: usize = 100_000;

async fn export_feedback(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    if let Some((client, key)) = shared.admin.feedback_redis.clone() {
        let lines: Vec<String> = tokio::task::spawn_blocking(move || {
            let mut con = client
                .get_connection_with_timeout(std::time::Duration::from_secs(2))
                .map_err(|e| e.to_string())?;
            redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut con)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map_err(|e| ApiError::Unavailable(format!("cannot read feedback from Redis: {e}")))?;
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response());
    }
    let text = match tokio::fs::read_to_string(&shared.admin.feedback_path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ApiError::Unavailable(format!("cannot read feedback: {e}"))),
    };
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response())
}

async fn openapi_doc() -> Response {
    Json(openapi::document()).into_response()
}
