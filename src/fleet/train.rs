//! `warden train`: fits the fleet model from benign history.
//!
//! The history is streamed through the same [`Engine`] the service runs (as
//! training, nothing flagged), so the profiles clustered here and the
//! session shapes modelled here are computed exactly as they are live.
//! Then:
//! 1. agents are clustered into peer groups with linfa k-means on their
//!    standardised profile features ([`super::features::AGENT_FEATURES`]),
//!    k from 2 to 8 chosen by the highest mean silhouette (a fleet of two
//!    or three agents is one group);
//! 2. each group gets its prior ([`GroupPrior`]) and, given enough
//!    sessions, its session model ([`SessionModel`]).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::Array2;
use sha2::{Digest, Sha256};

use super::blend::{PriorProfile, YoungRates};
use super::features::{agent_features, session_vector, AGENT_DIM, SESSION_DIM};
use super::file::{
    CrossGroupTools, Group, ModelFile, Schema, TrainingInfo, FORMAT, FORMAT_VERSION, LINFA_VERSION,
};
use super::prior::{blend_threshold, GroupPrior};
use super::session::{SessionModel, SessionModelError};
use super::Fleet;
use crate::config::Config;
use crate::engine::{Engine, Phase};
use crate::event::{Event, Millis};
use crate::ingest::decode::decode_bytes;
use crate::ingest::file::{JsonlReader, Line};
use crate::score::features::Fingerprinter;
use std::sync::Arc;

/// Members a group needs for its blend threshold to come from its own
/// members (each left out against a prior of at least two others).
const MIN_MEMBERS_FOR_OWN_BLEND: usize = 3;

/// Most groups tried.
const MAX_GROUPS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot read training data {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("no training data given: pass --data FILE (JSON Lines, .gz allowed)")]
    NoInput,
    #[error(
        "the training set is empty: no tool call decoded from {inputs} ({rejected} lines rejected)"
    )]
    EmptyTrainingSet { inputs: String, rejected: u64 },
    #[error("the training set holds one agent ({agent}): peer groups need a fleet of at least two agents")]
    SingleAgent { agent: String },
    #[error("clustering agents into peer groups failed: {0}")]
    Cluster(String),
    #[error("group {group}: session model: {source}")]
    Session {
        group: usize,
        source: SessionModelError,
    },
}

/// Everything the training pass collects.
struct Collected {
    engine: Engine,
    shapes: HashMap<String, Vec<[f64; SESSION_DIM]>>,
    /// Per (agent, session): highest score, and whether the agent was young
    /// (not yet calibrated on its own sessions) when the session started.
    sessions: HashMap<(String, String), (f32, bool)>,
    events: u64,
    tool_calls: u64,
    rejected: u64,
    first: Millis,
    last: Millis,
    digest: Sha256,
    /// Resource types seen (the profile keeps only their fingerprints).
    rtypes: std::collections::BTreeSet<String>,
    /// Numeric argument keys seen, with their kind (likewise).
    numbers: std::collections::BTreeSet<(String, u8)>,
    /// Each agent's novelty while it was young.
    young: HashMap<String, YoungRates>,
}

/// Streams every line of `data` to `f`, with its event when it decodes
/// (`None` for a blank or rejected line); returns the lines rejected.
fn for_each_event(
    data: &[PathBuf],
    cfg: &Config,
    mut f: impl FnMut(&[u8], Option<&Event>),
) -> Result<u64, TrainError> {
    let max = cfg.ingest.max_event_bytes;
    let mut buf = Vec::with_capacity(4096);
    let mut rejected = 0;
    for path in data {
        let read_err = |source| TrainError::Read {
            path: path.clone(),
            source,
        };
        let mut reader = JsonlReader::open(path, max).map_err(read_err)?;
        while let Some(line) = reader.next_line(&mut buf).map_err(read_err)? {
            if buf.iter().all(u8::is_ascii_whitespace) {
                f(&buf, None);
                continue;
            }
            let ev = match line {
                Line::Data => decode_bytes(&buf, max).ok(),
                Line::TooLong(_) => None,
            };
            if ev.is_none() {
                rejected += 1;
            }
            f(&buf, ev.as_ref());
        }
    }
    Ok(rejected)
}

