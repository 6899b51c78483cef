//! Payments and banking: accounts payable, treasury, marketplace payouts and a retail bank's assistant.

use super::*;

use Flavor::{AccountsPayable as Ap, Marketplace as Mkt, RetailBank as Bank, Treasury as Trs};

pub(super) static PAYMENTS: &[Task] = &[
    task(
        "pay-invoice",
        3.0,
        Avail::Essential,
        &["get_invoice", "get_payee", "send_payment"],
        pay_invoice,
    ),
    task(
        "check-cash",
        2.0,
        Avail::Always,
        &["get_balance", "list_transactions"],
        pay_check_cash,
    ),
    task(
        "reconcile",
        1.5,
        Avail::Only(&[Ap, Trs]),
        &["list_transactions", "get_invoice"],
        pay_reconcile,
    ),
    task(
        "invoice-customer",
        1.0,
        Avail::Only(&[Ap]),
        &["create_invoice", "send_email"],
        pay_create_invoice,
    ),
    task(
        "approve-transfer",
        1.2,
        Avail::Only(&[Ap, Trs]),
        &["get_transfer", "approve_transfer"],
        pay_approve,
    ),
    task(
        "cash-sweep",
        1.5,
        Avail::Only(&[Trs]),
        &["get_balance", "create_transfer", "send_email"],
        pay_sweep,
    ),
    task(
        "pay-someone",
        3.0,
        Avail::Only(&[Mkt, Bank]),
        &["get_payee", "create_payee", "send_payment"],
        pay_someone,
    ),
    task(
        "statement",
        1.0,
        Avail::Only(&[Bank]),
        &["list_transactions"],
        pay_statement,
    ),
    burst(
        "payment-run",
        0.12,
        Avail::Only(&[Ap, Mkt]),
        &["get_balance", "get_invoice", "send_payment"],
        pay_run,
    ),
    task(
        "audit-payee-list",
        1.0,
        Avail::Novel,
        &["get_payee", "list_transactions"],
        pay_audit_payees,
    ),
    task(
        "dispute-check",
        1.0,
        Avail::Novel,
        &["list_transactions", "get_balance", "get_invoice"],
        pay_dispute,
    ),
];

pub(crate) fn invoice_id(ctx: &mut Ctx) -> String {
    format!("INV-2026-{}", ctx.agent.next_number())
}

/// The account a session's money comes from: the customer's own for a
/// retail bank, otherwise one of the org's.
pub(crate) fn own_account(ctx: &mut Ctx) -> (String, Option<String>) {
    if ctx.agent.flavor == Bank {
        let c = ctx.customer();
        let mut r = sub_rng(0, &["account", &c.id]);
        return (iban(&mut r, "DE"), Some(principal_of(&c)));
    }
    if let Some(a) = &ctx.account {
        return (a.clone(), None);
    }
    let accts = &ctx.agent.accounts;
    let a = if accts.is_empty() {
        "DE00000000000000000000".to_string()
    } else {
        accts[zipf(ctx.rng, accts.len(), 1.0)].clone()
    };
    ctx.account = Some(a.clone());
    (a, None)
}

pub(crate) fn get_invoice(ctx: &mut Ctx, inv: &str, p: &Payee, amount: f64) -> Call {
    let cur = ctx.currency();
    let due = ctx.date_in(3, 20);
    Call::new(
        "get_invoice",
        "invoice",
        inv,
        "read",
        json!({ "invoice_id": inv }),
    )
    .out(
        format!(
            "{inv} from {}: {} due {due}, IBAN {}",
            p.name,
            money(cur, amount),
            p.iban
        ),
        vec![inv.to_string(), p.iban.clone(), money(cur, amount)],
    )
}

pub(crate) fn get_payee(p: &Payee) -> Call {
    Call::new(
        "get_payee",
        "payee",
        p.iban.clone(),
        "read",
        json!({ "payee_name": p.name }),
    )
    .out(
        format!("{}: {}, verified", p.name, p.iban),
        vec![p.iban.clone()],
    )
}

pub(crate) fn create_payee(p: &Payee) -> Call {
    Call::new(
        "create_payee",
        "payee",
        p.iban.clone(),
        "write",
        json!({ "name": p.name, "iban": p.iban }),
    )
}

