//! `warden tune`: threshold sweeps over labelled replay data.
//!
//! One replay under the given config records every call's score; each
//! candidate threshold is then judged on those scores, per agent and per
//! class: attacked sessions flagged, attacked calls that got through before
//! the first flag, benign sessions falsely flagged, and incidents (flagged
//! agent instances, one incident each, as the service keys them) per
//! agent-week. Each agent's own threshold is the lowest whose share of
//! benign sessions flagged stays within the target, which keeps as much
//! detection as the target allows. A week of one agent holds a few dozen
//! benign sessions, so at a 1% target that own threshold rests on one or
//! two sessions and does not carry over to the next week. The
//! recommendation is therefore shrunk toward the agent's class (all its
//! agents' sessions pooled) by the weight n / (n + n0), n being the agent's
//! benign sessions and n0 = 1 / target by default: an agent needs about
//! 1 / target sessions to see one false alarm at the target, so at that
//! much evidence its own estimate and the pool weigh the same. An agent
//! with fewer than `policy.calibration-min-sessions` benign sessions (the
//! evidence the engine needs to calibrate) gets no entry and keeps its
//! default, and no recommendation is below `policy.min-threshold-bits`,
//! the calibrated default's floor. A second replay with the recommendation
//! applied gives the before/after figures, so they include what the sweep
//! approximates (a flagged session is not learned, which shifts later
//! scores); `--validate` replays another labelled week with and without it
//! (out of sample).
//!
//! Labels are JSON Lines `{"event_id","attack"}`: the replay data's
//! `labels.jsonl`, and the admin API's `GET /v1/feedback` export.

pub mod apply;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::PathBuf;

use crate::config::Config;
use crate::ingest::file::{JsonlReader, Line};
use crate::replay::{self, ReplayOptions};

/// What `warden tune` needs.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    pub train: Vec<PathBuf>,
    pub test: PathBuf,
    pub labels: Vec<PathBuf>,
    /// Largest share of an agent's benign sessions it may flag.
    pub target_fp: f64,
    pub out: Option<PathBuf>,
    pub config: Config,
    /// The fleet model replays score with, as `warden replay` would.
    pub fleet: Option<std::sync::Arc<crate::fleet::Fleet>>,
    /// Benign sessions an agent needs for an entry of its own; `None`:
    /// `policy.calibration-min-sessions`.
    pub min_sessions: Option<usize>,
    /// The pseudo-count n0 of the shrinkage toward the class; `None`:
    /// 1 / target.
    pub prior_sessions: Option<f64>,
    /// Another labelled week to check the recommendation on.
    pub validate: Option<Validate>,
}

/// A second labelled week: the out-of-sample check.
#[derive(Debug, Clone)]
pub struct Validate {
    /// Its benign history; empty: the tuned week's.
    pub train: Vec<PathBuf>,
    pub test: PathBuf,
    pub labels: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} line {line}: {reason}")]
    Label {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("replay failed: {0}")]
    Replay(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("--target-fp must be in [0, 1), not {0}")]
    Target(f64),
    #[error("--prior-sessions must be a finite number >= 0, not {0}")]
    Prior(f64),
    #[error("--apply --yes refused: out of sample ({test}) the recommendation flags {tuned} benign sessions where the defaults flag {default}; pass --force to apply anyway")]
    Worse {
        test: String,
        tuned: usize,
        default: usize,
    },
}

/// The thresholds swept, in bits.
fn grid() -> Vec<f32> {
    (4..=60).map(|t| t as f32).collect()
}

/// Thresholds printed in the tables (plus each recommendation).
const SHOWN: [f32; 12] = [
    6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 24.0, 28.0, 32.0, 40.0,
];

/// Each agent's class, if any.
type AgentClasses = HashMap<String, Option<String>>;

/// One call of the test stream.
struct Call {
    agent: String,
    session: String,
    instance: String,
    ts: i64,
    attack: bool,
    score: f32,
    /// Flaggable (not in warm-up) in the replay.
    armed: bool,
}

/// The figures for one threshold over a set of agents.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Figures {
    pub threshold: f32,
    pub attacked_sessions: usize,
    pub attacked_flagged: usize,
    pub attack_calls: usize,
    pub attack_calls_through: usize,
    pub benign_sessions: usize,
    pub benign_flagged: usize,
    pub incidents: usize,
    pub incidents_per_agent_week: f64,
}

