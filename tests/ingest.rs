//! HTTP ingest of `warden run` decodes each event once: the request's
//! events are decoded to validate and route them, and the workers read
//! those same decoded events instead of decoding again.
#![cfg(feature = "integration-tests")]

use std::io::BufRead;

mod common;
use common::*;

#[test]
fn http_ingest_decodes_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\nworkers = 2\ndata-dir = {:?}\ndecisions-file = \"\"\n",
            dir.path().join("state")
        ),
    )
    .unwrap();
    let svc = Service::start(&config, true);
    let train_lines = std::io::BufReader::new(flate2::read::GzDecoder::new(
        std::fs::File::open(data("train.jsonl.gz")).unwrap(),
    ))
    .lines()
    .count();
    assert_eq!(
        svc.metric("warden_test_decoded_total") as usize,
        train_lines
    );

    let lines = test_lines(0, 2000);
    let bad = "{\"event_id\":\"x\",\"ts\":\"yesterday\",\"agent_id\":\"a\",\"tool\":\"t\"}\n";
    let (status, body) = svc.request("POST", "/v1/events", &format!("{lines}{bad}"));
    assert_eq!(status, 202, "{body}");
    svc.wait_metric("warden_decisions_total", tool_calls(&lines) as f64);
    assert_eq!(
        svc.metric("warden_test_decoded_total") as usize,
        train_lines + lines.lines().count() + 1,
        "each posted event decoded once, the bad one too"
    );
    svc.stop();
}

/// Ingest answers with the status that fits and a JSON body every time:
/// 202 when some events are taken, 422 when none is, 400 for a body that
/// holds no event, 413 naming the limit and its key, 415 for a declared
/// type that is not JSON or NDJSON; every invalid field of an event named.
#[test]
fn ingest_answers_say_what_was_wrong_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nmax-event-bytes = 1024\n[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\nmax-body-bytes = 4096\ndata-dir = {:?}\ndecisions-file = \"\"\n",
            dir.path().join("state")
        ),
    )
    .unwrap();
    let svc = Service::start(&config, false);
    // The start-up log says what is switched on, one line each.
    for (what, field) in [
        ("Modes:", "default=shadow"),
        ("Sources:", "kafka=off"),
        ("Revokers:", "revokers=none"),
        ("Notifiers:", "notifiers=log"),
        ("State:", "profiles="),
    ] {
        let line = svc.startup.iter().find(|l| l.contains(what));
        assert!(
            line.is_some_and(|l| l.contains(field)),
            "{what} {field}: {:?}",
            svc.startup
        );
    }
    let good = r#"{"event_id":"g1","ts":"2026-11-24T09:15:02Z","agent_id":"a","tool":"t"}"#;
    let bad = r#"{"event_id":7,"ts":"yesterday","agent_id":"a","tool":"t","action":"fly"}"#;
    let json = |body: &str| -> serde_json::Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    };
    let ndjson = [("Content-Type", "application/x-ndjson")];

    // Some taken: 202, and all three problems of the bad one named.
    let (status, body) =
        svc.request_with("POST", "/v1/events", &ndjson, &format!("{good}\n{bad}\n"));
    assert_eq!(status, 202, "{body}");
    let reply = json(&body);
    assert_eq!(
        (reply["accepted"].as_u64(), reply["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    let fields: Vec<&str> = reply["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["index"], 1, "{e}");
            e["field"].as_str().unwrap()
        })
        .collect();
    assert_eq!(fields, ["event_id", "ts", "action"], "{body}");

    // None taken: 422 with the same body.
    let (status, body) = svc.request_with(
        "POST",
        "/v1/events",
        &[("Content-Type", "application/json; charset=utf-8")],
        &format!("[{bad},{bad}]"),
    );
    assert_eq!(status, 422, "{body}");
    let reply = json(&body);
    assert_eq!(
        (reply["accepted"].as_u64(), reply["rejected"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(reply["errors"].as_array().unwrap().len(), 6, "{body}");

    // No event, or not an array: 400, JSON.
    for body in ["", "\n \n", "[1,"] {
        let (status, reply) = svc.request("POST", "/v1/events", body);
        assert_eq!(status, 400, "{body:?}: {reply}");
        assert!(json(&reply)["error"].is_string(), "{reply}");
    }

    // Too large: 413 naming the limit and the key.
    let (status, body) = svc.request("POST", "/v1/events", &format!("{good}\n").repeat(100));
    assert_eq!(status, 413, "{body}");
    let reply = json(&body);
    assert_eq!(reply["key"], "server.max-body-bytes");
    assert_eq!(reply["limit_bytes"], 4096);
    assert!(reply["error"].as_str().unwrap().contains("4096"), "{body}");

    // curl's default form type, or plain text: 415.
    for ct in ["application/x-www-form-urlencoded", "text/plain"] {
        let (status, body) = svc.request_with("POST", "/v1/events", &[("Content-Type", ct)], good);
        assert_eq!(status, 415, "{ct}: {body}");
        assert!(json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("application/x-ndjson"));
    }

    // A bad query string, an unknown route: JSON too.
    let (status, body) = svc.admin("GET", "/v1/quarantines?limit=abc", "");
    assert_eq!(status, 400, "{body}");
    assert!(
        json(&body)["error"].as_str().unwrap().contains("limit"),
        "{body}"
    );
    let (status, body) = svc.admin("GET", "/v1/nothing", "");
    assert_eq!(status, 404, "{body}");
    assert!(json(&body)["error"].is_string());
    svc.stop();
}
