//! Engine benchmarks over `replay-data/seed-7` (by default): decode one event, score one
//! call against warmed profiles, score + learn, and the whole replay path.
//! Besides criterion's figures, each case prints an HdrHistogram of per-call
//! latency (p50/p99/p99.9) measured over the full test stream.
//!
//! Run: `cargo bench --bench engine` (add `-- --quick` for a short run).
//! `WARDEN_BENCH_SET=customers-11` runs it over another committed set (the
//! multi-customer agents, where principal binding is at work).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hdrhistogram::Histogram;

use warden::config::Config;
use warden::engine::{Engine, Phase};
use warden::event::Event;
use warden::ingest::decode::decode_str;
use warden::ingest::file::{JsonlReader, Line};

fn data_dir() -> PathBuf {
    let set = std::env::var("WARDEN_BENCH_SET").unwrap_or_else(|_| "seed-7".to_owned());
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("replay-data")
        .join(set)
}

fn lines(name: &str) -> Vec<String> {
    let path = data_dir().join(name);
    let mut r =
        JsonlReader::open(&path, 1 << 20).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(Line::Data) = r.next_line(&mut buf).expect("readable") {
        out.push(String::from_utf8(buf.clone()).expect("utf-8"));
    }
    out
}

fn tool_calls(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| matches!(decode_str(l), Ok(Event::ToolCall(_))))
        .collect()
}

fn trained(train: &[String]) -> Engine {
    trained_with(train, &Config::default(), None)
}

/// The committed fleet model (`models/fleet.json`), with its session model
/// and group thresholds switched on.
fn fleet() -> (Config, Option<std::sync::Arc<warden::fleet::Fleet>>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let fleet = warden::fleet::Fleet::load_dir(&dir).expect("models/fleet.json loads");
    let mut cfg = Config::default();
    cfg.fleet.session_model = true;
    cfg.fleet.group_threshold = true;
    (cfg, Some(std::sync::Arc::new(fleet)))
}

fn trained_with(
    train: &[String],
    cfg: &Config,
    fleet: Option<std::sync::Arc<warden::fleet::Fleet>>,
) -> Engine {
    let mut e = Engine::new(cfg);
    e.set_fleet(fleet);
    for l in train {
        match decode_str(l) {
            Ok(Event::ToolCall(c)) => {
                let ev = e.evaluate(&c, Phase::Train);
                e.commit(ev);
            }
            Ok(Event::Context(c)) => e.observe_context(&c),
            Err(_) => {}
        }
    }
    e.close_all();
    e
}

fn report(name: &str, h: &Histogram<u64>) {
    println!(
        "{name}: n={} p50={:.2}µs p99={:.2}µs p99.9={:.2}µs max={:.2}µs",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.value_at_quantile(0.999) as f64 / 1e3,
        h.max() as f64 / 1e3
    );
}

/// Scores (and learns) each call once, and reports both latencies; the
/// stream's prompts and tool results are indexed on the way, as in
/// `warden run`, and timed apart. Prints the share of calls flagged: a
/// latency measured where nothing is flagged says little.
fn hdr<S: AsRef<str>>(engine: &mut Engine, events: &[S], label: &str) {
    let mut score_h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut learn_h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut context_h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let (mut calls, mut flagged) = (0u64, 0u64);
    for l in events {
        let call = match decode_str(l.as_ref()) {
            Ok(Event::ToolCall(call)) => call,
            Ok(Event::Context(c)) => {
                let t0 = Instant::now();
                engine.observe_context(&c);
                context_h.saturating_record(t0.elapsed().as_nanos() as u64);
                continue;
            }
            Err(_) => continue,
        };
        let t0 = Instant::now();
        let ev = engine.evaluate(&call, Phase::Live);
        let t1 = Instant::now();
        calls += 1;
        flagged += ev.decision.flagged as u64;
        engine.commit(ev);
        let t2 = Instant::now();
        score_h.saturating_record((t1 - t0).as_nanos() as u64);
        learn_h.saturating_record((t2 - t0).as_nanos() as u64);
    }
    println!(
        "calls flagged{label}: {flagged} of {calls} ({:.1}%)",
        100.0 * flagged as f64 / calls.max(1) as f64
    );
    report(&format!("score one call{label} (hdr)"), &score_h);
    report(&format!("score + learn one call{label} (hdr)"), &learn_h);
    if !context_h.is_empty() {
        report(
            &format!("index one prompt or tool result{label} (hdr)"),
            &context_h,
        );
    }
}

fn benches(c: &mut Criterion) {
    let train = lines("train.jsonl.gz");
    let test = lines("test.jsonl.gz");
    let calls = tool_calls(&test);
    let bytes: usize = test.iter().map(|l| l.len() + 1).sum();
    println!(
        "fixture: {} train events, {} test events ({} tool calls), {:.0} bytes per event",
        train.len(),
        test.len(),
        calls.len(),
        bytes as f64 / test.len() as f64
    );

    // HdrHistogram over the whole stream, once, outside criterion; without
    // and with the fleet model.
    let (fleet_cfg, fleet_model) = fleet();
    for (label, cfg, model) in [
        ("", Config::default(), None),
        (", fleet models on", fleet_cfg.clone(), fleet_model.clone()),
    ] {
        let mut engine = trained_with(&train, &cfg, model);
        hdr(&mut engine, &test, label);
    }
    // Cold start: every agent new to the engine and outside the model's
    // training fleet (ids prefixed), scored against its group's prior
    // (`blend-prior`): placement by catalogue and blend rebuilds on the
    // path.
    let mut cold_cfg = fleet_cfg.clone();
    cold_cfg.fleet.blend_prior = true;
    let mut engine = trained_with(&[], &cold_cfg, fleet_model.clone());
    let renamed: Vec<String> = test
        .iter()
        .map(|l| l.replace("\"agent_id\":\"", "\"agent_id\":\"new-"))
        .collect();
    hdr(&mut engine, &renamed, ", cold start with blend-prior");

    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(test.len() as u64));
    g.bench_function("decode/test-stream", |b| {
        b.iter(|| {
            for l in &test {
                let _ = black_box(decode_str(l));
            }
        })
    });

    // Engines hold pooled session buffers and are not `Clone`: a fresh one
    // is trained per batch, and criterion times only the routine.
    g.throughput(Throughput::Elements(calls.len() as u64));
    g.bench_function("score/warmed-profiles", |b| {
        b.iter_batched_ref(
            || trained(&train),
            |engine| {
                for l in &calls {
                    if let Ok(Event::ToolCall(call)) = decode_str(l) {
                        black_box(engine.evaluate(&call, Phase::Live).score.total);
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("score/warmed-profiles+fleet", |b| {
        b.iter_batched_ref(
            || trained_with(&train, &fleet_cfg, fleet_model.clone()),
            |engine| {
                for l in &calls {
                    if let Ok(Event::ToolCall(call)) = decode_str(l) {
                        black_box(engine.evaluate(&call, Phase::Live).score.total);
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("score+learn/warmed-profiles", |b| {
        b.iter_batched_ref(
            || trained(&train),
            |engine| {
                for l in &calls {
                    if let Ok(Event::ToolCall(call)) = decode_str(l) {
                        let ev = engine.evaluate(&call, Phase::Live);
                        engine.commit(ev);
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = engine;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(engine);
