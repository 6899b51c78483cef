//! Chat workspace bot: channels, threads, DMs and files.

use super::*;

pub(super) static CHAT: &[Task] = &[
    task(
        "answer-question",
        3.0,
        Avail::Essential,
        &["read_channel", "search_docs", "reply_thread"],
        chat_answer,
    ),
    task(
        "channel-digest",
        1.5,
        Avail::Always,
        &["list_channels", "read_channel", "post_message"],
        chat_digest,
    ),
    task(
        "notify-person",
        1.5,
        Avail::Always,
        &["read_channel", "post_message"],
        chat_notify,
    ),
    task(
        "acknowledge",
        1.0,
        Avail::Always,
        &["read_channel", "react"],
        chat_ack,
    ),
    task(
        "share-file",
        1.0,
        Avail::Always,
        &["search_docs", "upload_file", "post_message"],
        chat_share,
    ),
    task(
        "set-up-channel",
        0.3,
        Avail::Always,
        &["create_channel", "invite_user", "post_message"],
        chat_onboard,
    ),
    task(
        "remove-message",
        0.3,
        Avail::Always,
        &["read_channel", "delete_message"],
        chat_remove,
    ),
    task(
        "archive-sweep",
        1.0,
        Avail::Novel,
        &["list_channels", "read_channel", "react"],
        chat_sweep,
    ),
    task(
        "cross-post",
        1.0,
        Avail::Novel,
        &["read_channel", "reply_thread", "upload_file"],
        chat_crosspost,
    ),
];

pub(crate) fn read_channel(ctx: &mut Ctx, ch: &str) -> Call {
    let who = ctx.agent.colleague(ctx.rng);
    let n = ctx.n(3, 50);
    let snippet = ctx.pick(&[
        "is the build green?",
        "can someone review?",
        "meeting moved to 3pm",
        "where is the runbook?",
        "customer asked about SSO",
    ]);
    Call::new(
        "read_channel",
        "channel",
        ch,
        "read",
        json!({ "channel": ch, "limit": 50 }),
    )
    .out(
        format!("{n} new messages; {}: '{snippet}'", who.name),
        vec![who.email],
    )
}

fn reply_thread(ctx: &mut Ctx, ch: &str) -> Call {
    let ts = ctx.message_ts();
    Call::new(
        "reply_thread",
        "channel",
        ch,
        "write",
        json!({ "channel": ch, "thread_ts": ts, "text": "Here's the answer from the docs" }),
    )
}

pub(crate) fn list_channels(ctx: &mut Ctx) -> Call {
    let ws = format!("ws:{}", ctx.agent.org.domain);
    let n = ctx.agent.channels.len();
    Call::new(
        "list_channels",
        "workspace",
        ws,
        "read",
        json!({ "types": "public" }),
    )
    .out(format!("{n} channels"), vec![])
}

fn upload_file(ch: &str, file: &str, kb: u32) -> Call {
    Call::new(
        "upload_file",
        "file",
        file,
        "write",
        json!({ "channel": ch, "filename": file, "size_kb": kb }),
    )
}

fn chat_answer(ctx: &mut Ctx) -> Built {
    let ch = ctx.channel();
    let mut b = Built::new(
        format!("Answer the open question in {ch}"),
        vec![ch.clone()],
    );
    b.push(read_channel(ctx, &ch));
    let q = ctx.pick(KB_QUERIES);
    b.push(search_docs(ctx, q));
    b.push(reply_thread(ctx, &ch));
    b
}

fn chat_digest(ctx: &mut Ctx) -> Built {
    let mut b = Built::new("Post the daily digest", vec![]);
    b.push(list_channels(ctx));
    for _ in 0..ctx.n(2, 4) {
        let ch = ctx.channel();
        b.push(read_channel(ctx, &ch));
    }
    let target = if ctx.agent.channels.iter().any(|c| c == "#announcements") {
        "#announcements".to_string()
    } else {
        ctx.agent
            .channels
            .first()
            .cloned()
            .unwrap_or_else(|| "#general".into())
    };
    b.push(post_message(
        &target,
        "Daily digest: 4 threads need attention",
    ));
    b
}

