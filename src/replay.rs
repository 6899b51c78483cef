//! `warden replay`: learn from benign history, then stream a test file
//! exactly as the service would (score, decide, then learn), writing one
//! decision per tool call and, given labels, measuring detection.
//!
//! Measures, per EVENTS.md labels:
//! - attacked sessions flagged: a session (agent + `session_id`) with at
//!   least one labelled call counts as detected when a call at or after its
//!   first attack call is flagged;
//! - attack calls that got through before the first flag (an undetected
//!   session counts all of its attack calls);
//! - benign sessions falsely flagged, split by task type: a session's task
//!   is the set of distinct tools it used, "known" when the same agent had a
//!   training session with exactly that set.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::engine::{Engine, ExplainedReason, Phase};
use crate::event::{Event, ToolCall};
use crate::ingest::decode::decode_bytes;
use crate::ingest::file::{self, JsonlReader, Line};
use crate::ingest::rejects::RejectSink;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub train: Vec<PathBuf>,
    pub test: PathBuf,
    pub labels: Option<PathBuf>,
    pub decisions: Option<PathBuf>,
    pub rejects: Option<PathBuf>,
    pub config: Config,
    /// Fleet model (peer groups, session models), if any.
    pub fleet: Option<std::sync::Arc<crate::fleet::Fleet>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path}:{line}: bad label: {message}")]
    Label {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One decision record, as DESIGN.md specifies it.
#[derive(Debug, Serialize)]
pub struct DecisionRecord<'a> {
    pub event_id: &'a str,
    pub agent_id: &'a str,
    pub score: f32,
    pub threshold: f32,
    pub flagged: bool,
    pub reasons: Vec<ExplainedReason>,
}

#[derive(Debug, Deserialize)]
struct LabelRecord {
    event_id: String,
    #[serde(default = "yes")]
    attack: bool,
    #[serde(default)]
    scenario: Option<String>,
}

fn yes() -> bool {
    true
}

/// Per-session bookkeeping of the test stream.
#[derive(Debug, Default)]
struct SessionTrack {
    tools: Vec<u64>,
    scenario: Option<String>,
    /// Attack calls seen so far.
    attacks: u32,
    /// Attack calls before the first flag at or after the first attack.
    before_flag: Option<u32>,
    /// Any call flagged at all.
    any_flag: bool,
}

/// Figures for one group of attacked sessions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttackFigures {
    pub sessions: usize,
    pub detected: usize,
    pub calls_before_flag_median: f64,
    pub calls_before_flag_p90: f64,
}

/// Benign false alarms of one kind of task.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenignFigures {
    pub sessions: usize,
    pub flagged: usize,
}

/// The replay's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    pub train_events: u64,
    pub test_events: u64,
    pub tool_calls: u64,
    pub context_events: u64,
    pub rejected: u64,
    pub rejected_by_kind: BTreeMap<String, u64>,
    pub flagged_calls: u64,
    pub attack: Option<AttackFigures>,
    pub scenarios: BTreeMap<String, AttackFigures>,
    pub benign_known: BenignFigures,
    pub benign_unseen: BenignFigures,
    pub test_seconds: f64,
    pub events_per_second: f64,
    pub score_p50_us: f64,
    pub score_p99_us: f64,
    pub score_p999_us: f64,
    pub agents: usize,
    pub profile_median_bytes: usize,
    pub profile_max_bytes: usize,
}

fn tool_key(tool: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(tool.as_bytes())
}

fn task_signature(tools: &[u64]) -> u64 {
    let mut t = tools.to_vec();
    t.sort_unstable();
    t.dedup();
    t.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ x).wrapping_mul(0x100_0000_01b3)
    })
}

/// (agent, session) of a call, hashed: the key of per-session bookkeeping.
fn session_key(call: &ToolCall) -> (u64, u64) {
    let agent = xxhash_rust::xxh3::xxh3_64(call.agent_id.as_bytes());
    let session = call
        .session_id
        .as_deref()
        .or(call.agent_instance.as_deref())
        .unwrap_or("");
    (
        agent,
        xxhash_rust::xxh3::xxh3_64_with_seed(session.as_bytes(), agent),
    )
}

fn read_labels(path: &Path) -> Result<HashMap<String, String>, ReplayError> {
    let text = file::read_to_string(path).map_err(|source| ReplayError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut labels = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: LabelRecord = serde_json::from_str(line).map_err(|e| ReplayError::Label {
            path: path.to_owned(),
            line: i + 1,
            message: e.to_string(),
        })?;
        if rec.attack {
            labels.insert(
                rec.event_id,
                rec.scenario.unwrap_or_else(|| "unnamed".to_owned()),
            );
        }
    }
    Ok(labels)
}

