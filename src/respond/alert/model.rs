//! One alert, built once from a quarantine: what happened (headline,
//! reasons with their bits, the flagged calls), what the agent normally
//! does, the session timeline, where the instruction came from, what was
//! revoked (credentials by fingerprint or handle only) and how to release.
//! The text, Slack and PagerDuty renderings all read this model and only
//! decide how to bound, escape and lay it out.

use crate::decide::Mode;
use crate::respond::incident::{
    CallSummary, CredentialEntry, OriginInfo, Outcome, Quarantine, Reason, Revocation, State,
};

/// Reasons an alert lists, highest bits first.
pub(super) const TOP_REASONS: usize = 5;
/// Characters of the origin excerpt an alert quotes.
pub(super) const EXCERPT_MAX: usize = 300;
/// Flagged calls an alert lists: the first few, then the latest.
const CALLS_HEAD: usize = 3;
const CALLS_TAIL: usize = 2;
/// Timeline calls an alert lists (the last ones).
pub(super) const TIMELINE_MAX: usize = 15;
/// Usual tools and recent resources an alert lists.
const BASELINE_ITEMS: usize = 5;
/// Revocation lines an alert shows (failures first).
pub(super) const REVOCATIONS_SHOWN: usize = 10;
/// Credentials an alert lists, first first; the rest are counted.
pub(super) const CREDENTIALS_SHOWN: usize = 5;

/// Where a quarantine can be explained and released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// `GET`: the quarantine as JSON, with the decision that opened it.
    pub quarantine: String,
    /// `POST` with the admin bearer token: releases the quarantine.
    pub release: String,
}

/// The links of `q` under Warden's public URL.
pub fn links(public_url: &str, q: &Quarantine) -> Links {
    let base = public_url.trim_end_matches('/');
    let quarantine = format!("{base}/v1/quarantines/{}", q.id);
    Links {
        release: format!("{quarantine}/release"),
        quarantine,
    }
}

impl Links {
    /// A curl command releasing the quarantine, for on-call to copy. The
    /// endpoint takes a JSON body, hence the content type.
    pub fn release_hint(&self) -> String {
        format!(
            "curl -X POST -H \"Authorization: Bearer $WARDEN_ADMIN_TOKEN\" \
             -H \"Content-Type: application/json\" \
             -d '{{\"actor\":\"you\",\"reason\":\"...\",\"false_positive\":true}}' {}",
            self.release
        )
    }
}

/// PagerDuty's severities, also how loud the other renderings are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

/// The flagged calls an alert lists: the first few, how many are
/// skipped, the latest, and how many were counted but not kept.
pub struct Calls<'q> {
    pub head: &'q [CallSummary],
    pub skipped: usize,
    pub tail: &'q [CallSummary],
    pub not_kept: usize,
}

/// What the agent normally does, as values (each rendering escapes them).
pub struct Normally<'q> {
    /// Usual tools with their share in whole percent.
    pub tools: Vec<(&'q str, f64)>,
    pub resources: Vec<&'q str>,
    /// "median gap 4.2s", "120 calls/day".
    pub pace: Vec<String>,
    /// "learned from N events in M sessions".
    pub learned: String,
}

impl Normally<'_> {
    /// "get_balance 62%, list_payees 30%": the usual tools, as `esc`
    /// renders a name; `None` when none are known.
    pub(super) fn tools_line(&self, esc: fn(&str, usize) -> String) -> Option<String> {
        let tools: Vec<String> = self
            .tools
            .iter()
            .take(BASELINE_ITEMS)
            .map(|(t, pct)| format!("{} {pct:.0}%", esc(t, 80)))
            .collect();
        (!tools.is_empty()).then(|| tools.join(", "))
    }

    /// The recent resources, as `esc` renders each; `None` when none.
    pub(super) fn resources_line(&self, esc: fn(&str, usize) -> String) -> Option<String> {
        let res: Vec<String> = self
            .resources
            .iter()
            .take(BASELINE_ITEMS)
            .map(|r| esc(r, 80))
            .collect();
        (!res.is_empty()).then(|| res.join(", "))
    }
}

