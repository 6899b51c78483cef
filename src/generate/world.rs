//! The simulated organisations and their agents: who each agent works for,
//! when, how often, and with whom. Pools of counterparties grow as the days
//! go by (new contacts, customers and payees at each agent's own rate).

use std::collections::BTreeSet;

use super::tasks::{catalogue, Avail};
use super::util::{
    alnum, between, chance, hex, iban, lognormal, pick, sample_between, sample_indices,
    stable_hash, zipf, Rand, DAY, EPOCH_MS, MINUTE,
};
use super::vocab::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    Mail,
    Support,
    Payments,
    Travel,
    Chat,
    DevOps,
    Analyst,
}

/// Variations inside an archetype that change whom the agent serves and what
/// it pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Standard,
    /// Serves members of the public: most sessions are for a new principal.
    Public,
    /// Serves a few recurring key accounts.
    Vip,
    /// Pays a small, stable set of suppliers.
    AccountsPayable,
    /// Moves large sums between own accounts and a few counterparties.
    Treasury,
    /// Pays many sellers, new ones every day.
    Marketplace,
    /// A bank's assistant: each customer pays their own payees.
    RetailBank,
    /// A deploy bot that reads secrets as part of normal deploys.
    SecretsDeploy,
}

pub(crate) struct Org {
    pub domain: &'static str,
    /// Fixed UTC offset (no daylight saving), minutes.
    pub offset_min: i64,
    pub currency: &'static str,
    pub country: &'static str,
    pub airport: &'static str,
}

const ORGS: &[Org] = &[
    org("acme-corp.com", -300, "USD", "GB", "JFK"),
    org("globex.io", 60, "EUR", "DE", "FRA"),
    org("initech.com", -480, "USD", "GB", "SFO"),
    org("umbrella-health.de", 60, "EUR", "DE", "MUC"),
    org("hooli.co.uk", 0, "GBP", "GB", "LHR"),
    org("tyrell.sg", 480, "USD", "GB", "SIN"),
    org("wayne-markets.com", -300, "USD", "GB", "BOS"),
    org("fidelis-bank.eu", 60, "EUR", "DE", "FRA"),
    org("roamly.travel", 0, "EUR", "NL", "AMS"),
    org("zenith-tech.in", 330, "USD", "GB", "DXB"),
];

const fn org(
    domain: &'static str,
    offset_min: i64,
    currency: &'static str,
    country: &'static str,
    airport: &'static str,
) -> Org {
    Org {
        domain,
        offset_min,
        currency,
        country,
        airport,
    }
}

/// The fixed cast: id, archetype, flavour, org, local working hours (None =
/// around the clock), weekday sessions, novelty (chance a counterparty pick
/// is someone new), weekend activity relative to a weekday.
struct Spec {
    id: &'static str,
    arch: Arch,
    flavor: Flavor,
    org: usize,
    hours: Option<(u32, u32)>,
    rate: f64,
    novelty: f64,
    weekend: f64,
}

#[allow(clippy::too_many_arguments)] // one row of the table below
const fn spec(
    id: &'static str,
    arch: Arch,
    flavor: Flavor,
    org: usize,
    hours: Option<(u32, u32)>,
    rate: f64,
    novelty: f64,
    weekend: f64,
) -> Spec {
    Spec {
        id,
        arch,
        flavor,
        org,
        hours,
        rate,
        novelty,
        weekend,
    }
}

use Arch::*;
use Flavor::*;

