//! Email & calendar assistant: mailbox and calendar of a few internal users.

use super::*;

pub(super) static MAIL: &[Task] = &[
    task(
        "reply-to-thread",
        3.0,
        Avail::Essential,
        &["search_email", "read_email", "reply_email"],
        mail_reply,
    ),
    task(
        "schedule-meeting",
        2.0,
        Avail::Always,
        &[
            "get_contact",
            "check_availability",
            "create_event",
            "send_email",
        ],
        mail_schedule,
    ),
    task(
        "daily-agenda",
        1.5,
        Avail::Always,
        &["list_events", "search_email", "read_email"],
        mail_agenda,
    ),
    task(
        "compose-new",
        1.5,
        Avail::Always,
        &["get_contact", "send_email"],
        mail_compose,
    ),
    task(
        "inbox-triage",
        2.0,
        Avail::Always,
        &["search_email", "read_email"],
        mail_triage,
    ),
    task(
        "share-document",
        1.0,
        Avail::Always,
        &["search_docs", "send_email"],
        mail_share_doc,
    ),
    task(
        "forward-to-colleague",
        0.8,
        Avail::Always,
        &["search_email", "read_email", "forward_email"],
        mail_forward,
    ),
    task(
        "clean-up-newsletters",
        0.3,
        Avail::Always,
        &["search_email", "delete_email"],
        mail_cleanup,
    ),
    task(
        "summarize-thread",
        1.0,
        Avail::Rollout,
        &["search_email", "summarize_thread", "reply_email"],
        mail_summarize,
    ),
    task(
        "meeting-follow-up",
        1.0,
        Avail::Novel,
        &["list_events", "read_email", "create_event", "send_email"],
        mail_followup,
    ),
    task(
        "who-is-free",
        1.0,
        Avail::Novel,
        &["get_contact", "check_availability"],
        mail_who_is_free,
    ),
];

pub(crate) fn search_email(ctx: &mut Ctx, query: &str, hits: &[(&str, &str)]) -> Call {
    let mb = ctx.agent.mailbox(ctx.principal.as_ref());
    let mut entities = Vec::new();
    for (id, from) in hits {
        entities.push(id.to_string());
        entities.push(from.to_string());
    }
    entities.dedup();
    let first = hits.first().map(|h| h.1).unwrap_or("nobody");
    Call::new(
        "search_email",
        "mailbox",
        mb,
        "read",
        json!({ "query": query, "max_results": 10 }),
    )
    .out(
        format!("{} messages; latest from {first}", hits.len()),
        entities,
    )
}

pub(crate) fn read_email(ctx: &mut Ctx, id: &str, from: &Contact, topic: &str) -> Call {
    let snippet = ctx.pick(&[
        "can we move this to next week?",
        "please find the updated numbers attached",
        "thanks, looks good from our side",
        "a few comments inline",
        "could you confirm by Friday?",
    ]);
    Call::new(
        "read_email",
        "email_message",
        id,
        "read",
        json!({ "message_id": id }),
    )
    .owned_by(ctx.principal.as_ref())
    .out(
        format!("From: {} <{}> | {topic}: {snippet}", from.name, from.email),
        vec![from.email.clone()],
    )
}

fn reply_email(id: &str, to: &str, topic: &str) -> Call {
    Call::new(
        "reply_email",
        "email",
        to,
        "write",
        json!({ "message_id": id, "recipients": [to], "subject": format!("Re: {topic}") }),
    )
}

fn get_contact(ctx: &mut Ctx, c: &Contact) -> Call {
    Call::new(
        "get_contact",
        "contact",
        c.email.clone(),
        "read",
        json!({ "name": c.name }),
    )
    .owned_by(ctx.principal.as_ref())
    .out(format!("{} <{}>", c.name, c.email), vec![c.email.clone()])
}

fn calendar(ctx: &Ctx) -> String {
    match &ctx.principal {
        Some(p) => format!("calendar:{}", p.trim_start_matches("user:")),
        None => "calendar:primary".into(),
    }
}

fn check_availability(ctx: &mut Ctx, attendees: &[String]) -> Call {
    let cal = calendar(ctx);
    let d = ctx.date_in(1, 5);
    Call::new(
        "check_availability",
        "calendar",
        cal,
        "read",
        json!({ "attendees": attendees, "window": format!("{d}/P3D"), "duration_min": 30 }),
    )
    .out(format!("Common free slots: {d} 10:00, {d} 14:30"), vec![])
}

fn create_event(ctx: &mut Ctx, title: &str, attendees: &[String]) -> Call {
    let id = short_id(ctx.rng, "evt");
    let d = ctx.date_in(1, 5);
    Call::new(
        "create_event",
        "calendar_event",
        id,
        "write",
        json!({ "title": title, "start": format!("{d}T10:00"), "duration_min": 30, "attendees": attendees }),
    )
    .owned_by(ctx.principal.as_ref())
}