/// Streams one file through the engine; `on_call` sees every tool call.
fn stream(
    path: &Path,
    engine: &mut Engine,
    rejects: &mut RejectSink,
    max_bytes: usize,
    mut on_event: impl FnMut(&mut Engine, &Event<'_>) -> io::Result<()>,
) -> Result<u64, ReplayError> {
    let read_err = |source| ReplayError::Read {
        path: path.to_owned(),
        source,
    };
    let mut reader = JsonlReader::open(path, max_bytes).map_err(read_err)?;
    let source = path.display().to_string();
    let mut buf = Vec::with_capacity(4096);
    let mut n = 0;
    while let Some(line) = reader.next_line(&mut buf).map_err(read_err)? {
        if buf.iter().all(u8::is_ascii_whitespace) && line == Line::Data {
            continue;
        }
        let result = match line {
            Line::TooLong(len) => Err(too_long(len, max_bytes)),
            Line::Data => decode_bytes(&buf, max_bytes),
        };
        match result {
            Ok(ev) => {
                n += 1;
                on_event(engine, &ev).map_err(|source| ReplayError::Write {
                    path: PathBuf::from("decisions"),
                    source,
                })?;
            }
            Err(e) => rejects
                .reject(&source, reader.line_no(), &buf, &e)
                .map_err(|source| ReplayError::Write {
                    path: rejects.path().map(Path::to_owned).unwrap_or_default(),
                    source,
                })?,
        }
    }
    Ok(n)
}

fn too_long(len: usize, max: usize) -> crate::ingest::decode::DecodeError {
    crate::ingest::decode::DecodeError {
        kind: crate::ingest::decode::DecodeErrorKind::TooLarge,
        field: None,
        message: format!("event is {len} bytes, the limit is {max}"),
    }
}

fn quantile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64
}

fn attack_figures(sessions: &[&SessionTrack]) -> AttackFigures {
    let mut before: Vec<u32> = sessions
        .iter()
        .map(|s| s.before_flag.unwrap_or(s.attacks))
        .collect();
    before.sort_unstable();
    AttackFigures {
        sessions: sessions.len(),
        detected: sessions.iter().filter(|s| s.before_flag.is_some()).count(),
        calls_before_flag_median: quantile(&before, 0.5),
        calls_before_flag_p90: quantile(&before, 0.9),
    }
}

