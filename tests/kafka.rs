//! `warden run` consuming from a real Kafka broker (scripts/kafka.sh):
//! every valid event gets exactly one decision on the decisions topic, bad
//! messages land in the dead-letter topic with their reason and original
//! bytes, and offsets are committed once the state is checkpointed.
#![cfg(feature = "integration-tests")]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

mod common;
use common::*;

/// One record read back: key, payload, headers.
type Record = (Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Reads a whole topic (bounded in time).
fn read_all(topic: &str, expect: usize) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Until `expect` records have come (bounded), then 2 s more so that any
    // record beyond them is seen too.
    let mut settle: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if out.len() >= expect && settle.is_none() {
            settle = Some(now + Duration::from_secs(2));
        }
        if now > deadline || settle.is_some_and(|s| now > s) {
            break;
        }
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_owned(), x.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
                headers,
            ));
        }
    }
    out
}

fn write_config(
    dir: &std::path::Path,
    topic: &str,
    group: &str,
    decisions: &str,
) -> std::path::PathBuf {
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\ndata-dir = {:?}\ndecisions-file = \"\"\n\
             [kafka]\nenabled = true\nbrokers = {:?}\ntopic = {:?}\ngroup = {:?}\ndecisions-topic = {:?}\n\
             commit-interval = \"500ms\"\ninstance-id = \"test\"\n",
            dir.join("state"),
            brokers(),
            topic,
            group,
            decisions
        ),
    )
    .unwrap();
    config
}

/// Event ids of the decisions on a topic (read committed), checking keys.
fn decided_ids(topic: &str, expect: usize) -> Vec<String> {
    read_all(topic, expect)
        .iter()
        .map(|(k, p, _)| {
            let d: serde_json::Value = serde_json::from_slice(p).unwrap();
            assert_eq!(d["agent_id"].as_str().unwrap().as_bytes(), k.as_slice());
            d["event_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Every one of `total` calls has exactly one committed decision.
fn assert_one_decision_each(ids: &[String], total: usize) {
    let unique_ids: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique_ids.len(), total, "no event without a decision");
    assert_eq!(ids.len(), total, "no duplicate decision");
}

#[test]
fn kill_9_mid_stream_loses_no_event_and_doubles_no_decision() {
    let topic = unique("tool-calls");
    let decisions_topic = unique("decisions");
    let group = unique("warden");
    let lines = test_lines(0, 6000);
    produce(&topic, &lines, &[]);
    let calls = tool_calls(&lines);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &topic, &group, &decisions_topic);

    let mut svc = Service::start(&config, true);
    svc.wait_metric("warden_decisions_total", (calls / 3) as f64);
    svc.child.kill().unwrap(); // SIGKILL: no drain, no final checkpoint
    svc.child.wait().unwrap();

    let svc = Service::start(&config, false);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ids = decided_ids(&decisions_topic, 0);
        if ids.len() >= calls || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    svc.stop();
    let ids = decided_ids(&decisions_topic, calls);
    assert_one_decision_each(&ids, calls);
    // The flags replayed after the kill found the quarantines recorded
    // before it: no agent instance has two open incidents, and no
    // credential is listed twice.
    let mut keys = std::collections::HashMap::new();
    let mut credentials = std::collections::HashMap::new();
    let open = warden::respond::registry::Registry::file(&dir.path().join("state"))
        .unwrap()
        .open_quarantines()
        .unwrap();
    for q in open {
        {
            let q = serde_json::to_value(&q).unwrap();
            let key = q["key"].as_str().unwrap().to_owned();
            let want = format!(
                "{}/instance/{}",
                q["agent_id"].as_str().unwrap(),
                q["agent_instance"].as_str().unwrap()
            );
            assert_eq!(key, want, "one incident per agent instance");
            *keys.entry(key).or_insert(0) += 1;
            for c in q["credentials"].as_array().unwrap() {
                *credentials
                    .entry(c["fingerprint"].as_str().unwrap().to_owned())
                    .or_insert(0) += 1;
            }
        }
    }
    let twice: Vec<_> = credentials.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "a credential was listed twice: {twice:?}");
    assert!(!keys.is_empty(), "the stream holds flagged calls");
    let doubled: Vec<_> = keys.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "a quarantine was repeated: {doubled:?}");

    // Profiles continued from the checkpoint: an uninterrupted run over the
    // same stream decides the same way. Only sessions open at the kill lost
    // their not-yet-learned calls and their context.
    let clean_dir = tempfile::tempdir().unwrap();
    let clean_topic = unique("decisions-clean");
    let clean = Service::start(
        &write_config(
            clean_dir.path(),
            &topic,
            &unique("warden-clean"),
            &clean_topic,
        ),
        true,
    );
    clean.wait_metric("warden_decisions_total", calls as f64);
    std::thread::sleep(Duration::from_secs(1));
    clean.stop();
    let scores = |topic: &str| -> std::collections::HashMap<String, (f64, bool)> {
        read_all(topic, calls)
            .iter()
            .map(|(_, p, _)| {
                let d: serde_json::Value = serde_json::from_slice(p).unwrap();
                let id = d["event_id"].as_str().unwrap().to_owned();
                (
                    id,
                    (
                        d["score"].as_f64().unwrap(),
                        d["flagged"].as_bool().unwrap(),
                    ),
                )
            })
            .collect()
    };
    let (killed, uninterrupted) = (scores(&decisions_topic), scores(&clean_topic));
    let same_score = killed
        .iter()
        .filter(|(id, (s, _))| (uninterrupted[*id].0 - s).abs() < 0.5)
        .count();
    let same_flag = killed
        .iter()
        .filter(|(id, (_, f))| uninterrupted[*id].1 == *f)
        .count();
    eprintln!("kill -9 vs uninterrupted: {same_score}/{calls} scores within 0.5 bit, {same_flag}/{calls} same flag");
    let mut diffs: Vec<_> = killed
        .iter()
        .filter(|(id, (s, _))| (uninterrupted[*id].0 - s).abs() >= 0.5)
        .map(|(id, (s, _))| (id.clone(), *s, uninterrupted[id].0))
        .collect();
    diffs.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        same_score * 100 >= calls * 95,
        "{same_score}/{calls} scores within 0.5 bit; e.g. {:?}",
        &diffs[..diffs.len().min(12)]
    );
    assert!(
        same_flag * 100 >= calls * 99,
        "{same_flag}/{calls} same flag"
    );
}

