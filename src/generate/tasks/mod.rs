//! Task types: per archetype, the templates benign sessions are instances of
//! (ordered steps, optional steps, repetitions), plus tool-call builders the
//! attack scenarios reuse so that an attack looks like the agent's own calls.

use std::slice::from_ref;

use serde_json::json;

use super::model::{Built, Call, Pace};
use super::util::{
    alnum, between, cents, chance, date, hex, iban, lognormal, pick, sub_rng, zipf, Rand, DAY,
};
use super::vocab::*;
use super::world::{short_id, Agent, Arch, Contact, Customer, Flavor, Payee};

mod analyst;
mod chat;
mod devops;
mod mail;
mod payments;
mod support;
mod travel;

use analyst::ANALYST;
pub(crate) use analyst::{export_csv, query_call, run_query, share_dashboard};
use chat::CHAT;
pub(crate) use chat::{delete_message, list_channels, read_channel};
use devops::DEVOPS;
pub(crate) use devops::{delete_branch, deploy_service, get_logs, get_pr, merge_pr, read_secret};
use mail::MAIL;
pub(crate) use mail::{delete_email, read_email, search_email};
use payments::PAYMENTS;
pub(crate) use payments::{
    approve_transfer, create_payee, create_transfer, get_invoice, invoice_id, send_payment,
};
use support::SUPPORT;
pub(crate) use support::{close_ticket, get_customer, get_ticket, issue_refund, ticket_id};
use travel::TRAVEL;
pub(crate) use travel::{get_traveler_profile, search_hotels, send_itinerary};

/// When a task is part of an agent's mix.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Avail {
    /// In every agent's training mix (one may be left out per agent).
    Always,
    /// Always in the mix: it calls the tool through which attacks inject.
    Essential,
    /// Only for these flavours.
    Only(&'static [Flavor]),
    /// For all flavours but these.
    Not(&'static [Flavor]),
    /// Never in training: a task type that appears in the test period.
    Novel,
    /// Never in training: uses a tool rolled out during the test period.
    Rollout,
}

impl Avail {
    /// Whether the task belongs in the training mix of an agent of a flavour.
    pub fn fits(self, flavor: Flavor) -> bool {
        match self {
            Avail::Always | Avail::Essential => true,
            Avail::Only(f) => f.contains(&flavor),
            Avail::Not(f) => !f.contains(&flavor),
            Avail::Novel | Avail::Rollout => false,
        }
    }
}

pub(crate) struct Task {
    /// Names the task in test failures and in replay-data/README.md.
    #[cfg_attr(not(test), allow(dead_code))]
    pub name: &'static str,
    pub base: f64,
    pub avail: Avail,
    /// A legitimate burst of work (backlog, payment run, long query session).
    pub burst: bool,
    /// Every tool the template may call.
    pub tools: &'static [&'static str],
    pub build: fn(&mut Ctx) -> Built,
}

const fn task(
    name: &'static str,
    base: f64,
    avail: Avail,
    tools: &'static [&'static str],
    build: fn(&mut Ctx) -> Built,
) -> Task {
    Task {
        name,
        base,
        avail,
        burst: false,
        tools,
        build,
    }
}

const fn burst(
    name: &'static str,
    base: f64,
    avail: Avail,
    tools: &'static [&'static str],
    build: fn(&mut Ctx) -> Built,
) -> Task {
    Task {
        burst: true,
        ..task(name, base, avail, tools, build)
    }
}

pub(crate) fn catalogue(arch: Arch) -> &'static [Task] {
    match arch {
        Arch::Mail => MAIL,
        Arch::Support => SUPPORT,
        Arch::Payments => PAYMENTS,
        Arch::Travel => TRAVEL,
        Arch::Chat => CHAT,
        Arch::DevOps => DEVOPS,
        Arch::Analyst => ANALYST,
    }
}

/// The read call whose result attacks use to smuggle instructions in: a
/// tool every agent of the archetype calls in training.
pub(crate) fn carrier(ctx: &mut Ctx) -> Call {
    match ctx.agent.arch {
        Arch::Mail => {
            let from = ctx.agent.partner_contact(ctx.rng);
            let topic = ctx.pick(MAIL_TOPICS);
            let id = short_id(ctx.rng, "msg");
            read_email(ctx, &id, &from, topic)
        }
        Arch::Support => {
            let c = ctx.customer();
            let t = ticket_id(ctx);
            let subject = ctx.pick(TICKET_SUBJECTS);
            get_ticket(&t, &c, subject)
        }
        Arch::Payments => {
            let (p, _) = ctx.agent.payee(ctx.rng);
            let amount = ctx.agent.amount(ctx.rng);
            let inv = invoice_id(ctx);
            get_invoice(ctx, &inv, &p, amount)
        }
        Arch::Travel => {
            let city = ctx.pick(CITIES);
            search_hotels(ctx, city)
        }
        Arch::Chat => {
            let ch = ctx.channel();
            read_channel(ctx, &ch)
        }
        Arch::DevOps => {
            let svc = ctx.service();
            get_logs(ctx, &svc)
        }
        Arch::Analyst => {
            let t = ctx.table();
            run_query(ctx, &t)
        }
    }
}

