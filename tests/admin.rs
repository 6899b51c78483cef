//! The admin API against a real `warden run`: roles, validation naming the
//! field, live thresholds that survive a restart, suppressions that stop
//! alerts until they expire, feedback, the audit trail, and the OpenAPI
//! document against the routers.
#![cfg(feature = "integration-tests")]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::*;

const INGEST: &str = "ingest-tok-0123456789";
const READ: &str = "read-tok-0123456789";
const ADMIN: &str = "admin-tok-0123456789";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("WARDEN_INGEST_TOKEN", INGEST),
        ("WARDEN_READ_TOKEN", READ),
        ("WARDEN_ADMIN_TOKEN", ADMIN),
    ]
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\ndata-dir = {:?}\ndecisions-file = {:?}\n",
            dir.join("state"),
            dir.join("decisions.jsonl"),
        ),
    )
    .unwrap();
    config
}

fn admin(svc: &Service, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {ADMIN}");
    let (status, text) = svc.admin_with(
        method,
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn read(svc: &Service, path: &str) -> (u16, Value) {
    let (status, text) = svc.admin("GET", path, "");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A tool call of the test week's first agent, as a template.
fn template() -> Value {
    test_lines(0, 400)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v.get("kind").is_none_or(|k| k == "tool_call"))
        .unwrap()
}

/// Posts `call` with a fresh event id and waits for its decision.
fn decide(svc: &Service, dir: &Path, call: &Value, n: u32) -> Value {
    let mut c = call.clone();
    let id = format!("admin-test-{n}-{}", unique("e"));
    c["event_id"] = id.clone().into();
    let auth = format!("Bearer {INGEST}");
    let (status, body) = svc.request_with(
        "POST",
        "/v1/events",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        &c.to_string(),
    );
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(dir.join("decisions.jsonl")).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(&id)) {
            return serde_json::from_str(line).unwrap();
        }
        assert!(Instant::now() < deadline, "no decision for {id}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn audit_records(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("state").join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (bounded) until the audit log has a record of `kind` matching.
fn wait_audit(dir: &Path, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = audit_records(dir).into_iter().find(|r| {
            let k = r["kind"].as_str().or(r["type"].as_str()).unwrap_or("");
            k == kind && pred(r)
        });
        if let Some(r) = found {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} record in the audit log: {:?}",
            audit_records(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn admin_routes_refuse_missing_wrong_and_other_role_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_env(&write_config(dir.path()), false, &env());
    let body = r#"{"threshold_bits":20,"actor":"a","reason":"r"}"#;
    let path = "/v1/policy/agents/some-agent";
    let ct = ("Content-Type", "application/json");
    let cases: [(&str, Option<&str>, u16); 4] = [
        ("no token", None, 401),
        ("wrong token", Some("nope"), 401),
        ("read token", Some(READ), 403),
        ("ingest token", Some(INGEST), 403),
    ];
    for (what, token, want) in cases {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![ct];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let (status, text) = svc.admin_with("PUT", path, &headers, body);
        assert_eq!(status, want, "{what}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["required_role"], "admin", "{what}: {text}");
        // Nothing changed.
        let (_, policy) = read(&svc, "/v1/policy");
        assert_eq!(policy["overrides"]["agents"], json!({}), "{what}");
    }
    // Reads: the ingest token is another role, no token is none.
    let (status, _) = svc.admin_with("GET", "/v1/suppressions", &[], "");
    assert_eq!(status, 401);
    let auth = format!("Bearer {INGEST}");
    let (status, _) = svc.admin_with("GET", "/v1/suppressions", &[("Authorization", &auth)], "");
    assert_eq!(status, 403);
    let (status, _) = read(&svc, "/v1/suppressions");
    assert_eq!(status, 200);
    svc.stop();
}

#[test]
fn validation_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_env(&write_config(dir.path()), false, &env());
    let cases = [
        (
            "PUT",
            "/v1/policy/agents/a",
            json!({"threshold_bits": 500, "actor": "me", "reason": "r"}),
            "threshold_bits",
        ),
        (
            "PUT",
            "/v1/policy/default",
            json!({"mode": "enforce", "reason": "r"}),
            "actor",
        ),
        (
            "PUT",
            "/v1/policy/classes/x",
            json!({"mode": "loud", "actor": "me", "reason": "r"}),
            "mode",
        ),
        (
            "PUT",
            "/v1/policy/default",
            json!({"mode": "enforce", "actor": "me", "reason": "r", "colour": 1}),
            "body",
        ),
        (
            "POST",
            "/v1/suppressions",
            json!({"agent": "a", "reason": "known", "actor": "me"}),
            "expires_at",
        ),
        (
            "POST",
            "/v1/suppressions",
            json!({"agent": "a", "actor": "me", "expires_in": "1h", "reason": ""}),
            "reason",
        ),
        (
            "POST",
            "/v1/suppressions",
            json!({"agent": "a", "actor": "me", "reason": "r", "expires_in": "400d"}),
            "expires_at",
        ),
        (
            "POST",
            "/v1/suppressions",
            json!({"agent": "a", "actor": "me", "reason": "r", "expires_in": "soon"}),
            "expires_in",
        ),
        (
            "POST",
            "/v1/feedback",
            json!({"verdict": "false_positive", "event_id": "", "actor": "me"}),
            "event_id",
        ),
        (
            "POST",
            "/v1/feedback",
            json!({"verdict": "false_positive", "actor": "me"}),
            "incident",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, v) = admin(&svc, method, path, &body);
        assert_eq!(status, 400, "{path} {body}: {v}");
        assert_eq!(v["field"], field, "{path} {body}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    svc.stop();
}

#[test]
fn a_threshold_change_applies_to_the_next_event_survives_a_restart_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let svc = Service::start_env(&config, true, &env());
    let call = template();
    let agent = call["agent_id"].as_str().unwrap().to_owned();
    let before = decide(&svc, dir.path(), &call, 0);
    assert!(before["threshold"].as_f64().unwrap() < 150.0, "{before}");

    let path = format!("/v1/policy/agents/{agent}");
    let (status, v) = admin(
        &svc,
        "PUT",
        &path,
        &json!({"threshold_bits": 0.0, "mode": "learn", "actor": "alice", "reason": "test"}),
    );
    assert_eq!(status, 200, "{v}");
    let next = decide(&svc, dir.path(), &call, 1);
    assert_eq!(next["threshold"], 0.0, "{next}");
    assert_eq!(next["flagged"], true, "{next}");
    let (status, v) = admin(
        &svc,
        "PUT",
        &path,
        &json!({"threshold_bits": 150.0, "actor": "bob", "reason": "too noisy"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["old"]["threshold_bits"], 0.0, "{v}");
    let next = decide(&svc, dir.path(), &call, 2);
    assert_eq!(next["threshold"], 150.0, "{next}");
    assert_eq!(next["flagged"], false, "{next}");

    // Explained with its source.
    let (status, e) = read(&svc, &format!("/v1/agents/{agent}/explain?decisions=5"));
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["policy"]["threshold_bits"], 150.0, "{e}");
    assert_eq!(e["policy"]["threshold_source"], "api-agent", "{e}");
    assert_eq!(e["policy"]["mode"], "learn", "{e}");
    assert!(
        !e["profile"]["usual_tools"].as_array().unwrap().is_empty(),
        "{e}"
    );
    assert!(e["last_calls"].as_array().unwrap().len() >= 3, "{e}");
    assert!(
        !e["flagged_decisions"].as_array().unwrap().is_empty(),
        "{e}"
    );
    // Scores read as people write them, not as widened f32.
    let score = e["flagged_decisions"][0]["score"].as_f64().unwrap();
    assert!(
        score
            .to_string()
            .split('.')
            .nth(1)
            .is_none_or(|d| d.len() <= 2),
        "{score}"
    );
    let (status, _) = read(&svc, "/v1/agents/no-such-agent/explain");
    assert_eq!(status, 404);

    let set = wait_audit(dir.path(), "policy_set", |r| {
        r.to_string().contains("\"bob\"")
    });
    let s = set.to_string();
    assert!(s.contains("too noisy") && s.contains(&agent), "{s}");
    assert!(s.contains("\"old\""), "{s}");
    svc.stop();

    let svc = Service::start_env(&config, false, &env());
    let (_, policy) = read(&svc, "/v1/policy");
    assert_eq!(
        policy["overrides"]["agents"][&agent]["threshold_bits"], 150.0,
        "{policy}"
    );
    let after = decide(&svc, dir.path(), &call, 3);
    assert_eq!(after["threshold"], 150.0, "{after}");
    // Cleared: back to what the engine decides.
    let (status, v) = admin(
        &svc,
        "DELETE",
        &path,
        &json!({"actor": "bob", "reason": "done"}),
    );
    assert_eq!(status, 200, "{v}");
    let cleared = decide(&svc, dir.path(), &call, 4);
    assert!(cleared["threshold"].as_f64().unwrap() < 150.0, "{cleared}");
    wait_audit(dir.path(), "policy_cleared", |r| {
        r.to_string().contains("done")
    });
    svc.stop();
}

#[test]
fn a_suppression_stops_incidents_until_it_expires_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_env(&write_config(dir.path()), true, &env());
    let call = template();
    let agent = call["agent_id"].as_str().unwrap().to_owned();
    let tool = call["tool"].as_str().unwrap().to_owned();
    // Every call of the agent is flagged (shadow mode: incidents, alerts).
    let (status, v) = admin(
        &svc,
        "PUT",
        &format!("/v1/policy/agents/{agent}"),
        &json!({"threshold_bits": 0.0, "mode": "shadow", "actor": "alice", "reason": "test"}),
    );
    assert_eq!(status, 200, "{v}");
    let (status, rule) = admin(
        &svc,
        "POST",
        "/v1/suppressions",
        &json!({"agent": agent, "tool": tool, "skip": "alert", "reason": "known batch job",
                "actor": "alice", "expires_in": "4s"}),
    );
    assert_eq!(status, 201, "{rule}");
    let id = rule["id"].as_str().unwrap().to_owned();
    let d = decide(&svc, dir.path(), &call, 0);
    assert_eq!(d["flagged"], true, "{d}");
    // Recorded and counted, but no incident.
    std::thread::sleep(Duration::from_millis(500));
    let (_, q) = read(&svc, &format!("/v1/quarantines/agents/{agent}"));
    assert_eq!(q["quarantined"], false, "{q}");
    assert_eq!(svc.metric("warden_quarantines_opened_total"), 0.0);
    assert_eq!(
        svc.metric("warden_suppressed_calls_total{kind=\"alert\"}"),
        1.0
    );
    let (_, list) = read(&svc, "/v1/suppressions");
    let r = &list["suppressions"][0];
    assert_eq!(
        (r["id"].as_str(), r["hits"].as_u64()),
        (Some(id.as_str()), Some(1)),
        "{list}"
    );
    assert_eq!(r["expired"], false);

    // Expired: matches no more, and the next flag opens an incident.
    std::thread::sleep(Duration::from_secs(4));
    let d = decide(&svc, dir.path(), &call, 1);
    assert_eq!(d["flagged"], true, "{d}");
    svc.wait_metric("warden_quarantines_opened_total", 1.0);
    let (_, list) = read(&svc, "/v1/suppressions");
    assert_eq!(list["suppressions"][0]["hits"], 1, "{list}");
    assert_eq!(list["suppressions"][0]["expired"], true, "{list}");

    // Feedback on the incident: a true positive is kept as a label.
    let (_, qs) = read(&svc, "/v1/quarantines");
    let qid = qs["quarantines"][0]["id"].as_str().unwrap().to_owned();
    let (status, fb) = admin(
        &svc,
        "POST",
        "/v1/feedback",
        &json!({"incident": qid, "verdict": "true_positive", "actor": "alice", "note": "confirmed"}),
    );
    assert_eq!(status, 200, "{fb}");
    assert!(fb["labelled"].as_u64().unwrap() >= 1, "{fb}");
    let (status, text) = svc.admin("GET", "/v1/feedback", "");
    assert_eq!(status, 200);
    let label: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(label["attack"], true, "{text}");
    assert!(label["event_id"].as_str().is_some(), "{text}");

    let (status, v) = admin(
        &svc,
        "DELETE",
        &format!("/v1/suppressions/{id}"),
        &json!({"actor": "alice", "reason": "cleanup"}),
    );
    assert_eq!(status, 200, "{v}");
    wait_audit(dir.path(), "suppression_added", |r| {
        r.to_string().contains("known batch job")
    });
    wait_audit(dir.path(), "suppression_removed", |r| {
        r.to_string().contains("cleanup")
    });
    wait_audit(dir.path(), "feedback", |r| {
        r.to_string().contains("confirmed")
    });
    svc.stop();
}

/// Posts NDJSON to the ingest listener and waits until `calls` more
/// decisions are written.
fn post_and_wait(svc: &Service, dir: &Path, ndjson: &str, calls: usize) {
    let before = std::fs::read_to_string(dir.join("decisions.jsonl"))
        .unwrap_or_default()
        .lines()
        .count();
    let auth = format!("Bearer {INGEST}");
    let (status, body) = svc.request_with(
        "POST",
        "/v1/events",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/x-ndjson"),
        ],
        ndjson,
    );
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(dir.join("decisions.jsonl"))
        .unwrap_or_default()
        .lines()
        .count()
        < before + calls
    {
        assert!(Instant::now() < deadline, "decisions not written");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn explain_names_resource_types_transitions_and_where_values_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let svc = Service::start_env(&config, true, &env());
    let call = template();
    let agent = call["agent_id"].as_str().unwrap().to_owned();
    let (status, e) = read(&svc, &format!("/v1/agents/{agent}/explain"));
    assert_eq!(status, 200, "{e}");
    let p = &e["profile"];
    // Learned from the training history: transitions from the session's
    // start, resource types by name, instruction origins.
    let t = p["transitions"].as_array().unwrap();
    assert_eq!(t[0]["from"], "(session start)", "{p}");
    assert!(!t[0]["next"].as_array().unwrap().is_empty(), "{p}");
    assert!(t.len() >= 2, "transitions from its tools too: {p}");
    let rtypes: Vec<&str> = p["habits"]["resource_types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["resource_type"].as_str())
        .collect();
    if let Some(rt) = call["resource_type"].as_str() {
        assert!(rtypes.contains(&rt), "{rt} in {rtypes:?}");
    }
    assert!(!rtypes.is_empty(), "{p}");
    assert!(
        !p["habits"]["top_resources"].as_array().unwrap().is_empty(),
        "{p}"
    );
    assert!(
        !p["habits"]["argument_sources"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{p}"
    );
    assert!(
        !p["instruction_origins"].as_object().unwrap().is_empty(),
        "{p}"
    );

    // A session whose values come from the user, from a tool's output, and
    // from nothing it read. Nothing flags (threshold 200), so it is learned.
    let (status, v) = admin(
        &svc,
        "PUT",
        &format!("/v1/policy/agents/{agent}"),
        &json!({"threshold_bits": 200.0, "actor": "alice", "reason": "test"}),
    );
    assert_eq!(status, 200, "{v}");
    let usual = p["usual_tools"][0]["tool"].as_str().unwrap().to_owned();
    let session = unique("sess-explain");
    let ts = call["ts"].as_str().unwrap();
    let base = json!({"agent_id": agent, "session_id": session, "ts": ts});
    let with = |extra: Value| {
        let mut v = base.clone();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v.to_string()
    };
    let read_id = unique("e-read");
    let events = [
        with(
            json!({"kind": "prompt", "event_id": unique("e-p"), "text": "Pay the vendor, copy my boss.",
                    "entities": ["boss.lead@example-corp.com"]}),
        ),
        with(json!({"event_id": read_id, "tool": usual, "resource_type": "explain-test-doc"})),
        with(
            json!({"kind": "tool_result", "event_id": unique("e-r"), "call_event_id": read_id, "tool": usual,
                    "result": "payee: payee.7731@vendor-example.com", "entities": ["payee.7731@vendor-example.com"],
                    "trust": "untrusted"}),
        ),
        with(
            json!({"event_id": unique("e-send"), "tool": "explain_test_send", "resource_type": "explain-test-mail",
                    "args": {"to": "payee.7731@vendor-example.com", "cc": "boss.lead@example-corp.com",
                             "bcc": "archive@example-corp.com"}}),
        ),
    ];
    post_and_wait(&svc, dir.path(), &(events.join("\n") + "\n"), 2);
    let (status, e) = read(&svc, &format!("/v1/agents/{agent}/explain"));
    assert_eq!(status, 200, "{e}");
    let habits = &e["profile"]["habits"];
    let arg = |name: &str| {
        habits["argument_sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["tool"] == "explain_test_send" && a["argument"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {habits}"))
    };
    let to = arg("to");
    assert_eq!(to["tool_output"][0]["tool"], usual.as_str(), "{to}");
    assert_eq!(to["tool_output"][0]["share"], 1.0, "{to}");
    assert!(
        to["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("the output of {usual} 100%")),
        "{to}"
    );
    assert_eq!(arg("cc")["user"], 1.0, "{habits}");
    assert_eq!(arg("bcc")["not_from_input"], 1.0, "{habits}");
    let names: Vec<&str> = habits["resource_types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["resource_type"].as_str())
        .collect();
    assert!(names.contains(&"explain-test-mail"), "{names:?}");
    println!(
        "{}",
        serde_json::to_string_pretty(&e["profile"]).unwrap_or_default()
    );

    // Saved with the worker's state: a restart explains the same.
    svc.stop();
    let svc = Service::start_env(&config, false, &env());
    let (status, e) = read(&svc, &format!("/v1/agents/{agent}/explain"));
    assert_eq!(status, 200, "{e}");
    assert!(
        e["profile"]["habits"]["argument_sources"]
            .to_string()
            .contains("explain_test_send"),
        "{e}"
    );
    svc.stop();
}

/// The agent's events learned so far, as explain reports them.
fn events_learned(svc: &Service, agent: &str) -> u64 {
    let (status, e) = read(svc, &format!("/v1/agents/{agent}/explain"));
    assert_eq!(status, 200, "{e}");
    e["profile"]["events_learned"].as_u64().unwrap()
}

#[test]
fn skip_learning_keeps_suppressed_sessions_out_of_the_profile_and_skip_alert_learns_them() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_env(&write_config(dir.path()), true, &env());
    let call = template();
    let agent = call["agent_id"].as_str().unwrap().to_owned();
    let t0 = chrono::DateTime::parse_from_rfc3339(call["ts"].as_str().unwrap()).unwrap();
    let at = |hours: i64| {
        (t0 + chrono::Duration::hours(hours)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let (status, v) = admin(
        &svc,
        "PUT",
        &format!("/v1/policy/agents/{agent}"),
        &json!({"threshold_bits": 0.0, "actor": "alice", "reason": "test"}),
    );
    assert_eq!(status, 200, "{v}");
    // A session is learned when it closes: a later event of the agent
    // closes the idle ones (event time), before explain is answered (one
    // worker queue, in order).
    let session_at = |hours: i64, n: u32| {
        let mut c = call.clone();
        c["session_id"] = unique("sess-skip").into();
        c["ts"] = at(hours).into();
        let d = decide(&svc, dir.path(), &c, n);
        assert_eq!(d["flagged"], true, "{d}");
        let prompt = json!({"kind": "prompt", "event_id": unique("e-p"), "agent_id": agent,
                            "session_id": unique("sess-closer"), "ts": at(hours + 2), "text": "next"});
        let auth = format!("Bearer {INGEST}");
        let (status, body) = svc.request_with(
            "POST",
            "/v1/events",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            &prompt.to_string(),
        );
        assert_eq!(status, 202, "{body}");
    };
    let rule = |skip: &str| {
        let (status, r) = admin(
            &svc,
            "POST",
            "/v1/suppressions",
            &json!({"agent": agent, "skip": skip, "reason": "known job", "actor": "alice", "expires_in": "1h"}),
        );
        assert_eq!(status, 201, "{r}");
        r["id"].as_str().unwrap().to_owned()
    };
    let e0 = events_learned(&svc, &agent);

    // skip = alert: no incident, and the session is learned as benign.
    let id = rule("alert");
    session_at(1, 0);
    assert_eq!(events_learned(&svc, &agent), e0 + 1, "skip alert learns");
    let (status, _) = admin(
        &svc,
        "DELETE",
        &format!("/v1/suppressions/{id}"),
        &json!({"actor": "alice", "reason": "next"}),
    );
    assert_eq!(status, 200);

    // skip = learning: no incident, and the session is not learned.
    rule("learning");
    session_at(5, 1);
    assert_eq!(
        events_learned(&svc, &agent),
        e0 + 1,
        "skip learning keeps the session out of the profile"
    );
    assert_eq!(svc.metric("warden_quarantines_opened_total"), 0.0);
    assert_eq!(
        svc.metric("warden_suppressed_calls_total{kind=\"learning\"}"),
        1.0
    );
    svc.stop();
}

/// Polls explain (bounded) until the agent has learned `n` events.
fn wait_learned(svc: &Service, agent: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while events_learned(svc, agent) != n {
        assert!(
            Instant::now() < deadline,
            "events_learned stayed at {}, not {n}",
            events_learned(svc, agent)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn false_positive_on_a_bare_decision_is_labelled_and_learned() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_env(&write_config(dir.path()), true, &env());
    let call = template();
    let agent = call["agent_id"].as_str().unwrap().to_owned();
    let (status, v) = admin(
        &svc,
        "PUT",
        &format!("/v1/policy/agents/{agent}"),
        &json!({"threshold_bits": 0.0, "mode": "shadow", "actor": "alice", "reason": "test"}),
    );
    assert_eq!(status, 200, "{v}");
    let d = decide(&svc, dir.path(), &call, 0);
    assert_eq!(d["flagged"], true, "{d}");
    let event_id = d["event_id"].as_str().unwrap().to_owned();
    svc.wait_metric("warden_quarantines_opened_total", 1.0);
    let e0 = events_learned(&svc, &agent);
    let (_, e) = read(&svc, &format!("/v1/agents/{agent}/explain"));
    assert!(
        e["profile"]["habits_source"]
            .as_str()
            .is_some_and(|s| s.contains("this instance")),
        "{e}"
    );

    let (status, fb) = admin(
        &svc,
        "POST",
        "/v1/feedback",
        &json!({"event_id": event_id, "verdict": "false_positive", "actor": "alice", "note": "a known export"}),
    );
    assert_eq!(status, 200, "{fb}");
    assert_eq!(fb["labelled"], 1, "{fb}");
    assert_eq!(fb["learned"]["learned"], true, "{fb}");
    assert_eq!(fb["learned"]["agent_id"], agent.as_str(), "{fb}");
    assert_eq!(
        fb["released"],
        Value::Null,
        "the incident is not released: {fb}"
    );
    // Learned into the profile, as a release with false_positive learns.
    wait_learned(&svc, &agent, e0 + 1);
    let (_, qs) = read(&svc, "/v1/quarantines");
    let open = qs["quarantines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["agent_id"] == agent.as_str() && q["state"] != "released");
    assert!(open, "the incident stays open: {qs}");
    // And kept as a benign label for warden tune.
    let (status, text) = svc.admin("GET", "/v1/feedback", "");
    assert_eq!(status, 200);
    let label: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event_id"] == event_id.as_str())
        .unwrap_or_else(|| panic!("no label for {event_id}: {text}"));
    assert_eq!(label["attack"], false, "{label}");
    assert_eq!(label["scenario"], "feedback:false_positive", "{label}");
    wait_audit(dir.path(), "feedback", |r| {
        r.to_string().contains("a known export")
    });

    // A call no incident holds: labelled, and the answer says why it
    // could not be learned.
    let (status, fb) = admin(
        &svc,
        "POST",
        "/v1/feedback",
        &json!({"event_id": "no-such-call", "verdict": "false_positive", "actor": "alice"}),
    );
    assert_eq!(status, 200, "{fb}");
    assert_eq!(fb["labelled"], 1, "{fb}");
    assert_eq!(fb["learned"]["learned"], false, "{fb}");
    assert!(
        fb["learned"]["why"].as_str().unwrap().contains("not held"),
        "{fb}"
    );
    assert_eq!(events_learned(&svc, &agent), e0 + 1);
    svc.stop();
}

#[test]
fn enforce_without_a_revoker_is_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_env(&write_config(dir.path()), false, &env());
    for path in [
        "/v1/policy/default",
        "/v1/policy/classes/pay-*",
        "/v1/policy/agents/pay-1",
    ] {
        let (status, v) = admin(
            &svc,
            "PUT",
            path,
            &json!({"mode": "enforce", "actor": "mallory", "reason": "go live"}),
        );
        assert_eq!(status, 409, "{path}: {v}");
        assert_eq!(v["field"], "mode", "{v}");
        assert!(v["error"].as_str().unwrap().contains("no revoker"), "{v}");
    }
    // Nothing changed; shadow and learn are still allowed.
    let (_, policy) = read(&svc, "/v1/policy");
    assert!(
        policy["overrides"]["agents"]
            .as_object()
            .unwrap()
            .is_empty(),
        "{policy}"
    );
    assert!(policy["overrides"].get("default").is_none(), "{policy}");
    let (status, v) = admin(
        &svc,
        "PUT",
        "/v1/policy/agents/pay-1",
        &json!({"mode": "shadow", "actor": "mallory", "reason": "rehearse"}),
    );
    assert_eq!(status, 200, "{v}");
    let refused = wait_audit(dir.path(), "policy_refused", |r| {
        r.to_string().contains("pay-1")
    });
    let s = refused.to_string();
    assert!(s.contains("mallory") && s.contains("no revoker"), "{s}");
    svc.stop();

    // With a revoker (the local log, configured), enforce is taken.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[[response.revokers]]\nkind = \"log\"\npath = {:?}\n",
        dir.path().join("revocations.jsonl")
    ));
    std::fs::write(&config, text).unwrap();
    let svc = Service::start_env(&config, false, &env());
    let (status, v) = admin(
        &svc,
        "PUT",
        "/v1/policy/agents/pay-1",
        &json!({"mode": "enforce", "actor": "alice", "reason": "go live"}),
    );
    assert_eq!(status, 200, "{v}");
    svc.stop();
}

#[test]
fn tune_apply_is_a_dry_run_until_yes_and_is_audited_as_warden_tune() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_env(&write_config(dir.path()), false, &env());
    let test = dir.path().join("test.jsonl");
    std::fs::write(&test, test_lines(0, 6000)).unwrap();
    let url = format!("http://{}", svc.admin_addr);
    let tune = |extra: &[&str], token: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.args(["tune", "--train", &data("train.jsonl.gz")])
            .arg(&test)
            .args(["--labels", &data("labels.jsonl"), "--target-fp", "0.01"])
            .args(["--apply", &url])
            .args(extra)
            .env_remove("WARDEN_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.env("WARDEN_ADMIN_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // No token in the environment: refused, naming the variable.
    let (ok, text) = tune(&[], None);
    assert!(!ok && text.contains("WARDEN_ADMIN_TOKEN"), "{text}");
    // A read token cannot change the policy.
    let (ok, text) = tune(&["--yes"], Some(READ));
    assert!(!ok && text.contains("403"), "{text}");
    // Dry run: printed, nothing changed.
    let (ok, text) = tune(&[], Some(ADMIN));
    assert!(ok, "{text}");
    assert!(
        text.contains("Would set") && text.contains("Dry run"),
        "{text}"
    );
    let (_, policy) = read(&svc, "/v1/policy");
    assert!(
        policy["overrides"]["agents"]
            .as_object()
            .unwrap()
            .is_empty(),
        "{policy}"
    );
    // Applied: every recommended threshold is live, audited as warden-tune.
    let (ok, text) = tune(&["--yes"], Some(ADMIN));
    assert!(ok, "{text}");
    println!("{text}");
    assert!(!text.contains(ADMIN), "the token is never printed");
    let set: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Set "))
        .collect();
    assert!(!set.is_empty(), "{text}");
    let (_, policy) = read(&svc, "/v1/policy");
    let agents = policy["overrides"]["agents"].as_object().unwrap();
    assert_eq!(agents.len(), set.len(), "{policy}");
    for (id, s) in agents {
        assert_eq!(s["set_by"], "warden-tune", "{id}: {s}");
        assert!(s["threshold_bits"].as_f64().is_some(), "{id}: {s}");
    }
    wait_audit(dir.path(), "policy_set", |r| {
        r.to_string().contains("\"warden-tune\"")
    });
    // Applied again: nothing left to change.
    let (ok, text) = tune(&["--yes"], Some(ADMIN));
    assert!(ok && text.contains("Applied: 0 agent"), "{text}");
    svc.stop();
}

fn redis_url() -> String {
    std::env::var("WARDEN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn redis_config(dir: &Path, prefix: &str) -> std::path::PathBuf {
    let config = write_config(dir);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[redis]\nenabled = true\nurl = {:?}\nkey-prefix = {:?}\n",
        redis_url(),
        prefix
    ));
    std::fs::write(&config, text).unwrap();
    config
}

/// Waits (bounded) until `GET /v1/suppressions` on `svc` satisfies `pred`.
fn wait_rules(svc: &Service, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, list) = read(svc, "/v1/suppressions");
        if pred(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "{what}: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Needs the Redis of scripts/redis.sh; run under
/// `flock -o /tmp/warden-broker.lock`.
#[test]
fn suppressions_and_feedback_are_shared_through_redis() {
    let prefix = unique("warden-admin-test");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Service::start_env(&redis_config(a_dir.path(), &prefix), true, &env());
    let b = Service::start_env(&redis_config(b_dir.path(), &prefix), false, &env());
    let call = template();
    let agent = call["agent_id"].as_str().unwrap().to_owned();
    // Every call of the agent flags (the override is shared too).
    let (status, v) = admin(
        &a,
        "PUT",
        &format!("/v1/policy/agents/{agent}"),
        &json!({"threshold_bits": 0.0, "mode": "shadow", "actor": "alice", "reason": "test"}),
    );
    assert_eq!(status, 200, "{v}");
    let (status, rule) = admin(
        &a,
        "POST",
        "/v1/suppressions",
        &json!({"agent": agent, "skip": "alert", "reason": "shared batch job",
                "actor": "alice", "expires_in": "25s"}),
    );
    assert_eq!(status, 201, "{rule}");
    let id = rule["id"].as_str().unwrap().to_owned();
    let expires =
        chrono::DateTime::parse_from_rfc3339(rule["expires_at"].as_str().unwrap()).unwrap();
    // Created on A, it reaches B.
    wait_rules(&b, "rule reaches B", |l| l.to_string().contains(&id));
    let policy_on_b =
        || read(&b, "/v1/policy").1["overrides"]["agents"][&agent]["threshold_bits"] == 0.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !policy_on_b() {
        assert!(Instant::now() < deadline, "override reaches B");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A flag on each: suppressed on both, hits summed on both.
    let d = decide(&b, b_dir.path(), &call, 0);
    assert_eq!(d["flagged"], true, "{d}");
    let d = decide(&a, a_dir.path(), &call, 1);
    assert_eq!(d["flagged"], true, "{d}");
    for (name, svc) in [("A", &a), ("B", &b)] {
        assert_eq!(
            svc.metric("warden_suppressed_calls_total{kind=\"alert\"}"),
            1.0,
            "{name}"
        );
        wait_rules(svc, &format!("hits summed on {name}"), |l| {
            l["suppressions"][0]["hits"] == 2
        });
    }
    assert_eq!(a.metric("warden_quarantines_opened_total"), 0.0);
    assert_eq!(b.metric("warden_quarantines_opened_total"), 0.0);

    // Feedback given on A is exported by B.
    let (status, fb) = admin(
        &a,
        "POST",
        "/v1/feedback",
        &json!({"event_id": "shared-label-1", "verdict": "true_positive", "actor": "alice", "note": "confirmed"}),
    );
    assert_eq!(status, 200, "{fb}");
    let (status, text) = b.admin("GET", "/v1/feedback", "");
    assert_eq!(status, 200);
    assert!(text.contains("shared-label-1"), "{text}");

    // Expired: it stops matching on B too; its hits stay.
    while chrono::Utc::now() < expires {
        std::thread::sleep(Duration::from_millis(200));
    }
    let d = decide(&b, b_dir.path(), &call, 2);
    assert_eq!(d["flagged"], true, "{d}");
    b.wait_metric("warden_quarantines_opened_total", 1.0);
    assert_eq!(
        b.metric("warden_suppressed_calls_total{kind=\"alert\"}"),
        1.0
    );

    // A restart (B, on a fresh data dir) finds rules, hits and labels in Redis.
    b.stop();
    let c_dir = tempfile::tempdir().unwrap();
    let c = Service::start_env(&redis_config(c_dir.path(), &prefix), false, &env());
    let list = wait_rules(&c, "rule after restart", |l| l.to_string().contains(&id));
    assert_eq!(list["suppressions"][0]["hits"], 2, "{list}");
    assert_eq!(list["suppressions"][0]["expired"], true, "{list}");
    let (_, text) = c.admin("GET", "/v1/feedback", "");
    assert!(text.contains("shared-label-1"), "{text}");
    // Removed on C: gone on A.
    let (status, v) = admin(
        &c,
        "DELETE",
        &format!("/v1/suppressions/{id}"),
        &json!({"actor": "alice", "reason": "cleanup"}),
    );
    assert_eq!(status, 200, "{v}");
    wait_rules(&a, "removal reaches A", |l| !l.to_string().contains(&id));
    a.stop();
    c.stop();
}

/// `(method, path)` of every `.route(…)` in a router source file, in
/// OpenAPI path syntax.
fn routes_in_source(file: &str) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let mut out = BTreeSet::new();
    for chunk in text.split(".route(").skip(1) {
        let Some(path) = chunk.split('"').nth(1) else {
            continue;
        };
        let body = chunk.split(".route_layer(").next().unwrap_or(chunk);
        for method in ["get", "post", "put", "delete"] {
            let called = body.contains(&format!("{method}("))
                && (body.contains(&format!(" {method}("))
                    || body.contains(&format!("({method}("))
                    || body.contains(&format!(".{method}("))
                    || body.contains(&format!("::{method}(")));
            if called {
                out.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    out
}

#[test]
fn openapi_documents_exactly_the_admin_listener_routes() {
    let mut in_source = routes_in_source("src/service/http.rs");
    in_source.extend(routes_in_source("src/service/admin/mod.rs"));
    // Served on the ingest listener only.
    in_source.remove(&("post".to_owned(), "/v1/events".to_owned()));
    assert!(in_source.len() >= 15, "{in_source:?}");

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_env(&write_config(dir.path()), false, &env());
    let (status, doc) = read(&svc, "/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()));
            documented.insert((method.clone(), path.clone()));
        }
    }
    let undocumented: Vec<_> = in_source.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&in_source).collect();
    assert!(
        undocumented.is_empty(),
        "routes not in /openapi.json: {undocumented:?}"
    );
    assert!(
        missing.is_empty(),
        "documented routes not served: {missing:?}"
    );
    // And the running router answers each documented route (a 404 from
    // the router has no JSON body; 404 of a handler names what is missing).
    let auth = format!("Bearer {ADMIN}");
    for (method, path) in &documented {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let (status, body) = svc.admin_with(
            &method.to_uppercase(),
            &concrete,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            "{}",
        );
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            status != 404 || body.contains("error"),
            "{method} {path} is not routed: {status} {body}"
        );
    }
    svc.stop();
}
