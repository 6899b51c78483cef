//! Alerts for a quarantine, rendered for people: plain text for the console
//! and log notifier, a Slack Block Kit message, and PagerDuty Events API v2
//! bodies. Pure functions of a [`Quarantine`] (no I/O), so every notifier
//! renders an incident the same way and tests can pin what on-call sees.
//!
//! Everything that came from an event (agent ids, tool names, resource ids,
//! arguments, origin excerpts) is attacker-influenced. The renderers bound
//! every value and every message to the receiver's documented limits,
//! truncating visibly (ending with [`TRUNCATED`]), and replace control
//! characters so a value cannot forge extra lines. In Slack mrkdwn they
//! escape `&`, `<` and `>` so a value cannot form a link or a mention,
//! neutralise backticks inside code spans and blocks, and mark text objects
//! `verbatim` so Slack does not auto-link URLs or channel names in values.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::credential::Credential;
use super::incident::{CallSummary, OriginInfo, Outcome, Quarantine, Reason, Release, State};
use crate::decide::Mode;

/// Ends every string a renderer had to cut.
pub const TRUNCATED: &str = "… (truncated)";

// Slack Block Kit limits (block reference). Lengths are counted here in
// UTF-16 units, which is never less than the character count Slack
// documents, so both readings of the limit hold.
const SLACK_MAX_BLOCKS: usize = 50;
const SLACK_HEADER_MAX: usize = 150;
const SLACK_TEXT_MAX: usize = 3000;
const SLACK_FIELDS_MAX: usize = 10;
const SLACK_FIELD_MAX: usize = 2000;
const SLACK_CONTEXT_MAX: usize = 10;
/// The top-level `text` is only the notification fallback: keep it short.
const SLACK_FALLBACK_MAX: usize = 300;

// PagerDuty Events API v2.
const PD_SUMMARY_MAX: usize = 1024;
const PD_STRING_MAX: usize = 1000;
const PD_BODY_MAX: usize = 512 * 1024;
const PD_LIST_MAX: usize = 20;
const PD_TIMELINE_MAX: usize = 50;

/// Reasons an alert lists, highest bits first.
const TOP_REASONS: usize = 5;
/// Characters of the origin excerpt an alert quotes.
const EXCERPT_MAX: usize = 300;
/// Flagged calls an alert lists: the first few, then the latest.
const CALLS_HEAD: usize = 3;
const CALLS_TAIL: usize = 2;
/// Timeline calls an alert lists (the last ones).
const TIMELINE_MAX: usize = 15;
/// Usual tools and recent resources an alert lists.
const BASELINE_ITEMS: usize = 5;

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

/// `s` cut on a char boundary to at most `max_chars` characters, ending
/// with [`TRUNCATED`] when it was cut (the marker counts towards the limit).
pub fn truncate(s: &str, max_chars: usize) -> String {
    bound(s, max_chars, one, keep)
}

// ---------------------------------------------------------------------------
// Bounding and escaping

/// How much of a limit a character uses.
type Width = fn(char) -> usize;
/// Appends a character's rendering (itself, an entity, a replacement).
type Escape = fn(char, &mut String);

fn one(_: char) -> usize {
    1
}

fn utf16(c: char) -> usize {
    c.len_utf16()
}

fn width(s: &str, w: Width) -> usize {
    s.chars().map(w).sum()
}

fn slack_width(s: &str) -> usize {
    width(s, utf16)
}

/// `s` with every char rendered by `escape`, at most `max` wide. When it
/// does not fit, it is cut between renderings (never inside an entity) and
/// ends with [`TRUNCATED`], or a bare `…` when even the marker is too wide.
fn bound(s: &str, max: usize, w: Width, escape: Escape) -> String {
    let marker = width(TRUNCATED, w);
    let budget = max.saturating_sub(marker);
    let mut out = String::with_capacity(s.len().min(max.saturating_mul(4)));
    let mut used = 0;
    // Bytes of `out` that leave room for the marker.
    let mut fits = 0;
    let mut piece = String::new();
    for c in s.chars() {
        piece.clear();
        escape(c, &mut piece);
        let pw = width(&piece, w);
        if used + pw > max {
            out.truncate(fits);
            let kept = out.trim_end().len();
            out.truncate(kept);
            if marker <= max {
                out.push_str(TRUNCATED);
            } else if max > 0 {
                out.push('…');
            }
            return out;
        }
        out.push_str(&piece);
        used += pw;
        if used <= budget {
            fits = out.len();
        }
    }
    out
}

/// Characters that could forge lines or reorder what a reader sees:
/// controls, and the invisible bidirectional and zero-width marks.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

fn keep(c: char, out: &mut String) {
    out.push(c);
}

/// One line of plain text: whitespace controls become spaces, other
/// hidden characters U+FFFD.
fn esc_plain(c: char, out: &mut String) {
    match c {
        '\n' | '\r' | '\t' => out.push(' '),
        c if hidden(c) => out.push('\u{FFFD}'),
        c => out.push(c),
    }
}

/// Slack mrkdwn: the three control characters become entities, so no
/// value can open a link, a mention or a special command.
fn esc_mrkdwn(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => esc_plain(c, out),
    }
}

/// Inside a Slack code span or block: also no backtick, which would end it.
fn esc_code(c: char, out: &mut String) {
    match c {
        '`' => out.push('\u{02CB}'),
        c => esc_mrkdwn(c, out),
    }
}

/// Slack `plain_text` (the header): not parsed as mrkdwn, but whether
/// Slack decodes entities or control sequences there is not documented,
/// so the three control characters become look-alikes that can do neither.
fn esc_header(c: char, out: &mut String) {
    match c {
        '&' => out.push('\u{FF06}'),
        '<' => out.push('\u{2039}'),
        '>' => out.push('\u{203A}'),
        c => esc_plain(c, out),
    }
}

/// A value for plain text, one line, at most `max` chars.
fn plain(s: &str, max: usize) -> String {
    bound(s, max, one, esc_plain)
}

fn plain_opt(s: Option<&str>, max: usize) -> String {
    s.map_or_else(|| "-".to_owned(), |s| plain(s, max))
}

/// A value for Slack mrkdwn text, escaped, at most `max` wide.
fn md(s: &str, max: usize) -> String {
    bound(s, max, utf16, esc_mrkdwn)
}

/// A value in a Slack code span.
fn md_code(s: &str, max: usize) -> String {
    if s.is_empty() {
        return "_(empty)_".to_owned();
    }
    format!("`{}`", bound(s, max, utf16, esc_code))
}

fn md_code_opt(s: Option<&str>, max: usize) -> String {
    s.map_or_else(|| "—".to_owned(), |s| md_code(s, max))
}

/// `s` cut to `max` Slack width as a last resort (callers bound their
/// parts, so this only fires on pathological input).
fn hard_cap(s: &str, max: usize) -> String {
    if slack_width(s) <= max {
        s.to_owned()
    } else {
        bound(s, max, utf16, keep)
    }
}

/// Lines joined with newlines, at most `max` Slack width: whole lines are
/// dropped, from the end (or, with `keep_last`, from the start), and a
/// note says how many.
fn fit_lines(lines: &[String], max: usize, keep_last: bool) -> String {
    let all = lines.join("\n");
    if slack_width(&all) <= max {
        return all;
    }
    // Room for the note, "… 123456 more lines (truncated)".
    let budget = max.saturating_sub(40);
    let mut kept: Vec<&str> = Vec::new();
    let mut used = 0;
    let ordered: Box<dyn Iterator<Item = &String>> = if keep_last {
        Box::new(lines.iter().rev())
    } else {
        Box::new(lines.iter())
    };
    for l in ordered {
        let w = slack_width(l) + 1;
        if used + w > budget {
            break;
        }
        used += w;
        kept.push(l);
    }
    let dropped = lines.len() - kept.len();
    let joined = if keep_last {
        kept.reverse();
        format!("… {dropped} earlier lines (truncated)\n{}", kept.join("\n"))
    } else {
        format!("{}\n… {dropped} more lines (truncated)", kept.join("\n"))
    };
    hard_cap(joined.trim_matches('\n'), max)
}