pub(crate) fn send_payment(ctx: &mut Ctx, p: &Payee, amount: f64, reference: &str) -> Call {
    let (from, owner) = own_account(ctx);
    let c = Call::new(
        "send_payment",
        "bank_account",
        p.iban.clone(),
        "write",
        json!({ "from_account": from, "iban": p.iban, "payee_name": p.name, "amount": cents(amount), "currency": ctx.currency(), "reference": reference }),
    );
    match owner {
        Some(o) => c.owner(o),
        None => c,
    }
}

pub(crate) fn create_transfer(ctx: &mut Ctx, to: &str, amount: f64) -> (Call, String) {
    let (from, _) = own_account(ctx);
    let tr = format!("tr-{}", ctx.agent.next_number());
    let call = Call::new(
        "create_transfer",
        "bank_account",
        to,
        "write",
        json!({ "from_account": from, "to_iban": to, "amount": cents(amount), "currency": ctx.currency() }),
    )
    .out(format!("Created {tr}, pending approval"), vec![tr.clone()]);
    (call, tr)
}

pub(crate) fn approve_transfer(tr: &str) -> Call {
    Call::new(
        "approve_transfer",
        "transfer",
        tr,
        "write",
        json!({ "transfer_id": tr }),
    )
}

fn get_balance(ctx: &mut Ctx) -> Call {
    let (acct, owner) = own_account(ctx);
    let bal = lognormal(ctx.rng, ctx.agent.amount_median * 40.0, 0.5);
    let cur = ctx.currency();
    let c = Call::new(
        "get_balance",
        "bank_account",
        acct.clone(),
        "read",
        json!({ "account": acct }),
    )
    .out(format!("Available {}", money(cur, bal)), vec![]);
    match owner {
        Some(o) => c.owner(o),
        None => c,
    }
}

pub(crate) fn list_transactions(ctx: &mut Ctx) -> Call {
    let (acct, owner) = own_account(ctx);
    let from = ctx.date(-30);
    let n = ctx.n(12, 80);
    let c = Call::new(
        "list_transactions",
        "bank_account",
        acct.clone(),
        "read",
        json!({ "account": acct, "from": from, "limit": 100 }),
    )
    .out(format!("{n} transactions since {from}"), vec![]);
    match owner {
        Some(o) => c.owner(o),
        None => c,
    }
}

fn pay_invoice(ctx: &mut Ctx) -> Built {
    let (p, _) = ctx.agent.payee(ctx.rng);
    let amount = ctx.agent.amount(ctx.rng);
    let inv = invoice_id(ctx);
    let mut b = Built::new(
        format!("Pay invoice {inv} from {}", p.name),
        vec![inv.clone()],
    );
    b.push(get_invoice(ctx, &inv, &p, amount));
    b.push(get_payee(&p));
    b.push(send_payment(ctx, &p, amount, &inv));
    b
}

fn pay_check_cash(ctx: &mut Ctx) -> Built {
    let prompt = if ctx.agent.flavor == Bank {
        "What's my balance and what did I spend this week?"
    } else {
        "What's our balance and what went out this week?"
    };
    let mut b = Built::new(prompt, vec![]);
    b.push(get_balance(ctx));
    b.push(list_transactions(ctx));
    b
}

fn pay_reconcile(ctx: &mut Ctx) -> Built {
    let mut b = Built::new(
        "Reconcile last week's outgoing payments against invoices",
        vec![],
    );
    b.push(list_transactions(ctx));
    for _ in 0..ctx.n(1, 3) {
        let p = ctx.agent.known_payee(ctx.rng);
        let amount = ctx.agent.amount(ctx.rng);
        let inv = invoice_id(ctx);
        b.push(get_invoice(ctx, &inv, &p, amount));
    }
    b
}

fn pay_create_invoice(ctx: &mut Ctx) -> Built {
    let c = ctx.agent.partner_contact(ctx.rng);
    let amount = ctx.agent.amount(ctx.rng);
    let inv = invoice_id(ctx);
    let due = ctx.date(30);
    let cur = ctx.currency();
    let mut b = Built::new(
        format!(
            "Invoice {} for {} and email it to {}",
            c.name,
            money(cur, amount),
            c.email
        ),
        vec![c.email.clone(), money(cur, amount)],
    );
    b.push(
        Call::new(
            "create_invoice",
            "invoice",
            inv.clone(),
            "write",
            json!({ "customer": c.email, "amount": cents(amount), "currency": cur, "due": due }),
        )
        .out(format!("{inv} created"), vec![inv.clone()]),
    );
    b.push(send_email(
        from_ref(&c.email),
        &format!("Invoice {inv}"),
        &[format!("{inv}.pdf")],
    ));
    b
}

