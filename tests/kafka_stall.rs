//! A Kafka stream with a few bad messages interleaved, consumed by a real
//! `warden run` that alerts a Slack contract server and commits offsets
//! itself (no decisions topic), with more partitions (4) than workers (2):
//! every valid event is decided, every bad message is dead-lettered, and
//! the consumer lag reaches 0.
//!
//! This once stalled silently after the first commit: a commit round (the
//! dead-letter flush at the barrier, then lag queries that queue behind
//! fetches) took longer than `commit-interval`, so the next tick was
//! already due when it ended; the tick arm wins the source's biased select,
//! so `recv` was never polled again. `commit-interval` is at its minimum
//! (100 ms) here so that any slow round shows it.
#![cfg(feature = "integration-tests")]

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

mod common;
use common::contracts::ContractServer;
use common::*;

/// One message without a key: the source decodes it to find its worker.
fn produce_unkeyed(topic: &str, payload: &[u8]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    producer
        .send(BaseRecord::<(), [u8]>::to(topic).payload(payload))
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Messages on `topic`, read until `expect` came or 30 s passed.
fn count_messages(topic: &str, expect: usize) -> Vec<Vec<u8>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < expect && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    out
}

#[test]
fn bad_messages_with_slack_and_own_commits_do_not_stall_the_source() {
    let slack = ContractServer::slack();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("stall-events");
    let config = kafka_slack_config(dir.path(), "stall", &topic, "100ms", &slack.url());
    let lines = test_lines(0, 1200);
    let calls = tool_calls(&lines) as f64;
    let bad: Vec<&[u8]> = vec![
        b"{not json",
        br#"{"event_id":"b1","ts":"yesterday","agent_id":"a","tool":"t"}"#,
        b"\xff\xfe\x00",
    ];
    // Two keyed bad messages (the worker dead-letters them), as the
    // report had, then one unkeyed (the source dead-letters it).
    let mut sent = produce(&topic, &lines, &bad[..2]);
    assert_eq!(sent, 2);
    produce_unkeyed(&topic, bad[2]);
    sent += 1;
    let svc = Service::start(&config, true);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let decided = svc.metric("warden_decisions_total");
        let rejected = svc.metric("warden_rejected_total");
        let lag = svc.metric("warden_kafka_consumer_lag");
        let (_, metrics) = svc.admin("GET", "/metrics", "");
        let lag_seen = metrics.contains("warden_kafka_consumer_lag{");
        if decided >= calls && rejected >= sent as f64 && lag_seen && lag == 0.0 {
            break;
        }
        if Instant::now() > deadline {
            // The service's own log lines, without the alert texts.
            let log: Vec<String> = svc
                .log
                .try_iter()
                .filter(|l| {
                    l.starts_with("20") && !l.contains("ALERT") && !l.contains("quarantine")
                })
                .collect();
            panic!(
                "stalled: {decided} of {calls} decided, {rejected} rejected, lag {lag}\n{}\n{}",
                log[..log.len().min(60)].join("\n"),
                metrics
                    .lines()
                    .filter(|l| l.contains("lag")
                        || l.contains("checkpoint")
                        || l.contains("kafka")
                        || l.contains("dead"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(svc.metric("warden_decisions_total"), calls, "none doubled");
    // A slow round is counted (and logged), never silent.
    let (_, metrics) = svc.admin("GET", "/metrics", "");
    assert!(
        metrics.contains("warden_kafka_slow_commits_total "),
        "{metrics}"
    );
    svc.stop();

    let dead = count_messages(&format!("{topic}.dlq"), bad.len());
    assert_eq!(dead.len(), bad.len(), "every bad message dead-lettered");
    for b in &bad {
        assert!(
            dead.iter().any(|d| d.as_slice() == *b),
            "original bytes kept"
        );
    }
}