fn collect(data: &[PathBuf], cfg: &Config) -> Result<Collected, TrainError> {
    let mut c = Collected {
        engine: Engine::new(cfg),
        shapes: HashMap::new(),
        sessions: HashMap::new(),
        events: 0,
        tool_calls: 0,
        rejected: 0,
        first: Millis::MAX,
        last: Millis::MIN,
        digest: Sha256::new(),
        rtypes: Default::default(),
        numbers: Default::default(),
        young: HashMap::new(),
    };
    c.rejected = for_each_event(data, cfg, |line, ev| {
        c.digest.update(line);
        c.digest.update(b"\n");
        let Some(ev) = ev else {
            return;
        };
        c.events += 1;
        match ev {
            Event::ToolCall(call) => {
                c.tool_calls += 1;
                c.first = c.first.min(call.ts);
                c.last = c.last.max(call.ts);
                if let Some(rt) = call.resource_type.as_deref() {
                    if !c.rtypes.contains(rt) {
                        c.rtypes.insert(rt.to_owned());
                    }
                }
                let young = is_young(&c.engine, &call.agent_id, cfg);
                let e = c.engine.evaluate(call, Phase::Train);
                for n in &e.obs.numbers {
                    c.numbers.insert((n.key.to_string(), n.kind as u8));
                }
                let entry = c.sessions.entry(session_of(call)).or_insert((0.0, young));
                entry.0 = entry.0.max(e.score.total);
                let v = session_vector(&e.shape);
                match c.shapes.get_mut(call.agent_id.as_ref()) {
                    Some(list) => list.push(v),
                    None => {
                        c.shapes.insert(call.agent_id.to_string(), vec![v]);
                    }
                }
                c.engine.commit(e);
                if !young && !c.young.contains_key(call.agent_id.as_ref()) {
                    if let Some(a) = c.engine.agent(&call.agent_id) {
                        c.young
                            .insert(call.agent_id.to_string(), YoungRates::of(&a.profile));
                    }
                }
            }
            Event::Context(ctx) => c.engine.observe_context(ctx),
        }
    })?;
    c.engine.close_all();
    // Agents young to the end: their whole history.
    for a in c.engine.agents() {
        if !c.young.contains_key(a.id.as_ref()) {
            c.young.insert(a.id.to_string(), YoungRates::of(&a.profile));
        }
    }
    Ok(c)
}

/// Whether an agent is young: not yet calibrated on its own sessions.
fn is_young(engine: &Engine, agent: &str, cfg: &Config) -> bool {
    engine
        .agent(agent)
        .is_none_or(|a| (a.profile.sessions_learned as f32) < cfg.policy.calibration_min_sessions)
}

fn session_of(call: &crate::event::ToolCall) -> (String, String) {
    (
        call.agent_id.to_string(),
        call.session_id
            .as_deref()
            .or(call.agent_instance.as_deref())
            .unwrap_or("")
            .to_owned(),
    )
}

/// Prefix of the pseudo-agents the prior pass learns (no real agent id
/// starts with a control character).
const POOL: char = '\u{1}';

/// Each group's prior, and each member's leave-one-out prior.
type GroupPriors = (Vec<Option<PriorProfile>>, HashMap<String, PriorProfile>);