/// Runs a replay.
pub fn run(opts: &ReplayOptions) -> Result<ReplayReport, ReplayError> {
    let cfg = &opts.config;
    let max_bytes = cfg.ingest.max_event_bytes;
    let mut engine = Engine::new(cfg);
    engine.set_fleet(opts.fleet.clone());
    let mut rejects = RejectSink::new(opts.rejects.as_deref(), cfg.ingest.reject_sample_bytes)
        .map_err(|source| ReplayError::Write {
            path: opts.rejects.clone().unwrap_or_default(),
            source,
        })?;
    let mut report = ReplayReport::default();

    // Training: every call is learned; sessions' tool sets are remembered
    // to tell known task types from unseen ones.
    let mut train_sessions: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
    for path in &opts.train {
        report.train_events += stream(path, &mut engine, &mut rejects, max_bytes, |engine, ev| {
            match ev {
                Event::ToolCall(call) => {
                    train_sessions
                        .entry(session_key(call))
                        .or_default()
                        .push(tool_key(&call.tool));
                    let e = engine.evaluate(call, Phase::Train);
                    engine.commit(e);
                }
                Event::Context(c) => engine.observe_context(c),
            }
            Ok(())
        })?;
    }
    engine.close_all();
    let known_tasks: HashSet<(u64, u64)> = train_sessions
        .iter()
        .map(|((agent, _), tools)| (*agent, task_signature(tools)))
        .collect();
    drop(train_sessions);

    let labels = match &opts.labels {
        Some(p) => Some(read_labels(p)?),
        None => None,
    };
    let mut decisions = match &opts.decisions {
        Some(p) => Some(BufWriter::with_capacity(
            1 << 20,
            File::create(p).map_err(|source| ReplayError::Write {
                path: p.clone(),
                source,
            })?,
        )),
        None => None,
    };

    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let mut tracks: HashMap<(u64, u64), SessionTrack> = HashMap::new();
    let mut line = Vec::with_capacity(1024);
    let started = Instant::now();
    report.test_events = stream(
        &opts.test,
        &mut engine,
        &mut rejects,
        max_bytes,
        |engine, ev| {
            let call = match ev {
                Event::ToolCall(call) => call,
                Event::Context(c) => {
                    report.context_events += 1;
                    engine.observe_context(c);
                    return Ok(());
                }
            };
            report.tool_calls += 1;
            let t0 = Instant::now();
            let e = engine.evaluate(call, Phase::Live);
            let dt = t0.elapsed();
            latency.saturating_record(dt.as_nanos().max(1) as u64);
            let flagged = e.decision.flagged;
            if flagged {
                report.flagged_calls += 1;
            }
            if let Some(out) = &mut decisions {
                let rec = DecisionRecord {
                    event_id: &call.event_id,
                    agent_id: &call.agent_id,
                    score: (e.score.total * 100.0).round() / 100.0,
                    threshold: (e.decision.threshold * 100.0).round() / 100.0,
                    flagged,
                    reasons: engine.explain(&e),
                };
                line.clear();
                serde_json::to_writer(&mut line, &rec).map_err(io::Error::other)?;
                line.push(b'\n');
                out.write_all(&line)?;
            }
            engine.commit(e);
            if labels.is_some() {
                let scenario = labels.as_ref().and_then(|l| l.get(call.event_id.as_ref()));
                let t = tracks.entry(session_key(call)).or_default();
                t.tools.push(tool_key(&call.tool));
                if let Some(sc) = scenario {
                    t.attacks += 1;
                    t.scenario.get_or_insert_with(|| sc.clone());
                }
                if flagged {
                    t.any_flag = true;
                    if t.attacks > 0 && t.before_flag.is_none() {
                        t.before_flag = Some(t.attacks - u32::from(scenario.is_some()));
                    }
                }
            }
            Ok(())
        },
    )?;
    engine.close_all();
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    report.test_seconds = elapsed.as_secs_f64();
    report.events_per_second = report.test_events as f64 / elapsed.as_secs_f64();
    if let Some(out) = &mut decisions {
        out.flush().map_err(|source| ReplayError::Write {
            path: opts.decisions.clone().unwrap_or_default(),
            source,
        })?;
    }
    rejects.flush().map_err(|source| ReplayError::Write {
        path: opts.rejects.clone().unwrap_or_default(),
        source,
    })?;
    report.rejected = rejects.total();
    report.rejected_by_kind = rejects
        .counts()
        .map(|(k, c)| (k.as_str().to_owned(), c))
        .collect();
    report.score_p50_us = latency.value_at_quantile(0.5) as f64 / 1000.0;
    report.score_p99_us = latency.value_at_quantile(0.99) as f64 / 1000.0;
    report.score_p999_us = latency.value_at_quantile(0.999) as f64 / 1000.0;

    let mut sizes: Vec<usize> = engine
        .agents()
        .iter()
        .map(|a| a.profile.size_bytes())
        .collect();
    sizes.sort_unstable();
    report.agents = sizes.len();
    report.profile_median_bytes = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
    report.profile_max_bytes = sizes.last().copied().unwrap_or(0);

    if labels.is_some() {
        let attacked: Vec<&SessionTrack> = tracks.values().filter(|t| t.attacks > 0).collect();
        report.attack = Some(attack_figures(&attacked));
        let mut by_scenario: BTreeMap<String, Vec<&SessionTrack>> = BTreeMap::new();
        for t in &attacked {
            by_scenario
                .entry(t.scenario.clone().unwrap_or_default())
                .or_default()
                .push(t);
        }
        report.scenarios = by_scenario
            .into_iter()
            .map(|(k, v)| (k, attack_figures(&v)))
            .collect();
        for ((agent, _), t) in tracks.iter().filter(|(_, t)| t.attacks == 0) {
            let known = known_tasks.contains(&(*agent, task_signature(&t.tools)));
            let fig = if known {
                &mut report.benign_known
            } else {
                &mut report.benign_unseen
            };
            fig.sessions += 1;
            fig.flagged += usize::from(t.any_flag);
        }
    }
    Ok(report)
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

impl ReplayReport {
    /// The report as people read it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "events: {} test ({} tool calls, {} prompt/tool_result), {} train; rejected {}{}",
            self.test_events,
            self.tool_calls,
            self.context_events,
            self.train_events,
            self.rejected,
            if self.rejected_by_kind.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    self.rejected_by_kind
                        .iter()
                        .map(|(k, c)| format!("{k}: {c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let _ = writeln!(s, "flagged calls: {}", self.flagged_calls);
        if let Some(a) = &self.attack {
            let _ = writeln!(
                s,
                "attacked sessions flagged: {}/{} ({:.1}%)",
                a.detected,
                a.sessions,
                pct(a.detected, a.sessions)
            );
            let _ = writeln!(
                s,
                "attack calls before first flag: median {}, p90 {}",
                a.calls_before_flag_median, a.calls_before_flag_p90
            );
            for (name, f) in [
                ("known task types", &self.benign_known),
                ("unseen task types", &self.benign_unseen),
            ] {
                let _ = writeln!(
                    s,
                    "benign sessions falsely flagged, {name}: {}/{} ({:.2}%)",
                    f.flagged,
                    f.sessions,
                    pct(f.flagged, f.sessions)
                );
            }
            let _ = writeln!(
                s,
                "\n{:<24} {:>8} {:>9} {:>8} {:>8}",
                "scenario", "sessions", "flagged", "median", "p90"
            );
            for (name, f) in &self.scenarios {
                let _ = writeln!(
                    s,
                    "{:<24} {:>8} {:>8.1}% {:>8} {:>8}",
                    name,
                    f.sessions,
                    pct(f.detected, f.sessions),
                    f.calls_before_flag_median,
                    f.calls_before_flag_p90
                );
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "throughput: {:.0} events/s end to end (decode, score, decide, learn, write), {:.2} s",
            self.events_per_second, self.test_seconds
        );
        let _ = writeln!(
            s,
            "score latency: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs",
            self.score_p50_us, self.score_p99_us, self.score_p999_us
        );
        let _ = writeln!(
            s,
            "profiles: {} agents, median {:.1} KB, max {:.1} KB",
            self.agents,
            self.profile_median_bytes as f64 / 1024.0,
            self.profile_max_bytes as f64 / 1024.0
        );
        s
    }
}
