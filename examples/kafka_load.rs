//! Load test of `warden run` through real Kafka (driven by
//! scripts/bench-kafka.sh): produces N events from M agents, made by
//! replicating the report split's test stream under new agent and event
//! ids, and reads the decisions topic (read committed) until every event
//! has one. Prints produce rate, end-to-end throughput, and
//! produce-to-decision latency percentiles from HdrHistogram, using the
//! Kafka timestamps of the source event and of its decision.
//!
//! cargo run --release --example kafka_load -- BROKERS TOPIC DECISIONS_TOPIC EVENTS AGENTS [RATE]
//!
//! RATE (events/s) paces the producer; without it the producer runs flat
//! out and latency measures queueing behind its backlog. The reader only
//! reads the decisions topic, so Warden may start after the events are all
//! produced (scripts/bench-kafka.sh with WARDEN_BENCH_BACKLOG=1): the
//! first-to-last decision rate is then Warden's alone.

use std::collections::HashMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, topic, decisions, events, agents, rate) = match &args[..] {
        [_, b, t, d, e, a] => (b, t, d, e, a, None),
        [_, b, t, d, e, a, r] => (
            b,
            t,
            d,
            e,
            a,
            Some(r.parse::<f64>().expect("RATE is a number")),
        ),
        _ => {
            eprintln!("usage: kafka_load BROKERS TOPIC DECISIONS_TOPIC EVENTS AGENTS [RATE]");
            std::process::exit(64);
        }
    };
    let events: usize = events.parse().expect("EVENTS is a number");
    let agents: usize = agents.parse().expect("AGENTS is a number");

    let path = format!(
        "{}/replay-data/seed-11/test.jsonl.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let f = std::fs::File::open(&path).expect("replay data");
    let base: Vec<serde_json::Value> = std::io::BufReader::new(flate2::read::GzDecoder::new(f))
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let base_agents = 27usize;
    let copies = agents.div_ceil(base_agents).max(1);

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4")
        .create()
        .expect("producer");
    // Source produce time per event, to match decisions against.
    let mut sent_at: HashMap<String, i64> = HashMap::with_capacity(events);
    let mut tool_calls = 0usize;
    let started = Instant::now();
    let mut n = 0usize;
    'outer: for round in 0.. {
        for ev in &base {
            if n == events {
                break 'outer;
            }
            let copy = (n / 7) % copies; // spread agents over copies
            let mut ev = ev.clone();
            let agent = format!("{}-{copy:04}", ev["agent_id"].as_str().unwrap());
            let id = format!("{}-r{round}-c{copy}", ev["event_id"].as_str().unwrap());
            ev["agent_id"] = agent.clone().into();
            ev["event_id"] = id.clone().into();
            if let Some(s) = ev["session_id"].as_str() {
                ev["session_id"] = format!("{s}-r{round}-c{copy}").into();
            }
            let is_call = ev.get("kind").is_none();
            let payload = ev.to_string();
            let now = chrono::Utc::now().timestamp_millis();
            let mut rec = BaseRecord::to(topic)
                .key(&agent)
                .payload(&payload)
                .timestamp(now);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        rec = r;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
            if is_call {
                sent_at.insert(id, now);
                tool_calls += 1;
            }
            n += 1;
            if n % 1_000 == 0 {
                producer.poll(Duration::ZERO);
                if let Some(rate) = rate {
                    let due = started + Duration::from_secs_f64(n as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let produce_secs = started.elapsed().as_secs_f64();
    println!(
        "produced {n} events ({tool_calls} tool calls) from {} agents in {produce_secs:.1} s: {:.0} events/s",
        copies * base_agents,
        n as f64 / produce_secs
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("load-reader-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    consumer.subscribe(&[decisions]).expect("subscribe");
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).unwrap();
    let mut seen = 0usize;
    let mut last_decision_ms = 0i64;
    let mut first_decision_ms = i64::MAX;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while seen < tool_calls && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let Ok(d) = serde_json::from_slice::<serde_json::Value>(m.payload().unwrap_or_default())
        else {
            continue;
        };
        let Some(at) = d["event_id"].as_str().and_then(|id| sent_at.get(id)) else {
            continue;
        };
        let decided = m.timestamp().to_millis().unwrap_or(0);
        latency.saturating_record((decided - at).max(1) as u64);
        last_decision_ms = last_decision_ms.max(decided);
        first_decision_ms = first_decision_ms.min(decided);
        seen += 1;
    }
    let first = sent_at.values().min().copied().unwrap_or(0);
    let span = (last_decision_ms - first).max(1) as f64 / 1000.0;
    println!(
        "decided {seen}/{tool_calls} tool calls; {n} events in {span:.1} s from first produce to last decision: {:.0} events/s",
        n as f64 / span
    );
    // With a backlog produced before Warden starts, this is Warden's own
    // rate: no producer to wait for, no startup in the span.
    let deciding = (last_decision_ms - first_decision_ms).max(1) as f64 / 1000.0;
    println!(
        "{n} events in {deciding:.1} s from first to last decision: {:.0} events/s",
        n as f64 / deciding
    );
    println!(
        "produce-to-decision latency: p50 {} ms, p99 {} ms, max {} ms",
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.max()
    );
    if seen < tool_calls {
        std::process::exit(1);
    }
}