// id, archetype, flavour, org (index in ORGS), local hours, weekday sessions, novelty, weekend
#[rustfmt::skip]
const SPECS: &[Spec] = &[
    spec("mail-assist-acme",          Mail,     Standard,         0, Some((8, 18)),  10.0, 0.05, 0.10),
    spec("mail-assist-globex",        Mail,     Standard,         1, Some((9, 18)),   8.0, 0.03, 0.08),
    spec("mail-assist-initech",       Mail,     Standard,         2, Some((7, 17)),  13.0, 0.12, 0.15),
    spec("mail-assist-tyrell",        Mail,     Standard,         5, Some((9, 19)),   4.0, 0.01, 0.05),
    spec("support-triage-eu",         Support,  Public,           1, Some((8, 20)),  17.0, 0.02, 0.35),
    spec("support-triage-us",         Support,  Public,           0, None,           30.0, 0.02, 0.80),
    spec("support-billing-umbrella",  Support,  Public,           3, Some((9, 17)),   9.0, 0.02, 0.05),
    spec("support-vip-hooli",         Support,  Vip,              4, Some((8, 18)),   4.0, 0.02, 0.10),
    spec("payments-ap-acme",          Payments, AccountsPayable,  0, Some((9, 17)),   6.0, 0.02, 0.00),
    spec("payments-treasury-globex",  Payments, Treasury,         1, Some((8, 18)),   3.0, 0.01, 0.00),
    spec("marketplace-payouts-wayne", Payments, Marketplace,      6, None,           15.0, 0.35, 0.90),
    spec("bank-assist-retail",        Payments, RetailBank,       7, Some((7, 22)),  14.0, 0.12, 0.60),
    spec("travel-desk-acme",          Travel,   Standard,         0, Some((8, 18)),   7.0, 0.05, 0.10),
    spec("travel-concierge-roamly",   Travel,   Public,           8, None,           12.0, 0.05, 0.90),
    spec("travel-desk-tyrell",        Travel,   Standard,         5, Some((9, 18)),   3.0, 0.03, 0.05),
    spec("chat-bot-acme",             Chat,     Standard,         0, Some((8, 19)),  10.0, 0.04, 0.10),
    spec("chat-helper-globex",        Chat,     Standard,         1, Some((8, 18)),   8.0, 0.03, 0.10),
    spec("chat-standup-initech",      Chat,     Standard,         2, Some((8, 17)),   4.0, 0.02, 0.00),
    spec("chat-ops-hooli",            Chat,     Standard,         4, Some((7, 19)),   6.0, 0.05, 0.20),
    spec("ci-bot-platform",           DevOps,   Standard,         1, None,           12.0, 0.02, 0.50),
    spec("deploy-bot-payments",       DevOps,   SecretsDeploy,    0, None,            8.0, 0.01, 0.30),
    spec("ci-bot-web",                DevOps,   Standard,         2, Some((9, 19)),   9.0, 0.03, 0.10),
    spec("infra-bot-data",            DevOps,   SecretsDeploy,    5, Some((9, 18)),   4.0, 0.02, 0.05),
    spec("sql-analyst-finance",       Analyst,  Standard,         0, Some((8, 18)),   5.0, 0.02, 0.05),
    spec("sql-analyst-growth",        Analyst,  Standard,         1, Some((9, 18)),   8.0, 0.04, 0.10),
    spec("sql-analyst-ops",           Analyst,  Standard,         9, Some((9, 18)),   4.0, 0.02, 0.00),
    spec("sql-analyst-risk",          Analyst,  Standard,         7, Some((9, 17)),   3.0, 0.01, 0.00),
];

#[derive(Debug, Clone)]
pub(crate) struct Contact {
    pub name: String,
    pub email: String,
}

