//! The explain route's habits tally on the hot path: its cost per clean
//! call (`habits::note_call`, which the worker runs for every unflagged live
//! call before `commit`), over `replay-data/seed-7` against warmed profiles.
//! An HdrHistogram of `note_call` alone over the whole test stream, then
//! criterion's score + learn with and without the tally (the difference,
//! divided by the clean calls, is the tally's cost per call).
//!
//! Run: `cargo bench --bench habits` (add `-- --quick` for a short run).

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
use warden::service::admin::habits::{note_call, Habits};

/// The tool-call lines of a file (calls borrow from their line, so they
/// are decoded where used, the same in every variant).
fn calls(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("replay-data/seed-7")
        .join(name);
    let mut r =
        JsonlReader::open(&path, 1 << 20).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(Line::Data) = r.next_line(&mut buf).expect("readable") {
        let line = String::from_utf8(buf.clone()).expect("utf-8");
        if matches!(decode_str(&line), Ok(Event::ToolCall(_))) {
            out.push(line);
        }
    }
    out
}

/// A warmed engine, and a habits tally fed the training calls as the
/// service's `--train` does.
fn trained(train: &[String]) -> (Engine, Habits) {
    let mut e = Engine::new(&Config::default());
    let mut h = Habits::default();
    for l in train {
        let Ok(Event::ToolCall(c)) = decode_str(l) else {
            continue;
        };
        let ev = e.evaluate(&c, Phase::Train);
        note_call(&mut h, &e, &c, &ev);
        e.commit(ev);
    }
    e.close_all();
    (e, h)
}

/// Score and learn the stream; tally the clean calls when `tally`.
fn run(engine: &mut Engine, habits: &mut Habits, test: &[String], tally: bool) {
    for l in test {
        let Ok(Event::ToolCall(c)) = decode_str(l) else {
            continue;
        };
        let ev = engine.evaluate(&c, Phase::Live);
        if tally && !ev.decision.flagged {
            note_call(habits, engine, &c, &ev);
        }
        black_box(ev.score.total);
        engine.commit(ev);
    }
}

fn benches(c: &mut Criterion) {
    let train = calls("train.jsonl.gz");
    let test = calls("test.jsonl.gz");
    let (mut engine, mut habits) = trained(&train);
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut flagged = 0usize;
    for l in &test {
        let Ok(Event::ToolCall(c)) = decode_str(l) else {
            continue;
        };
        let ev = engine.evaluate(&c, Phase::Live);
        if ev.decision.flagged {
            flagged += 1;
        } else {
            let t0 = Instant::now();
            note_call(&mut habits, &engine, &c, &ev);
            h.saturating_record(t0.elapsed().as_nanos() as u64);
        }
        engine.commit(ev);
    }
    println!(
        "stream: {} test calls, {} flagged ({:.1}%), {} clean calls tallied",
        test.len(),
        flagged,
        100.0 * flagged as f64 / test.len().max(1) as f64,
        h.len()
    );
    println!(
        "habits note_call per clean call (hdr): n={} mean={:.3}µs p50={:.3}µs p99={:.3}µs p99.9={:.3}µs max={:.2}µs",
        h.len(),
        h.mean() / 1e3,
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.value_at_quantile(0.999) as f64 / 1e3,
        h.max() as f64 / 1e3
    );

    let mut g = c.benchmark_group("habits");
    g.throughput(Throughput::Elements(test.len() as u64));
    for (name, tally) in [
        ("score+learn/without-tally", false),
        ("score+learn/with-tally", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || trained(&train),
                |(engine, habits)| run(engine, habits, &test, tally),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = habits;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(habits);