#[test]
fn kafka_events_get_exactly_one_decision_and_bad_ones_a_dead_letter() {
    let topic = unique("tool-calls");
    let decisions_topic = unique("decisions");
    let group = unique("warden");
    let lines = test_lines(0, 4000);
    let bad: Vec<&[u8]> = vec![
        b"{not json",
        br#"{"event_id":"b1","ts":"yesterday","agent_id":"a","tool":"t"}"#,
        b"\xff\xfe\x00",
    ];
    let mut sent = produce(&topic, &lines, &bad);
    let mut calls = tool_calls(&lines);
    // A valid event keyed by another id than its agent_id (it could sit on
    // another instance's partition: two writers of one profile) is a dead
    // letter; a valid event without a key is decided.
    let mismatched = r#"{"event_id":"k-1","ts":"2026-10-27T10:00:00Z","agent_id":"mail-assist-acme","tool":"read_email"}"#;
    let unkeyed = r#"{"event_id":"k-2","ts":"2026-10-27T10:00:01Z","agent_id":"mail-assist-acme","tool":"read_email"}"#;
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    producer
        .send(
            rdkafka::producer::BaseRecord::to(&topic)
                .key("someone-else")
                .payload(mismatched),
        )
        .unwrap();
    producer
        .send(rdkafka::producer::BaseRecord::<(), str>::to(&topic).payload(unkeyed))
        .unwrap();
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
    sent += 1;
    calls += 1;

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &topic, &group, &decisions_topic);
    let svc = Service::start(&config, true);
    svc.wait_metric("warden_decisions_total", calls as f64);
    svc.wait_metric("warden_rejected_total", sent as f64);
    // Each message was decoded once, by the worker that decided it (the
    // training file's lines once each before that); only the message
    // without a key was also decoded to find its worker.
    let train_lines = std::io::BufRead::lines(std::io::BufReader::new(
        flate2::read::GzDecoder::new(std::fs::File::open(data("train.jsonl.gz")).unwrap()),
    ))
    .count();
    let stream = lines.lines().count() + sent + 1;
    assert_eq!(
        svc.metric("warden_test_decoded_total") as usize,
        train_lines + stream + 1,
        "every event decoded once"
    );
    // Let a barrier pass, so offsets are committed before we stop.
    std::thread::sleep(Duration::from_millis(1500));
    svc.stop();

    // Exactly one decision per tool call, keyed by agent.
    let decisions = read_all(&decisions_topic, calls);
    assert_eq!(
        decisions.len(),
        calls,
        "one decision per event, none doubled"
    );
    let ids: HashSet<String> = decisions
        .iter()
        .map(|(k, p, _)| {
            let d: serde_json::Value = serde_json::from_slice(p).unwrap();
            assert_eq!(d["agent_id"].as_str().unwrap().as_bytes(), k.as_slice());
            d["event_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), calls);

    // Dead letters: original bytes and the reason.
    let dead = read_all(&format!("{topic}.dlq"), sent);
    assert_eq!(dead.len(), sent);
    let kinds: Vec<&[u8]> = dead
        .iter()
        .flat_map(|(_, _, h)| h.iter().filter(|(k, _)| k == "warden-error-kind"))
        .map(|(_, v)| v.as_slice())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == b"key_mismatch").count(),
        1,
        "{kinds:?}"
    );
    for (_, payload, headers) in &dead {
        assert!(
            bad.contains(&payload.as_slice()) || payload == mismatched.as_bytes(),
            "original bytes kept"
        );
        let reason = headers.iter().find(|(k, _)| k == "warden-error").unwrap();
        assert!(!reason.1.is_empty());
        assert!(headers.iter().any(|(k, _)| k == "warden-source-offset"));
    }

    // Offsets were committed to the end of every partition.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", &group)
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(&topic, p.id());
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    let mut total = 0;
    for e in committed.elements() {
        let (_, high) = c
            .fetch_watermarks(&topic, e.partition(), Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            e.offset(),
            Offset::Offset(high),
            "partition {} committed to its end",
            e.partition()
        );
        total += high;
    }
    assert_eq!(total as usize, lines.lines().count() + sent + 1);
}