impl Contact {
    /// First name, capitalised, as a user would type it.
    pub fn first(&self) -> String {
        let f = self.name.split(' ').next().unwrap_or("");
        f.to_string()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Customer {
    pub id: String,
    pub name: String,
    pub email: String,
}

impl Customer {
    pub fn principal(&self) -> String {
        format!("customer:{}", self.id)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Payee {
    pub name: String,
    pub iban: String,
}

/// One agent: identity, habits and the counterparties it knows so far.
pub(crate) struct Agent {
    pub id: &'static str,
    pub arch: Arch,
    pub flavor: Flavor,
    pub org: &'static Org,
    pub hours: Option<(u32, u32)>,
    pub rate: f64,
    pub novelty: f64,
    pub weekend: f64,
    /// Weight of each task of the archetype's catalogue in training.
    pub weights: Vec<f64>,
    /// Internal users the agent works for.
    pub staff: Vec<String>,
    pub contacts: Vec<Contact>,
    /// Org domain first, then partner domains.
    pub domains: Vec<String>,
    pub customers: Vec<Customer>,
    /// Chance that a session's customer is one never served before.
    pub new_customer_rate: f64,
    pub payees: Vec<Payee>,
    /// Payees known from day 0 (`payees[..initial_payees]`).
    pub initial_payees: usize,
    pub accounts: Vec<String>,
    pub channels: Vec<String>,
    pub services: Vec<String>,
    pub tables: Vec<String>,
    pub docs: Vec<String>,
    pub routes: Vec<(String, String)>,
    pub amount_median: f64,
    pub amount_sigma: f64,
    pub refund_median: f64,
    /// (first day, pod names) of each rollout.
    pub deployments: Vec<(i64, Vec<String>)>,
    /// Tools called in training sessions (filled as they are generated).
    pub trained_tools: BTreeSet<&'static str>,
    /// Every address, id and IBAN handed out, to keep new ones unique.
    used: BTreeSet<String>,
    counter: u64,
}

pub(crate) struct World {
    pub agents: Vec<Agent>,
}

impl World {
    pub fn build(rng: &mut Rand, total_days: i64) -> World {
        let agents = SPECS
            .iter()
            .map(|s| Agent::build(s, rng, total_days))
            .collect();
        World { agents }
    }
}

impl Agent {
    fn build(s: &Spec, rng: &mut Rand, total_days: i64) -> Agent {
        let org = &ORGS[s.org.min(ORGS.len() - 1)];
        let mut a = Agent {
            id: s.id,
            arch: s.arch,
            flavor: s.flavor,
            org,
            hours: s.hours,
            rate: s.rate,
            novelty: s.novelty,
            weekend: s.weekend,
            weights: Vec::new(),
            staff: Vec::new(),
            contacts: Vec::new(),
            domains: vec![org.domain.to_string()],
            customers: Vec::new(),
            new_customer_rate: 0.0,
            payees: Vec::new(),
            initial_payees: 0,
            accounts: Vec::new(),
            channels: Vec::new(),
            services: Vec::new(),
            tables: Vec::new(),
            docs: Vec::new(),
            routes: Vec::new(),
            amount_median: 0.0,
            amount_sigma: 0.6,
            refund_median: 0.0,
            deployments: Vec::new(),
            trained_tools: BTreeSet::new(),
            used: BTreeSet::new(),
            counter: 1000 + u64::from(between(rng, 0, 8000)),
        };
        a.weights = task_weights(&a, rng);

        let partners = between(rng, 2, 6) as usize;
        for i in sample_indices(rng, PARTNER_DOMAINS.len(), partners) {
            a.domains.push(PARTNER_DOMAINS[i].to_string());
        }
        let staff = between(rng, 2, 5);
        for _ in 0..staff {
            let c = a.fresh_person(rng, org.domain);
            a.staff.push(format!("user:{}", c.email));
        }
        for _ in 0..between(rng, 5, 10) {
            let c = a.fresh_person(rng, org.domain);
            a.contacts.push(c);
        }
        for d in 1..a.domains.len() {
            let domain = a.domains[d].clone();
            for _ in 0..between(rng, 2, 4) {
                let c = a.fresh_person(rng, &domain);
                a.contacts.push(c);
            }
        }
        // Frequent counterparties are a mix of colleagues and partners.
        let order = sample_indices(rng, a.contacts.len(), a.contacts.len());
        a.contacts = order.iter().map(|i| a.contacts[*i].clone()).collect();

        let docs = between(rng, 6, 10) as usize;
        a.docs = sample_indices(rng, DOCS.len(), docs)
            .into_iter()
            .map(|i| DOCS[i].to_string())
            .collect();
        a.accounts = (0..between(rng, 1, 3))
            .map(|_| iban(rng, org.country))
            .collect();
        let currency_scale = if org.currency == "GBP" { 0.85 } else { 1.0 };
        a.refund_median = lognormal(rng, 45.0, 0.3) * currency_scale;

        match a.arch {
            Support => {
                a.new_customer_rate = if a.flavor == Vip { 0.06 } else { 0.72 };
                let n = if a.flavor == Vip { 12 } else { 30 };
                for _ in 0..n {
                    let c = a.fresh_customer(rng);
                    a.customers.push(c);
                }
            }
            Travel => {
                // Corporate desks serve the org's employees, a few new hires
                // a week; the consumer concierge serves new travellers daily.
                let public = a.flavor == Public;
                a.new_customer_rate = if public { 0.78 } else { 0.04 };
                for _ in 0..if public { 20 } else { 30 } {
                    let c = if public {
                        a.fresh_customer(rng)
                    } else {
                        a.fresh_employee(rng)
                    };
                    a.customers.push(c);
                }
                let home = org.airport;
                let dests: Vec<&str> = AIRPORTS.iter().copied().filter(|x| *x != home).collect();
                for i in sample_between(rng, dests.len(), 5, 9) {
                    a.routes.push((home.to_string(), dests[i].to_string()));
                }
            }
            Payments => a.build_payments(rng),
            Chat => {
                a.channels = sample_between(rng, CHANNELS.len(), 7, 12)
                    .into_iter()
                    .map(|i| CHANNELS[i].to_string())
                    .collect();
                if let Some(p) = a.domains.get(1) {
                    let partner = p.split(['.', '-']).next().unwrap_or("partner");
                    a.channels.push(format!("#ext-{partner}"));
                }
            }
            DevOps => {
                a.services = sample_between(rng, SERVICES.len(), 4, 7)
                    .into_iter()
                    .map(|i| SERVICES[i].to_string())
                    .collect();
                a.channels = vec!["#deploys".into(), "#incidents".into()];
                a.staff.push("service:release-scheduler".into());
            }
            Analyst => {
                for i in sample_between(rng, SCHEMAS.len(), 2, 3) {
                    let (schema, tables) = SCHEMAS[i];
                    for t in tables {
                        a.tables.push(format!("{schema}.{t}"));
                    }
                }
            }
            Mail => {}
        }
        a.deployments = deployments(rng, a.id, total_days);
        a
    }

    fn build_payments(&mut self, rng: &mut Rand) {
        let scale = lognormal(rng, 1.0, 0.2);
        let (median, sigma, payees) = match self.flavor {
            Treasury => (60_000.0, 0.5, 5),
            Marketplace => (140.0, 0.8, 40),
            RetailBank => (85.0, 0.9, MERCHANTS.len()),
            _ => (2_400.0, 0.7, 12),
        };
        self.amount_median = median * scale;
        self.amount_sigma = sigma;
        for i in 0..payees {
            let name = match self.flavor {
                RetailBank => MERCHANTS[i % MERCHANTS.len()].to_string(),
                Marketplace => self.seller_name(rng),
                _ => SUPPLIERS[(i * 7 + self.id.len()) % SUPPLIERS.len()].to_string(),
            };
            let country = *pick(rng, &["DE", "NL", "FR", "GB", "ES", "BE", "AT"]);
            let p = Payee {
                name,
                iban: iban(rng, country),
            };
            self.payees.push(p);
        }
        self.initial_payees = self.payees.len();
        if matches!(self.flavor, RetailBank) {
            self.new_customer_rate = 0.6;
            for _ in 0..20 {
                let c = self.fresh_customer(rng);
                self.customers.push(c);
            }
        }
    }

    fn seller_name(&mut self, rng: &mut Rand) -> String {
        let a = *pick(rng, LAST_NAMES);
        let b = *pick(
            rng,
            &["Crafts", "Goods", "Vintage", "Studio", "Supply", "Outlet"],
        );
        let mut name = format!("{}{} {}", &a[..1].to_uppercase(), &a[1..], b);
        if !self.used.insert(name.clone()) {
            name = format!("{name} {}", self.next_number());
            self.used.insert(name.clone());
        }
        name
    }

    /// A monotonically increasing number for ticket, invoice and booking ids.
    pub fn next_number(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// A new person at a domain, with an address not handed out before.
    pub fn fresh_person(&mut self, rng: &mut Rand, domain: &str) -> Contact {
        for attempt in 0..50 {
            let f = *pick(rng, FIRST_NAMES);
            let l = *pick(rng, LAST_NAMES);
            let local = match attempt {
                0..=9 => format!("{f}.{l}"),
                10..=19 => format!("{}{l}", &f[..1]),
                _ => format!("{f}.{l}{}", between(rng, 2, 99)),
            };
            let email = format!("{local}@{domain}");
            if self.used.insert(email.clone()) {
                return Contact {
                    name: format!("{} {}", capitalise(f), capitalise(l)),
                    email,
                };
            }
        }
        let email = format!("user{}@{domain}", self.next_number());
        self.used.insert(email.clone());
        Contact {
            name: "New User".into(),
            email,
        }
    }

    pub fn fresh_customer(&mut self, rng: &mut Rand) -> Customer {
        let domain = if chance(rng, 0.8) {
            (*pick(rng, CONSUMER_DOMAINS)).to_string()
        } else {
            (*pick(rng, PARTNER_DOMAINS)).to_string()
        };
        let c = self.fresh_person(rng, &domain);
        let id = loop {
            let id = format!("c-{}", between(rng, 100_000, 999_999));
            if self.used.insert(id.clone()) {
                break id;
            }
        };
        Customer {
            id,
            name: c.name,
            email: c.email,
        }
    }

    /// A person this agent's tool server holds a record of, never served
    /// by the agent before (employees for a corporate travel desk).
    pub fn fresh_record(&mut self, rng: &mut Rand) -> Customer {
        if self.arch == Travel && self.flavor != Public {
            self.fresh_employee(rng)
        } else {
            self.fresh_customer(rng)
        }
    }

    fn fresh_employee(&mut self, rng: &mut Rand) -> Customer {
        let c = self.fresh_person(rng, self.org.domain);
        let id = format!("t-{}", self.next_number());
        Customer {
            id,
            name: c.name,
            email: c.email,
        }
    }

    /// A counterparty for this session: usually a known one (frequent ones
    /// most), sometimes someone new at the agent's own novelty rate.
    pub fn contact(&mut self, rng: &mut Rand) -> Contact {
        if chance(rng, self.novelty) || self.contacts.is_empty() {
            self.new_contact(rng)
        } else {
            self.known_contact(rng)
        }
    }

    pub fn known_contact(&mut self, rng: &mut Rand) -> Contact {
        if self.contacts.is_empty() {
            return self.new_contact(rng);
        }
        let i = zipf(rng, self.contacts.len(), 0.9);
        self.contacts[i].clone()
    }

    /// A known person at the agent's own organisation.
    pub fn colleague(&mut self, rng: &mut Rand) -> Contact {
        let own = format!("@{}", self.org.domain);
        let idx: Vec<usize> = (0..self.contacts.len())
            .filter(|i| self.contacts[*i].email.ends_with(&own))
            .collect();
        if idx.is_empty() {
            return self.known_contact(rng);
        }
        let i = idx[zipf(rng, idx.len(), 0.8)];
        self.contacts[i].clone()
    }

    /// A known person at a partner organisation.
    pub fn partner_contact(&mut self, rng: &mut Rand) -> Contact {
        let own = format!("@{}", self.org.domain);
        let idx: Vec<usize> = (0..self.contacts.len())
            .filter(|i| !self.contacts[*i].email.ends_with(&own))
            .collect();
        if idx.is_empty() {
            return self.known_contact(rng);
        }
        let i = idx[zipf(rng, idx.len(), 0.8)];
        self.contacts[i].clone()
    }

    /// Someone never contacted before: mostly at a known domain, now and
    /// then at a partner the agent starts working with (legitimate drift).
    pub fn new_contact(&mut self, rng: &mut Rand) -> Contact {
        let domain = if chance(rng, 0.12) {
            let fresh: Vec<&str> = NEW_PARTNER_DOMAINS
                .iter()
                .copied()
                .filter(|d| !self.domains.iter().any(|k| k == d))
                .collect();
            match fresh.first() {
                Some(_) => {
                    let d = pick(rng, &fresh).to_string();
                    self.domains.push(d.clone());
                    d
                }
                None => pick(rng, &self.domains).clone(),
            }
        } else {
            let i = zipf(rng, self.domains.len(), 0.7);
            self.domains[i].clone()
        };
        let c = self.fresh_person(rng, &domain);
        self.contacts.push(c.clone());
        c
    }

    /// The customer (or traveller) a session serves.
    pub fn customer(&mut self, rng: &mut Rand) -> Customer {
        if self.customers.is_empty() || chance(rng, self.new_customer_rate) {
            let c = self.fresh_record(rng);
            self.customers.push(c.clone());
            return c;
        }
        // Returning customers are mostly recent ones.
        let n = self.customers.len();
        let back = zipf(rng, n.min(200), 0.6);
        self.customers[n - 1 - back].clone()
    }

    /// A payee known from day 0 (frequent ones most).
    pub fn known_payee(&mut self, rng: &mut Rand) -> Payee {
        let n = self.initial_payees.max(1).min(self.payees.len());
        if n == 0 {
            return self.new_payee(rng);
        }
        self.payees[zipf(rng, n, 0.7)].clone()
    }

    /// A payee for this payment: known, or new at the agent's novelty rate.
    pub fn payee(&mut self, rng: &mut Rand) -> (Payee, bool) {
        if self.payees.is_empty() || chance(rng, self.novelty) {
            return (self.new_payee(rng), true);
        }
        let i = zipf(rng, self.payees.len(), 0.6);
        (self.payees[i].clone(), false)
    }

    pub fn new_payee(&mut self, rng: &mut Rand) -> Payee {
        let name = match self.flavor {
            Marketplace => self.seller_name(rng),
            RetailBank => {
                let c = self.fresh_person(rng, "payee.invalid");
                c.name
            }
            _ => (*pick(rng, SUPPLIERS)).to_string(),
        };
        let country = *pick(rng, &["DE", "NL", "FR", "GB", "ES", "IT", "BE"]);
        let p = Payee {
            name,
            iban: iban(rng, country),
        };
        self.payees.push(p.clone());
        p
    }

    /// A usual amount for this agent's payments.
    pub fn amount(&self, rng: &mut Rand) -> f64 {
        lognormal(rng, self.amount_median, self.amount_sigma).max(1.0)
    }

    /// Tools this agent may call in its everyday work (from its task mix).
    pub fn possible_tools(&self) -> BTreeSet<&'static str> {
        let mut out = BTreeSet::new();
        for (t, w) in catalogue(self.arch).iter().zip(&self.weights) {
            if *w > 0.0 {
                out.extend(t.tools.iter().copied());
            }
        }
        out
    }

    /// Tools this agent actually called in training: what "known" means
    /// for attacks made of known tools (falls back to the task mix before
    /// any training session exists).
    pub fn known_tools(&self) -> BTreeSet<&'static str> {
        if self.trained_tools.is_empty() {
            self.possible_tools()
        } else {
            self.trained_tools.clone()
        }
    }

    pub fn mailbox(&self, principal: Option<&String>) -> String {
        match principal {
            Some(p) => format!("mailbox:{}", p.trim_start_matches("user:")),
            None => format!("mailbox:assistant@{}", self.org.domain),
        }
    }

    /// Business-hours agent (not around the clock).
    pub fn business_hours(&self) -> bool {
        self.hours.is_some()
    }

    /// Relative session intensity at a local hour of a weekday.
    pub fn hour_weight(&self, hour: u32) -> f64 {
        match self.hours {
            None => match hour {
                8..=19 => 1.0,
                6..=7 | 20..=22 => 0.6,
                _ => 0.3,
            },
            Some((start, end)) => {
                if hour >= start && hour < end {
                    if hour == 12 {
                        0.6
                    } else if hour == start + 2 || hour + 3 == end {
                        1.3
                    } else {
                        1.0
                    }
                } else if hour + 1 == start {
                    0.12
                } else if hour == end {
                    0.15
                } else if hour == end + 1 {
                    0.05
                } else {
                    0.0
                }
            }
        }
    }

    /// Activity of a local weekday (0 = Monday) relative to a normal weekday.
    pub fn day_factor(&self, weekday: i64) -> f64 {
        if weekday >= 5 {
            self.weekend
        } else {
            1.0
        }
    }

    /// UTC instant of local midnight of day `local_day` (0 = epoch day).
    pub fn local_midnight(&self, local_day: i64) -> i64 {
        EPOCH_MS + local_day * DAY - self.org.offset_min * MINUTE
    }

    /// The pod that runs a session starting on `day` (UTC day index).
    pub fn instance(&self, rng: &mut Rand, day: i64) -> String {
        let pods = self
            .deployments
            .iter()
            .rev()
            .find(|(d, _)| *d <= day)
            .or_else(|| self.deployments.first())
            .map(|(_, p)| p.as_slice())
            .unwrap_or(&[]);
        if pods.is_empty() {
            return format!("{}-0", self.id);
        }
        pick(rng, pods).clone()
    }
}

/// Credential of an instance: rotated every week (and with every rollout,
/// since instances change).
pub(crate) fn credential(seed: u64, instance: &str, day: i64) -> String {
    let week = day.div_euclid(7).to_string();
    let h = stable_hash(seed, &["cred", instance, &week]);
    format!("cred-{:012x}", h & 0xffff_ffff_ffff)
}

/// Rollouts every 2–6 days, each with 2–3 pods named like Kubernetes pods.
fn deployments(rng: &mut Rand, id: &str, total_days: i64) -> Vec<(i64, Vec<String>)> {
    let mut out = Vec::new();
    let mut day = -2;
    while day <= total_days + 1 {
        let rs = alnum(rng, 9);
        let pods = (0..between(rng, 2, 3))
            .map(|_| format!("{id}-{rs}-{}", alnum(rng, 5)))
            .collect();
        out.push((day, pods));
        day += i64::from(between(rng, 2, 6));
    }
    out
}

/// Per-agent task mix: the catalogue's base weights, scaled per agent, with
/// tasks that do not fit the flavour removed and, for some agents, one
/// optional task never done in training (it may show up in test as drift).
fn task_weights(a: &Agent, rng: &mut Rand) -> Vec<f64> {
    let cat = catalogue(a.arch);
    let mut w: Vec<f64> = cat
        .iter()
        .map(|t| {
            let fits = t.avail.fits(a.flavor);
            if fits {
                t.base * lognormal(rng, 1.0, 0.45)
            } else {
                0.0
            }
        })
        .collect();
    if chance(rng, 0.35) {
        let optional: Vec<usize> = cat
            .iter()
            .enumerate()
            .filter(|(i, t)| w[*i] > 0.0 && matches!(t.avail, Avail::Always) && !t.burst)
            .map(|(i, _)| i)
            .collect();
        if optional.len() > 2 {
            let i = *pick(rng, &optional);
            w[i] = 0.0;
        }
    }
    w
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// A short random id, e.g. for messages and events.
pub(crate) fn short_id(rng: &mut Rand, prefix: &str) -> String {
    format!("{prefix}-{}", hex(rng, 8))
}
