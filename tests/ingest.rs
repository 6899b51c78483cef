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