/// Config of one instance of a group sharing profiles through Redis.
fn group_config(
    dir: &std::path::Path,
    topic: &str,
    group: &str,
    decisions: &str,
    prefix: &str,
) -> std::path::PathBuf {
    let config = dir.join("warden.toml");
    let instance = dir.file_name().unwrap().to_string_lossy().to_string();
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\ndata-dir = {:?}\ndecisions-file = \"\"\n\
             [kafka]\nenabled = true\nbrokers = {:?}\ntopic = {:?}\ngroup = {:?}\ndecisions-topic = {:?}\n\
             commit-interval = \"500ms\"\ninstance-id = {:?}\n\
             [redis]\nenabled = true\nurl = {:?}\nkey-prefix = {:?}\n",
            dir.join("state"),
            brokers(),
            topic,
            group,
            decisions,
            instance,
            std::env::var("WARDEN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            prefix
        ),
    )
    .unwrap();
    config
}

#[test]
fn instances_join_and_leave_without_losing_or_doubling_a_decision() {
    let topic = unique("tool-calls");
    let decisions_topic = unique("decisions");
    let group = unique("warden");
    let prefix = unique("warden-group");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cfg = |i: usize| group_config(dirs[i].path(), &topic, &group, &decisions_topic, &prefix);

    let chunks = [
        test_lines(0, 3000),
        test_lines(3000, 3000),
        test_lines(6000, 2000),
    ];
    let total: usize = chunks.iter().map(|c| tool_calls(c)).sum();

    produce(&topic, &chunks[0], &[]);
    let a = Service::start(&cfg(0), true); // learns the history into Redis
    let b = Service::start(&cfg(1), false); // joins: partitions move
    std::thread::sleep(Duration::from_secs(3));
    produce(&topic, &chunks[1], &[]);
    let c = Service::start(&cfg(2), false); // a third joins
    std::thread::sleep(Duration::from_secs(3));
    let a_logs = a.stop(); // one leaves
    assert!(
        a_logs.iter().any(|l| l.contains("Partitions revoked")),
        "joins made the group rebalance: {a_logs:?}"
    );
    produce(&topic, &chunks[2], &[]);

    let deadline = Instant::now() + Duration::from_secs(120);
    while decided_ids(&decisions_topic, 0).len() < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    b.stop();
    c.stop();
    let ids = decided_ids(&decisions_topic, total);
    assert_one_decision_each(&ids, total);
}

/// A stop whose last commit cannot happen (here: no worker can write its
/// checkpoint) aborts the open decisions transaction instead of leaving it
/// to block read_committed readers for kafka.transaction-timeout, and keeps
/// the last committed state: the next start decides those events again,
/// and every call has exactly one committed decision.
#[test]
fn a_stop_that_cannot_commit_aborts_and_the_next_start_replays() {
    let topic = unique("tool-calls");
    let decisions_topic = unique("decisions");
    let group = unique("warden");
    let first = test_lines(0, 1500);
    let second = test_lines(1500, 1500);
    let total = tool_calls(&first) + tool_calls(&second);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &topic, &group, &decisions_topic);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[server]\n", "[server]\nshutdown-grace = \"3s\"\n");
    std::fs::write(&config, text).unwrap();

    produce(&topic, &first, &[]);
    let svc = Service::start(&config, true);
    svc.wait_metric_for(
        "warden_decisions_total",
        tool_calls(&first) as f64,
        Duration::from_secs(90),
    );
    // A commit round (500 ms) after the last decision has passed.
    std::thread::sleep(Duration::from_secs(2));
    // The state directory becomes a file: checkpoints fail from here on
    // (files held open, like the incident journal, write on).
    let state = dir.path().join("state");
    let aside = dir.path().join("state.aside");
    std::fs::rename(&state, &aside).unwrap();
    std::fs::write(&state, b"not a directory").unwrap();
    produce(&topic, &second, &[]);
    svc.wait_metric_for(
        "warden_decisions_total",
        total as f64,
        Duration::from_secs(90),
    );
    let logs = svc.stop();
    assert!(
        logs.iter()
            .any(|l| l.contains("without committing its last offsets")),
        "the stop says it could not commit: {}",
        logs.join("\n")
    );
    assert!(
        !logs.iter().any(|l| l.contains("offsets committed")),
        "no commit is claimed"
    );

    std::fs::remove_file(&state).unwrap();
    std::fs::rename(&aside, &state).unwrap();
    let svc = Service::start(&config, false);
    svc.wait_metric_for(
        "warden_decisions_total",
        tool_calls(&second) as f64,
        Duration::from_secs(90),
    );
    std::thread::sleep(Duration::from_secs(1));
    svc.stop();
    let ids = decided_ids(&decisions_topic, total);
    assert_one_decision_each(&ids, total);
}