/// A link target for Slack's `<url|text>`: nothing in it may end the link.
fn slack_url(u: &str) -> String {
    let mut out = String::with_capacity(u.len());
    for c in u.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '|' => out.push_str("%7C"),
            ' ' => out.push_str("%20"),
            c if hidden(c) => {}
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Shared pieces

fn outcome_str(o: Outcome) -> &'static str {
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

/// "1 flagged call" or "N flagged calls (M rolled up)".
fn flags_text(q: &Quarantine) -> String {
    if q.flags() == 1 {
        "1 flagged call".to_owned()
    } else {
        format!("{} flagged calls ({} rolled up)", q.flags(), q.rolled_up)
    }
}

/// Reasons, most bits first (ties keep the scorer's order).
fn ranked(q: &Quarantine) -> Vec<&Reason> {
    let mut r: Vec<&Reason> = q.reasons.iter().collect();
    r.sort_by(|a, b| b.bits.total_cmp(&a.bits));
    r
}

/// `HH:MM:SS` (UTC) of an RFC 3339 timestamp.
fn hhmmss(ts: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(ts).map_or_else(
        |_| "??:??:??".to_owned(),
        |t| t.with_timezone(&chrono::Utc).format("%H:%M:%S").to_string(),
    )
}

fn secs(s: f32) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// The flagged calls an alert lists: the first few, how many are skipped,
/// and the latest.
fn shown_calls(calls: &[CallSummary]) -> (&[CallSummary], usize, &[CallSummary]) {
    if calls.len() <= CALLS_HEAD + CALLS_TAIL {
        return (calls, 0, &[]);
    }
    let tail = calls.len() - CALLS_TAIL;
    (&calls[..CALLS_HEAD], tail - CALLS_HEAD, &calls[tail..])
}

/// Flags counted but not kept (beyond the calls a quarantine stores).
fn not_kept(q: &Quarantine) -> usize {
    (q.flags() as usize).saturating_sub(q.flagged_calls.len())
}

/// The timeline's last calls, and how many earlier ones are left out.
fn last_calls(timeline: &[CallSummary], n: usize) -> (&[CallSummary], usize) {
    let skip = timeline.len().saturating_sub(n);
    (&timeline[skip..], skip)
}

/// Timeline lines, `marker` (which shows as `>>`) on flagged calls, tool
/// names padded into a column. `value(s, max)` renders a value for the
/// target.
fn timeline_lines(
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

fn severity(q: &Quarantine) -> &'static str {
    // The worst call rolled in counts: an agent that keeps escalating
    // should not page at the severity of its first flag.
    let score = q.max_score.max(q.score);
    let s = if q.state == State::RevokeFailed || score >= 2.0 * q.threshold {
        "critical"
    } else if score >= 1.5 * q.threshold {
        "error"
    } else {
        "warning"
    };
    // Shadow (and learn) revoke nothing: at most a warning.
    if q.mode == Mode::Enforce {
        s
    } else {
        "warning"
    }
}

// ---------------------------------------------------------------------------
// Plain text

const LABEL: usize = 12;

fn field(t: &mut String, label: &str, value: &str) {
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{label}:")
    };
    let _ = writeln!(t, "{label:<LABEL$}{value}");
}

fn text_call(t: &mut String, c: &CallSummary) {
    let _ = write!(t, "  {}  {}", hhmmss(&c.ts), plain(&c.tool, 200));
    if let Some(a) = &c.action {
        let _ = write!(t, "  action={}", plain(a, 100));
    }
    if let Some(r) = &c.resource_type {
        let _ = write!(t, "  resource_type={}", plain(r, 100));
    }
    if let Some(r) = &c.resource_id {
        let _ = write!(t, "  resource_id={}", plain(r, 200));
    }
    let _ = writeln!(t, "  score={:.1}", c.score);
    if let Some(a) = &c.args {
        let _ = writeln!(t, "            args: {}", plain(a, 500));
    }
}

/// The alert as plain text, for the console and log notifier: an on-call
/// engineer should get what happened, what it normally does and what to
/// do from the first screen.
pub fn text_alert(q: &Quarantine, links: &Links) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{}\n", plain(&q.headline(), 500));

    field(&mut t, "Agent", &plain(&q.agent_id, 200));
    field(
        &mut t,
        "Instance",
        &plain_opt(q.agent_instance.as_deref(), 200),
    );
    field(&mut t, "Principal", &plain_opt(q.principal.as_deref(), 200));
    field(
        &mut t,
        "Credential",
        &plain_opt(q.credential.as_ref().map(Credential::shown), 200),
    );
    if q.credentials.len() > 1 {
        let (shown, more) = credential_lines(q, plain);
        for (i, l) in shown.iter().enumerate() {
            field(&mut t, if i == 0 { "All creds" } else { "" }, l);
        }
        if more > 0 {
            field(&mut t, "", &format!("… and {more} more"));
        }
    }
    if let Some(s) = &q.session_id {
        field(&mut t, "Session", &plain(s, 200));
    }
    if let Some(s) = &q.trace_id {
        field(&mut t, "Trace", &plain(s, 200));
    }
    field(&mut t, "Class", &plain_opt(q.class.as_deref(), 100));
    field(&mut t, "Mode", q.mode.as_str());
    let state = match q.state {
        State::RevokeFailed => "revoke_failed: the credential may still work, act now",
        s => s.as_str(),
    };
    field(&mut t, "State", state);
    if q.revocations.is_empty() {
        let none = if q.mode == Mode::Enforce {
            "none configured"
        } else {
            "none (not enforcing)"
        };
        field(&mut t, "Revocation", none);
    }
    // Failures first: with many credentials, the alert must say which
    // failed before anything else.
    let mut revocations: Vec<&super::incident::Revocation> = q.revocations.iter().collect();
    revocations.sort_by_key(|r| match r.outcome {
        Outcome::Failed => 0,
        Outcome::Pending => 1,
        Outcome::Succeeded => 2,
    });
    let more = revocations.len().saturating_sub(REVOCATIONS_SHOWN);
    for (i, r) in revocations.into_iter().take(REVOCATIONS_SHOWN).enumerate() {
        let mut line = format!(
            "{} -> {}: {}, {}",
            plain(&r.revoker, 100),
            plain_opt(r.target.as_deref(), 200),
            outcome_str(r.outcome),
            attempts(r.attempts)
        );
        if let Some(e) = &r.last_error {
            let _ = write!(line, ", last error: {}", plain(e, 300));
        }
        field(&mut t, if i == 0 { "Revocation" } else { "" }, &line);
    }
    if more > 0 {
        field(&mut t, "", &format!("… and {more} more"));
    }
    let mut flags = flags_text(q);
    if q.rolled_up > 0 {
        let _ = write!(flags, ", max score {:.1} bits", q.max_score);
    }
    field(&mut t, "Flags", &flags);

    let (head, skipped, tail) = shown_calls(&q.flagged_calls);
    let _ = writeln!(
        t,
        "\n{}",
        if q.flags() == 1 {
            "Offending call:"
        } else {
            "Offending calls:"
        }
    );
    for c in head {
        text_call(&mut t, c);
    }
    if skipped > 0 {
        let _ = writeln!(t, "  … {skipped} more flagged calls not shown");
    }
    for c in tail {
        text_call(&mut t, c);
    }
    if not_kept(q) > 0 {
        let _ = writeln!(
            t,
            "  … {} further flagged calls counted, not kept",
            not_kept(q)
        );
    }

    let reasons = ranked(q);
    if !reasons.is_empty() {
        if reasons.len() > TOP_REASONS {
            let _ = writeln!(t, "\nWhy (top {TOP_REASONS} of {} reasons):", reasons.len());
        } else {
            let _ = writeln!(t, "\nWhy:");
        }
        for r in reasons.iter().take(TOP_REASONS) {
            let _ = writeln!(
                t,
                "  +{:.1} bits  {}: {}",
                r.bits,
                plain(&r.signal, 60),
                plain(&r.detail, 300)
            );
        }
    }

    let b = &q.baseline;
    let _ = writeln!(t, "\nNormally:");
    if !b.usual_tools.is_empty() {
        let tools: Vec<String> = b
            .usual_tools
            .iter()
            .take(BASELINE_ITEMS)
            .map(|(tool, share)| format!("{} {:.0}%", plain(tool, 80), share * 100.0))
            .collect();
        let _ = writeln!(t, "  tools: {}", tools.join(", "));
    }
    if !b.recent_resources.is_empty() {
        let res: Vec<String> = b
            .recent_resources
            .iter()
            .take(BASELINE_ITEMS)
            .map(|r| plain(r, 80))
            .collect();
        let _ = writeln!(t, "  recent resources: {}", res.join(", "));
    }
    let mut pace = Vec::new();
    if let Some(g) = b.median_gap_secs {
        pace.push(format!("median gap {}", secs(g)));
    }
    if let Some(d) = b.calls_per_day {
        pace.push(format!("{d:.0} calls/day"));
    }
    if !pace.is_empty() {
        let _ = writeln!(t, "  {}", pace.join(", "));
    }
    let _ = writeln!(
        t,
        "  learned from {} events in {} sessions",
        b.events_learned, b.sessions_learned
    );

    if !q.timeline.is_empty() {
        let (calls, skipped) = last_calls(&q.timeline, TIMELINE_MAX);
        let _ = writeln!(
            t,
            "\nSession timeline (last {} calls, oldest first, >> = flagged):",
            calls.len()
        );
        if skipped > 0 {
            let _ = writeln!(t, "  … {skipped} earlier calls not shown");
        }
        for l in timeline_lines(calls, ">>", plain) {
            let _ = writeln!(t, "  {l}");
        }
    }

    if let Some(o) = q.origin.as_ref().filter(|o| has_origin(o)) {
        let _ = writeln!(
            t,
            "\nOrigin: {} ref {}",
            plain_opt(o.kind.as_deref(), 100),
            plain_opt(o.reference.as_deref(), 200)
        );
        if let Some(e) = &o.excerpt {
            let _ = writeln!(t, "  \"{}\"", plain(e, EXCERPT_MAX));
        }
    }

    if let Some(r) = &q.release {
        let _ = writeln!(
            t,
            "\nReleased by {} at {} (false positive: {}): {}",
            plain(&r.actor, 100),
            plain(&r.at, 40),
            yes_no(r.false_positive),
            plain(&r.reason, 500)
        );
    }

    let _ = writeln!(t, "\nExplain: {}", links.quarantine);
    if q.state.is_open() {
        let _ = writeln!(t, "Release: {}", links.release_hint());
    }
    t
}

