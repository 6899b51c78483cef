//! What on-call sees, pinned: the text, Slack and PagerDuty renderings
//! of one alert model.

use serde_json::{json, Value};

use super::model::{severity, Severity, EXCERPT_MAX};
use super::pagerduty::{
    BODY_MAX as PD_BODY_MAX, LIST_MAX as PD_LIST_MAX, STRING_MAX as PD_STRING_MAX,
};
use super::*;
use crate::decide::Mode;
use crate::respond::credential::Credential;
use crate::respond::incident::fixtures::{flag, FP};
use crate::respond::incident::Flag;
use crate::respond::incident::{CallSummary, OriginInfo, Outcome, Reason, Release, State};

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
    assert!(fields
        .contains(&format!("*Revocation*\npending\n• vault `{FP}`: pending, 0 attempts").as_str()));
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
    assert_eq!(severity(&q), Severity::Critical);
}

#[test]
fn pagerduty_resolve_body() {
    let q = quarantine(Mode::Enforce, 30.0);
    assert_eq!(
        pagerduty_resolve(&q, "rk"),
        json!({"routing_key": "rk", "event_action": "resolve", "dedup_key": q.id})
    );
}

#[test]
fn wire_structs_serialise_as_the_apis_document() {
    let m = slack::Message {
        text: "t".into(),
        blocks: vec![
            slack::header("h"),
            slack::Block::Section {
                text: None,
                fields: vec![slack::Text::Mrkdwn {
                    text: "f".into(),
                    verbatim: true,
                }],
            },
            slack::Block::Context {
                elements: vec![slack::Text::PlainText { text: "c".into() }],
            },
        ],
    };
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        json!({"text": "t", "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "h"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "f", "verbatim": true}]},
            {"type": "context", "elements": [{"type": "plain_text", "text": "c"}]},
        ]})
    );
    let ack = pagerduty::Event::close(pagerduty::Action::Acknowledge, "q-1", "rk");
    assert_eq!(
        serde_json::to_value(&ack).unwrap(),
        json!({"routing_key": "rk", "event_action": "acknowledge", "dedup_key": "q-1"})
    );
    let q = quarantine(Mode::Shadow, 20.0);
    let t = pagerduty::trigger(&Alert::new(&q, &links(URL, &q)), "rk");
    let p = t.payload.as_ref().unwrap();
    assert_eq!(p.severity, Severity::Warning);
    assert!(p.summary.chars().count() <= pagerduty::SUMMARY_MAX);
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v["payload"]["severity"], "warning");
    assert_eq!(v["payload"]["custom_details"]["mode"], "shadow");
}

#[test]
fn pagerduty_rejections_are_read() {
    assert_eq!(
        pagerduty::describe_error(
            r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'summary' is incorrect"]}"#
        )
        .as_deref(),
        Some("Event object is invalid: Length of 'summary' is incorrect")
    );
    assert_eq!(pagerduty::describe_error("{}"), None);
    assert_eq!(pagerduty::describe_error("rate limited"), None);
}

#[test]
fn every_rendering_reads_one_model() {
    // The same reasons, counts and credential in all three.
    let mut f = flag("e1", Mode::Enforce, 30.0);
    let mut q = open(&f);
    f.call.event_id = "e2".into();
    f.score = 35.0;
    q.attach(&f);
    let l = links(URL, &q);
    let a = Alert::new(&q, &l);
    assert_eq!(a.flags, "2 flagged calls (1 rolled up)");
    assert_eq!(a.reasons[0].signal, "resource");
    let text = text::render(&a);
    let slack = serde_json::to_string(&slack::alert(&a)).unwrap();
    let pd = serde_json::to_string(&pagerduty::trigger(&a, "rk")).unwrap();
    for rendered in [&text, &slack, &pd] {
        assert!(rendered.contains("2 flagged calls") || rendered.contains("\"flags\":2"));
        assert!(rendered.contains("+20.0 bits"), "{rendered}");
        assert!(rendered.contains(FP), "{rendered}");
        assert!(!rendered.contains("tok-1"), "a raw credential");
    }
}