/// Group priors (all members as one agent) and, per member of a group of
/// two or more, the prior of the other members (leave one out), as
/// profiles learned by one more pass over the data.
fn group_priors(
    data: &[PathBuf],
    cfg: &Config,
    groups: &[Vec<String>],
    rtypes: &[String],
    numbers: &[(String, u8)],
    young: &HashMap<String, YoungRates>,
) -> Result<GroupPriors, TrainError> {
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    for (g, members) in groups.iter().enumerate() {
        for m in members {
            group_of.insert(m, g);
        }
    }
    let pools = |agent: &str| -> Vec<String> {
        let Some(&g) = group_of.get(agent) else {
            return Vec::new();
        };
        let mut v = vec![format!("{POOL}group-{g}")];
        if groups[g].len() > 1 {
            v.extend(
                groups[g]
                    .iter()
                    .filter(|m| m.as_str() != agent)
                    .map(|m| format!("{POOL}without-{m}")),
            );
        }
        v
    };
    let mut engine = Engine::new(cfg);
    for_each_event(data, cfg, |_, ev| match ev {
        Some(Event::ToolCall(call)) => {
            for pool in pools(&call.agent_id) {
                let mut c = call.clone();
                c.agent_id = pool.into();
                let e = engine.evaluate(&c, Phase::Train);
                engine.commit(e);
            }
        }
        Some(Event::Context(ctx)) => {
            for pool in pools(&ctx.agent_id) {
                let mut c = ctx.clone();
                c.agent_id = pool.into();
                engine.observe_context(&c);
            }
        }
        None => {}
    })?;
    engine.close_all();
    let fp = Fingerprinter::new(cfg.detector.hash_key());
    let n0 = cfg.fleet.prior_calls;
    let limits = cfg.detector.limits();
    let young_of = |members: &mut dyn Iterator<Item = &String>| {
        let mut r = YoungRates::default();
        for m in members {
            if let Some(y) = young.get(m) {
                r.add(y);
            }
        }
        r
    };
    let prior = |name: &str, young: &YoungRates| {
        engine
            .agent(name)
            .and_then(|a| PriorProfile::of(&a.profile, &fp, rtypes, numbers, young, n0, &limits))
    };
    let full = groups
        .iter()
        .enumerate()
        .map(|(g, members)| prior(&format!("{POOL}group-{g}"), &young_of(&mut members.iter())))
        .collect();
    let loo = groups
        .iter()
        .flat_map(|members| members.iter().map(move |m| (m, members)))
        .filter_map(|(m, members)| {
            let y = young_of(&mut members.iter().filter(|x| *x != m));
            Some((m.clone(), prior(&format!("{POOL}without-{m}"), &y)?))
        })
        .collect();
    Ok((full, loo))
}

/// Per group, the highest scores of members' young sessions, each member
/// streamed with no history and scored against the prior of the other
/// members: what the blend threshold is calibrated on.
fn blend_scores(
    data: &[PathBuf],
    cfg: &Config,
    model: &ModelFile,
    loo: &HashMap<String, PriorProfile>,
) -> Result<Vec<Vec<f32>>, TrainError> {
    // One pseudo-group per member, holding its leave-one-out prior.
    let mut file = model.clone();
    let mut real = Vec::new();
    file.groups = model
        .groups
        .iter()
        .flat_map(|g| g.members.iter().map(move |m| (g.id, m)))
        .filter_map(|(g, m)| Some((g, m, loo.get(m)?)))
        .enumerate()
        .map(|(i, (g, m, p))| {
            real.push(g as usize);
            Group {
                id: i as u16,
                centroid: vec![0.0; AGENT_DIM],
                members: vec![m.clone()],
                classes: Vec::new(),
                prior: GroupPrior {
                    profile: Some(p.clone()),
                    ..GroupPrior::default()
                },
                session_model: None,
            }
        })
        .collect();
    let mut out = vec![Vec::new(); model.groups.len()];
    if file.groups.is_empty() {
        return Ok(out);
    }
    let mut cal = cfg.clone();
    cal.fleet.blend_prior = true;
    cal.fleet.session_model = false;
    cal.fleet.assign.clear();
    let fleet = Arc::new(Fleet::leave_one_out(file));
    let mut engine = Engine::new(&cal);
    engine.set_fleet(Some(fleet));
    let mut sessions: HashMap<(String, String), (f32, bool, Option<u16>)> = HashMap::new();
    for_each_event(data, cfg, |_, ev| match ev {
        Some(Event::ToolCall(call)) => {
            let young = is_young(&engine, &call.agent_id, cfg);
            let e = engine.evaluate(call, Phase::Train);
            let group = engine.agent(&call.agent_id).and_then(|a| a.group());
            let entry = sessions
                .entry(session_of(call))
                .or_insert((0.0, young, group));
            entry.0 = entry.0.max(e.score.total);
            engine.commit(e);
        }
        Some(Event::Context(ctx)) => engine.observe_context(ctx),
        None => {}
    })?;
    for (score, young, group) in sessions.into_values() {
        if let (true, Some(g)) = (young, group) {
            if let Some(&r) = real.get(g as usize) {
                out[r].push(score);
            }
        }
    }
    Ok(out)
}