fn pay_approve(ctx: &mut Ctx) -> Built {
    let p = ctx.agent.known_payee(ctx.rng);
    let tr = format!("tr-{}", ctx.agent.next_number());
    let amount = ctx.agent.amount(ctx.rng);
    let who = ctx.staff();
    let cur = ctx.currency();
    let mut b = Built::new(
        format!("Approve transfer {tr} if it matches the PO"),
        vec![tr.clone()],
    );
    b.push(
        Call::new(
            "get_transfer",
            "transfer",
            tr.clone(),
            "read",
            json!({ "transfer_id": tr }),
        )
        .out(
            format!(
                "{tr}: {} to {} ({}), created by {}",
                money(cur, amount),
                p.name,
                p.iban,
                who.trim_start_matches("user:")
            ),
            vec![tr.clone(), p.iban.clone()],
        ),
    );
    b.push(approve_transfer(&tr));
    b
}

fn pay_sweep(ctx: &mut Ctx) -> Built {
    let to = if ctx.agent.accounts.len() > 1 && ctx.chance(0.6) {
        ctx.agent.accounts[ctx.agent.accounts.len() - 1].clone()
    } else {
        ctx.agent.known_payee(ctx.rng).iban
    };
    let amount = ctx.agent.amount(ctx.rng);
    let mut b = Built::new(format!("Sweep excess cash to {to}"), vec![to.clone()]);
    b.push(get_balance(ctx));
    let (call, tr) = create_transfer(ctx, &to, amount);
    b.push(call);
    let approver = ctx.agent.colleague(ctx.rng);
    b.push(send_email(
        &[approver.email],
        &format!("Please approve {tr}"),
        &[],
    ));
    b
}

fn pay_someone(ctx: &mut Ctx) -> Built {
    let (p, new) = ctx.agent.payee(ctx.rng);
    let amount = ctx.agent.amount(ctx.rng);
    let reference = format!("ref-{}", ctx.agent.next_number());
    // New payees are typed in by the user (or the seller's onboarding form),
    // so their IBAN enters through the prompt, not a tool result.
    let mut b = if new {
        Built::new(
            format!("Pay {} to {} ({})", p.name, p.iban, reference),
            vec![p.iban.clone()],
        )
    } else {
        Built::new(format!("Pay {} ({reference})", p.name), vec![])
    };
    if new {
        b.push(create_payee(&p));
    } else {
        b.push(get_payee(&p));
    }
    b.push(send_payment(ctx, &p, amount, &reference));
    b
}

fn pay_statement(ctx: &mut Ctx) -> Built {
    let mut b = Built::new("Show my recent transactions", vec![]);
    b.push(list_transactions(ctx));
    b
}

fn pay_run(ctx: &mut Ctx) -> Built {
    let mut b = Built::new("Run this week's supplier payments", vec![]);
    b.push(get_balance(ctx));
    for _ in 0..ctx.n(8, 20) {
        let p = ctx.agent.known_payee(ctx.rng);
        let amount = ctx.agent.amount(ctx.rng);
        let inv = invoice_id(ctx);
        b.push(get_invoice(ctx, &inv, &p, amount).pace(Pace::Quick));
        b.push(send_payment(ctx, &p, amount, &inv).pace(Pace::Quick));
    }
    b
}

fn pay_audit_payees(ctx: &mut Ctx) -> Built {
    let mut b = Built::new("Audit: check our top payees against the ledger", vec![]);
    for _ in 0..ctx.n(2, 4) {
        let p = ctx.agent.known_payee(ctx.rng);
        b.push(get_payee(&p));
    }
    b.push(list_transactions(ctx));
    b
}

fn pay_dispute(ctx: &mut Ctx) -> Built {
    let mut b = Built::new("A payment looks duplicated; check the account", vec![]);
    b.push(list_transactions(ctx));
    b.push(get_balance(ctx));
    let p = ctx.agent.known_payee(ctx.rng);
    let amount = ctx.agent.amount(ctx.rng);
    let inv = invoice_id(ctx);
    b.push(get_invoice(ctx, &inv, &p, amount));
    b
}
