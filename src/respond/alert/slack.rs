//! The alert as a Slack incoming-webhook message: typed Block Kit, within
//! Slack's limits (50 blocks; 150 characters of header, 3000 of section
//! text, 10 fields of 2000; 10 context elements), every cut marked.
//! Lengths are counted in UTF-16 units, never less than the character
//! count Slack documents, so both readings of a limit hold. Text objects
//! are `verbatim`, so Slack does not auto-link URLs or channel names in
//! values.

use std::fmt::Write as _;

use serde::Serialize;

use super::escape::{
    bound, esc_code, esc_header, fit_lines, hard_cap, md, md_code, md_code_opt, slack_url,
    slack_width, truncate, utf16,
};
use super::model::{
    call_parts, credential_lines, hhmmss, revocation_line, timeline_lines, yes_no, Alert,
    EXCERPT_MAX, TOP_REASONS,
};
use crate::respond::incident::{CallSummary, OriginInfo, Release, State};

pub(super) const MAX_BLOCKS: usize = 50;
pub(super) const HEADER_MAX: usize = 150;
pub(super) const TEXT_MAX: usize = 3000;
const FIELDS_MAX: usize = 10;
const FIELD_MAX: usize = 2000;
const CONTEXT_MAX: usize = 10;
/// The top-level `text` is only the notification fallback: keep it short.
pub(super) const FALLBACK_MAX: usize = 300;

/// An incoming-webhook message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    /// The notification fallback (Slack parses it as mrkdwn too).
    pub text: String,
    pub blocks: Vec<Block>,
}

/// The blocks Warden sends.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Header {
        text: Text,
    },
    Section {
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<Text>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        fields: Vec<Text>,
    },
    Context {
        elements: Vec<Text>,
    },
}

/// A text object.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Text {
    PlainText { text: String },
    Mrkdwn { text: String, verbatim: bool },
}

fn mrkdwn(text: &str, max: usize) -> Text {
    Text::Mrkdwn {
        text: hard_cap(text, max),
        verbatim: true,
    }
}

pub(super) fn section(text: &str) -> Block {
    Block::Section {
        text: Some(mrkdwn(text, TEXT_MAX)),
        fields: Vec::new(),
    }
}

pub(super) fn header(text: &str) -> Block {
    Block::Header {
        text: Text::PlainText {
            text: bound(text, HEADER_MAX, utf16, esc_header),
        },
    }
}

fn fields(items: &[String]) -> Block {
    Block::Section {
        text: None,
        fields: items
            .iter()
            .take(FIELDS_MAX)
            .map(|i| mrkdwn(i, FIELD_MAX))
            .collect(),
    }
}

fn context(items: &[String]) -> Block {
    Block::Context {
        elements: items
            .iter()
            .take(CONTEXT_MAX)
            .map(|i| mrkdwn(i, TEXT_MAX))
            .collect(),
    }
}

/// A message: the fallback text, escaped, and at most 50 blocks, keeping
/// the last (the links).
pub(super) fn message(fallback: &str, mut blocks: Vec<Block>) -> Message {
    if blocks.len() > MAX_BLOCKS {
        let last = blocks.pop();
        let dropped = blocks.len() - (MAX_BLOCKS - 2);
        blocks.truncate(MAX_BLOCKS - 2);
        blocks.push(section(&format!("… {dropped} more blocks (truncated)")));
        blocks.extend(last);
    }
    Message {
        text: md(fallback, FALLBACK_MAX),
        blocks,
    }
}

fn revocation(a: &Alert) -> String {
    let mut lines = vec![match a.q.state {
        State::Shadow => "not revoked (shadow mode)".to_owned(),
        State::RevokeFailed => {
            ":rotating_light: *FAILED*: the credential may still work".to_owned()
        }
        s => s.as_str().to_owned(),
    }];
    for r in &a.revocations {
        let who = format!(
            "• {} {}",
            md(&r.revoker, 100),
            md_code_opt(r.target.as_deref(), 100)
        );
        lines.push(revocation_line(r, who, |e| {
            format!(": {}", md_code(e, 200))
        }));
    }
    format!("*Revocation*\n{}", fit_lines(&lines, FIELD_MAX - 20, false))
}

fn credentials(a: &Alert) -> String {
    let total = a.q.credentials.len();
    if total <= 1 {
        return format!("*Credential*\n{}", md_code_opt(a.credential(), 200));
    }
    let mut lines = credential_lines(a, md_code);
    if a.credentials_more > 0 {
        lines.push(format!("… and {} more", a.credentials_more));
    }
    format!(
        "*Credentials ({total})*\n{}",
        fit_lines(&lines, FIELD_MAX - 40, false)
    )
}

fn facts(a: &Alert) -> Vec<String> {
    let q = a.q;
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
        credentials(a),
        format!("*Class*\n{}", md_code_opt(q.class.as_deref(), 100)),
        format!("*Mode*\n{}", q.mode.as_str()),
        revocation(a),
        format!("*Score / threshold*\n{score}"),
        format!("*Flags*\n{}", a.flags),
    ]
}

fn call(c: &CallSummary, lines: &mut Vec<String>) {
    let mut l = format!("• `{}` {}", hhmmss(&c.ts), md_code(&c.tool, 100));
    for (label, v, max) in call_parts(c) {
        // "· action `send` · `iban` `DE89…`": the resource's type labels
        // its id.
        let _ = match label {
            "action" => write!(l, " · action {}", md_code(v, max)),
            "resource_type" => write!(l, " · {}", md_code(v, max)),
            _ => write!(l, " {}", md_code(v, max)),
        };
    }
    let _ = write!(l, " · score *{:.1}*", c.score);
    lines.push(l);
    if let Some(a) = &c.args {
        lines.push(format!("      args {}", md_code(a, 400)));
    }
}

