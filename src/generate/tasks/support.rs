//! Support triage: tickets of many customers, one customer per session.

use super::*;

pub(super) static SUPPORT: &[Task] = &[
    task(
        "triage-new-ticket",
        3.0,
        Avail::Essential,
        &["get_ticket", "get_customer", "update_ticket", "add_comment"],
        sup_triage,
    ),
    task(
        "answer-from-kb",
        3.0,
        Avail::Always,
        &["get_ticket", "search_docs", "send_email", "update_ticket"],
        sup_answer,
    ),
    task(
        "refund",
        1.2,
        Avail::Always,
        &[
            "get_ticket",
            "get_customer",
            "issue_refund",
            "add_comment",
            "send_email",
        ],
        sup_refund,
    ),
    task(
        "escalate",
        1.0,
        Avail::Always,
        &[
            "get_ticket",
            "get_customer",
            "escalate_ticket",
            "add_comment",
        ],
        sup_escalate,
    ),
    task(
        "look-up-history",
        1.5,
        Avail::Always,
        &["search_tickets", "get_ticket"],
        sup_lookup,
    ),
    task(
        "close-resolved",
        1.5,
        Avail::Always,
        &["get_ticket", "add_comment", "close_ticket"],
        sup_close,
    ),
    burst(
        "work-the-backlog",
        0.05,
        Avail::Not(&[Flavor::Vip]),
        &["search_tickets", "get_ticket", "update_ticket"],
        sup_backlog,
    ),
    task(
        "bulk-close-duplicates",
        1.0,
        Avail::Novel,
        &["search_tickets", "get_ticket", "close_ticket"],
        sup_bulk_close,
    ),
    task(
        "customer-history-review",
        1.0,
        Avail::Novel,
        &[
            "get_customer",
            "search_tickets",
            "get_ticket",
            "add_comment",
        ],
        sup_history,
    ),
];

pub(crate) fn ticket_id(ctx: &mut Ctx) -> String {
    format!("T-{}", ctx.agent.next_number())
}

pub(crate) fn get_ticket(id: &str, c: &Customer, subject: &str) -> Call {
    Call::new(
        "get_ticket",
        "ticket",
        id,
        "read",
        json!({ "ticket_id": id }),
    )
    .owner(principal_of(c))
    .out(
        format!("{id} from {}: '{subject}' status=open", c.email),
        vec![id.to_string(), c.email.clone()],
    )
}

pub(crate) fn get_customer(ctx: &mut Ctx, c: &Customer) -> Call {
    let plan = ctx.pick(&["free", "pro", "business", "enterprise"]);
    Call::new(
        "get_customer",
        "customer",
        c.id.clone(),
        "read",
        json!({ "customer_id": c.id }),
    )
    .owner(principal_of(c))
    .out(
        format!(
            "{}, plan={plan}, email={}, since 20{}",
            c.name,
            c.email,
            ctx.n(18, 26)
        ),
        vec![c.email.clone()],
    )
}

fn update_ticket(ctx: &mut Ctx, id: &str, c: &Customer) -> Call {
    let status = ctx.pick(&["open", "pending", "on-hold"]);
    let prio = ctx.pick(&["p2", "p3", "p3", "p4"]);
    Call::new(
        "update_ticket",
        "ticket",
        id,
        "write",
        json!({ "ticket_id": id, "status": status, "priority": prio }),
    )
    .owner(principal_of(c))
}

fn add_comment(id: &str, c: &Customer, body: &str) -> Call {
    Call::new(
        "add_comment",
        "ticket",
        id,
        "write",
        json!({ "ticket_id": id, "internal": true, "body": body }),
    )
    .owner(principal_of(c))
}

pub(crate) fn close_ticket(id: &str, c: &Customer) -> Call {
    Call::new(
        "close_ticket",
        "ticket",
        id,
        "write",
        json!({ "ticket_id": id, "resolution": "solved" }),
    )
    .owner(principal_of(c))
}

pub(crate) fn issue_refund(ctx: &mut Ctx, c: &Customer, amount: f64) -> Call {
    let order = format!("ord-{}", ctx.n(100_000, 999_999));
    Call::new(
        "issue_refund",
        "payment",
        order.clone(),
        "write",
        json!({ "customer_id": c.id, "order_id": order, "amount": cents(amount), "currency": ctx.currency(), "reason": "customer_request" }),
    )
    .owner(principal_of(c))
}

fn search_tickets(ctx: &mut Ctx, query: &str, ids: &[String]) -> Call {
    let queue = format!("queue:{}", ctx.agent.id);
    let shown: Vec<String> = ids.iter().take(6).cloned().collect();
    Call::new(
        "search_tickets",
        "ticket_queue",
        queue,
        "read",
        json!({ "query": query, "limit": 50 }),
    )
    .out(
        format!("{} tickets: {}", ids.len(), shown.join(", ")),
        shown,
    )
}

/// Prompt of a customer-ticket session.
fn ticket_prompt(t: &str, c: &Customer, subject: &str) -> Built {
    Built::new(
        format!("New ticket {t} from {}: '{subject}'", c.id),
        vec![t.to_string(), c.id.clone()],
    )
}

