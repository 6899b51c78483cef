use proptest::prelude::*;

use super::*;

const GOOD: &str = r#"{"event_id":"7c1e2f","ts":"2026-11-24T09:15:02.481Z","agent_id":"support-triage",
 "agent_instance":"support-triage-5d8f","principal":"user:alice@example.com",
 "session_id":"sess-91","tool":"send_email","resource_type":"email",
 "resource_id":"bob@example.com","action":"write",
 "args":{"recipients":["bob@example.com"],"subject":"Re: ticket 4411"},
 "credential_id":"tok-2291","origin":{"kind":"user_prompt","ref":"msg-3"},"future_field":[1,2]}"#;

fn err(s: &str) -> DecodeError {
    decode_str(s).unwrap_err()
}

#[test]
fn decodes_the_contract_example_borrowing() {
    let Event::ToolCall(c) = decode_str(GOOD).unwrap() else {
        panic!("not a call")
    };
    assert_eq!(c.event_id, "7c1e2f");
    assert!(
        matches!(c.agent_id, Cow::Borrowed(_)),
        "plain strings borrow"
    );
    let expect = chrono::DateTime::parse_from_rfc3339("2026-11-24T09:15:02.481Z").unwrap();
    assert_eq!(c.ts, expect.timestamp_millis());
    assert_eq!(c.action, Some(Action::Write));
    assert_eq!(c.resource_id.as_deref(), Some("bob@example.com"));
    assert_eq!(c.origin.unwrap().kind.as_deref(), Some("user_prompt"));
    assert!(c.args.unwrap().get().contains("recipients"));
}

#[test]
fn escaped_strings_are_unescaped() {
    let line = r#"{"event_id":"a\"b","ts":"2026-11-24T09:15:02Z","agent_id":"x","tool":"t\u00e9"}"#;
    let Event::ToolCall(c) = decode_str(line).unwrap() else {
        panic!()
    };
    assert_eq!(c.event_id, "a\"b");
    assert_eq!(c.tool, "té");
}