fn calls(a: &Alert) -> String {
    let mut lines = vec![if a.q.flags() == 1 {
        "*Offending call*".to_owned()
    } else {
        format!("*Offending calls* · {}", a.flags)
    }];
    let c = &a.calls;
    for x in c.head {
        call(x, &mut lines);
    }
    if c.skipped > 0 {
        lines.push(format!("… {} more flagged calls not shown", c.skipped));
    }
    for x in c.tail {
        call(x, &mut lines);
    }
    if c.not_kept > 0 {
        lines.push(format!(
            "… {} further flagged calls counted, not kept",
            c.not_kept
        ));
    }
    fit_lines(&lines, TEXT_MAX, false)
}

fn reasons(a: &Alert) -> String {
    let mut lines = vec![if a.reasons.len() > TOP_REASONS {
        format!("*Why* (top {TOP_REASONS} of {} reasons)", a.reasons.len())
    } else {
        "*Why*".to_owned()
    }];
    for r in a.reasons.iter().take(TOP_REASONS) {
        lines.push(format!(
            "`+{:.1} bits` *{}*: {}",
            r.bits,
            md(&r.signal, 60),
            md(&r.detail, 400)
        ));
    }
    fit_lines(&lines, TEXT_MAX, false)
}

fn normally(a: &Alert) -> String {
    let n = &a.normally;
    let mut lines = vec!["*What it normally does*".to_owned()];
    if let Some(tools) = n.tools_line(md_code) {
        lines.push(format!("Tools: {tools}"));
    }
    if let Some(res) = n.resources_line(md_code) {
        lines.push(format!("Recent resources: {res}"));
    }
    let mut pace = n.pace.clone();
    pace.push(n.learned.clone());
    lines.push(pace.join(" · "));
    fit_lines(&lines, TEXT_MAX, false)
}

fn timeline(a: &Alert) -> String {
    let mut heading = format!(
        "*Session timeline* (last {} calls, oldest first; `&gt;&gt;` = flagged)",
        a.timeline.len()
    );
    if a.timeline_skipped > 0 {
        let _ = write!(heading, ", {} earlier not shown", a.timeline_skipped);
    }
    let lines = timeline_lines(a.timeline, "&gt;&gt;", |s, max| {
        bound(s, max, utf16, esc_code)
    });
    let room = TEXT_MAX.saturating_sub(slack_width(&heading) + "\n```\n\n```".len());
    format!("{heading}\n```\n{}\n```", fit_lines(&lines, room, true))
}

fn origin(o: &OriginInfo) -> String {
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

fn released(r: &Release) -> String {
    format!(
        ":white_check_mark: *Released* by {} at {}\nReason: {}\nFalse positive: *{}*",
        md_code(&r.actor, 100),
        md(&r.at, 40),
        md(&r.reason, 1000),
        yes_no(r.false_positive)
    )
}

fn links(a: &Alert) -> String {
    let mut s = format!(
        "*Links*: <{}|Explain this decision (JSON)>",
        slack_url(&a.links.quarantine)
    );
    if a.q.state.is_open() {
        let _ = write!(
            s,
            "\nRelease (POST, admin token):\n```{}```",
            bound(&a.links.release_hint(), 2000, utf16, esc_code)
        );
    }
    s
}

fn about(a: &Alert) -> Block {
    let q = a.q;
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

/// The opening alert.
pub fn alert(a: &Alert) -> Message {
    let mut blocks = vec![header(&a.headline), fields(&facts(a)), section(&calls(a))];
    if !a.reasons.is_empty() {
        blocks.push(section(&reasons(a)));
    }
    blocks.push(section(&normally(a)));
    if !a.timeline.is_empty() {
        blocks.push(section(&timeline(a)));
    }
    if let Some(o) = a.origin {
        blocks.push(section(&origin(o)));
    }
    if let Some(r) = &a.q.release {
        blocks.push(section(&released(r)));
    }
    blocks.push(about(a));
    blocks.push(section(&links(a)));
    message(&a.headline, blocks)
}

/// A short follow-up on an open quarantine: `what` changed (e.g. "3
/// further flagged calls rolled up, max score 41.2" or "revocation now:
/// revoked"), with the latest flagged call.
pub fn update(a: &Alert, what: &str) -> Message {
    let q = a.q;
    let mut blocks = vec![section(&format!(
        "*{}*\n{}",
        md(&a.headline, 500),
        md(what, 1000)
    ))];
    if let Some(c) = q.flagged_calls.last() {
        let mut lines = vec![if a.calls.not_kept > 0 {
            "*Latest kept flagged call* (later ones are only counted)".to_owned()
        } else {
            "*Latest flagged call*".to_owned()
        }];
        call(c, &mut lines);
        blocks.push(section(&fit_lines(&lines, TEXT_MAX, false)));
    }
    let mut facts = vec![
        format!("Quarantine {}", md_code(&q.id, 100)),
        a.flags.clone(),
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
    blocks.push(section(&links(a)));
    message(&format!("{}: {what}", a.headline), blocks)
}

/// The message that a quarantine was released.
pub fn release(a: &Alert) -> Message {
    let q = a.q;
    let (fallback, body) = match &q.release {
        Some(r) => (
            format!(
                "Warden: {} released by {} (false positive: {})",
                q.agent_id,
                r.actor,
                yes_no(r.false_positive)
            ),
            released(r),
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
            md_code_opt(a.credential(), 200)
        )),
        context(&[
            format!("Quarantine {}", md_code(&q.id, 100)),
            a.flags.clone(),
            format!("opened {}", md(&q.created_at, 40)),
        ]),
        section(&links(a)),
    ];
    message(&fallback, blocks)
}