fn has_origin(o: &OriginInfo) -> bool {
    o.kind.is_some() || o.reference.is_some() || o.excerpt.is_some()
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

// ---------------------------------------------------------------------------
// Slack

fn mrkdwn(text: &str, max: usize) -> Value {
    json!({"type": "mrkdwn", "text": hard_cap(text, max), "verbatim": true})
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": mrkdwn(text, SLACK_TEXT_MAX)})
}

fn header(text: &str) -> Value {
    json!({
        "type": "header",
        "text": {"type": "plain_text", "text": bound(text, SLACK_HEADER_MAX, utf16, esc_header)},
    })
}

fn fields(items: &[String]) -> Value {
    let f: Vec<Value> = items
        .iter()
        .take(SLACK_FIELDS_MAX)
        .map(|i| mrkdwn(i, SLACK_FIELD_MAX))
        .collect();
    json!({"type": "section", "fields": f})
}

fn context(items: &[String]) -> Value {
    let e: Vec<Value> = items
        .iter()
        .take(SLACK_CONTEXT_MAX)
        .map(|i| mrkdwn(i, SLACK_TEXT_MAX))
        .collect();
    json!({"type": "context", "elements": e})
}

/// A message: the fallback text (escaped: Slack parses it as mrkdwn too)
/// and at most 50 blocks, keeping the last (the links).
fn message(fallback: &str, mut blocks: Vec<Value>) -> Value {
    if blocks.len() > SLACK_MAX_BLOCKS {
        let last = blocks.pop();
        let dropped = blocks.len() - (SLACK_MAX_BLOCKS - 2);
        blocks.truncate(SLACK_MAX_BLOCKS - 2);
        blocks.push(section(&format!("… {dropped} more blocks (truncated)")));
        blocks.extend(last);
    }
    json!({"text": md(fallback, SLACK_FALLBACK_MAX), "blocks": blocks})
}

/// Revocation lines a text alert shows (failures first).
const REVOCATIONS_SHOWN: usize = 10;
/// Credentials an alert lists, first first; the rest are counted.
const CREDENTIALS_SHOWN: usize = 5;

/// The credentials of a quarantine with more than one, each with its
/// state, as `esc` renders a value (fingerprints or handles only); and how
/// many more are not shown.
fn credential_lines(q: &Quarantine, esc: fn(&str, usize) -> String) -> (Vec<String>, usize) {
    let lines = q
        .credentials
        .iter()
        .take(CREDENTIALS_SHOWN)
        .map(|e| {
            let mut l = format!("{} {}", esc(e.credential.shown(), 200), e.state.as_str());
            if let Some(err) = &e.last_error {
                let _ = write!(l, " ({})", esc(err, 200));
            }
            l
        })
        .collect();
    (lines, q.credentials.len().saturating_sub(CREDENTIALS_SHOWN))
}

fn slack_revocation(q: &Quarantine) -> String {
    let mut lines = vec![match q.state {
        State::Shadow => "not revoked (shadow mode)".to_owned(),
        State::RevokeFailed => {
            ":rotating_light: *FAILED*: the credential may still work".to_owned()
        }
        s => s.as_str().to_owned(),
    }];
    for r in &q.revocations {
        let mut l = format!(
            "• {} {}: {}, {}",
            md(&r.revoker, 100),
            md_code_opt(r.target.as_deref(), 100),
            outcome_str(r.outcome),
            attempts(r.attempts)
        );
        if let Some(e) = &r.last_error {
            let _ = write!(l, ": {}", md_code(e, 200));
        }
        lines.push(l);
    }
    format!(
        "*Revocation*\n{}",
        fit_lines(&lines, SLACK_FIELD_MAX - 20, false)
    )
}

fn slack_credentials(q: &Quarantine) -> String {
    if q.credentials.len() <= 1 {
        return format!(
            "*Credential*\n{}",
            md_code_opt(q.credential.as_ref().map(Credential::shown), 200)
        );
    }
    let (mut lines, more) = credential_lines(q, md_code);
    if more > 0 {
        lines.push(format!("… and {more} more"));
    }
    format!(
        "*Credentials ({})*\n{}",
        q.credentials.len(),
        fit_lines(&lines, SLACK_FIELD_MAX - 40, false)
    )
}

fn slack_fields(q: &Quarantine) -> Vec<String> {
    let mut score = format!("*{:.1}* / {:.1} bits", q.score, q.threshold);
    if q.max_score > q.score {
        let _ = write!(score, " (max {:.1})", q.max_score);
    }
    vec![
        format!("*Agent*\n{}", md_code(&q.agent_id, 200)),
        format!(
            "*Instance*\n{}",
            md_code_opt(q.agent_instance.as_deref(), 200)
        ),
        format!("*Principal*\n{}", md_code_opt(q.principal.as_deref(), 200)),
        slack_credentials(q),
        format!("*Class*\n{}", md_code_opt(q.class.as_deref(), 100)),
        format!("*Mode*\n{}", q.mode.as_str()),
        slack_revocation(q),
        format!("*Score / threshold*\n{score}"),
        format!("*Flags*\n{}", flags_text(q)),
    ]
}

fn slack_call(c: &CallSummary, lines: &mut Vec<String>) {
    let mut l = format!("• `{}` {}", hhmmss(&c.ts), md_code(&c.tool, 100));
    if let Some(a) = &c.action {
        let _ = write!(l, " · action {}", md_code(a, 100));
    }
    if let Some(r) = &c.resource_type {
        let _ = write!(l, " · {}", md_code(r, 100));
    }
    if let Some(r) = &c.resource_id {
        let _ = write!(l, " {}", md_code(r, 200));
    }
    let _ = write!(l, " · score *{:.1}*", c.score);
    lines.push(l);
    if let Some(a) = &c.args {
        lines.push(format!("      args {}", md_code(a, 400)));
    }
}

fn slack_calls(q: &Quarantine) -> String {
    let mut lines = vec![if q.flags() == 1 {
        "*Offending call*".to_owned()
    } else {
        format!("*Offending calls* · {}", flags_text(q))
    }];
    let (head, skipped, tail) = shown_calls(&q.flagged_calls);
    for c in head {
        slack_call(c, &mut lines);
    }
    if skipped > 0 {
        lines.push(format!("… {skipped} more flagged calls not shown"));
    }
    for c in tail {
        slack_call(c, &mut lines);
    }
    if not_kept(q) > 0 {
        lines.push(format!(
            "… {} further flagged calls counted, not kept",
            not_kept(q)
        ));
    }
    fit_lines(&lines, SLACK_TEXT_MAX, false)
}

fn slack_reasons(q: &Quarantine) -> String {
    let reasons = ranked(q);
    let mut lines = vec![if reasons.len() > TOP_REASONS {
        format!("*Why* (top {TOP_REASONS} of {} reasons)", reasons.len())
    } else {
        "*Why*".to_owned()
    }];
    for r in reasons.iter().take(TOP_REASONS) {
        lines.push(format!(
            "`+{:.1} bits` *{}*: {}",
            r.bits,
            md(&r.signal, 60),
            md(&r.detail, 400)
        ));
    }
    fit_lines(&lines, SLACK_TEXT_MAX, false)
}

fn slack_normally(q: &Quarantine) -> String {
    let b = &q.baseline;
    let mut lines = vec!["*What it normally does*".to_owned()];
    if !b.usual_tools.is_empty() {
        let tools: Vec<String> = b
            .usual_tools
            .iter()
            .take(BASELINE_ITEMS)
            .map(|(t, share)| format!("{} {:.0}%", md_code(t, 80), share * 100.0))
            .collect();
        lines.push(format!("Tools: {}", tools.join(", ")));
    }
    if !b.recent_resources.is_empty() {
        let res: Vec<String> = b
            .recent_resources
            .iter()
            .take(BASELINE_ITEMS)
            .map(|r| md_code(r, 80))
            .collect();
        lines.push(format!("Recent resources: {}", res.join(", ")));
    }
    let mut pace = Vec::new();
    if let Some(g) = b.median_gap_secs {
        pace.push(format!("median gap {}", secs(g)));
    }
    if let Some(d) = b.calls_per_day {
        pace.push(format!("{d:.0} calls/day"));
    }
    pace.push(format!(
        "learned from {} events in {} sessions",
        b.events_learned, b.sessions_learned
    ));
    lines.push(pace.join(" · "));
    fit_lines(&lines, SLACK_TEXT_MAX, false)
}

fn slack_timeline(q: &Quarantine) -> String {
    let (calls, skipped) = last_calls(&q.timeline, TIMELINE_MAX);
    let mut heading = format!(
        "*Session timeline* (last {} calls, oldest first; `&gt;&gt;` = flagged)",
        calls.len()
    );
    if skipped > 0 {
        let _ = write!(heading, ", {skipped} earlier not shown");
    }
    let lines = timeline_lines(calls, "&gt;&gt;", |s, max| bound(s, max, utf16, esc_code));
    let room = SLACK_TEXT_MAX.saturating_sub(slack_width(&heading) + "\n```\n\n```".len());
    format!("{heading}\n```\n{}\n```", fit_lines(&lines, room, true))
}

fn slack_origin(o: &OriginInfo) -> String {
    let mut s = format!(
        "*Origin*: {} · ref {}",
        md_code_opt(o.kind.as_deref(), 100),
        md_code_opt(o.reference.as_deref(), 200)
    );
    if let Some(e) = &o.excerpt {
        // Cut first, so the limit counts what a reader sees.
        let _ = write!(s, "\n>{}", md(&truncate(e, EXCERPT_MAX), 2000));
    }
    s
}

fn slack_released(r: &Release) -> String {
    format!(
        ":white_check_mark: *Released* by {} at {}\nReason: {}\nFalse positive: *{}*",
        md_code(&r.actor, 100),
        md(&r.at, 40),
        md(&r.reason, 1000),
        yes_no(r.false_positive)
    )
}

fn slack_links(q: &Quarantine, links: &Links) -> String {
    let mut s = format!(
        "*Links*: <{}|Explain this decision (JSON)>",
        slack_url(&links.quarantine)
    );
    if q.state.is_open() {
        let _ = write!(
            s,
            "\nRelease (POST, admin token):\n```{}```",
            bound(&links.release_hint(), 2000, utf16, esc_code)
        );
    }
    s
}

fn slack_context(q: &Quarantine) -> Value {
    let mut items = vec![
        format!("Quarantine {}", md_code(&q.id, 100)),
        format!("opened {}", md(&q.created_at, 40)),
    ];
    if q.updated_at != q.created_at {
        items.push(format!("updated {}", md(&q.updated_at, 40)));
    }
    items.push(format!("owner {}", md_code(&q.owner, 100)));
    context(&items)
}

/// The opening alert as a Slack incoming-webhook message (Block Kit).
pub fn slack_alert(q: &Quarantine, links: &Links) -> Value {
    let headline = q.headline();
    let mut blocks = vec![
        header(&headline),
        fields(&slack_fields(q)),
        section(&slack_calls(q)),
    ];
    if !q.reasons.is_empty() {
        blocks.push(section(&slack_reasons(q)));
    }
    blocks.push(section(&slack_normally(q)));
    if !q.timeline.is_empty() {
        blocks.push(section(&slack_timeline(q)));
    }
    if let Some(o) = q.origin.as_ref().filter(|o| has_origin(o)) {
        blocks.push(section(&slack_origin(o)));
    }
    if let Some(r) = &q.release {
        blocks.push(section(&slack_released(r)));
    }
    blocks.push(slack_context(q));
    blocks.push(section(&slack_links(q, links)));
    message(&headline, blocks)
}

/// A short follow-up on an open quarantine: `what` changed (e.g. "3
/// further flagged calls rolled up, max score 41.2" or "revocation now:
/// revoked"), with the latest flagged call.
pub fn slack_update(q: &Quarantine, links: &Links, what: &str) -> Value {
    let headline = q.headline();
    let mut blocks = vec![section(&format!(
        "*{}*\n{}",
        md(&headline, 500),
        md(what, 1000)
    ))];
    if let Some(c) = q.flagged_calls.last() {
        let mut lines = vec![if not_kept(q) > 0 {
            "*Latest kept flagged call* (later ones are only counted)".to_owned()
        } else {
            "*Latest flagged call*".to_owned()
        }];
        slack_call(c, &mut lines);
        blocks.push(section(&fit_lines(&lines, SLACK_TEXT_MAX, false)));
    }
    let mut facts = vec![
        format!("Quarantine {}", md_code(&q.id, 100)),
        flags_text(q),
        format!("max score {:.1} bits", q.max_score),
        format!("state {}", q.state.as_str()),
        format!("updated {}", md(&q.updated_at, 40)),
    ];
    if q.credentials.len() > 1 {
        let revoked = q
            .credentials
            .iter()
            .filter(|e| e.state == State::Revoked)
            .count();
        facts.push(format!(
            "{} credentials, {revoked} revoked",
            q.credentials.len()
        ));
    }
    blocks.push(context(&facts));
    blocks.push(section(&slack_links(q, links)));
    message(&format!("{headline}: {what}"), blocks)
}

/// The message that a quarantine was released.
pub fn slack_release(q: &Quarantine, links: &Links) -> Value {
    let (fallback, body) = match &q.release {
        Some(r) => (
            format!(
                "Warden: {} released by {} (false positive: {})",
                q.agent_id,
                r.actor,
                yes_no(r.false_positive)
            ),
            slack_released(r),
        ),
        None => (
            format!("Warden: {} released", q.agent_id),
            ":white_check_mark: *Released* (no release recorded)".to_owned(),
        ),
    };
    let blocks = vec![
        section(&format!(
            "{body}\nAgent {} · instance {} · credential {}",
            md_code(&q.agent_id, 200),
            md_code_opt(q.agent_instance.as_deref(), 200),
            md_code_opt(q.credential.as_ref().map(Credential::shown), 200)
        )),
        context(&[
            format!("Quarantine {}", md_code(&q.id, 100)),
            flags_text(q),
            format!("opened {}", md(&q.created_at, 40)),
        ]),
        section(&slack_links(q, links)),
    ];
    message(&fallback, blocks)
}

// ---------------------------------------------------------------------------
// PagerDuty

fn pd(s: &str) -> String {
    plain(s, PD_STRING_MAX)
}

/// A measurement as JSON, without f32-to-f64 noise (4.2, not 4.19999980).
fn num(x: f64) -> Value {
    let r = (x * 100.0).round() / 100.0;
    serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number)
}