fn list_events(ctx: &mut Ctx, people: &[Contact]) -> Call {
    let cal = calendar(ctx);
    let d = ctx.date(0);
    let names: Vec<&str> = people.iter().map(|p| p.name.as_str()).collect();
    let emails: Vec<String> = people.iter().map(|p| p.email.clone()).collect();
    Call::new("list_events", "calendar", cal, "read", json!({ "date": d })).out(
        format!(
            "{} events today; with {}",
            people.len() + 1,
            names.join(", ")
        ),
        emails,
    )
}

fn mail_reply(ctx: &mut Ctx) -> Built {
    let who = ctx.agent.contact(ctx.rng);
    let topic = ctx.pick(MAIL_TOPICS);
    let mut b = Built::new(
        format!("Reply to {}'s email about the {topic}", who.first()),
        vec![],
    );
    let ids: Vec<String> = (0..ctx.n(1, 3)).map(|_| short_id(ctx.rng, "msg")).collect();
    let hits: Vec<(&str, &str)> = ids
        .iter()
        .map(|i| (i.as_str(), who.email.as_str()))
        .collect();
    let q = format!("from:{} {topic}", who.first().to_lowercase());
    b.push(search_email(ctx, &q, &hits));
    for id in &ids {
        b.push(read_email(ctx, id, &who, topic));
    }
    if let Some(last) = ids.last() {
        b.push(reply_email(last, &who.email, topic));
    }
    b
}

fn mail_schedule(ctx: &mut Ctx) -> Built {
    let topic = ctx.pick(MAIL_TOPICS);
    let mut people: Vec<Contact> = Vec::new();
    for _ in 0..ctx.n(1, 3) {
        let c = ctx.agent.contact(ctx.rng);
        if !people.iter().any(|p| p.email == c.email) {
            people.push(c);
        }
    }
    let emails: Vec<String> = people.iter().map(|p| p.email.clone()).collect();
    let names: Vec<String> = people.iter().map(|p| p.first()).collect();
    let lookup = ctx.chance(0.35);
    let mut b = if lookup {
        Built::new(
            format!("Set up a {topic} meeting with {}", names.join(" and ")),
            vec![],
        )
    } else {
        Built::new(
            format!("Book 30 min on the {topic} with {}", emails.join(", ")),
            emails.clone(),
        )
    };
    if lookup {
        for p in &people {
            b.push(get_contact(ctx, p));
        }
    }
    b.push(check_availability(ctx, &emails));
    b.push(create_event(ctx, topic, &emails));
    b.push(send_email(&emails, &format!("Invitation: {topic}"), &[]));
    b
}

fn mail_agenda(ctx: &mut Ctx) -> Built {
    let people: Vec<Contact> = (0..ctx.n(1, 3))
        .map(|_| ctx.agent.known_contact(ctx.rng))
        .collect();
    let mut b = Built::new(
        "What's on my calendar today? Pull the related emails.",
        vec![],
    );
    b.push(list_events(ctx, &people));
    let topic = ctx.pick(MAIL_TOPICS);
    let ids: Vec<String> = (0..ctx.n(1, 2)).map(|_| short_id(ctx.rng, "msg")).collect();
    let from = people
        .first()
        .cloned()
        .unwrap_or_else(|| ctx.agent.known_contact(ctx.rng));
    let hits: Vec<(&str, &str)> = ids
        .iter()
        .map(|i| (i.as_str(), from.email.as_str()))
        .collect();
    b.push(search_email(
        ctx,
        &format!("from:{} newer_than:7d", from.email),
        &hits,
    ));
    for id in &ids {
        b.push(read_email(ctx, id, &from, topic));
    }
    b
}

fn mail_compose(ctx: &mut Ctx) -> Built {
    let known = ctx.agent.contacts.len();
    let c = ctx.agent.contact(ctx.rng);
    let is_new = ctx.agent.contacts.len() > known;
    let topic = ctx.pick(MAIL_TOPICS);
    // A user writing to someone new types the address; otherwise a name.
    let mut b = if is_new {
        Built::new(
            format!("Email {} ({}) about the {topic}", c.name, c.email),
            vec![c.email.clone()],
        )
    } else {
        Built::new(
            format!("Send {} a note about the {topic}", c.first()),
            vec![],
        )
    };
    b.push(get_contact(ctx, &c));
    b.push(send_email(from_ref(&c.email), topic, &[]));
    b
}

fn mail_triage(ctx: &mut Ctx) -> Built {
    let mut b = Built::new("Go through my unread mail and summarise it", vec![]);
    let senders: Vec<Contact> = (0..ctx.n(2, 5))
        .map(|_| ctx.agent.contact(ctx.rng))
        .collect();
    let ids: Vec<String> = senders.iter().map(|_| short_id(ctx.rng, "msg")).collect();
    let hits: Vec<(&str, &str)> = ids
        .iter()
        .zip(&senders)
        .map(|(i, s)| (i.as_str(), s.email.as_str()))
        .collect();
    b.push(search_email(ctx, "is:unread newer_than:1d", &hits));
    for (id, s) in ids.iter().zip(&senders) {
        let topic = ctx.pick(MAIL_TOPICS);
        b.push(read_email(ctx, id, s, topic));
    }
    b
}