/// The alert of one quarantine.
pub struct Alert<'q> {
    pub q: &'q Quarantine,
    pub headline: String,
    pub links: Links,
    /// "1 flagged call" or "N flagged calls (M rolled up)".
    pub flags: String,
    /// Every reason, most bits first (ties keep the scorer's order).
    pub reasons: Vec<&'q Reason>,
    pub calls: Calls<'q>,
    /// The timeline's last calls, and how many earlier ones are left out.
    pub timeline: &'q [CallSummary],
    pub timeline_skipped: usize,
    /// Every revocation, failures first: with many credentials, an alert
    /// must say which failed before anything else.
    pub revocations: Vec<&'q Revocation>,
    /// The credentials an alert lists (when the incident has more than
    /// one) and how many more there are.
    pub credentials: &'q [CredentialEntry],
    pub credentials_more: usize,
    pub normally: Normally<'q>,
    pub origin: Option<&'q OriginInfo>,
    pub severity: Severity,
}

impl<'q> Alert<'q> {
    pub fn new(q: &'q Quarantine, links: &Links) -> Self {
        let mut reasons: Vec<&Reason> = q.reasons.iter().collect();
        reasons.sort_by(|a, b| b.bits.total_cmp(&a.bits));
        let mut revocations: Vec<&Revocation> = q.revocations.iter().collect();
        revocations.sort_by_key(|r| match r.outcome {
            Outcome::Failed => 0,
            Outcome::Pending => 1,
            Outcome::Succeeded => 2,
        });
        let listed = if q.credentials.len() > 1 {
            &q.credentials[..q.credentials.len().min(CREDENTIALS_SHOWN)]
        } else {
            &[]
        };
        let (timeline, timeline_skipped) = last_calls(&q.timeline, TIMELINE_MAX);
        Self {
            q,
            headline: q.headline(),
            links: links.clone(),
            flags: flags_text(q),
            reasons,
            calls: calls(q),
            timeline,
            timeline_skipped,
            revocations,
            credentials: listed,
            credentials_more: q.credentials.len().saturating_sub(listed.len().max(1)),
            normally: normally(q),
            origin: q
                .origin
                .as_ref()
                .filter(|o| o.kind.is_some() || o.reference.is_some() || o.excerpt.is_some()),
            severity: severity(q),
        }
    }

    /// What the credential field shows: the first credential.
    pub fn credential(&self) -> Option<&'q str> {
        self.q.credential.as_ref().map(|c| c.shown())
    }

    /// The headline plus the top reason: PagerDuty's summary.
    pub fn summary(&self) -> String {
        match self.reasons.first() {
            Some(r) => format!("{}; {}", self.headline, reason_line(r)),
            None => self.headline.clone(),
        }
    }
}

/// "+20.0 bits resource: new IBAN".
pub(super) fn reason_line(r: &Reason) -> String {
    format!("+{:.1} bits {}: {}", r.bits, r.signal, r.detail)
}

/// One revocation: `who` (revoker and target, as the rendering shows
/// them), its outcome and attempts, then `error` of its last error.
pub(super) fn revocation_line(
    r: &Revocation,
    who: String,
    error: impl Fn(&str) -> String,
) -> String {
    let mut l = format!(
        "{who}: {}, {}",
        outcome_str(r.outcome),
        attempts(r.attempts)
    );
    if let Some(e) = &r.last_error {
        l.push_str(&error(e));
    }
    l
}

pub(super) fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Pending => "pending",
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
    }
}

fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{n} attempts")
    }
}

pub(super) fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn flags_text(q: &Quarantine) -> String {
    if q.flags() == 1 {
        "1 flagged call".to_owned()
    } else {
        format!("{} flagged calls ({} rolled up)", q.flags(), q.rolled_up)
    }
}

fn calls(q: &Quarantine) -> Calls<'_> {
    let all = &q.flagged_calls[..];
    let not_kept = (q.flags() as usize).saturating_sub(all.len());
    if all.len() <= CALLS_HEAD + CALLS_TAIL {
        return Calls {
            head: all,
            skipped: 0,
            tail: &[],
            not_kept,
        };
    }
    let tail = all.len() - CALLS_TAIL;
    Calls {
        head: &all[..CALLS_HEAD],
        skipped: tail - CALLS_HEAD,
        tail: &all[tail..],
        not_kept,
    }
}