fn sup_triage(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let t = ticket_id(ctx);
    let subject = ctx.pick(TICKET_SUBJECTS);
    let mut b = ticket_prompt(&t, &c, subject);
    b.push(get_ticket(&t, &c, subject));
    b.push(get_customer(ctx, &c));
    b.push(update_ticket(ctx, &t, &c));
    b.push(add_comment(&t, &c, "Triaged: plan and history checked"));
    b
}

fn sup_answer(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let t = ticket_id(ctx);
    let subject = ctx.pick(TICKET_SUBJECTS);
    let mut b = ticket_prompt(&t, &c, subject);
    b.push(get_ticket(&t, &c, subject));
    let q = ctx.pick(KB_QUERIES);
    b.push(search_docs(ctx, q));
    b.push(send_email(
        from_ref(&c.email),
        &format!("Re: [{t}] {subject}"),
        &[],
    ));
    b.push(update_ticket(ctx, &t, &c));
    b
}

fn sup_refund(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let t = ticket_id(ctx);
    let subject = "Refund for cancelled order";
    let mut b = ticket_prompt(&t, &c, subject);
    b.push(get_ticket(&t, &c, subject));
    b.push(get_customer(ctx, &c));
    let amount = lognormal(ctx.rng, ctx.agent.refund_median, 0.6);
    b.push(issue_refund(ctx, &c, amount));
    b.push(add_comment(&t, &c, "Refund issued per policy"));
    b.push(send_email(
        from_ref(&c.email),
        &format!("Your refund [{t}]"),
        &[],
    ));
    b
}

fn sup_escalate(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let t = ticket_id(ctx);
    let subject = ctx.pick(TICKET_SUBJECTS);
    let mut b = ticket_prompt(&t, &c, subject);
    b.push(get_ticket(&t, &c, subject));
    b.push(get_customer(ctx, &c));
    let team = ctx.pick(&["billing-l2", "engineering-l3", "account-mgmt"]);
    b.push(
        Call::new(
            "escalate_ticket",
            "ticket",
            t.clone(),
            "write",
            json!({ "ticket_id": t, "team": team }),
        )
        .owner(principal_of(&c)),
    );
    b.push(add_comment(&t, &c, "Escalated with repro steps"));
    b
}

fn sup_lookup(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let ids: Vec<String> = (0..ctx.n(1, 3)).map(|_| ticket_id(ctx)).collect();
    let mut b = Built::new(
        format!("Show me {}'s previous tickets", c.email),
        vec![c.email.clone()],
    );
    b.push(search_tickets(ctx, &format!("requester:{}", c.email), &ids));
    for id in &ids {
        let s = ctx.pick(TICKET_SUBJECTS);
        b.push(get_ticket(id, &c, s));
    }
    b
}

fn sup_close(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let t = ticket_id(ctx);
    let subject = ctx.pick(TICKET_SUBJECTS);
    let mut b = Built::new(
        format!("Customer confirmed the fix on {t}, close it"),
        vec![t.clone()],
    );
    b.push(get_ticket(&t, &c, subject));
    b.push(add_comment(&t, &c, "Customer confirmed resolution"));
    b.push(close_ticket(&t, &c));
    b
}

fn sup_backlog(ctx: &mut Ctx) -> Built {
    // A team lead asks the agent to work through the weekend's backlog: many
    // customers' tickets, legitimately, in one session.
    ctx.principal = Some(ctx.staff());
    let n = ctx.n(20, 40) as usize;
    let tickets: Vec<(String, Customer)> = (0..n)
        .map(|_| {
            let c = ctx.agent.customer(ctx.rng);
            (ticket_id(ctx), c)
        })
        .collect();
    let ids: Vec<String> = tickets.iter().map(|t| t.0.clone()).collect();
    let mut b = Built::new(
        "Work through the untriaged backlog from the weekend",
        vec![],
    );
    b.push(search_tickets(ctx, "status:new assignee:none", &ids));
    for (id, c) in &tickets {
        let s = ctx.pick(TICKET_SUBJECTS);
        b.push(get_ticket(id, c, s).pace(Pace::Quick));
        b.push(update_ticket(ctx, id, c).pace(Pace::Quick));
    }
    b
}

fn sup_bulk_close(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let ids: Vec<String> = (0..ctx.n(3, 6)).map(|_| ticket_id(ctx)).collect();
    let mut b = Built::new(
        format!("{} opened duplicates; close all but the newest", c.email),
        vec![c.email.clone()],
    );
    b.push(search_tickets(
        ctx,
        &format!("requester:{} status:open", c.email),
        &ids,
    ));
    for id in &ids {
        b.push(get_ticket(id, &c, "Duplicate of earlier request"));
    }
    for id in ids.iter().skip(1) {
        b.push(close_ticket(id, &c));
    }
    b
}

fn sup_history(ctx: &mut Ctx) -> Built {
    let c = ctx.customer();
    let ids: Vec<String> = (0..ctx.n(1, 2)).map(|_| ticket_id(ctx)).collect();
    let mut b = Built::new(
        format!("Prepare a history note for account review of {}", c.id),
        vec![c.id.clone()],
    );
    b.push(get_customer(ctx, &c));
    b.push(search_tickets(ctx, &format!("customer:{}", c.id), &ids));
    for id in &ids {
        let s = ctx.pick(TICKET_SUBJECTS);
        b.push(get_ticket(id, &c, s));
    }
    if let Some(id) = ids.first() {
        b.push(add_comment(id, &c, "Account review: history summarised"));
    }
    b
}
