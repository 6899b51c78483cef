//! Integration test of `warden generate`: determinism, the event contract
//! (EVENTS.md), labels, and the committed replay sets.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde_json::Value;
use warden::generate::{
    generate, GenerateError, GenerateOptions, Suite, ASSISTANT_SCENARIOS, CUSTOMER_SCENARIOS,
    SCENARIOS,
};

const SLUGS: &[&str] = &[
    "exfil-new-recipient",
    "payment-new-account",
    "mass-deletion",
    "privilege-change",
    "secret-then-send",
    "scraping-burst",
    "off-hours",
    "unknown-order",
    "lookalike-exfil",
    "never-used-tool",
    "amount-anomaly",
    "recipient-fanout",
];

const FILES: &[&str] = &["train.jsonl.gz", "test.jsonl.gz", "labels.jsonl"];

fn small(seed: u64, dir: &Path) -> GenerateOptions {
    GenerateOptions {
        seed,
        out_dir: dir.to_path_buf(),
        train_days: 3,
        test_days: 2,
        attacks_per_scenario: 2,
        suite: Suite::Fleet,
    }
}

fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_gz_lines(path: &Path) -> Vec<Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(read_bytes(path).as_slice())
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_lines(&text, path)
}

fn parse_lines(text: &str, path: &Path) -> Vec<Value> {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}:{}: {e}: {l}", path.display(), i + 1))
        })
        .collect()
}

fn str_field<'a>(e: &'a Value, key: &str) -> &'a str {
    e.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("missing string field {key:?} in {e}"))
}

fn kind(e: &Value) -> &str {
    e.get("kind").and_then(Value::as_str).unwrap_or("tool_call")
}

/// Checks one event file against EVENTS.md and returns its tool-call ids.
fn check_events(events: &[Value], all_ids: &mut BTreeSet<String>) -> BTreeSet<String> {
    let mut calls = BTreeSet::new();
    // Earlier events of this file: id -> (kind, session).
    let mut seen_here: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut last_ts = String::new();
    for e in events {
        let id = str_field(e, "event_id").to_string();
        assert!(all_ids.insert(id.clone()), "duplicate event_id {id}");
        let ts = str_field(e, "ts");
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z') && ts.len() == 24,
            "ts {ts} is not RFC 3339 UTC with milliseconds"
        );
        assert!(ts >= last_ts.as_str(), "events not sorted by ts at {id}");
        last_ts = ts.to_string();
        str_field(e, "agent_id");
        str_field(e, "agent_instance");
        let session = str_field(e, "session_id");
        let earlier = |r: &str| seen_here.get(r).map(|(k, s)| (k.as_str(), s.as_str()));
        match kind(e) {
            "tool_call" => {
                for key in [
                    "tool",
                    "resource_type",
                    "resource_id",
                    "action",
                    "credential_id",
                    "trace_id",
                    "principal",
                ] {
                    assert!(!str_field(e, key).is_empty(), "{key} empty in {e}");
                }
                let action = str_field(e, "action");
                assert!(
                    ["read", "write", "delete", "execute", "admin"].contains(&action),
                    "bad action {action}"
                );
                assert!(e["args"].is_object(), "args not an object in {e}");
                if let Some(origin) = e.get("origin") {
                    let k = str_field(origin, "kind");
                    str_field(origin, "ref");
                    if k == "tool_output" {
                        let r = str_field(origin, "ref");
                        assert_eq!(
                            earlier(r),
                            Some(("tool_result", session)),
                            "origin ref {r} is not an earlier tool_result of the session"
                        );
                        assert!(str_field(origin, "excerpt").chars().count() <= 120);
                    } else {
                        assert_eq!(k, "user_prompt");
                    }
                }
                calls.insert(id.clone());
            }
            "prompt" => {
                assert!(str_field(e, "text").chars().count() <= 120);
            }
            "tool_result" => {
                let call = str_field(e, "call_event_id");
                assert_eq!(
                    earlier(call),
                    Some(("tool_call", session)),
                    "result {id} answers {call}, not an earlier call of the session"
                );
                str_field(e, "tool");
                assert!(str_field(e, "result").chars().count() <= 120);
                assert_eq!(str_field(e, "trust"), "untrusted");
            }
            other => panic!("unknown kind {other}"),
        }
        if let Some(ents) = e.get("entities") {
            assert!(ents
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)));
        }
        seen_here.insert(id, (kind(e).to_string(), session.to_string()));
    }
    calls
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let c = tempfile::tempdir().expect("tempdir");
    generate(&small(5, a.path())).expect("generate a");
    generate(&small(5, b.path())).expect("generate b");
    generate(&small(6, c.path())).expect("generate c");
    for f in FILES {
        let (x, y, z) = (
            read_bytes(&a.path().join(f)),
            read_bytes(&b.path().join(f)),
            read_bytes(&c.path().join(f)),
        );
        assert!(!x.is_empty(), "{f} is empty");
        assert_eq!(x, y, "{f} differs between two runs with the same seed");
        assert_ne!(x, z, "{f} is identical for two different seeds");
    }
}