/// The timeline's last `n` calls, and how many earlier ones are left out.
pub(super) fn last_calls(timeline: &[CallSummary], n: usize) -> (&[CallSummary], usize) {
    let skip = timeline.len().saturating_sub(n);
    (&timeline[skip..], skip)
}

fn normally(q: &Quarantine) -> Normally<'_> {
    let b = &q.baseline;
    let mut pace = Vec::new();
    if let Some(g) = b.median_gap_secs {
        pace.push(format!("median gap {}", secs(g)));
    }
    if let Some(d) = b.calls_per_day {
        pace.push(format!("{d:.0} calls/day"));
    }
    Normally {
        tools: b
            .usual_tools
            .iter()
            .map(|(t, share)| (t.as_str(), share * 100.0))
            .collect(),
        resources: b.recent_resources.iter().map(String::as_str).collect(),
        pace,
        learned: format!(
            "learned from {} events in {} sessions",
            b.events_learned, b.sessions_learned
        ),
    }
}

/// What a call names besides its tool, label and value, with how much of
/// each an alert shows.
pub(super) fn call_parts(c: &CallSummary) -> impl Iterator<Item = (&'static str, &str, usize)> {
    [
        ("action", c.action.as_deref(), 100),
        ("resource_type", c.resource_type.as_deref(), 100),
        ("resource_id", c.resource_id.as_deref(), 200),
    ]
    .into_iter()
    .filter_map(|(label, v, max)| Some((label, v?, max)))
}

/// `HH:MM:SS` (UTC) of an RFC 3339 timestamp.
pub(super) fn hhmmss(ts: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(ts).map_or_else(
        |_| "??:??:??".to_owned(),
        |t| t.with_timezone(&chrono::Utc).format("%H:%M:%S").to_string(),
    )
}

fn secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Timeline lines, `marker` (which shows as `>>`) on flagged calls, tool
/// names padded into a column. `value(s, max)` renders a value for the
/// target.
pub(super) fn timeline_lines(
    calls: &[CallSummary],
    marker: &str,
    value: impl Fn(&str, usize) -> String,
) -> Vec<String> {
    let tools: Vec<String> = calls.iter().map(|c| value(&c.tool, 40)).collect();
    let pad = tools.iter().map(|t| t.chars().count()).max().unwrap_or(0);
    let blank = "  ";
    calls
        .iter()
        .zip(&tools)
        .map(|(c, tool)| {
            let mark = if c.flagged { marker } else { blank };
            let fill = " ".repeat(pad - tool.chars().count());
            let res = c
                .resource_id
                .as_deref()
                .map_or_else(|| "-".to_owned(), |r| value(r, 60));
            format!(
                "{mark} {}  {tool}{fill}  {res}  {:.1}",
                hhmmss(&c.ts),
                c.score
            )
        })
        .collect()
}

pub(super) fn severity(q: &Quarantine) -> Severity {
    // Shadow (and learn) revoke nothing: at most a warning.
    if q.mode != Mode::Enforce {
        return Severity::Warning;
    }
    // The worst call rolled in counts: an agent that keeps escalating
    // should not page at the severity of its first flag.
    let score = q.max_score.max(q.score);
    if q.state == State::RevokeFailed || score >= 2.0 * q.threshold {
        Severity::Critical
    } else if score >= 1.5 * q.threshold {
        Severity::Error
    } else {
        Severity::Warning
    }
}

/// The listed credentials, each with its state and last error, as `esc`
/// renders a value (fingerprints or handles only, never a raw value).
pub(super) fn credential_lines(a: &Alert, esc: fn(&str, usize) -> String) -> Vec<String> {
    a.credentials
        .iter()
        .map(|e| {
            let mut l = format!("{} {}", esc(e.credential.shown(), 200), e.state.as_str());
            if let Some(err) = &e.last_error {
                l.push_str(&format!(" ({})", esc(err, 200)));
            }
            l
        })
        .collect()
}