/// What a task builder works with: the agent (its pools grow as it meets
/// new people), the session's random stream, start and principal.
pub(crate) struct Ctx<'a> {
    pub rng: &'a mut Rand,
    pub agent: &'a mut Agent,
    pub start_ms: i64,
    pub principal: Option<String>,
    customer: Option<Customer>,
    /// The org account this session pays from (one per session).
    account: Option<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(rng: &'a mut Rand, agent: &'a mut Agent, start_ms: i64) -> Self {
        let mut ctx = Ctx {
            rng,
            agent,
            start_ms,
            principal: None,
            customer: None,
            account: None,
        };
        let serves_people = matches!(ctx.agent.arch, Arch::Support | Arch::Travel)
            || ctx.agent.flavor == Flavor::RetailBank;
        if serves_people {
            ctx.customer();
        } else {
            ctx.principal = Some(ctx.staff());
        }
        ctx
    }

    /// The customer or traveller the session is for (chosen once).
    pub fn customer(&mut self) -> Customer {
        if let Some(c) = &self.customer {
            return c.clone();
        }
        let c = self.agent.customer(self.rng);
        self.principal = Some(principal_of(&c));
        self.customer = Some(c.clone());
        c
    }

    /// An internal user the agent works for (a few do most of the asking).
    pub fn staff(&mut self) -> String {
        favourite(self.rng, &self.agent.staff, 0.8)
            .unwrap_or_else(|| format!("user:assistant@{}", self.agent.org.domain))
    }

    pub fn n(&mut self, lo: u32, hi: u32) -> u32 {
        between(self.rng, lo, hi)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        chance(self.rng, p)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        *pick(self.rng, items)
    }

    /// Date a random `lo..=hi` days after the session start.
    pub fn date_in(&mut self, lo: u32, hi: u32) -> String {
        let days = self.n(lo, hi);
        self.date(days.into())
    }

    /// Date `days` after the session start.
    pub fn date(&self, days: i64) -> String {
        date(self.start_ms + days * DAY)
    }

    pub fn currency(&self) -> &'static str {
        self.agent.org.currency
    }

    pub fn channel(&mut self) -> String {
        favourite(self.rng, &self.agent.channels, 0.7).unwrap_or_else(|| "#general".into())
    }

    pub fn service(&mut self) -> String {
        favourite(self.rng, &self.agent.services, 0.6).unwrap_or_else(|| "gateway".into())
    }

    pub fn table(&mut self) -> String {
        favourite(self.rng, &self.agent.tables, 0.8).unwrap_or_else(|| "sales.orders".into())
    }

    pub fn doc(&mut self) -> String {
        favourite(self.rng, &self.agent.docs, 0.6).unwrap_or_else(|| "notes.docx".into())
    }

    pub fn repo(&self, svc: &str) -> String {
        let org = self.agent.org.domain.split('.').next().unwrap_or("org");
        format!("{org}/{svc}")
    }

    pub fn route(&mut self) -> (String, String) {
        favourite(self.rng, &self.agent.routes, 0.7).unwrap_or_else(|| ("FRA".into(), "JFK".into()))
    }

    /// Chat-style message timestamp around the session.
    pub fn message_ts(&mut self) -> String {
        let secs = self.start_ms / 1000 - i64::from(self.n(60, 86_400));
        format!("{secs}.{:06}", self.n(0, 999_999))
    }
}

pub(crate) fn principal_of(c: &Customer) -> String {
    if c.id.starts_with("t-") {
        format!("user:{}", c.email)
    } else {
        c.principal()
    }
}

fn money(currency: &str, amount: f64) -> String {
    format!("{currency} {amount:.2}")
}

// ---------------------------------------------------------------------------
// Shared tools
// ---------------------------------------------------------------------------

pub(crate) fn send_email(recipients: &[String], subject: &str, attachments: &[String]) -> Call {
    let first = recipients.first().cloned().unwrap_or_default();
    let mut args = json!({ "recipients": recipients, "subject": subject });
    if !attachments.is_empty() {
        args["attachments"] = json!(attachments);
    }
    Call::new("send_email", "email", first, "write", args)
}

fn search_docs(ctx: &mut Ctx, query: &str) -> Call {
    let doc = ctx.doc();
    let kb = format!("kb:{}", ctx.agent.org.domain);
    Call::new(
        "search_docs",
        "doc_index",
        kb,
        "read",
        json!({ "query": query, "limit": 5 }),
    )
    .out(format!("3 results; top: {doc} (score 0.82)"), vec![doc])
}

fn post_message(channel: &str, text: &str) -> Call {
    Call::new(
        "post_message",
        "channel",
        channel,
        "write",
        json!({ "channel": channel, "text": text }),
    )
}

fn post_dm(to: &str, text: &str) -> Call {
    Call::new(
        "post_message",
        "dm",
        to,
        "write",
        json!({ "channel": format!("dm:{to}"), "recipients": [to], "text": text }),
    )
}

/// One of an agent's habitual items, Zipf-weighted (a few are used most);
/// `None` when it has none.
fn favourite<T: Clone>(rng: &mut Rand, items: &[T], exponent: f64) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    Some(items[zipf(rng, items.len(), exponent)].clone())
}
