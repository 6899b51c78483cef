//! The alert as PagerDuty Events API v2 events: typed, every string
//! bounded (summary ≤ 1024 characters, details ≤ 1000 each, lists ≤ 20),
//! the body under PagerDuty's 512 KB.

use serde::{Deserialize, Serialize};

use super::escape::plain;
use super::model::{last_calls, outcome_str, reason_line, timeline_lines, Alert, Severity};
use crate::respond::incident::CallSummary;

pub(super) const SUMMARY_MAX: usize = 1024;
pub(super) const STRING_MAX: usize = 1000;
pub(super) const BODY_MAX: usize = 512 * 1024;
pub(super) const LIST_MAX: usize = 20;
const TIMELINE_MAX: usize = 50;

/// `event_action`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Trigger,
    Acknowledge,
    Resolve,
}

/// One event (`POST /v2/enqueue`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event<'a> {
    pub routing_key: &'a str,
    pub event_action: Action,
    pub dedup_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_url: Option<String>,
}

impl<'a> Event<'a> {
    /// Acknowledges or resolves the alert of `dedup_key`.
    pub fn close(action: Action, dedup_key: &str, routing_key: &'a str) -> Self {
        Self {
            routing_key,
            event_action: action,
            dedup_key: dedup_key.to_owned(),
            payload: None,
            links: Vec::new(),
            client: None,
            client_url: None,
        }
    }
}

/// A trigger's payload.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Payload {
    pub summary: String,
    pub source: String,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    pub component: String,
    pub group: String,
    pub class: String,
    pub custom_details: Details,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Link {
    pub href: String,
    pub text: &'static str,
}

/// `custom_details`: the alert, a digest, or a note when too large.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Details {
    Incident(Box<Incident>),
    Digest {
        count: usize,
        quarantines: Vec<String>,
    },
    TooLarge {
        quarantine: String,
        note: &'static str,
    },
}