#[test]
fn files_follow_the_event_contract_and_labels_point_at_test_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate(&small(42, dir.path())).expect("generate");
    let train = read_gz_lines(&dir.path().join("train.jsonl.gz"));
    let test = read_gz_lines(&dir.path().join("test.jsonl.gz"));
    let labels_path = dir.path().join("labels.jsonl");
    let labels = parse_lines(
        &String::from_utf8(read_bytes(&labels_path)).expect("utf-8"),
        &labels_path,
    );

    assert_eq!(summary.train_events, train.len());
    assert_eq!(summary.test_events, test.len());
    assert_eq!(summary.attack_calls, labels.len());
    assert_eq!(summary.attacked_sessions, SLUGS.len() * 2);
    assert!(summary.agents >= 21);

    let mut ids = BTreeSet::new();
    let train_calls = check_events(&train, &mut ids);
    let test_calls = check_events(&test, &mut ids);
    assert!(!train_calls.is_empty() && !test_calls.is_empty());
    // Train covers the first 3 days, test the next 2 (sessions started
    // before midnight may finish just after it).
    assert!(str_field(&train[0], "ts") >= "2026-10-05T00:00:00.000Z");
    assert!(str_field(&test[0], "ts") >= "2026-10-08T00:00:00.000Z");
    assert!(str_field(&test[test.len() - 1], "ts") < "2026-10-10T01:00:00.000Z");

    let mut scenarios = BTreeSet::new();
    let mut labelled = BTreeSet::new();
    for l in &labels {
        let id = str_field(l, "event_id");
        assert_eq!(l["attack"], Value::Bool(true));
        assert!(
            test_calls.contains(id),
            "label {id} is not a tool_call of test"
        );
        assert!(!train_calls.contains(id), "train holds attack {id}");
        assert!(labelled.insert(id.to_string()), "{id} labelled twice");
        scenarios.insert(str_field(l, "scenario").to_string());
    }
    let expected: BTreeSet<String> = SLUGS.iter().map(|s| s.to_string()).collect();
    assert_eq!(scenarios, expected);
    let exported: BTreeSet<String> = SCENARIOS.iter().map(|s| s.to_string()).collect();
    assert_eq!(exported, expected);

    // Each attacked session shows its injection first: some attack call's
    // new value appears in an earlier tool_result of the same session.
    let injected = test
        .iter()
        .filter(|e| kind(e) == "tool_call")
        .filter(|e| e["origin"]["kind"] == "tool_output")
        .count();
    assert!(
        injected * 2 > labels.len(),
        "too few calls cite the injection"
    );
}

#[test]
fn invalid_options_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (train, test, attacks) in [(0, 2, 2), (3, 0, 2), (300, 300, 2), (3, 2, 1_000_000)] {
        let opts = GenerateOptions {
            train_days: train,
            test_days: test,
            attacks_per_scenario: attacks,
            ..small(1, dir.path())
        };
        assert!(matches!(
            generate(&opts),
            Err(GenerateError::InvalidOptions(_))
        ));
    }
    // An output path under a regular file cannot be created.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let opts = small(1, &file.join("out"));
    assert!(matches!(generate(&opts), Err(GenerateError::Io { .. })));
}