fn chat_notify(ctx: &mut Ctx) -> Built {
    let ch = ctx.channel();
    let to = ctx.agent.colleague(ctx.rng);
    let mut b = Built::new(
        format!("Let {} know what was decided in {ch}", to.first()),
        vec![ch.clone()],
    );
    b.push(read_channel(ctx, &ch));
    if ctx.chance(0.5) {
        b.push(post_dm(&to.email, "FYI: decision summary from the channel"));
    } else {
        b.push(post_message(&ch, "Summary of the decision for the record"));
    }
    b
}

fn chat_ack(ctx: &mut Ctx) -> Built {
    let ch = ctx.channel();
    let mut b = Built::new(
        format!("Acknowledge the new requests in {ch}"),
        vec![ch.clone()],
    );
    b.push(read_channel(ctx, &ch));
    for _ in 0..ctx.n(1, 3) {
        let ts = ctx.message_ts();
        b.push(Call::new(
            "react",
            "channel",
            ch.clone(),
            "write",
            json!({ "channel": ch, "ts": ts, "emoji": "white_check_mark" }),
        ));
    }
    b
}

fn chat_share(ctx: &mut Ctx) -> Built {
    let ch = ctx.channel();
    let doc = ctx.doc();
    let mut b = Built::new(format!("Share the {doc} in {ch}"), vec![ch.clone()]);
    b.push(search_docs(ctx, &doc));
    let kb = ctx.n(40, 4000);
    b.push(upload_file(&ch, &doc, kb));
    b.push(post_message(&ch, &format!("Latest {doc} attached")));
    b
}

fn chat_onboard(ctx: &mut Ctx) -> Built {
    let project = ctx.pick(&["launch", "migration", "offsite", "audit", "hiring"]);
    let ch = format!("#proj-{project}-{}", ctx.n(1, 99));
    let mut b = Built::new(format!("Create {ch} and invite the team"), vec![ch.clone()]);
    b.push(Call::new(
        "create_channel",
        "channel",
        ch.clone(),
        "write",
        json!({ "name": ch, "private": false }),
    ));
    for _ in 0..ctx.n(2, 4) {
        let u = ctx.agent.colleague(ctx.rng);
        b.push(Call::new(
            "invite_user",
            "channel",
            ch.clone(),
            "write",
            json!({ "channel": ch, "user": u.email }),
        ));
    }
    b.push(post_message(&ch, "Welcome! Kickoff notes are pinned."));
    b
}

pub(crate) fn delete_message(ch: &str, ts: &str) -> Call {
    Call::new(
        "delete_message",
        "message",
        format!("{ch}/{ts}"),
        "delete",
        json!({ "channel": ch, "ts": ts }),
    )
}

fn chat_remove(ctx: &mut Ctx) -> Built {
    let ch = ctx.channel();
    let mut b = Built::new(
        format!("Remove my duplicate post in {ch}"),
        vec![ch.clone()],
    );
    b.push(read_channel(ctx, &ch));
    for _ in 0..ctx.n(1, 2) {
        let ts = ctx.message_ts();
        b.push(delete_message(&ch, &ts));
    }
    b
}

fn chat_sweep(ctx: &mut Ctx) -> Built {
    let mut b = Built::new("Mark every stale request across channels as seen", vec![]);
    b.push(list_channels(ctx));
    for _ in 0..ctx.n(2, 3) {
        let ch = ctx.channel();
        b.push(read_channel(ctx, &ch));
        let ts = ctx.message_ts();
        b.push(Call::new(
            "react",
            "channel",
            ch.clone(),
            "write",
            json!({ "channel": ch, "ts": ts, "emoji": "eyes" }),
        ));
    }
    b
}

fn chat_crosspost(ctx: &mut Ctx) -> Built {
    let ch = ctx.channel();
    let doc = ctx.doc();
    let mut b = Built::new(
        format!("Answer in {ch} and attach the {doc}"),
        vec![ch.clone()],
    );
    b.push(read_channel(ctx, &ch));
    b.push(reply_thread(ctx, &ch));
    let kb = ctx.n(40, 4000);
    b.push(upload_file(&ch, &doc, kb));
    b
}