impl Figures {
    pub fn benign_rate(&self) -> f64 {
        self.benign_flagged as f64 / self.benign_sessions.max(1) as f64
    }
}

/// Per agent or class: the sweep and the recommendation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sweep {
    pub name: String,
    pub agents: usize,
    pub rows: Vec<Figures>,
    /// At the lowest threshold within the target on this week alone.
    pub own: Figures,
    /// At the recommended threshold (for an agent: shrunk toward its class
    /// and floored; the figures are this week's, in sample).
    pub recommended: Figures,
    /// Benign sessions behind the recommendation.
    pub evidence: usize,
    /// Weight of the agent's own threshold, n / (n + n0); 1 for a class.
    pub weight: f64,
    /// The class's pooled threshold it is shrunk toward (a class: its own).
    pub pooled: f32,
    /// Whether the recommendation is written and applied (an agent with
    /// too little evidence keeps its default).
    pub set: bool,
    /// Where the number comes from, in words.
    pub basis: String,
}

/// The recommendation replayed on another labelled week.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Validation {
    pub test: String,
    pub before: Outcome,
    pub after: Outcome,
    /// The recommendation flags more benign sessions there than the
    /// defaults: it should not be applied.
    pub worse: bool,
}

/// Before and after applying the recommendation, from two replays.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub attacked_flagged: usize,
    pub attacked_sessions: usize,
    pub benign_flagged: usize,
    pub benign_sessions: usize,
    pub incidents: usize,
    pub incidents_per_agent_week: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TuneReport {
    pub target_fp: f64,
    pub weeks: f64,
    pub agents: Vec<Sweep>,
    pub classes: Vec<Sweep>,
    pub before: Outcome,
    pub after: Outcome,
    pub snippet: String,
    pub min_sessions: usize,
    pub prior_sessions: f64,
    pub validation: Option<Validation>,
}

/// Reads labelled attack event ids (every file; later files win).
fn read_labels(paths: &[PathBuf]) -> Result<HashSet<String>, TuneError> {
    let mut attacks = HashSet::new();
    for p in paths {
        let f = std::fs::File::open(p).map_err(|e| TuneError::Read {
            path: p.display().to_string(),
            reason: e.to_string(),
        })?;
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| TuneError::Read {
                path: p.display().to_string(),
                reason: e.to_string(),
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| TuneError::Label {
                    path: p.display().to_string(),
                    line: i + 1,
                    reason: e.to_string(),
                })?;
            let Some(id) = v["event_id"].as_str() else {
                return Err(TuneError::Label {
                    path: p.display().to_string(),
                    line: i + 1,
                    reason: "no event_id".into(),
                });
            };
            if v["attack"].as_bool() == Some(true) {
                attacks.insert(id.to_owned());
            } else {
                attacks.remove(id);
            }
        }
    }
    Ok(attacks)
}