/// The alert as `custom_details`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Incident {
    pub quarantine: String,
    pub agent: String,
    pub instance: Option<String>,
    pub principal: Option<String>,
    pub credential: Option<String>,
    pub credential_count: usize,
    pub credentials: Vec<CredentialDetail>,
    pub session: Option<String>,
    pub trace: Option<String>,
    pub class: Option<String>,
    pub mode: &'static str,
    pub state: &'static str,
    pub revocations: Vec<RevocationDetail>,
    pub score: f64,
    pub max_score: f64,
    pub threshold: f64,
    pub basis: String,
    pub flags: u32,
    pub rolled_up: u32,
    pub reasons: Vec<String>,
    pub offending_calls: Vec<CallDetail>,
    pub normally: Normally,
    pub timeline: Vec<String>,
    pub origin: Option<OriginDetail>,
    pub release_hint: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CredentialDetail {
    /// Fingerprint or handle: never the raw value.
    pub credential: String,
    pub state: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RevocationDetail {
    pub revoker: String,
    pub target: Option<String>,
    pub outcome: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallDetail {
    pub event_id: String,
    pub ts: String,
    pub tool: String,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub args: Option<String>,
    pub score: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Normally {
    pub usual_tools: Vec<String>,
    pub recent_resources: Vec<String>,
    pub median_gap_secs: Option<f64>,
    pub calls_per_day: Option<f64>,
    pub events_learned: u64,
    pub sessions_learned: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OriginDetail {
    pub kind: Option<String>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub excerpt: Option<String>,
}

/// PagerDuty's answer to a rejected event: `{"status","message","errors"}`.
#[derive(Debug, Deserialize)]
struct Rejected {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<String>,
}

/// What PagerDuty's error body says, when it is its error shape.
pub(crate) fn describe_error(body: &str) -> Option<String> {
    let r: Rejected = serde_json::from_str(body).ok()?;
    let mut parts = vec![r.message];
    parts.extend(r.errors);
    parts.retain(|p| !p.is_empty());
    (!parts.is_empty()).then(|| parts.join(": "))
}

fn pd(s: &str) -> String {
    plain(s, STRING_MAX)
}

fn pd_opt(s: Option<&str>) -> Option<String> {
    s.map(pd)
}

/// A measurement without float noise (4.2, not 4.19999980).
pub(super) fn num(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn call(c: &CallSummary) -> CallDetail {
    CallDetail {
        event_id: pd(&c.event_id),
        ts: pd(&c.ts),
        tool: pd(&c.tool),
        action: pd_opt(c.action.as_deref()),
        resource_type: pd_opt(c.resource_type.as_deref()),
        resource_id: pd_opt(c.resource_id.as_deref()),
        args: pd_opt(c.args.as_deref()),
        score: num(c.score),
    }
}

fn details(a: &Alert) -> Incident {
    let q = a.q;
    let b = &q.baseline;
    let (calls, _) = last_calls(&q.timeline, TIMELINE_MAX);
    Incident {
        quarantine: q.id.clone(),
        agent: pd(&q.agent_id),
        instance: pd_opt(q.agent_instance.as_deref()),
        principal: pd_opt(q.principal.as_deref()),
        credential: pd_opt(a.credential()),
        credential_count: q.credentials.len(),
        credentials: q
            .credentials
            .iter()
            .take(LIST_MAX)
            .map(|e| CredentialDetail {
                credential: pd(e.credential.shown()),
                state: e.state.as_str(),
                attempts: e.attempts,
                last_error: pd_opt(e.last_error.as_deref()),
            })
            .collect(),
        session: pd_opt(q.session_id.as_deref()),
        trace: pd_opt(q.trace_id.as_deref()),
        class: pd_opt(q.class.as_deref()),
        mode: q.mode.as_str(),
        state: q.state.as_str(),
        revocations: a
            .revocations
            .iter()
            .take(LIST_MAX)
            .map(|r| RevocationDetail {
                revoker: pd(&r.revoker),
                target: pd_opt(r.target.as_deref()),
                outcome: outcome_str(r.outcome),
                attempts: r.attempts,
                last_error: pd_opt(r.last_error.as_deref()),
            })
            .collect(),
        score: num(q.score),
        max_score: num(q.max_score),
        threshold: num(q.threshold),
        basis: pd(&q.basis),
        flags: q.flags(),
        rolled_up: q.rolled_up,
        reasons: a
            .reasons
            .iter()
            .take(LIST_MAX)
            .map(|r| pd(&reason_line(r)))
            .collect(),
        offending_calls: q.flagged_calls.iter().take(LIST_MAX).map(call).collect(),
        normally: Normally {
            usual_tools: a
                .normally
                .tools
                .iter()
                .take(LIST_MAX)
                .map(|(t, pct)| format!("{} {pct:.0}%", pd(t)))
                .collect(),
            recent_resources: a
                .normally
                .resources
                .iter()
                .take(LIST_MAX)
                .map(|r| pd(r))
                .collect(),
            median_gap_secs: b.median_gap_secs.map(num),
            calls_per_day: b.calls_per_day.map(num),
            events_learned: b.events_learned,
            sessions_learned: b.sessions_learned,
        },
        timeline: timeline_lines(calls, ">>", plain),
        origin: q.origin.as_ref().map(|o| OriginDetail {
            kind: pd_opt(o.kind.as_deref()),
            reference: pd_opt(o.reference.as_deref()),
            excerpt: pd_opt(o.excerpt.as_deref()),
        }),
        release_hint: a.links.release_hint(),
        created_at: q.created_at.clone(),
        updated_at: q.updated_at.clone(),
    }
}

/// The trigger of an incident, deduplicated on the quarantine id.
pub fn trigger<'a>(a: &Alert, routing_key: &'a str) -> Event<'a> {
    let q = a.q;
    let mut event = Event {
        routing_key,
        event_action: Action::Trigger,
        dedup_key: q.id.clone(),
        payload: Some(Payload {
            summary: plain(&a.summary(), SUMMARY_MAX),
            source: pd(q.agent_instance.as_deref().unwrap_or(&q.agent_id)),
            severity: a.severity,
            timestamp: Some(q.created_at.clone()),
            component: pd(&q.agent_id),
            group: pd(q.class.as_deref().unwrap_or("unclassified")),
            class: pd(a.reasons.first().map_or("anomaly", |r| r.signal.as_str())),
            custom_details: Details::Incident(Box::new(details(a))),
        }),
        links: vec![
            Link {
                href: a.links.quarantine.clone(),
                text: "Explain this decision (Warden quarantine JSON)",
            },
            Link {
                href: a.links.release.clone(),
                text: "Release: POST with the admin bearer token (see release_hint)",
            },
        ],
        client: Some("Warden"),
        client_url: Some(a.links.quarantine.clone()),
    };
    // Every value above is bounded, so this only guards future fields.
    if serde_json::to_vec(&event).map_or(true, |b| b.len() > BODY_MAX) {
        if let Some(p) = &mut event.payload {
            p.custom_details = Details::TooLarge {
                quarantine: q.id.clone(),
                note: "details too large for PagerDuty (truncated): see the quarantine link",
            };
        }
    }
    event
}
