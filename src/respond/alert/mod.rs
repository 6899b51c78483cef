//! Alerts for a quarantine, rendered for people. One [`Alert`] model is
//! built from the quarantine ([`model`]); three renderings read it: plain
//! text for the console and log notifier ([`text`]), a Slack Block Kit
//! message ([`slack`]) and PagerDuty Events API v2 events ([`pagerduty`]),
//! each a typed wire struct. Pure functions (no I/O), so every notifier
//! renders an incident the same way and tests can pin what on-call sees.
//!
//! Everything that came from an event (agent ids, tool names, resource ids,
//! arguments, origin excerpts) is attacker-influenced: [`escape`] bounds
//! every value and every message to the receiver's documented limits,
//! truncating visibly (ending with [`TRUNCATED`]), and replaces characters
//! that could forge lines or links.

mod escape;
pub mod model;
pub mod pagerduty;
pub mod slack;
pub mod text;

use serde_json::Value;

pub use escape::{truncate, TRUNCATED};
pub use model::{links, Alert, Links};

use crate::respond::incident::Quarantine;
use escape::{fit_lines, md_code, plain, slack_url};

/// A wire struct as the JSON body the notifier queue carries.
fn body(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The alert as plain text, for the console and log notifier.
pub fn text_alert(q: &Quarantine, links: &Links) -> String {
    text::render(&Alert::new(q, links))
}

/// The opening alert as a Slack incoming-webhook message (Block Kit).
pub fn slack_alert(q: &Quarantine, links: &Links) -> Value {
    body(&slack::alert(&Alert::new(q, links)))
}

/// A short Slack follow-up on an open quarantine: `what` changed.
pub fn slack_update(q: &Quarantine, links: &Links, what: &str) -> Value {
    body(&slack::update(&Alert::new(q, links), what))
}

/// The Slack message that a quarantine was released.
pub fn slack_release(q: &Quarantine, links: &Links) -> Value {
    body(&slack::release(&Alert::new(q, links)))
}

/// A PagerDuty trigger, deduplicated on the quarantine id.
pub fn pagerduty_trigger(q: &Quarantine, routing_key: &str, links: &Links) -> Value {
    body(&pagerduty::trigger(&Alert::new(q, links), routing_key))
}

/// Resolves the PagerDuty alert of a quarantine.
pub fn pagerduty_resolve(q: &Quarantine, routing_key: &str) -> Value {
    pagerduty_resolve_key(&q.id, routing_key)
}

/// Resolves a PagerDuty alert by its dedup key (a digest's).
pub fn pagerduty_resolve_key(dedup_key: &str, routing_key: &str) -> Value {
    body(&pagerduty::Event::close(
        pagerduty::Action::Resolve,
        dedup_key,
        routing_key,
    ))
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
        .take(pagerduty::LIST_MAX)
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
        let items: Vec<String> = lines.iter().map(|l| md_code(l, slack::TEXT_MAX)).collect();
        let listed = fit_lines(&items, slack::TEXT_MAX - 200, false);
        return body(&slack::message(
            &headline,
            vec![
                slack::header(&headline),
                slack::section(&format!("{listed}\n<{}|All quarantines>", slack_url(&list))),
            ],
        ));
    }
    body(&pagerduty::Event {
        routing_key,
        event_action: pagerduty::Action::Trigger,
        dedup_key: dedup_key.to_owned(),
        payload: Some(pagerduty::Payload {
            summary: plain(&headline, pagerduty::SUMMARY_MAX),
            source: "warden".to_owned(),
            severity: model::Severity::Critical,
            timestamp: None,
            component: "warden".to_owned(),
            group: "digest".to_owned(),
            class: "rolled-up".to_owned(),
            custom_details: pagerduty::Details::Digest {
                count,
                quarantines: lines,
            },
        }),
        links: vec![pagerduty::Link {
            href: list.clone(),
            text: "All quarantines",
        }],
        client: Some("Warden"),
        client_url: Some(list),
    })
}

#[cfg(test)]
mod tests;