#[test]
fn missing_required_fields_are_named() {
    for field in ["event_id", "ts", "agent_id", "tool"] {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        v.as_object_mut().unwrap().remove(field);
        let e = err(&v.to_string());
        assert_eq!(e.kind, DecodeErrorKind::MissingField, "{field}");
        assert_eq!(e.field, Some(field));
        assert!(e.to_string().contains(field), "{e}");
    }
    let e = err(r#"{"event_id":"","ts":"2026-11-24T09:15:02Z","agent_id":"x","tool":"t"}"#);
    assert_eq!(
        (e.kind, e.field),
        (DecodeErrorKind::MissingField, Some("event_id"))
    );
}

#[test]
fn wrong_types_name_the_field() {
    let e = err(r#"{"event_id":5,"ts":"2026-11-24T09:15:02Z","agent_id":"x","tool":"t"}"#);
    assert_eq!(
        (e.kind, e.field),
        (DecodeErrorKind::WrongType, Some("event_id"))
    );
    let e =
        err(r#"{"event_id":"1","ts":"2026-11-24T09:15:02Z","agent_id":"x","tool":"t","args":[1]}"#);
    assert_eq!(
        (e.kind, e.field),
        (DecodeErrorKind::WrongType, Some("args"))
    );
    let e = err(
        r#"{"event_id":"1","ts":"2026-11-24T09:15:02Z","agent_id":"x","tool":"t","origin":"x"}"#,
    );
    assert_eq!(
        (e.kind, e.field),
        (DecodeErrorKind::WrongType, Some("origin"))
    );
}

#[test]
fn bad_values_and_timestamps() {
    let e = err(r#"{"event_id":"1","ts":"yesterday","agent_id":"x","tool":"t"}"#);
    assert_eq!(
        (e.kind, e.field),
        (DecodeErrorKind::BadTimestamp, Some("ts"))
    );
    assert!(e.to_string().contains("yesterday"));
    let e = err(
        r#"{"event_id":"1","ts":"2026-11-24T09:15:02Z","agent_id":"x","tool":"t","action":"update"}"#,
    );
    assert_eq!(
        (e.kind, e.field),
        (DecodeErrorKind::BadValue, Some("action"))
    );
    let e = err(r#"{"kind":"alert","event_id":"1","ts":"2026-11-24T09:15:02Z","agent_id":"x"}"#);
    assert_eq!((e.kind, e.field), (DecodeErrorKind::BadValue, Some("kind")));
    let e = err(
        r#"{"event_id":"1","event_id":"2","ts":"2026-11-24T09:15:02Z","agent_id":"x","tool":"t"}"#,
    );
    assert_eq!(
        (e.kind, e.field),
        (DecodeErrorKind::DuplicateField, Some("event_id"))
    );
}

#[test]
fn syntax_truncation_and_non_objects() {
    assert_eq!(err(&GOOD[..GOOD.len() / 2]).kind, DecodeErrorKind::Syntax);
    assert_eq!(err("not json").kind, DecodeErrorKind::Syntax);
    assert_eq!(err("[1,2]").kind, DecodeErrorKind::NotObject);
    assert_eq!(err("42").kind, DecodeErrorKind::NotObject);
    assert_eq!(
        err(&format!("{GOOD} trailing")).kind,
        DecodeErrorKind::Syntax
    );
}

#[test]
fn bytes_limits_and_utf8() {
    let e = decode_bytes(GOOD.as_bytes(), 10).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::TooLarge);
    let mut bad = GOOD.as_bytes().to_vec();
    bad[20] = 0xff;
    let e = decode_bytes(&bad, 1 << 20).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::NotUtf8);
    assert!(e.to_string().contains("byte 20"));
}

#[test]
fn context_kinds_are_accepted() {
    let p = r#"{"kind":"prompt","event_id":"p1","ts":"2026-11-24T09:15:00Z","agent_id":"a","session_id":"s","text":"hi","entities":["bob@x.com"]}"#;
    let Event::Context(c) = decode_str(p).unwrap() else {
        panic!()
    };
    assert_eq!(c.kind, EventKind::Prompt);
    assert_eq!(c.entities, vec!["bob@x.com"]);
    let r = r#"{"kind":"tool_result","event_id":"r1","ts":"2026-11-24T09:15:00Z","agent_id":"a","tool":"read_email","result":"..."}"#;
    let e = err(r);
    assert_eq!(
        (e.kind, e.field),
        (DecodeErrorKind::MissingField, Some("call_event_id"))
    );
}

fn event_strategy() -> impl Strategy<Value = (String, String, String, i64, Option<String>)> {
    (
        "[a-zA-Z0-9\"\\\\é -]{1,20}",
        "[a-z_]{1,12}",
        "[a-z0-9@.\"-]{0,30}",
        0i64..4_000_000_000_000,
        proptest::option::of(prop_oneof![
            Just("read".to_owned()),
            Just("write".to_owned()),
            Just("admin".to_owned())
        ]),
    )
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_bytes(&bytes, 300);
    }

    #[test]
    fn never_panics_on_mutated_events(cut in 0usize..400, flip in 0usize..400, byte in any::<u8>()) {
        let mut b = GOOD.as_bytes().to_vec();
        let i = flip % b.len();
        b[i] = byte;
        b.truncate(cut.max(1));
        let _ = decode_bytes(&b, 1 << 16);
    }

    #[test]
    fn valid_events_round_trip((id, tool, rid, ts, action) in event_strategy()) {
        let mut v = serde_json::json!({
            "event_id": id, "ts": crate::test_util::rfc3339(ts), "agent_id": "agent",
            "tool": tool, "resource_id": rid,
        });
        if let Some(a) = &action {
            v["action"] = serde_json::json!(a);
        }
        let line = v.to_string();
        let Event::ToolCall(c) = decode_str(&line).unwrap() else { panic!() };
        prop_assert_eq!(c.event_id.as_ref(), id.as_str());
        prop_assert_eq!(c.tool.as_ref(), tool.as_str());
        prop_assert_eq!(c.ts, ts);
        prop_assert_eq!(c.resource_id.as_deref(), Some(rid.as_str()));
        prop_assert_eq!(c.action.map(Action::as_str), action.as_deref());
    }
}

#[test]
fn every_invalid_field_is_named() {
    let bad =
        br#"{"event_id":7,"ts":"yesterday","agent_id":"a","tool":"t","action":"fly","args":[1]}"#;
    let all = super::problems(bad, 65536);
    let fields: Vec<_> = all.iter().map(|e| (e.kind, e.field)).collect();
    assert_eq!(
        fields,
        vec![
            (DecodeErrorKind::WrongType, Some("event_id")),
            (DecodeErrorKind::WrongType, Some("args")),
            (DecodeErrorKind::BadTimestamp, Some("ts")),
            (DecodeErrorKind::BadValue, Some("action")),
        ]
    );
    // The first is what the fast path reports; a valid event has none.
    assert_eq!(all[0], err(std::str::from_utf8(bad).unwrap()));
    assert!(super::problems(GOOD.as_bytes(), 65536).is_empty());
    // Missing fields of a tool result are all named.
    let all = super::problems(
        br#"{"kind":"tool_result","ts":"2026-11-24T09:15:02Z"}"#,
        65536,
    );
    let fields: Vec<_> = all.iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        vec![Some("event_id"), Some("agent_id"), Some("call_event_id")]
    );
}