/// The committed sets are exactly what `warden generate --seed N` writes
/// with the defaults. `WARDEN_REGENERATE=1` rewrites them instead.
/// Ignored by default: it generates two full data sets (a few seconds each).
#[test]
#[ignore]
fn committed_replay_sets_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-data");
    let regenerate = std::env::var_os("WARDEN_REGENERATE").is_some();
    for (dir, seed, suite) in [
        ("seed-7", 7u64, Suite::Fleet),
        ("seed-11", 11, Suite::Fleet),
        ("customers-11", 11, Suite::Customers),
        ("heldout-13", 13, Suite::Heldout),
    ] {
        let committed = root.join(dir);
        let opts = |out: &Path| GenerateOptions {
            suite,
            ..GenerateOptions::with_defaults(seed, out)
        };
        if regenerate {
            generate(&opts(&committed)).expect("generate");
            continue;
        }
        let fresh = tempfile::tempdir().expect("tempdir");
        generate(&opts(fresh.path())).expect("generate");
        for f in FILES {
            assert!(
                read_bytes(&committed.join(f)) == read_bytes(&fresh.path().join(f)),
                "replay-data/{dir}/{f} is stale: run WARDEN_REGENERATE=1 cargo test --test generate -- --ignored"
            );
        }
    }
}

/// The multi-customer and held-out suites: deterministic, every call has a
/// principal, hundreds of principals per customer-facing agent, new ones
/// every test day, and every scenario of the suite present.
#[test]
fn customer_suites_serve_many_principals() {
    for (suite, scenarios) in [
        (Suite::Customers, CUSTOMER_SCENARIOS.to_vec()),
        (
            Suite::Heldout,
            [CUSTOMER_SCENARIOS, ASSISTANT_SCENARIOS].concat(),
        ),
    ] {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let opts = |dir: &Path| GenerateOptions {
            suite,
            ..GenerateOptions::with_defaults(5, dir)
        };
        generate(&opts(a.path())).expect("generate");
        generate(&opts(b.path())).expect("generate");
        for f in FILES {
            assert!(
                read_bytes(&a.path().join(f)) == read_bytes(&b.path().join(f)),
                "{f} differs between two runs of one seed"
            );
        }
        let train = read_gz_lines(&a.path().join("train.jsonl.gz"));
        let test = read_gz_lines(&a.path().join("test.jsonl.gz"));
        let mut principals: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for e in train.iter().chain(&test).filter(|e| kind(e) == "tool_call") {
            principals
                .entry(str_field(e, "agent_id"))
                .or_default()
                .insert(str_field(e, "principal"));
        }
        let busiest = principals.values().map(BTreeSet::len).max().unwrap_or(0);
        assert!(
            busiest >= 300,
            "{suite:?}: at most {busiest} principals per agent"
        );
        let train_principals: BTreeSet<&str> = train
            .iter()
            .filter_map(|e| e.get("principal").and_then(Value::as_str))
            .collect();
        let new_in_test = test
            .iter()
            .filter_map(|e| e.get("principal").and_then(Value::as_str))
            .filter(|p| !train_principals.contains(p))
            .collect::<BTreeSet<_>>()
            .len();
        assert!(
            new_in_test >= 100,
            "{suite:?}: {new_in_test} new principals in test"
        );
        let labels = parse_lines(
            &String::from_utf8(read_bytes(&a.path().join("labels.jsonl"))).expect("utf-8"),
            &a.path().join("labels.jsonl"),
        );
        let seen: BTreeSet<&str> = labels.iter().map(|l| str_field(l, "scenario")).collect();
        for sc in scenarios {
            assert!(seen.contains(sc), "{suite:?}: no {sc} attack");
        }
    }
}