fn pd_opt(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(pd(s)))
}

fn pd_call(c: &CallSummary) -> Value {
    json!({
        "event_id": pd(&c.event_id),
        "ts": pd(&c.ts),
        "tool": pd(&c.tool),
        "action": pd_opt(c.action.as_deref()),
        "resource_type": pd_opt(c.resource_type.as_deref()),
        "resource_id": pd_opt(c.resource_id.as_deref()),
        "args": pd_opt(c.args.as_deref()),
        "score": num(c.score),
    })
}

fn pd_details(q: &Quarantine, links: &Links) -> Value {
    let b = &q.baseline;
    let (calls, _) = last_calls(&q.timeline, PD_TIMELINE_MAX);
    json!({
        "quarantine": q.id,
        "agent": pd(&q.agent_id),
        "instance": pd_opt(q.agent_instance.as_deref()),
        "principal": pd_opt(q.principal.as_deref()),
        "credential": pd_opt(q.credential.as_ref().map(Credential::shown)),
        "credential_count": q.credentials.len(),
        "credentials": q.credentials.iter().take(PD_LIST_MAX).map(|e| json!({
            "credential": pd(e.credential.shown()),
            "state": e.state.as_str(),
            "attempts": e.attempts,
            "last_error": pd_opt(e.last_error.as_deref()),
        })).collect::<Vec<_>>(),
        "session": pd_opt(q.session_id.as_deref()),
        "trace": pd_opt(q.trace_id.as_deref()),
        "class": pd_opt(q.class.as_deref()),
        "mode": q.mode.as_str(),
        "state": q.state.as_str(),
        "revocations": q.revocations.iter().take(PD_LIST_MAX).map(|r| json!({
            "revoker": pd(&r.revoker),
            "target": pd_opt(r.target.as_deref()),
            "outcome": outcome_str(r.outcome),
            "attempts": r.attempts,
            "last_error": pd_opt(r.last_error.as_deref()),
        })).collect::<Vec<_>>(),
        "score": num(q.score),
        "max_score": num(q.max_score),
        "threshold": num(q.threshold),
        "basis": pd(&q.basis),
        "flags": q.flags(),
        "rolled_up": q.rolled_up,
        "reasons": ranked(q).iter().take(PD_LIST_MAX).map(|r| {
            pd(&format!("+{:.1} bits {}: {}", r.bits, r.signal, r.detail))
        }).collect::<Vec<_>>(),
        "offending_calls": q.flagged_calls.iter().take(PD_LIST_MAX).map(pd_call).collect::<Vec<_>>(),
        "normally": {
            "usual_tools": b.usual_tools.iter().take(PD_LIST_MAX).map(|(t, share)| {
                format!("{} {:.0}%", pd(t), share * 100.0)
            }).collect::<Vec<_>>(),
            "recent_resources": b.recent_resources.iter().take(PD_LIST_MAX).map(|r| pd(r)).collect::<Vec<_>>(),
            "median_gap_secs": b.median_gap_secs.map(|x| num(f64::from(x))),
            "calls_per_day": b.calls_per_day.map(|x| num(f64::from(x))),
            "events_learned": b.events_learned,
            "sessions_learned": b.sessions_learned,
        },
        "timeline": timeline_lines(calls, ">>", plain),
        "origin": q.origin.as_ref().map(|o| json!({
            "kind": pd_opt(o.kind.as_deref()),
            "ref": pd_opt(o.reference.as_deref()),
            "excerpt": pd_opt(o.excerpt.as_deref()),
        })),
        "release_hint": links.release_hint(),
        "created_at": q.created_at,
        "updated_at": q.updated_at,
    })
}

