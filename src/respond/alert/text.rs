//! The alert as plain text, for the console and log notifier: an on-call
//! engineer should get what happened, what it normally does and what to
//! do from the first screen. One line per value: no value can forge a
//! line.

use std::fmt::Write as _;

use super::escape::{plain, plain_opt};
use super::model::{
    call_parts, credential_lines, hhmmss, revocation_line, timeline_lines, yes_no, Alert,
    EXCERPT_MAX, REVOCATIONS_SHOWN, TOP_REASONS,
};
use crate::decide::Mode;
use crate::respond::incident::{CallSummary, State};

const LABEL: usize = 12;

fn field(t: &mut String, label: &str, value: &str) {
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{label}:")
    };
    let _ = writeln!(t, "{label:<LABEL$}{value}");
}

/// Lines under one label: the first carries it, "… and N more" closes.
fn fields(t: &mut String, label: &str, lines: &[String], more: usize) {
    for (i, l) in lines.iter().enumerate() {
        field(t, if i == 0 { label } else { "" }, l);
    }
    if more > 0 {
        field(t, "", &format!("… and {more} more"));
    }
}

fn call(t: &mut String, c: &CallSummary) {
    let _ = write!(t, "  {}  {}", hhmmss(&c.ts), plain(&c.tool, 200));
    for (label, v, max) in call_parts(c) {
        let _ = write!(t, "  {label}={}", plain(v, max));
    }
    let _ = writeln!(t, "  score={:.1}", c.score);
    if let Some(a) = &c.args {
        let _ = writeln!(t, "            args: {}", plain(a, 500));
    }
}

/// The alert as text.
pub fn render(a: &Alert) -> String {
    let q = a.q;
    let mut t = String::new();
    let _ = writeln!(t, "{}\n", plain(&a.headline, 500));

    field(&mut t, "Agent", &plain(&q.agent_id, 200));
    field(
        &mut t,
        "Instance",
        &plain_opt(q.agent_instance.as_deref(), 200),
    );
    field(&mut t, "Principal", &plain_opt(q.principal.as_deref(), 200));
    field(&mut t, "Credential", &plain_opt(a.credential(), 200));
    fields(
        &mut t,
        "All creds",
        &credential_lines(a, plain),
        a.credentials_more,
    );
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
    if a.revocations.is_empty() {
        let none = if q.mode == Mode::Enforce {
            "none configured"
        } else {
            "none (not enforcing)"
        };
        field(&mut t, "Revocation", none);
    }
    let revocations: Vec<String> = a
        .revocations
        .iter()
        .take(REVOCATIONS_SHOWN)
        .map(|r| {
            let who = format!(
                "{} -> {}",
                plain(&r.revoker, 100),
                plain_opt(r.target.as_deref(), 200)
            );
            revocation_line(r, who, |e| format!(", last error: {}", plain(e, 300)))
        })
        .collect();
    let more = a.revocations.len().saturating_sub(REVOCATIONS_SHOWN);
    fields(&mut t, "Revocation", &revocations, more);
    let mut flags = a.flags.clone();
    if q.rolled_up > 0 {
        let _ = write!(flags, ", max score {:.1} bits", q.max_score);
    }
    field(&mut t, "Flags", &flags);

    let c = &a.calls;
    let heading = if q.flags() == 1 {
        "Offending call:"
    } else {
        "Offending calls:"
    };
    let _ = writeln!(t, "\n{heading}");
    for x in c.head {
        call(&mut t, x);
    }
    if c.skipped > 0 {
        let _ = writeln!(t, "  … {} more flagged calls not shown", c.skipped);
    }
    for x in c.tail {
        call(&mut t, x);
    }
    if c.not_kept > 0 {
        let _ = writeln!(
            t,
            "  … {} further flagged calls counted, not kept",
            c.not_kept
        );
    }

    if !a.reasons.is_empty() {
        if a.reasons.len() > TOP_REASONS {
            let _ = writeln!(
                t,
                "\nWhy (top {TOP_REASONS} of {} reasons):",
                a.reasons.len()
            );
        } else {
            let _ = writeln!(t, "\nWhy:");
        }
        for r in a.reasons.iter().take(TOP_REASONS) {
            let _ = writeln!(
                t,
                "  +{:.1} bits  {}: {}",
                r.bits,
                plain(&r.signal, 60),
                plain(&r.detail, 300)
            );
        }
    }

    let n = &a.normally;
    let _ = writeln!(t, "\nNormally:");
    if let Some(tools) = n.tools_line(plain) {
        let _ = writeln!(t, "  tools: {tools}");
    }
    if let Some(res) = n.resources_line(plain) {
        let _ = writeln!(t, "  recent resources: {res}");
    }
    if !n.pace.is_empty() {
        let _ = writeln!(t, "  {}", n.pace.join(", "));
    }
    let _ = writeln!(t, "  {}", n.learned);

    if !a.timeline.is_empty() {
        let _ = writeln!(
            t,
            "\nSession timeline (last {} calls, oldest first, >> = flagged):",
            a.timeline.len()
        );
        if a.timeline_skipped > 0 {
            let _ = writeln!(t, "  … {} earlier calls not shown", a.timeline_skipped);
        }
        for l in timeline_lines(a.timeline, ">>", plain) {
            let _ = writeln!(t, "  {l}");
        }
    }

    if let Some(o) = a.origin {
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

    let _ = writeln!(t, "\nExplain: {}", a.links.quarantine);
    if q.state.is_open() {
        let _ = writeln!(t, "Release: {}", a.links.release_hint());
    }
    t
}