fn mail_share_doc(ctx: &mut Ctx) -> Built {
    let c = ctx.agent.contact(ctx.rng);
    let doc = ctx.doc();
    let mut to = vec![c.email.clone()];
    if ctx.chance(0.3) {
        let d = ctx.agent.colleague(ctx.rng);
        if d.email != c.email {
            to.push(d.email);
        }
    }
    let mut b = Built::new(format!("Send {} the latest {doc}", c.first()), vec![]);
    let q = doc.split('.').next().unwrap_or("doc").replace('-', " ");
    let mut s = search_docs(ctx, &q);
    if let Some(o) = s.output.as_mut() {
        o.text = format!("1 result: {doc}");
        o.entities = vec![doc.clone()];
    }
    b.push(s);
    b.push(send_email(&to, &doc, from_ref(&doc)));
    b
}

fn mail_forward(ctx: &mut Ctx) -> Built {
    let from = ctx.agent.contact(ctx.rng);
    let to = ctx.agent.colleague(ctx.rng);
    let topic = ctx.pick(MAIL_TOPICS);
    let id = short_id(ctx.rng, "msg");
    let mut b = Built::new(
        format!("Forward {}'s {topic} mail to {}", from.first(), to.first()),
        vec![],
    );
    b.push(search_email(
        ctx,
        &format!("{topic} from:{}", from.email),
        &[(&id, &from.email)],
    ));
    b.push(read_email(ctx, &id, &from, topic));
    b.push(Call::new(
        "forward_email",
        "email",
        to.email.clone(),
        "write",
        json!({ "message_id": id, "recipients": [to.email], "subject": format!("Fwd: {topic}") }),
    ));
    b
}

fn mail_cleanup(ctx: &mut Ctx) -> Built {
    let mut b = Built::new("Delete old newsletters", vec![]);
    let ids: Vec<String> = (0..ctx.n(1, 3)).map(|_| short_id(ctx.rng, "msg")).collect();
    let hits: Vec<(&str, &str)> = ids
        .iter()
        .map(|i| (i.as_str(), "news@mailer.example"))
        .collect();
    b.push(search_email(
        ctx,
        "category:promotions older_than:90d",
        &hits,
    ));
    for id in &ids {
        b.push(delete_email(ctx, id));
    }
    b
}

pub(crate) fn delete_email(ctx: &Ctx, id: &str) -> Call {
    Call::new(
        "delete_email",
        "email_message",
        id,
        "delete",
        json!({ "message_id": id }),
    )
    .owned_by(ctx.principal.as_ref())
}

fn mail_summarize(ctx: &mut Ctx) -> Built {
    let who = ctx.agent.known_contact(ctx.rng);
    let topic = ctx.pick(MAIL_TOPICS);
    let thread = short_id(ctx.rng, "thr");
    let mut b = Built::new(
        format!("Summarise the {topic} thread with {}", who.first()),
        vec![],
    );
    b.push(search_email(ctx, topic, &[(&thread, &who.email)]));
    b.push(
        Call::new(
            "summarize_thread",
            "email_thread",
            thread.clone(),
            "read",
            json!({ "thread_id": thread }),
        )
        .owned_by(ctx.principal.as_ref())
        .out(
            format!("{} messages; open question on {topic}", ctx.n(3, 12)),
            vec![who.email.clone()],
        ),
    );
    if ctx.chance(0.4) {
        b.push(reply_email(&thread, &who.email, topic));
    }
    b
}

fn mail_followup(ctx: &mut Ctx) -> Built {
    let people: Vec<Contact> = (0..ctx.n(1, 2))
        .map(|_| ctx.agent.known_contact(ctx.rng))
        .collect();
    let topic = ctx.pick(MAIL_TOPICS);
    let emails: Vec<String> = people.iter().map(|p| p.email.clone()).collect();
    let mut b = Built::new(
        format!("Follow up on today's {topic} meeting and book the next one"),
        vec![],
    );
    b.push(list_events(ctx, &people));
    let id = short_id(ctx.rng, "msg");
    if let Some(p) = people.first() {
        b.push(read_email(ctx, &id, p, topic));
    }
    b.push(create_event(ctx, &format!("{topic} follow-up"), &emails));
    b.push(send_email(&emails, &format!("Notes: {topic}"), &[]));
    b
}

fn mail_who_is_free(ctx: &mut Ctx) -> Built {
    let people: Vec<Contact> = (0..ctx.n(2, 3))
        .map(|_| ctx.agent.known_contact(ctx.rng))
        .collect();
    let names: Vec<String> = people.iter().map(|p| p.first()).collect();
    let mut b = Built::new(
        format!("When are {} all free this week?", names.join(", ")),
        vec![],
    );
    for p in &people {
        b.push(get_contact(ctx, p));
    }
    let emails: Vec<String> = people.iter().map(|p| p.email.clone()).collect();
    b.push(check_availability(ctx, &emails));
    b
}