/// A PagerDuty Events API v2 trigger, deduplicated on the quarantine id.
pub fn pagerduty_trigger(q: &Quarantine, routing_key: &str, links: &Links) -> Value {
    let top = ranked(q).first().copied();
    let mut summary = q.headline();
    if let Some(r) = top {
        let _ = write!(summary, "; +{:.1} bits {}: {}", r.bits, r.signal, r.detail);
    }
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": q.id,
        "payload": {
            "summary": plain(&summary, PD_SUMMARY_MAX),
            "source": pd(q.agent_instance.as_deref().unwrap_or(&q.agent_id)),
            "severity": severity(q),
            "timestamp": q.created_at,
            "component": pd(&q.agent_id),
            "group": pd(q.class.as_deref().unwrap_or("unclassified")),
            "class": pd(top.map_or("anomaly", |r| r.signal.as_str())),
            "custom_details": pd_details(q, links),
        },
        "links": [
            {"href": links.quarantine, "text": "Explain this decision (Warden quarantine JSON)"},
            {"href": links.release, "text": "Release: POST with the admin bearer token (see release_hint)"},
        ],
        "client": "Warden",
        "client_url": links.quarantine,
    });
    // Every value above is bounded, so this only guards future fields.
    if serde_json::to_vec(&body).map_or(true, |b| b.len() > PD_BODY_MAX) {
        body["payload"]["custom_details"] = json!({
            "quarantine": q.id,
            "note": "details too large for PagerDuty (truncated): see the quarantine link",
        });
    }
    body
}

/// Resolves the PagerDuty alert of a quarantine.
pub fn pagerduty_resolve(q: &Quarantine, routing_key: &str) -> Value {
    json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": q.id})
}

/// Resolves a PagerDuty alert by its dedup key (a digest's).
pub fn pagerduty_resolve_key(dedup_key: &str, routing_key: &str) -> Value {
    json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key})
}