use crate::event::rfc3339;

/// Mean silhouette of a clustering (Euclidean), 0 for singletons.
fn silhouette(x: &Array2<f64>, labels: &[usize], k: usize) -> f64 {
    let n = x.nrows();
    let dist = |i: usize, j: usize| -> f64 {
        x.row(i)
            .iter()
            .zip(x.row(j).iter())
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut total = 0.0;
    for i in 0..n {
        let mut sum = vec![0.0; k];
        let mut count = vec![0usize; k];
        for j in 0..n {
            if i != j {
                sum[labels[j]] += dist(i, j);
                count[labels[j]] += 1;
            }
        }
        let own = labels[i];
        if count[own] == 0 {
            continue;
        }
        let a = sum[own] / count[own] as f64;
        let b = (0..k)
            .filter(|c| *c != own && count[*c] > 0)
            .map(|c| sum[c] / count[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() {
            total += (b - a) / a.max(b).max(1e-12);
        }
    }
    total / n as f64
}

/// Clusters standardised agent features: labels, k and the words saying how.
fn cluster(x: &Array2<f64>) -> Result<(Vec<usize>, usize, String), TrainError> {
    let n = x.nrows();
    if n < 4 {
        return Ok((
            vec![0; n],
            1,
            format!("one group: {n} agents are too few to cluster (k-means needs at least 4)"),
        ));
    }
    let dataset = DatasetBase::from(x.clone());
    let mut best: Option<(f64, Vec<usize>, usize)> = None;
    let mut tried = Vec::new();
    for k in 2..=MAX_GROUPS.min(n - 1) {
        let model = KMeans::params(k)
            .n_runs(10)
            .max_n_iterations(300)
            .tolerance(1e-6)
            .fit(&dataset)
            .map_err(|e| TrainError::Cluster(e.to_string()))?;
        let labels: Vec<usize> = model.predict(x).to_vec();
        // Relabel densely, in order of first appearance, so that empty
        // clusters leave no gap and group ids are stable.
        let mut map: Vec<Option<usize>> = vec![None; k];
        let mut next = 0;
        let labels: Vec<usize> = labels
            .iter()
            .map(|&l| {
                *map[l].get_or_insert_with(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let s = silhouette(x, &labels, next);
        tried.push(format!("k={k}: {s:.3}"));
        if best.as_ref().is_none_or(|(b, _, _)| s > *b + 1e-9) {
            best = Some((s, labels, next));
        }
    }
    let Some((s, labels, k)) = best else {
        return Err(TrainError::Cluster("no k tried".into()));
    };
    Ok((
        labels,
        k,
        format!(
            "linfa k-means (k-means++, 10 runs) on {AGENT_DIM} standardised profile features; k = {k} by the highest mean silhouette ({s:.3}; {})",
            tried.join(", ")
        ),
    ))
}

/// Trains a fleet model on replay-format files.
pub fn train(data: &[PathBuf], cfg: &Config) -> Result<ModelFile, TrainError> {
    if data.is_empty() {
        return Err(TrainError::NoInput);
    }
    let mut c = collect(data, cfg)?;
    let inputs: Vec<String> = data.iter().map(|p| file_name(p)).collect();
    let digest = format!(
        "sha256:{}",
        hex::encode(std::mem::take(&mut c.digest).finalize())
    );
    let mut model = fit(&c, inputs, digest, cfg)?;
    // The priors young agents are blended with, and the threshold that goes
    // with scoring against them.
    let members: Vec<Vec<String>> = model.groups.iter().map(|g| g.members.clone()).collect();
    let rtypes: Vec<String> = c.rtypes.iter().cloned().collect();
    let numbers: Vec<(String, u8)> = c.numbers.iter().cloned().collect();
    let (full, loo) = group_priors(data, cfg, &members, &rtypes, &numbers, &c.young)?;
    for (g, p) in model.groups.iter_mut().zip(full) {
        g.prior.profile = p;
    }
    model.cross_group = Some(cross_group_tools(&c.engine, &model, &loo));
    let scores = blend_scores(data, cfg, &model, &loo)?;
    // Left out of a group of two, a member is scored against one other
    // agent, not a group: it looks as new as a stranger would (a payments
    // pair's threshold came to 35 bits). Such groups take the quantile of
    // the sessions of the groups whose leave-one-out priors hold at least
    // two agents.
    let pooled: Vec<f32> = model
        .groups
        .iter()
        .zip(&scores)
        .filter(|(g, _)| g.members.len() >= MIN_MEMBERS_FOR_OWN_BLEND)
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    for (g, s) in model.groups.iter_mut().zip(scores) {
        let own = g.members.len() >= MIN_MEMBERS_FOR_OWN_BLEND || pooled.is_empty();
        let s = if own { s } else { pooled.clone() };
        g.prior.blend_threshold_bits = blend_threshold(&s, cfg);
        g.prior.blend_sessions = s.len();
        g.prior.blend_pooled = !own;
    }
    Ok(model)
}

/// Counts, over every member's tools, those its group without it does not
/// use (its leave-one-out prior) and another group does.
fn cross_group_tools(
    engine: &Engine,
    model: &ModelFile,
    loo: &HashMap<String, PriorProfile>,
) -> CrossGroupTools {
    fn names(p: Option<&PriorProfile>) -> std::collections::HashSet<&str> {
        p.map(|p| p.tool_names().collect()).unwrap_or_default()
    }
    let groups: Vec<_> = model
        .groups
        .iter()
        .map(|g| names(g.prior.profile.as_ref()))
        .collect();
    let mut out = CrossGroupTools { cross: 0, tools: 0 };
    for (g, group) in model.groups.iter().enumerate() {
        for m in &group.members {
            let Some(agent) = engine.agent(m) else {
                continue;
            };
            let peers = names(loo.get(m));
            for t in &agent.profile.tools {
                out.tools += 1;
                let name = t.name.as_ref();
                let elsewhere = groups
                    .iter()
                    .enumerate()
                    .any(|(h, tools)| h != g && tools.contains(name));
                if elsewhere && !peers.contains(name) {
                    out.cross += 1;
                }
            }
        }
    }
    out
}

/// Trains a fleet model on a deployment's own profiles (checkpoints or
/// Redis), restored under their fingerprint key. Profiles hold no events:
/// the model gets peer groups, centroids and the priors profiles give
/// (shared tools, novelty rates, cadence, session sizes, the members'
/// calibrated thresholds), but no session models, no young or blend
/// thresholds and no prior profile; those need `--data` event files.
pub fn train_on_profiles(
    agents: Vec<(String, crate::engine::AgentSnapshot)>,
    inputs: Vec<String>,
    digest: String,
    cfg: &Config,
) -> Result<ModelFile, TrainError> {
    let mut engine = Engine::new(cfg);
    let (mut first, mut last) = (Millis::MAX, Millis::MIN);
    let (mut tool_calls, mut sessions) = (0, 0);
    for (id, snapshot) in agents {
        let p = &snapshot.profile;
        if p.events_learned > 0 {
            first = first.min(p.first_ts);
            last = last.max(p.last_ts);
        }
        tool_calls += p.events_learned;
        sessions += p.sessions_learned;
        engine.restore(&id, snapshot);
    }
    let c = Collected {
        engine,
        shapes: HashMap::new(),
        sessions: HashMap::new(),
        events: 0,
        tool_calls,
        rejected: 0,
        first,
        last,
        digest: Sha256::new(),
        rtypes: Default::default(),
        numbers: Default::default(),
        young: HashMap::new(),
    };
    let mut model = fit(&c, inputs, digest, cfg)?;
    // The engine closed no session here: the profiles learned them.
    model.training.sessions = sessions;
    Ok(model)
}

/// Peer groups, their priors and session models from what was collected.
fn fit(
    c: &Collected,
    inputs: Vec<String>,
    digest: String,
    cfg: &Config,
) -> Result<ModelFile, TrainError> {
    let agents: Vec<_> = c
        .engine
        .agents()
        .iter()
        .filter(|a| a.profile.events_learned > 0)
        .collect();
    match agents.len() {
        0 => {
            return Err(TrainError::EmptyTrainingSet {
                inputs: inputs.join(", "),
                rejected: c.rejected,
            })
        }
        1 => {
            return Err(TrainError::SingleAgent {
                agent: agents[0].id.to_string(),
            })
        }
        _ => {}
    }
    let raw: Vec<[f64; AGENT_DIM]> = agents.iter().map(|a| agent_features(&a.profile)).collect();
    let n = raw.len() as f64;
    let mut center = vec![0.0; AGENT_DIM];
    let mut scale = vec![0.0; AGENT_DIM];
    for r in &raw {
        for j in 0..AGENT_DIM {
            center[j] += r[j] / n;
        }
    }
    for r in &raw {
        for j in 0..AGENT_DIM {
            scale[j] += (r[j] - center[j]).powi(2) / n;
        }
    }
    scale.iter_mut().for_each(|s| *s = s.sqrt().max(1e-3));
    let x = Array2::from_shape_fn((raw.len(), AGENT_DIM), |(i, j)| {
        (raw[i][j] - center[j]) / scale[j]
    });
    let (labels, k, how) = cluster(&x)?;

    let mut groups = Vec::with_capacity(k);
    for g in 0..k {
        let idx: Vec<usize> = (0..agents.len()).filter(|i| labels[*i] == g).collect();
        let mut centroid = vec![0.0; AGENT_DIM];
        for &i in &idx {
            for (j, c) in centroid.iter_mut().enumerate() {
                *c += x[[i, j]] / idx.len() as f64;
            }
        }
        let profiles: Vec<_> = idx.iter().map(|&i| &agents[i].profile).collect();
        let mut members: Vec<String> = idx.iter().map(|&i| agents[i].id.to_string()).collect();
        members.sort();
        let mut classes: Vec<String> = idx
            .iter()
            .filter_map(|&i| agents[i].declared_class().map(str::to_owned))
            .collect();
        classes.sort();
        classes.dedup();
        let vectors: Vec<[f64; SESSION_DIM]> = members
            .iter()
            .filter_map(|m| c.shapes.get(m))
            .flatten()
            .copied()
            .collect();
        let session_model = match SessionModel::fit(&vectors) {
            Ok(m) => Some(m),
            Err(SessionModelError::TooFewSamples { .. }) => None,
            Err(source) => return Err(TrainError::Session { group: g, source }),
        };
        let young_scores: Vec<f32> = c
            .sessions
            .iter()
            .filter(|((agent, _), (_, young))| *young && members.binary_search(agent).is_ok())
            .map(|(_, (score, _))| *score)
            .collect();
        groups.push(Group {
            id: g as u16,
            centroid,
            members,
            classes,
            prior: GroupPrior::of(&profiles, &young_scores, cfg),
            session_model,
        });
    }

    Ok(ModelFile {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        schema: Schema::current(),
        training: TrainingInfo {
            digest,
            inputs,
            events: c.events,
            tool_calls: c.tool_calls,
            rejected: c.rejected,
            agents: agents.len(),
            sessions: c.engine.counters.sessions_closed,
            first_event: rfc3339(c.first),
            last_event: rfc3339(c.last),
            linfa_version: LINFA_VERSION.to_owned(),
            clustering: how,
        },
        agent_center: center,
        agent_scale: scale,
        groups,
        cross_group: None,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}