/// Replays `test` under `config`; event id → (score, threshold, flagged).
fn replay_scores(
    opts: &TuneOptions,
    week: &Validate,
    config: Config,
    tag: &str,
) -> Result<HashMap<String, (f32, f32, bool)>, TuneError> {
    let path = std::env::temp_dir().join(format!(
        "warden-tune-{}-{tag}-{}.jsonl",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    let r = ReplayOptions {
        train: week.train.clone(),
        test: week.test.clone(),
        labels: None,
        decisions: Some(path.clone()),
        rejects: None,
        config,
        fleet: opts.fleet.clone(),
    };
    let result = replay::run(&r).map_err(|e| TuneError::Replay(e.to_string()));
    let text = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    result?;
    let text = text.map_err(|e| TuneError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut out = HashMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(id) = v["event_id"].as_str() {
            out.insert(
                id.to_owned(),
                (
                    v["score"].as_f64().unwrap_or(0.0) as f32,
                    v["threshold"].as_f64().unwrap_or(0.0) as f32,
                    v["flagged"].as_bool().unwrap_or(false),
                ),
            );
        }
    }
    Ok(out)
}

/// The tool calls of the test stream, in order, with what sessions and
/// incidents are keyed by.
fn read_calls(
    opts: &TuneOptions,
    test: &std::path::Path,
) -> Result<(Vec<(String, Call)>, AgentClasses), TuneError> {
    let err = |e: &dyn std::fmt::Display| TuneError::Read {
        path: test.display().to_string(),
        reason: e.to_string(),
    };
    let mut reader =
        JsonlReader::open(test, opts.config.ingest.max_event_bytes).map_err(|e| err(&e))?;
    let mut buf = Vec::new();
    let mut calls = Vec::new();
    let mut classes: HashMap<String, Option<String>> = HashMap::new();
    while let Some(line) = reader.next_line(&mut buf).map_err(|e| err(&e))? {
        if line != Line::Data {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&buf) else {
            continue;
        };
        if v.get("kind").is_some_and(|k| k != "tool_call") {
            continue;
        }
        let (Some(id), Some(agent)) = (v["event_id"].as_str(), v["agent_id"].as_str()) else {
            continue;
        };
        let instance = v["agent_instance"].as_str().unwrap_or("").to_owned();
        let session = v["session_id"]
            .as_str()
            .map_or_else(|| instance.clone(), str::to_owned);
        let ts = v["ts"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp_millis());
        classes.entry(agent.to_owned()).or_insert_with(|| {
            crate::decide::resolve(agent, v["agent_class"].as_str(), &opts.config.policy).class
        });
        calls.push((
            id.to_owned(),
            Call {
                agent: agent.to_owned(),
                session,
                instance,
                ts,
                attack: false,
                score: 0.0,
                armed: true,
            },
        ));
    }
    Ok((calls, classes))
}

/// Figures at `threshold` over `calls` (all of a set of agents).
fn figures(calls: &[&Call], threshold: f32, agents: usize, weeks: f64) -> Figures {
    #[derive(Default)]
    struct S {
        attacked: bool,
        flagged: bool,
        attack_calls: usize,
        through: usize,
    }
    let mut sessions: HashMap<(&str, &str), S> = HashMap::new();
    let mut incidents: HashSet<(&str, &str)> = HashSet::new();
    for c in calls {
        let s = sessions.entry((&c.agent, &c.session)).or_default();
        let hit = c.armed && c.score >= threshold;
        if c.attack {
            s.attacked = true;
            s.attack_calls += 1;
            if !s.flagged && !hit {
                s.through += 1;
            }
        }
        if hit {
            s.flagged = true;
            incidents.insert((&c.agent, &c.instance));
        }
    }
    let mut f = Figures {
        threshold,
        incidents: incidents.len(),
        incidents_per_agent_week: incidents.len() as f64 / (agents.max(1) as f64 * weeks),
        ..Default::default()
    };
    for s in sessions.values() {
        if s.attacked {
            f.attacked_sessions += 1;
            f.attacked_flagged += usize::from(s.flagged);
            f.attack_calls += s.attack_calls;
            f.attack_calls_through += s.through;
        } else {
            f.benign_sessions += 1;
            f.benign_flagged += usize::from(s.flagged);
        }
    }
    f
}

fn sweep(name: String, calls: &[&Call], agents: usize, weeks: f64, target: f64) -> Sweep {
    let rows: Vec<Figures> = grid()
        .into_iter()
        .map(|t| figures(calls, t, agents, weeks))
        .collect();
    let own = rows
        .iter()
        .find(|r| r.benign_rate() <= target)
        .or(rows.last())
        .cloned()
        .unwrap_or_default();
    Sweep {
        name,
        agents,
        evidence: own.benign_sessions,
        weight: 1.0,
        pooled: own.threshold,
        set: true,
        basis: "pooled".into(),
        recommended: own.clone(),
        own,
        rows,
    }
}

/// How an agent's threshold is derived from its own and its class's.
#[derive(Debug, Clone, Copy)]
struct Shrink {
    min_sessions: usize,
    prior_sessions: f64,
    floor: f32,
}

impl Shrink {
    /// The recommended threshold (to 0.1 bit), its weight, whether it is
    /// set, and why.
    fn recommend(&self, own: f32, n: usize, class: f32) -> (f32, f64, bool, String) {
        if n < self.min_sessions {
            return (
                own,
                0.0,
                false,
                format!("default kept: {n} benign sessions < {}", self.min_sessions),
            );
        }
        let w = n as f64 / (n as f64 + self.prior_sessions);
        let t = w * f64::from(own) + (1.0 - w) * f64::from(class);
        let t = ((t * 10.0).round() / 10.0) as f32;
        if t < self.floor {
            return (
                self.floor,
                w,
                true,
                format!("floor: {t:.1} < min-threshold-bits"),
            );
        }
        (t, w, true, "shrunk toward the class".into())
    }
}

/// Judged from a replay's own decisions.
fn judged(
    calls: &mut [(String, Call)],
    attacks: &HashSet<String>,
    decided: &HashMap<String, (f32, f32, bool)>,
    warmup: f32,
) {
    for (id, c) in calls.iter_mut() {
        c.attack = attacks.contains(id);
        if let Some(&(score, threshold, flagged)) = decided.get(id) {
            c.score = score;
            // A warm-up threshold flags nothing, whatever is set.
            c.armed = flagged || threshold != warmup;
        }
    }
}

fn weeks_of(calls: &[(String, Call)]) -> f64 {
    let span_ms = calls.iter().map(|(_, c)| c.ts).max().unwrap_or(0)
        - calls.iter().map(|(_, c)| c.ts).min().unwrap_or(0);
    (span_ms as f64 / (7.0 * 86_400_000.0)).max(1.0 / 7.0)
}

/// One "replayed with" line of the report: `what` padded to `width`.
fn outcome_line(what: &str, width: usize, o: &Outcome) -> String {
    format!(
        "  {what:<width$}  attacked sessions flagged {}/{}  benign sessions flagged {}/{}  incidents {} ({:.1} per agent-week)\n",
        o.attacked_flagged,
        o.attacked_sessions,
        o.benign_flagged,
        o.benign_sessions,
        o.incidents,
        o.incidents_per_agent_week
    )
}

/// Outcome of a replay from its decisions (flags as the engine made them).
fn outcome(
    calls: &[(String, Call)],
    decided: &HashMap<String, (f32, f32, bool)>,
    agents: usize,
    weeks: f64,
) -> Outcome {
    let flagged: Vec<Call> = calls
        .iter()
        .map(|(id, c)| Call {
            agent: c.agent.clone(),
            session: c.session.clone(),
            instance: c.instance.clone(),
            ts: c.ts,
            attack: c.attack,
            // 1 when flagged, 0 when not: judged at threshold 0.5.
            score: if decided.get(id).is_some_and(|d| d.2) {
                1.0
            } else {
                0.0
            },
            armed: true,
        })
        .collect();
    let refs: Vec<&Call> = flagged.iter().collect();
    let f = figures(&refs, 0.5, agents, weeks);
    Outcome {
        attacked_flagged: f.attacked_flagged,
        attacked_sessions: f.attacked_sessions,
        benign_flagged: f.benign_flagged,
        benign_sessions: f.benign_sessions,
        incidents: f.incidents,
        incidents_per_agent_week: f.incidents_per_agent_week,
    }
}

pub fn run(opts: &TuneOptions) -> Result<TuneReport, TuneError> {
    if !(0.0..1.0).contains(&opts.target_fp) {
        return Err(TuneError::Target(opts.target_fp));
    }
    let prior_sessions = opts
        .prior_sessions
        .unwrap_or(1.0 / opts.target_fp.max(1e-3));
    if !(prior_sessions.is_finite() && prior_sessions >= 0.0) {
        return Err(TuneError::Prior(prior_sessions));
    }
    let policy = &opts.config.policy;
    let shrink = Shrink {
        min_sessions: opts
            .min_sessions
            .unwrap_or(policy.calibration_min_sessions.max(0.0).ceil() as usize),
        prior_sessions,
        floor: policy.min_threshold_bits,
    };
    let attacks = read_labels(&opts.labels)?;
    let (mut calls, classes) = read_calls(opts, &opts.test)?;
    let week = Validate {
        train: opts.train.clone(),
        test: opts.test.clone(),
        labels: opts.labels.clone(),
    };
    let before = replay_scores(opts, &week, opts.config.clone(), "before")?;
    let warmup = policy.warmup_threshold_bits;
    judged(&mut calls, &attacks, &before, warmup);
    let weeks = weeks_of(&calls);
    let mut by_agent: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for (_, c) in &calls {
        by_agent.entry(&c.agent).or_default().push(c);
    }
    let class_of = |a: &str| {
        classes
            .get(a)
            .cloned()
            .flatten()
            .unwrap_or_else(|| "(no class)".to_owned())
    };
    let mut by_class: BTreeMap<String, (usize, Vec<&Call>)> = BTreeMap::new();
    for (a, cs) in &by_agent {
        let e = by_class.entry(class_of(a)).or_default();
        e.0 += 1;
        e.1.extend(cs.iter().copied());
    }
    let class_sweeps: Vec<Sweep> = by_class
        .into_iter()
        .map(|(c, (n, cs))| sweep(c, &cs, n, weeks, opts.target_fp))
        .collect();
    let agents: Vec<Sweep> = by_agent
        .iter()
        .map(|(a, cs)| {
            let mut s = sweep((*a).to_owned(), cs, 1, weeks, opts.target_fp);
            let class = class_of(a);
            let pooled = class_sweeps
                .iter()
                .find(|c| c.name == class)
                .map_or(s.own.threshold, |c| c.own.threshold);
            let (t, w, set, basis) = shrink.recommend(s.own.threshold, s.evidence, pooled);
            s.recommended = figures(cs, t, 1, weeks);
            s.weight = w;
            s.pooled = pooled;
            s.set = set && s.evidence > 0;
            s.basis = basis;
            s
        })
        .collect();

    let mut snippet = format!(
        "# warden tune: thresholds for at most {:.1}% of each agent's benign sessions flagged\n\
         # ({} on {}), each shrunk toward its class by n / (n + {:.0}) over its n benign\n\
         # sessions; agents with fewer than {} keep their default. Merge into your warden.toml.\n",
        opts.target_fp * 100.0,
        opts.test.display(),
        chrono::Utc::now().format("%Y-%m-%d"),
        shrink.prior_sessions,
        shrink.min_sessions,
    );
    let mut tuned = opts.config.clone();
    for s in agents.iter().filter(|s| s.set) {
        snippet.push_str(&format!(
            "\n# {} benign sessions: own {:.1}, weight {:.2} ({})\n[policy.agents.{:?}]\nthreshold-bits = {:.1}\n",
            s.evidence, s.own.threshold, s.weight, s.basis, s.name, s.recommended.threshold
        ));
        let entry = tuned.policy.agents.entry(s.name.clone()).or_default();
        entry.threshold_bits = Some(s.recommended.threshold);
    }
    let after = replay_scores(opts, &week, tuned.clone(), "after")?;
    let n_agents = by_agent.len();
    let validation = match &opts.validate {
        None => None,
        Some(v) => Some(validate(opts, v, tuned, warmup)?),
    };
    let report = TuneReport {
        target_fp: opts.target_fp,
        weeks,
        before: outcome(&calls, &before, n_agents, weeks),
        after: outcome(&calls, &after, n_agents, weeks),
        agents,
        classes: class_sweeps,
        snippet,
        min_sessions: shrink.min_sessions,
        prior_sessions: shrink.prior_sessions,
        validation,
    };
    if let Some(out) = &opts.out {
        std::fs::write(out, &report.snippet).map_err(|e| TuneError::Write {
            path: out.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(report)
}

/// Replays another labelled week under the defaults and under `tuned`.
fn validate(
    opts: &TuneOptions,
    v: &Validate,
    tuned: Config,
    warmup: f32,
) -> Result<Validation, TuneError> {
    let week = Validate {
        train: if v.train.is_empty() {
            opts.train.clone()
        } else {
            v.train.clone()
        },
        test: v.test.clone(),
        labels: v.labels.clone(),
    };
    let attacks = read_labels(&week.labels)?;
    let (mut calls, _) = read_calls(opts, &week.test)?;
    let before = replay_scores(opts, &week, opts.config.clone(), "validate-before")?;
    let after = replay_scores(opts, &week, tuned, "validate-after")?;
    judged(&mut calls, &attacks, &before, warmup);
    let weeks = weeks_of(&calls);
    let agents = calls
        .iter()
        .map(|(_, c)| c.agent.as_str())
        .collect::<HashSet<_>>()
        .len();
    let before = outcome(&calls, &before, agents, weeks);
    let after = outcome(&calls, &after, agents, weeks);
    Ok(Validation {
        test: week.test.display().to_string(),
        worse: after.benign_flagged > before.benign_flagged,
        before,
        after,
    })
}

impl TuneReport {
    /// Whether applying (`--apply --yes`) may go ahead: not when the
    /// out-of-sample check found more benign sessions flagged than under
    /// the defaults, unless forced.
    pub fn may_apply(&self, force: bool) -> Result<(), TuneError> {
        match &self.validation {
            Some(v) if v.worse && !force => Err(TuneError::Worse {
                test: v.test.clone(),
                tuned: v.after.benign_flagged,
                default: v.before.benign_flagged,
            }),
            _ => Ok(()),
        }
    }

    /// Tables per agent and per class, the recommendation, before/after.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "Threshold sweep over {:.1} weeks; target: at most {:.1}% of benign sessions flagged.\n",
            self.weeks,
            self.target_fp * 100.0
        ));
        for (title, sweeps) in [("Agent", &self.agents), ("Class", &self.classes)] {
            for s in sweeps.iter() {
                out.push_str(&format!(
                    "\n{title} {} ({} agent{}):\n",
                    s.name,
                    s.agents,
                    if s.agents == 1 { "" } else { "s" }
                ));
                out.push_str(
                    "  threshold  attacked sessions flagged  attack calls through  benign sessions flagged  incidents/agent-week\n",
                );
                let mut shown: Vec<&Figures> = s
                    .rows
                    .iter()
                    .filter(|r| SHOWN.contains(&r.threshold) || r.threshold == s.own.threshold)
                    .collect();
                if s.set && !shown.iter().any(|r| r.threshold == s.recommended.threshold) {
                    shown.push(&s.recommended);
                    shown.sort_by(|a, b| a.threshold.total_cmp(&b.threshold));
                }
                for r in shown {
                    let rec = s.set && r.threshold == s.recommended.threshold;
                    let own = title == "Agent" && r.threshold == s.own.threshold;
                    let mark = match (rec, own) {
                        (true, _) => " *",
                        (false, true) => " o",
                        _ => "  ",
                    };
                    out.push_str(&format!(
                        "{mark}{:>7.1}  {:>25}  {:>20}  {:>23}  {:>20.1}\n",
                        r.threshold,
                        format!("{}/{}", r.attacked_flagged, r.attacked_sessions),
                        format!("{}/{}", r.attack_calls_through, r.attack_calls),
                        format!(
                            "{}/{} ({:.1}%)",
                            r.benign_flagged,
                            r.benign_sessions,
                            r.benign_rate() * 100.0
                        ),
                        r.incidents_per_agent_week,
                    ));
                }
            }
        }
        out.push_str("\n* recommended   o the agent's own threshold on this week alone\n\n");
        out.push_str(&format!(
            "Recommendation per agent: own threshold shrunk toward its class by n / (n + {:.0}),\n\
             n = its benign sessions; fewer than {} keep the default; never below min-threshold-bits.\n",
            self.prior_sessions, self.min_sessions
        ));
        out.push_str(
            "  agent                            benign sessions    own  class  weight  recommended  benign flagged (in sample)  basis\n",
        );
        for s in &self.agents {
            let rec = if s.set {
                format!("{:.1}", s.recommended.threshold)
            } else {
                "default".to_owned()
            };
            out.push_str(&format!(
                "  {:<32} {:>15} {:>6.1} {:>6.1} {:>7.2} {:>12}  {:>26}  {}\n",
                s.name,
                s.evidence,
                s.own.threshold,
                s.pooled,
                s.weight,
                rec,
                format!(
                    "{}/{}",
                    s.recommended.benign_flagged, s.recommended.benign_sessions
                ),
                s.basis
            ));
        }
        out.push('\n');

        out.push_str("Replayed with and without the recommendation:\n");
        for (what, o) in [("before", &self.before), ("after", &self.after)] {
            out.push_str(&outcome_line(what, 6, o));
        }
        if let Some(v) = &self.validation {
            out.push_str(&format!(
                "\nOut-of-sample check on {} (another week, not tuned on):\n",
                v.test
            ));
            for (what, o) in [("default", &v.before), ("tuned", &v.after)] {
                out.push_str(&outcome_line(what, 7, o));
            }
            if v.worse {
                out.push_str(&format!(
                    "  WORSE: out of sample the recommendation flags {} benign sessions where the defaults flag {}. Do not apply it; --apply --yes refuses without --force.\n",
                    v.after.benign_flagged, v.before.benign_flagged
                ));
            } else {
                out.push_str(
                    "  Not worse than the defaults on benign sessions flagged out of sample.\n",
                );
            }
        }
        out.push_str("\nConfig snippet:\n");
        out.push_str(&self.snippet);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(session: &str, score: f32, attack: bool) -> Call {
        Call {
            agent: "a".into(),
            session: session.into(),
            instance: session.into(),
            ts: 0,
            attack,
            score,
            armed: true,
        }
    }

    #[test]
    fn figures_count_sessions_calls_through_and_incidents() {
        let calls = [
            call("s1", 2.0, false),
            call("s1", 9.0, false),
            call("s2", 3.0, true),
            call("s2", 12.0, true),
            call("s2", 1.0, true),
            call("s3", 1.0, false),
        ];
        let refs: Vec<&Call> = calls.iter().collect();
        let f = figures(&refs, 10.0, 1, 1.0);
        assert_eq!((f.attacked_flagged, f.attacked_sessions), (1, 1));
        assert_eq!((f.attack_calls_through, f.attack_calls), (1, 3));
        assert_eq!((f.benign_flagged, f.benign_sessions), (0, 2));
        assert_eq!(f.incidents, 1);
        let f = figures(&refs, 8.0, 1, 1.0);
        assert_eq!((f.benign_flagged, f.incidents), (1, 2));
        let s = sweep("a".into(), &refs, 1, 1.0, 0.0);
        assert_eq!(s.recommended.threshold, 10.0, "lowest with no benign flag");
    }

    #[test]
    fn recommendation_is_shrunk_toward_the_class_with_evidence_and_floored() {
        let k = Shrink {
            min_sessions: 20,
            prior_sessions: 100.0,
            floor: 14.0,
        };
        // Too little evidence: no entry, the default is kept.
        let (_, w, set, why) = k.recommend(8.0, 19, 27.0);
        assert!(!set && w == 0.0, "{why}");
        // n = n0: half way between the agent's own and the class's.
        let (t, w, set, _) = k.recommend(13.0, 100, 27.0);
        assert!(set);
        assert!((w - 0.5).abs() < 1e-12);
        assert_eq!(t, 20.0);
        // More evidence, nearer its own.
        let (t, _, _, _) = k.recommend(13.0, 900, 27.0);
        assert_eq!(t, 14.4);
        // Never below the calibrated default's floor.
        let (t, _, set, why) = k.recommend(6.0, 900, 10.0);
        assert!(set && t == 14.0, "{why}");
    }

    #[test]
    fn apply_is_refused_when_the_out_of_sample_week_gets_worse() {
        let o = |benign_flagged| Outcome {
            attacked_flagged: 0,
            attacked_sessions: 0,
            benign_flagged,
            benign_sessions: 100,
            incidents: 0,
            incidents_per_agent_week: 0.0,
        };
        let mut r = TuneReport {
            target_fp: 0.01,
            weeks: 1.0,
            agents: vec![],
            classes: vec![],
            before: o(0),
            after: o(0),
            snippet: String::new(),
            min_sessions: 20,
            prior_sessions: 100.0,
            validation: None,
        };
        assert!(r.may_apply(false).is_ok(), "no check, nothing to refuse");
        r.validation = Some(Validation {
            test: "week2".into(),
            before: o(12),
            after: o(49),
            worse: true,
        });
        let e = r.may_apply(false).unwrap_err().to_string();
        assert!(
            e.contains("49") && e.contains("12") && e.contains("--force"),
            "{e}"
        );
        assert!(r.may_apply(true).is_ok());
        assert!(r.render().contains("WORSE"));
    }
}