/// One alert standing for quarantines whose own alerts did not fit in a
/// backed-up notifier queue: how many, and the first few by agent.
/// `dedup_key` is how its release resolves it.
pub fn digest(
    slack: bool,
    qs: &[std::sync::Arc<Quarantine>],
    count: usize,
    public_url: &str,
    routing_key: &str,
    dedup_key: &str,
) -> Value {
    let base = public_url.trim_end_matches('/');
    let list = format!("{base}/v1/quarantines");
    let headline =
        format!("Warden: {count} more quarantines while alerts were backed up (rolled up)");
    let lines: Vec<String> = qs
        .iter()
        .take(PD_LIST_MAX)
        .map(|q| {
            format!(
                "{}  {}  {}  {:.1} bits",
                q.id,
                q.agent_id,
                q.state.as_str(),
                q.score
            )
        })
        .collect();
    if slack {
        let body = fit_lines(
            &lines
                .iter()
                .map(|l| md_code(l, SLACK_TEXT_MAX))
                .collect::<Vec<_>>(),
            SLACK_TEXT_MAX - 200,
            false,
        );
        json!({
            "text": plain(&headline, SLACK_FALLBACK_MAX),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": plain(&headline, SLACK_HEADER_MAX)}},
                {"type": "section", "text": {"type": "mrkdwn", "verbatim": true,
                    "text": format!("{body}\n<{}|All quarantines>", slack_url(&list))}},
            ]
        })
    } else {
        json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": plain(&headline, PD_SUMMARY_MAX),
                "source": "warden",
                "severity": "critical",
                "component": "warden",
                "group": "digest",
                "class": "rolled-up",
                "custom_details": {"count": count, "quarantines": lines},
            },
            "links": [{"href": list, "text": "All quarantines"}],
            "client": "Warden",
            "client_url": list,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::incident::fixtures::{flag, FP};
    use crate::respond::incident::Flag;

    const URL: &str = "https://warden.example/";

    fn open(f: &Flag) -> Quarantine {
        Quarantine::open(
            f,
            &[("vault".into(), Some(FP.into()))],
            &["slack".into()],
            "w1",
        )
    }

    fn quarantine(mode: Mode, score: f64) -> Quarantine {
        open(&flag("e1", mode, score))
    }

    /// Everything as large as an attacker can make it.
    fn huge() -> Quarantine {
        let tool = "t".repeat(200);
        let args = format!("{{\"memo\":\"{}\"}}", "<&`x".repeat(2500));
        let mut f = flag("e0", Mode::Enforce, 30.0);
        f.call.tool = tool.clone();
        f.call.args = Some(args);
        f.call.resource_id = Some("<!channel>".repeat(40));
        f.reasons = (0..50)
            .map(|i| Reason {
                signal: format!("signal-{i}"),
                detail: "d<".repeat(500),
                bits: 50.0 - i as f64,
            })
            .collect();
        f.timeline = (0..40)
            .map(|i| CallSummary {
                event_id: format!("t{i}"),
                ts: "2026-03-01T12:00:00Z".into(),
                tool: tool.clone(),
                resource_id: Some("r&".repeat(150)),
                score: i as f64,
                flagged: i % 3 == 0,
                ..Default::default()
            })
            .collect();
        f.origin = Some(OriginInfo {
            kind: Some("k".repeat(500)),
            reference: Some("<@U123>".repeat(100)),
            excerpt: Some("e".repeat(5000)),
        });
        f.baseline.usual_tools = (0..30).map(|i| (format!("{tool}{i}"), 0.01)).collect();
        f.baseline.recent_resources = (0..30).map(|_| "x".repeat(300)).collect();
        let revokers: Vec<(String, Option<String>)> = (0..12)
            .map(|i| (format!("revoker-{i}"), Some("y".repeat(300))))
            .collect();
        let mut q = Quarantine::open(&f, &revokers, &[], "w1");
        for r in &mut q.revocations {
            r.outcome = Outcome::Failed;
            r.attempts = 7;
            r.last_error = Some("boom ".repeat(200));
        }
        for i in 1..25 {
            let mut g = f.clone();
            g.call.event_id = format!("e{i}");
            assert!(q.attach(&g));
        }
        q.settle_state();
        assert_eq!((q.flagged_calls.len(), q.flags()), (20, 25));
        q
    }

    fn units(s: &str) -> usize {
        s.encode_utf16().count()
    }

    /// Every mrkdwn text of a message.
    fn texts(msg: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for b in msg["blocks"].as_array().unwrap() {
            if let Some(t) = b["text"]["text"].as_str() {
                out.push(t.to_owned());
            }
            for key in ["fields", "elements"] {
                for f in b[key].as_array().into_iter().flatten() {
                    out.push(f["text"].as_str().unwrap().to_owned());
                }
            }
        }
        out
    }

    fn assert_slack_limits(msg: &Value) {
        let fallback = msg["text"].as_str().unwrap();
        assert!(!fallback.is_empty() && units(fallback) <= 3000);
        let blocks = msg["blocks"].as_array().unwrap();
        assert!(
            !blocks.is_empty() && blocks.len() <= 50,
            "{} blocks",
            blocks.len()
        );
        for b in blocks {
            match b["type"].as_str().unwrap() {
                "header" => {
                    assert_eq!(b["text"]["type"], "plain_text");
                    let t = b["text"]["text"].as_str().unwrap();
                    assert!(units(t) <= 150, "header of {}", units(t));
                }
                "section" => {
                    let text = b["text"]["text"].as_str();
                    let fields = b["fields"].as_array();
                    assert!(text.is_some() || fields.is_some());
                    if let Some(t) = text {
                        assert!(units(t) <= 3000, "section of {}", units(t));
                    }
                    if let Some(f) = fields {
                        assert!(!f.is_empty() && f.len() <= 10);
                        for x in f {
                            let t = x["text"].as_str().unwrap();
                            assert!(units(t) <= 2000, "field of {}", units(t));
                        }
                    }
                }
                "context" => {
                    let e = b["elements"].as_array().unwrap();
                    assert!(!e.is_empty() && e.len() <= 10);
                }
                other => panic!("unexpected block {other}"),
            }
        }
        // Only Warden's own links may open a control sequence.
        for t in texts(msg).iter().chain([fallback.to_owned()].iter()) {
            for (i, _) in t.match_indices('<') {
                assert!(t[i..].starts_with("<https://warden.example/"), "{t}");
            }
        }
    }

    #[test]
    fn truncate_cuts_visibly_within_the_limit() {
        assert_eq!(truncate("short", 20), "short");
        assert_eq!(truncate("", 0), "");
        let long = "é".repeat(100);
        let t = truncate(&long, 30);
        assert_eq!(t.chars().count(), 30);
        assert!(t.starts_with("éé") && t.ends_with(TRUNCATED));
        let emoji = "🦀".repeat(50);
        assert_eq!(truncate(&emoji, 50), emoji);
        assert!(truncate(&emoji, 49).chars().count() <= 49);
        assert_eq!(truncate("abcdefghijklmnopqrstuvwxyz", 5), "…");
        assert_eq!(truncate("abc", 0), "");
        assert_eq!(
            truncate("abcdefghijklmnopqrstuvwxyz", 14),
            format!("a{TRUNCATED}")
        );
    }

    #[test]
    fn links_trim_the_trailing_slash() {
        let q = quarantine(Mode::Enforce, 30.0);
        let l = links(URL, &q);
        assert_eq!(
            l.quarantine,
            format!("https://warden.example/v1/quarantines/{}", q.id)
        );
        assert_eq!(l.release, format!("{}/release", l.quarantine));
        assert_eq!(links("https://warden.example", &q), l);
        let hint = l.release_hint();
        assert!(hint.starts_with("curl -X POST -H \"Authorization: Bearer $WARDEN_ADMIN_TOKEN\""));
        assert!(hint.contains(r#"-d '{"actor":"you","reason":"...","false_positive":true}'"#));
        assert!(hint.ends_with(&l.release));
    }

    #[test]
    fn text_alert_reads_top_down() {
        let mut f = flag("e1", Mode::Enforce, 30.0);
        let mut q = open(&f);
        for i in 2..4 {
            f.call.event_id = format!("e{i}");
            f.score = 35.0;
            q.attach(&f);
        }
        let l = links(URL, &q);
        let t = text_alert(&q, &l);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], q.headline());
        assert!(
            t.contains("3 flagged calls (2 rolled up), max score 35.0 bits"),
            "{t}"
        );
        assert!(
            t.contains(&format!("Revocation: vault -> {FP}: pending, 0 attempts\n")),
            "{t}"
        );
        // Reasons ranked by bits.
        let r1 = t
            .find("  +20.0 bits  resource: new IBAN")
            .expect("top reason");
        let r2 = t
            .find("  +6.5 bits  tool: rare tool transfer_funds")
            .expect("second");
        assert!(r1 < r2);
        // The flagged call marked, the other not.
        let flagged: Vec<&&str> = lines
            .iter()
            .filter(|l| l.trim_start().starts_with(">>"))
            .collect();
        assert_eq!(flagged.len(), 1, "{t}");
        assert!(flagged[0].contains("12:03:04") && flagged[0].contains("transfer_funds"));
        assert!(flagged[0].contains("DE89370400440532013000") && flagged[0].ends_with("30.0"));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("     12:02:58  get_balance ") && l.contains("acct-1")));
        assert!(t.contains("tools: get_balance 62%, list_payees 30%"));
        assert!(t.contains("median gap 4.2s, 120 calls/day"));
        assert!(t.contains("learned from 1234 events in 56 sessions"));
        assert!(t.contains("Origin: email ref msg-42\n  \"Please wire the funds today\""));
        assert!(t.contains(&format!("Explain: {}", l.quarantine)));
        assert!(t.contains(&format!("Release: {}", l.release_hint())));
        let order = [
            "Agent:",
            "Offending calls:",
            "Why:",
            "Normally:",
            "Session timeline",
            "Origin:",
            "Explain:",
        ];
        let at: Vec<usize> = order.iter().map(|s| t.find(s).expect(s)).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{t}");

        let one = text_alert(&quarantine(Mode::Shadow, 30.0), &l);
        assert!(one.contains("Flags:      1 flagged call\n"), "{one}");
        assert!(one.contains("Revocation: none (not enforcing)"));
    }

    #[test]
    fn text_alert_values_cannot_forge_lines() {
        let mut f = flag("e1", Mode::Enforce, 30.0);
        f.timeline[0].tool = "evil\n>> 00:00:00 fake\r\n".into();
        f.call.args = Some("a\u{202E}b".into());
        let q = open(&f);
        let t = text_alert(&q, &links(URL, &q));
        let marked = t
            .lines()
            .filter(|l| l.trim_start().starts_with(">>"))
            .count();
        assert_eq!(marked, 1, "{t}");
        assert!(t.contains("evil >> 00:00:00 fake"));
        assert!(t.contains("args: a\u{FFFD}b"));

        let h = huge();
        let t = text_alert(&h, &links(URL, &h));
        assert!(t.contains("Why (top 5 of 50 reasons):"));
        assert!(t.contains("25 flagged calls (24 rolled up)"));
        assert!(t.contains("… 15 more flagged calls not shown"));
        assert!(t.contains("… 5 further flagged calls counted, not kept"));
        assert!(t.contains("… 25 earlier calls not shown"));
        assert!(t.contains("\nRevocation: revoker-0 -> yyy"));
        assert!(t.contains("\n            revoker-9 -> yyy"), "{t}");
        assert!(t.contains("\n            … and 2 more\n"), "{t}");
        assert!(t.contains(TRUNCATED));
        assert!(t.len() < 20_000, "{} bytes", t.len());
    }

    #[test]
    fn every_credential_is_listed_by_fingerprint_with_its_state() {
        use crate::respond::credential::SecretString;
        let mut q = quarantine(Mode::Enforce, 30.0);
        for n in 2..9u32 {
            let mut g = flag(&format!("e{n}"), Mode::Enforce, 30.0);
            g.credential_id = Some(SecretString::new(format!("tok-{n}")));
            g.credential = Some(Credential {
                fingerprint: format!("cred:{n:016x}"),
                handle: None,
            });
            assert!(q.attach(&g));
            let target = g.credential.as_ref().map(|c| c.shown().to_owned());
            q.add_credential(&g, &[("vault".into(), target)]);
        }
        q.revocations[1].outcome = Outcome::Failed;
        q.revocations[1].last_error = Some("permission denied".into());
        q.settle_state();
        let l = links(URL, &q);
        let t = text_alert(&q, &l);
        assert!(t.contains(&format!("All creds:  {FP} pending")), "{t}");
        assert!(
            t.contains("cred:0000000000000002 revoke_failed (permission denied)"),
            "{t}"
        );
        assert!(t.contains("… and 3 more"), "{t}");
        // The failure comes first among the revocations.
        assert!(
            t.contains("Revocation: vault -> cred:0000000000000002: failed"),
            "{t}"
        );
        let slack = slack_alert(&q, &l).to_string();
        assert!(slack.contains("*Credentials (8)*"), "{slack}");
        assert_slack_limits(&slack_alert(&q, &l));
        let pd = pagerduty_trigger(&q, "k", &l);
        let d = &pd["payload"]["custom_details"];
        assert_eq!(d["credential_count"], 8);
        assert_eq!(d["credentials"][1]["state"], "revoke_failed");
        for m in [t, slack, pd.to_string()] {
            assert!(!m.contains("tok-"), "a raw credential: {m}");
        }
    }

    #[test]
    fn slack_alert_has_the_incident() {
        let q = quarantine(Mode::Enforce, 30.0);
        let l = links(URL, &q);
        let m = slack_alert(&q, &l);
        assert_slack_limits(&m);
        assert_eq!(m["text"], q.headline());
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], q.headline());
        let fields: Vec<&str> = blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&"*Agent*\n`pay-eu`"));
        assert!(fields.contains(&format!("*Credential*\n`{FP}`").as_str()));
        assert!(!m.to_string().contains("tok-1"), "the raw credential");
        assert!(fields.contains(&"*Score / threshold*\n*30.0* / 16.0 bits"));
        assert!(fields.contains(&"*Flags*\n1 flagged call"));
        assert!(fields.contains(
            &format!("*Revocation*\npending\n• vault `{FP}`: pending, 0 attempts").as_str()
        ));
        let all = texts(&m).join("\n");
        assert!(all.contains("• `12:03:04` `transfer_funds` · action `send` · `iban` `DE89370400440532013000` · score *30.0*"));
        assert!(all.contains("args `{\"amount\":9000,\"currency\":\"EUR\"}`"));
        assert!(all.contains("`+20.0 bits` *resource*: new IBAN\n`+6.5 bits` *tool*"));
        assert!(all.contains("Tools: `get_balance` 62%, `list_payees` 30%"));
        assert!(all.contains(
            "```\n   12:02:58  get_balance     acct-1  1.2\n\
             &gt;&gt; 12:03:04  transfer_funds  DE89370400440532013000  30.0\n```"
        ));
        assert!(all.contains("*Origin*: `email` · ref `msg-42`\n>Please wire the funds today"));
        assert!(all.contains(&format!("Quarantine `{}`", q.id)));
        assert!(all.contains(&format!("<{}|Explain this decision (JSON)>", l.quarantine)));
        assert!(all.contains("Authorization: Bearer $WARDEN_ADMIN_TOKEN"));
        for b in blocks {
            for t in texts(&json!({"blocks": [b]})) {
                assert!(!t.is_empty());
            }
            if let Some(t) = b.get("text").filter(|t| t["type"] == "mrkdwn") {
                assert_eq!(t["verbatim"], true);
            }
        }
    }

    #[test]
    fn slack_limits_hold_on_a_huge_quarantine() {
        let q = huge();
        let l = links(URL, &q);
        for m in [
            slack_alert(&q, &l),
            slack_update(&q, &l, &"more <!here> ".repeat(500)),
            slack_release(&q, &l),
        ] {
            assert_slack_limits(&m);
        }
        let m = slack_alert(&q, &l);
        let s = m.to_string();
        assert!(s.contains("truncated"));
        assert!(!s.contains("<!channel>") && !s.contains("<@U123>"));
        let blocks = m["blocks"].as_array().unwrap();
        let header = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(header.ends_with(TRUNCATED) && units(header) <= 150);
        let fields = blocks[1]["fields"].as_array().unwrap();
        let revocation = fields
            .iter()
            .find_map(|f| f["text"].as_str().filter(|t| t.starts_with("*Revocation*")))
            .unwrap();
        assert!(
            revocation.contains("*FAILED*") && revocation.contains("truncated"),
            "{revocation}"
        );
        // The timeline keeps its last calls and both fences.
        let all = texts(&m);
        let timeline = all
            .iter()
            .find(|t| t.starts_with("*Session timeline*"))
            .unwrap();
        assert!(timeline.contains("last 15 calls") && timeline.contains("25 earlier not shown"));
        assert!(timeline.ends_with("39.0\n```"), "{timeline}");
        assert_eq!(timeline.matches("```").count(), 2);
        let origin = all.iter().find(|t| t.starts_with("*Origin*")).unwrap();
        let quote = origin.split_once("\n>").unwrap().1;
        assert_eq!(quote.chars().count(), EXCERPT_MAX);
        assert!(quote.ends_with(TRUNCATED));
        let reasons = all.iter().find(|t| t.starts_with("*Why*")).unwrap();
        assert!(reasons.starts_with("*Why* (top 5 of 50 reasons)"));
        assert_eq!(reasons.lines().count(), 6);
    }

    #[test]
    fn slack_escapes_event_values() {
        let mut f = flag("e1", Mode::Enforce, 30.0);
        f.agent_id = "<!here>".into();
        f.call.resource_id = Some("<!channel> & <@U123|x>".into());
        f.call.args = Some("```\n<https://evil.example|click>`".into());
        f.timeline[0].tool = "a```b".into();
        let q = open(&f);
        let m = slack_alert(&q, &links(URL, &q));
        assert_slack_limits(&m);
        let s = m.to_string();
        assert!(s.contains("&lt;!channel&gt; &amp; &lt;@U123|x&gt;"), "{s}");
        assert!(m["text"].as_str().unwrap().contains("&lt;!here&gt;"));
        let header = m["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            header.starts_with("Warden: \u{2039}!here\u{203A} quarantined"),
            "{header}"
        );
        assert!(!s.contains("<!channel>") && !s.contains("<!here>"));
        let all = texts(&m).join("\n");
        assert!(
            all.contains("args `ˋˋˋ &lt;https://evil.example|click&gt;ˋ`"),
            "{all}"
        );
        let timeline = texts(&m)
            .into_iter()
            .find(|t| t.starts_with("*Session timeline*"))
            .unwrap();
        let code = timeline
            .split_once("```\n")
            .unwrap()
            .1
            .strip_suffix("\n```")
            .unwrap();
        assert!(!code.contains('`') && code.contains("aˋˋˋb"), "{code}");
        let u = slack_update(&q, &links(URL, &q), "<!channel> more");
        assert!(u["text"]
            .as_str()
            .unwrap()
            .ends_with(": &lt;!channel&gt; more"));
        assert_slack_limits(&u);
    }

    #[test]
    fn slack_update_and_release() {
        let mut f = flag("e1", Mode::Enforce, 30.0);
        let mut q = open(&f);
        f.call.event_id = "e2".into();
        f.call.tool = "delete_payee".into();
        q.attach(&f);
        let l = links(URL, &q);
        let u = slack_update(&q, &l, "1 further flagged call rolled up, max score 30.0");
        assert_slack_limits(&u);
        let all = texts(&u).join("\n");
        assert!(all.contains("1 further flagged call rolled up, max score 30.0"));
        assert!(
            all.contains("*Latest flagged call*\n• `12:03:04` `delete_payee`"),
            "{all}"
        );
        assert!(all.contains("2 flagged calls (1 rolled up)"));
        assert!(all.contains(&l.quarantine));

        q.state = State::Released;
        q.release = Some(Release {
            actor: "jane".into(),
            reason: "new supplier, expected".into(),
            false_positive: true,
            at: "2026-03-01T12:30:00Z".into(),
        });
        let r = slack_release(&q, &l);
        assert_slack_limits(&r);
        assert_eq!(
            r["text"],
            "Warden: pay-eu released by jane (false positive: yes)"
        );
        let all = texts(&r).join("\n");
        assert!(all.contains("*Released* by `jane`"));
        assert!(all.contains("Reason: new supplier, expected"));
        assert!(all.contains("False positive: *yes*"));
        assert!(
            !all.contains("WARDEN_ADMIN_TOKEN"),
            "no release hint once released"
        );
    }

    #[test]
    fn pagerduty_trigger_is_bounded_and_deduplicated() {
        let q = quarantine(Mode::Enforce, 30.0);
        let l = links(URL, &q);
        let p = pagerduty_trigger(&q, "rk", &l);
        assert_eq!(p["routing_key"], "rk");
        assert_eq!(p["event_action"], "trigger");
        assert_eq!(p["dedup_key"], q.id.as_str());
        let pl = &p["payload"];
        assert_eq!(pl["source"], "pay-eu-7f");
        assert_eq!(pl["component"], "pay-eu");
        assert_eq!(pl["group"], "payments");
        assert_eq!(pl["class"], "resource");
        assert_eq!(pl["timestamp"], q.created_at.as_str());
        assert_eq!(
            pl["summary"],
            format!("{}; +20.0 bits resource: new IBAN", q.headline())
        );
        let d = &pl["custom_details"];
        assert_eq!(d["reasons"][0], "+20.0 bits resource: new IBAN");
        assert_eq!(d["flags"], 1);
        assert_eq!(d["offending_calls"][0]["tool"], "transfer_funds");
        assert_eq!(d["revocations"][0]["outcome"], "pending");
        assert_eq!(d["timeline"].as_array().unwrap().len(), 2);
        assert_eq!(d["origin"]["ref"], "msg-42");
        assert_eq!(d["normally"]["median_gap_secs"], 4.2);
        assert_eq!(d["threshold"], 16.0);
        assert_eq!(p["client"], "Warden");
        assert_eq!(p["client_url"], l.quarantine.as_str());
        assert_eq!(p["links"][0]["href"], l.quarantine.as_str());
        assert_eq!(p["links"][1]["href"], l.release.as_str());

        let h = huge();
        let p = pagerduty_trigger(&h, "rk", &links(URL, &h));
        let summary = p["payload"]["summary"].as_str().unwrap();
        assert!(summary.chars().count() <= 1024 && summary.ends_with(TRUNCATED));
        assert_eq!(p["payload"]["source"], "pay-eu-7f");
        let d = &p["payload"]["custom_details"];
        assert_eq!(
            (d["flags"].as_u64(), d["rolled_up"].as_u64()),
            (Some(25), Some(24))
        );
        let args = d["offending_calls"][0]["args"].as_str().unwrap();
        assert_eq!(args.chars().count(), PD_STRING_MAX);
        assert!(args.ends_with(TRUNCATED));
        assert_eq!(d["reasons"].as_array().unwrap().len(), PD_LIST_MAX);
        let size = serde_json::to_vec(&p).unwrap().len();
        assert!(size < PD_BODY_MAX / 4, "{size} bytes");
    }

    #[test]
    fn pagerduty_severity() {
        let sev = |mode, score: f64, state: Option<State>| {
            let mut q = quarantine(mode, score);
            if let Some(s) = state {
                q.state = s;
            }
            let p = pagerduty_trigger(&q, "rk", &links(URL, &q));
            p["payload"]["severity"].as_str().unwrap().to_owned()
        };
        // Threshold 16.
        assert_eq!(sev(Mode::Enforce, 20.0, None), "warning");
        assert_eq!(sev(Mode::Enforce, 24.0, None), "error");
        assert_eq!(sev(Mode::Enforce, 31.9, None), "error");
        assert_eq!(sev(Mode::Enforce, 32.0, None), "critical");
        assert_eq!(
            sev(Mode::Enforce, 17.0, Some(State::RevokeFailed)),
            "critical"
        );
        assert_eq!(sev(Mode::Shadow, 40.0, None), "warning");
        assert_eq!(sev(Mode::Shadow, 17.0, None), "warning");
        // A rolled-up flag that scores higher raises it.
        let mut f = flag("e1", Mode::Enforce, 20.0);
        let mut q = open(&f);
        f.call.event_id = "e2".into();
        f.score = 40.0;
        q.attach(&f);
        assert_eq!(severity(&q), "critical");
    }

    #[test]
    fn pagerduty_resolve_body() {
        let q = quarantine(Mode::Enforce, 30.0);
        assert_eq!(
            pagerduty_resolve(&q, "rk"),
            json!({"routing_key": "rk", "event_action": "resolve", "dedup_key": q.id})
        );
    }
}
