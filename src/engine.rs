//! The engine: per-agent profiles and open sessions, and the one path every
//! tool call takes: extract → score → decide → (emit) → learn.
//!
//! An engine is a single writer: the service runs one per worker and routes
//! each agent to one worker, so nothing here locks. Evaluation and learning
//! are two calls so that the caller can emit the decision (and time the
//! scoring) in between: [`Engine::evaluate`] then [`Engine::commit`].

use std::collections::HashMap;
use std::sync::Arc;

use arrayvec::ArrayVec;
use serde::{Deserialize, Serialize};

use crate::baseline::binding::{principal_tag, KeyClass};
use crate::baseline::tables::{insert_keyed, insert_sorted, Fp};
use crate::baseline::{Profile, ProfileLimits, SeqContext, SessionId, SessionSummary, START};
use crate::config::fleet::FleetConfig;
use crate::config::{Config, PolicyConfig};
use crate::decide::{self, AgentPolicy, Decision};
use crate::event::{Action, ContextEvent, EventKind, Millis, ToolCall};
use crate::fleet::blend::KeyedPrior;
use crate::fleet::features::SessionShape;
use crate::fleet::Fleet;
use crate::score::binding::{BindingView, IdView};
use crate::score::features::{
    compact, entities_in, grouped_in, id_form, ids_in, is_entity, parent_of, words_in,
    Fingerprinter, Observation, Sample, Shape, ValueFrom, MAX_VALUES,
};
use crate::score::{
    self, render_detail, CrossGroupView, OddResult, Score, ScoreParams, SessionView,
};

/// Whether calls are history to learn from or live traffic to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Benign history: scored (to calibrate), never flagged, always learned.
    Train,
    /// Live: scored, decided, learned unless flagged.
    Live,
}

/// Distinct values a session remembers for its fan-out.
const SESSION_DISTINCT_CAP: usize = 1024;
/// Calls a session holds for learning; calls beyond are not learned.
const SESSION_PENDING_CAP: usize = 512;
/// Values a session's provenance index holds per source.
const SESSION_SOURCE_CAP: usize = 512;
/// Forms of the values prompts named, per session.
const NAMED_FORMS_CAP: usize = 16;
/// Results whose words a session keeps to learn, words kept of each, and
/// odd results it tracks (the first ones: a session that read more odd
/// results than this is judged on those it read first).
const SESSION_RESULTS_CAP: usize = 16;
const RESULT_WORDS_CAP: usize = 64;
const SESSION_ODD_CAP: usize = 16;
/// Marks an odd result's value the session already held (see `odd_values`).
const ECHO: u8 = 0x80;
/// Stems of prompt words a session keeps.
const ASKED_CAP: usize = 64;

/// A word's stem: its first five letters, enough to tell `cancel` and
/// `cancelled` from `close`, in any language's inflections of a verb.
fn stem(w: &str) -> &str {
    w.char_indices().nth(5).map_or(w, |(i, _)| &w[..i])
}

/// The words of a tool's name (`cancel_pending_order`, `cancelOrder`,
/// `orders.cancel`), three letters or more; allocates nothing, as it runs
/// on every change of a session with a prompt.
fn tool_words(name: &str) -> impl Iterator<Item = &str> {
    let mut rest = name;
    std::iter::from_fn(move || loop {
        let start = rest.find(char::is_alphanumeric)?;
        rest = &rest[start..];
        // A word ends at a separator, or before an upper-case letter
        // (camelCase).
        let end = rest
            .char_indices()
            .skip(1)
            .find(|(_, c)| !c.is_alphanumeric() || c.is_uppercase())
            .map_or(rest.len(), |(i, _)| i);
        let (w, tail) = rest.split_at(end);
        rest = tail;
        if w.chars().count() >= 3 {
            return Some(w);
        }
    })
}
/// Distinct other principals a session remembers touching.
const SESSION_PRINCIPALS_CAP: usize = 64;

/// A call waiting for its session to end clean before it is learned.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    sample: Sample,
    /// The tool's name when the profile did not know the tool yet.
    tool_name: Option<Box<str>>,
    ctx: SeqContext,
    bits: f32,
    /// Bit i: id i reached the session only through output other than the
    /// principal's own records.
    tainted: u8,
    /// Bit i: the call changed id i while the user's request named a value
    /// of its form; and of those, ids the request did not name.
    #[serde(default)]
    scoped: u8,
    #[serde(default)]
    unrequested: u8,
    /// Bit i: nothing the session read carried id i.
    #[serde(default)]
    unsourced: u8,
}

/// An open session of one agent. Checkpointed with the profile, so that a
/// crash or a rebalance hands nobody a fresh session: its calls still to be
/// learned, its context and its carried surprise continue.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct SessionState {
    key: u64,
    last_ts: Millis,
    calls: u32,
    prev1: Fp,
    prev2: Fp,
    tool_counts: Vec<(Fp, u32)>,
    /// Sorted fingerprints of the values the session touched.
    distinct: Vec<Fp>,
    /// Calls to learn when the session closes unflagged.
    pending: Vec<Pending>,
    /// Sorted fingerprints of values that entered the session from the user
    /// (prompts, trusted results) and from tool output: provenance.
    trusted: Vec<Fp>,
    untrusted: Vec<Fp>,
    /// Hosts of the addresses and URLs each side brought in, sorted: a URL
    /// on a host only tool output named came from that output.
    #[serde(default)]
    trusted_hosts: Vec<Fp>,
    #[serde(default)]
    untrusted_hosts: Vec<Fp>,
    carry: f32,
    max_score: f32,
    /// The threshold minus the margin once a live call came that near (a
    /// near miss; infinite before): with `policy.calibration-hold`, the
    /// most this session's score may teach calibration, so it holds the
    /// threshold, never raises it.
    #[serde(default = "no_cap")]
    calibration_cap: f32,
    flagged: bool,
    /// Tag of the principal the session acts for (0 = none given).
    principal: u32,
    /// Sorted fingerprints of ids that came from the principal's own
    /// records (results of calls on their own things).
    own: Vec<Fp>,
    /// Ids the principal's own records listed that are bound to others: an
    /// injected note or a household's shared booking. Scored as the other's
    /// (foreign) but not as tainted; if the session ends clean, learned as
    /// this principal's too.
    #[serde(default)]
    claimed: Vec<Fp>,
    /// Of those, ids a record the agent had read before (some of its ids
    /// already the principal's) lists for the first time: records change
    /// rarely, and a foreign id newly in one was most likely written into
    /// it, so it is priced as tool output, not as the principal's word.
    #[serde(default)]
    fresh: Vec<Fp>,
    /// Forms (`id_form`) of the values the user's prompts named, sorted: a
    /// change to another value of one of these forms is outside the request.
    #[serde(default)]
    named_forms: Vec<u64>,
    /// Stems of the words of the user's prompts, keyed hashes, sorted: a
    /// change whose tool the request never named was not asked for.
    #[serde(default)]
    asked: Vec<Fp>,
    /// Values provenance priced at a read's weight, sorted: a later change
    /// to one owes the rest.
    #[serde(default)]
    read_charged: Vec<Fp>,
    /// Values of untrusted results, sorted, with the tool that returned them.
    sources: Vec<(Fp, Fp)>,
    /// Other principals whose things the session touched.
    others: Vec<u32>,
    /// Words of the session's untrusted results with their tool, learned
    /// when the session closes clean.
    #[serde(default)]
    results: Vec<(Fp, Vec<Fp>)>,
    /// Results with words their tool's results never used, and the values
    /// each carried (sorted, with the index of the first odd result that
    /// carried it; [`ECHO`] set when the session held it before).
    #[serde(default)]
    odd: Vec<OddResult>,
    #[serde(default)]
    odd_values: Vec<(Fp, u8)>,
    /// Hash of the last call's event id, and whether it was on the
    /// principal's own record (its result lists their things).
    last_call: (u64, bool),
    /// Started after the agent's warm-up: its score calibrates thresholds.
    calibrate: bool,
    /// Fleet hook: the session's shape for the session model. Not
    /// checkpointed (the checkpoint format stays as it is): a restored
    /// session's shape counts from the restore.
    #[serde(skip)]
    shape: SessionShape,
}

fn no_cap() -> f32 {
    f32::INFINITY
}

impl SessionState {
    fn reset(&mut self, key: u64, ts: Millis, calibrate: bool) {
        self.key = key;
        self.last_ts = ts;
        self.calls = 0;
        self.prev1 = START;
        self.prev2 = START;
        self.tool_counts.clear();
        self.distinct.clear();
        self.pending.clear();
        self.trusted.clear();
        self.untrusted.clear();
        self.trusted_hosts.clear();
        self.untrusted_hosts.clear();
        self.carry = 0.0;
        self.max_score = 0.0;
        self.calibration_cap = f32::INFINITY;
        self.flagged = false;
        self.calibrate = calibrate;
        self.shape = SessionShape::default();
        self.principal = 0;
        self.own.clear();
        self.claimed.clear();
        self.fresh.clear();
        self.named_forms.clear();
        self.asked.clear();
        self.read_charged.clear();
        self.sources.clear();
        self.others.clear();
        self.results.clear();
        self.odd.clear();
        self.odd_values.clear();
        self.last_call = (0, false);
    }

    /// Keeps in `best` the oddest result that carried value `fp` (or its
    /// `joined` form) into the session, if any; `at` indexes the call's
    /// values, or its ids when `id`.
    ///
    /// An echo (a value the session held before the odd result) counts
    /// only for a change the user's request did not name (`unasked`).
    fn odd_carried(
        &self,
        fp: Fp,
        joined: Fp,
        at: u8,
        id: bool,
        unasked: bool,
        best: &mut Option<score::OddResultView>,
    ) {
        if self.odd_values.is_empty() {
            return;
        }
        let find = |x: Fp| self.odd_values.binary_search_by_key(&x, |(f, _)| *f).ok();
        let Some(j) = find(fp).or_else(|| (joined != 0).then(|| find(joined)).flatten()) else {
            return;
        };
        let (k, echo) = (
            self.odd_values[j].1 & !ECHO,
            self.odd_values[j].1 & ECHO != 0,
        );
        if echo && !unasked {
            return;
        }
        let result = self.odd[k as usize];
        if best.is_none_or(|x| result.rate < x.result.rate) {
            *best = Some(score::OddResultView {
                at,
                id,
                echo,
                odd: k,
                result,
            });
        }
    }

    fn tool_count(&self, tool: Fp) -> u32 {
        self.tool_counts
            .iter()
            .find(|(t, _)| *t == tool)
            .map_or(0, |(_, c)| *c)
    }
}

/// `arg_sources` of a call, when its runtime tracks data flow (EVENTS.md):
/// per argument, whether every source was a tool result.
#[derive(Debug, Default)]
struct ArgSources(Vec<(String, bool)>);

impl ArgSources {
    fn parse(raw: &serde_json::value::RawValue) -> Self {
        let map: std::collections::BTreeMap<String, Vec<String>> =
            serde_json::from_str(raw.get()).unwrap_or_default();
        Self(
            map.into_iter()
                .filter(|(_, sources)| !sources.is_empty())
                .map(|(arg, sources)| {
                    let only = sources.iter().all(|s| s.starts_with("tool_result"));
                    (arg, only)
                })
                .collect(),
        )
    }

    /// `Some(true)` when the runtime says this argument came only from tool
    /// results, `Some(false)` when it names another source, `None` when it
    /// says nothing of it.
    fn untrusted_only(&self, arg: &str) -> Option<bool> {
        self.0.iter().find(|(a, _)| a == arg).map(|(_, only)| *only)
    }
}

/// What a checkpoint keeps of one agent: its profile and its open sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSnapshot {
    pub profile: Profile,
    sessions: Vec<SessionState>,
    /// The class the agent's events declared (`agent_class`), if any.
    declared_class: Option<Box<str>>,
}

impl AgentSnapshot {
    /// A profile with no open session.
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            sessions: Vec::new(),
            declared_class: None,
        }
    }

    /// Sessions open when it was taken.
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// One agent: its profile, policy and open sessions.
#[derive(Debug)]
pub struct AgentState {
    pub id: Box<str>,
    pub profile: Profile,
    pub policy: AgentPolicy,
    sessions: Vec<SessionState>,
    /// The class its events declared; the first declaration holds, so an
    /// event cannot move a known agent to a laxer class.
    declared_class: Option<Box<str>>,
    /// The profile changed since it was last taken for a checkpoint.
    dirty: bool,
    /// Fleet hook: its peer group in the loaded fleet model, if any.
    group: Option<u16>,
    /// Fleet hook: its own profile plus its group's prior, which a young
    /// agent is scored against (`fleet.blend-prior`); rebuilt when it
    /// learns, dropped once the prior weighs little. Not checkpointed.
    blend: Option<Box<Profile>>,
    /// Fleet hook: its group's prior knows fewer than half of the tools it
    /// called, so only the prior's catalogue-free rates are lent to it.
    foreign_tools: bool,
    /// Fleet hook: its catalogue was checked against the groups' priors
    /// since it was created or restored.
    placed: bool,
    /// Fleet hook: its group is the one whose members use most of its
    /// tools (at least half of them).
    by_catalogue: bool,
}

impl AgentState {
    /// The class its events declared (`agent_class`), if any.
    pub fn declared_class(&self) -> Option<&str> {
        self.declared_class.as_deref()
    }

    /// Its peer group in the loaded fleet model, if any.
    pub fn group(&self) -> Option<u16> {
        self.group
    }

    /// Whether it is scored against its group's prior with the group's
    /// tools (false: the catalogue-free part only, or no blend).
    pub fn lends_catalogue(&self) -> bool {
        self.blend.is_some() && !self.foreign_tools
    }

    fn snapshot(&self) -> (String, AgentSnapshot) {
        (
            self.id.to_string(),
            AgentSnapshot {
                profile: self.profile.clone(),
                sessions: self.sessions.clone(),
                declared_class: self.declared_class.clone(),
            },
        )
    }
}

/// A scored and decided call, not yet learned.
#[derive(Debug)]
pub struct Evaluation<'a> {
    pub obs: Observation<'a>,
    pub score: Score,
    pub decision: Decision,
    /// The session's shape with this call counted (fleet session model).
    pub shape: SessionShape,
    agent: u32,
    session: u32,
    ctx: SeqContext,
    /// Values of this call the session had not touched yet.
    new_values: ArrayVec<Fp, MAX_VALUES>,
    /// Bit i: value i came into the session only through tool output.
    untrusted_only: u8,
    /// Bit i: the user's request carried value i (as it was looked up:
    /// joined when written in groups).
    from_user: u8,
    bind: BindingView,
    /// The call acts on the principal's own record.
    on_own: bool,
    /// Keyed hash of the call's event id (results name their call by it).
    event_key: u64,
    tainted_ids: u8,
    unsourced_ids: u8,
    scoped_ids: u8,
    unrequested_ids: u8,
}

/// A reason as it leaves the engine: signal, text, bits.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExplainedReason {
    pub signal: &'static str,
    pub detail: String,
    pub bits: f32,
}

/// Counts of what the engine has seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineCounters {
    pub tool_calls: u64,
    pub context_events: u64,
    pub flagged: u64,
    pub sessions_closed: u64,
    /// Calls the binding channel abstained on: no principal given.
    pub binding_abstained: u64,
    /// Calls whose `resource_owner` contradicted a learned binding (the
    /// emitter's word was used).
    pub owner_contradictions: u64,
}

/// Per-agent state for one worker.
pub struct Engine {
    limits: ProfileLimits,
    params: ScoreParams,
    policy: PolicyConfig,
    fp: Fingerprinter,
    key_id: u64,
    session_timeout_ms: i64,
    max_sessions: usize,
    binding: bool,
    binding_cap: usize,
    /// Configured principal groups (`detector.binding.groups`).
    binding_groups: crate::config::BindingConfig,
    index: HashMap<Box<str>, u32>,
    agents: Vec<AgentState>,
    /// Closed sessions kept for reuse, so steady state allocates nothing.
    pool: Vec<SessionState>,
    pub counters: EngineCounters,
    /// Fleet hook: peer groups and session models (`models/`), if loaded.
    fleet: Option<Arc<Fleet>>,
    fleet_cfg: FleetConfig,
    /// Fleet hook: each group's prior under this engine's fingerprints, and
    /// `[[fleet.assign]]` as (pattern, group).
    priors: Vec<Option<KeyedPrior>>,
    fleet_rules: Vec<(Box<str>, u16)>,
    /// Fleet hook: each group's tools (sorted fingerprints) and the price
    /// share of a first call of another group's tool (see
    /// [`Fleet::cross_group`]).
    group_tools: Vec<Vec<Fp>>,
    cross_group_share: Option<f32>,
}

impl Engine {
    pub fn new(cfg: &Config) -> Self {
        Self {
            limits: cfg.detector.limits(),
            params: cfg.detector.score_params(),
            policy: cfg.policy.clone(),
            fp: Fingerprinter::new(cfg.detector.hash_key()),
            key_id: cfg.detector.hash_key().id(),
            session_timeout_ms: cfg.detector.session_timeout.as_millis() as i64,
            max_sessions: cfg.detector.max_sessions_per_agent,
            binding: cfg.detector.binding.enabled,
            binding_cap: cfg.detector.binding.values_per_agent,
            binding_groups: cfg.detector.binding.clone(),
            index: HashMap::new(),
            agents: Vec::new(),
            pool: Vec::new(),
            counters: EngineCounters::default(),
            fleet: None,
            fleet_cfg: cfg.fleet.clone(),
            priors: Vec::new(),
            fleet_rules: Vec::new(),
            group_tools: Vec::new(),
            cross_group_share: None,
        }
    }

    /// Fleet hook: uses (or, with `None`, stops using) a fleet model, and
    /// assigns every known agent its group.
    pub fn set_fleet(&mut self, fleet: Option<Arc<Fleet>>) {
        self.fleet = fleet;
        self.priors = match (&self.fleet, self.fleet_cfg.blend_prior) {
            (Some(f), true) => f.keyed_priors(&self.fp),
            _ => Vec::new(),
        };
        self.fleet_rules = self
            .fleet
            .as_ref()
            .map(|f| f.assign_rules(&self.fleet_cfg.assign))
            .unwrap_or_default();
        let cross = self.fleet.as_ref().and_then(|f| f.cross_group());
        self.cross_group_share = cross.as_ref().map(|(_, share)| *share);
        self.group_tools = cross
            .map(|(groups, _)| {
                groups
                    .iter()
                    .map(|names| {
                        let mut v: Vec<Fp> = names.iter().map(|n| self.fp.tool(n)).collect();
                        v.sort_unstable();
                        v
                    })
                    .collect()
            })
            .unwrap_or_default();
        for ai in 0..self.agents.len() {
            self.agents[ai].group = None;
            self.agents[ai].placed = false;
            self.agents[ai].by_catalogue = false;
            let ts = self.agents[ai].profile.last_ts;
            self.assign_group(ai, ts);
        }
    }

    /// Fleet hook: a tool new to the agent that another peer group's
    /// agents use and its own group does not. Only for an agent past its
    /// youth (`policy.calibration-min-sessions` sessions learned), whose
    /// catalogue its history holds: a young agent's first calls of its
    /// ordinary tools are no take-up. And only when its group shares that
    /// catalogue: against a group of another catalogue every tool would
    /// look like someone else's.
    fn cross_group_view(&self, agent: &AgentState, tool: Fp) -> Option<CrossGroupView> {
        let share = self.cross_group_share?;
        let g = agent.group? as usize;
        let young = (agent.profile.sessions_learned as f32) < self.policy.calibration_min_sessions;
        if young || agent.foreign_tools || agent.profile.tool(tool).is_some() {
            return None;
        }
        let knows = |tools: &Vec<Fp>| tools.binary_search(&tool).is_ok();
        if self.group_tools.get(g).is_none_or(knows) {
            return None;
        }
        let groups = self.group_tools.iter().filter(|t| knows(t)).count() as u16;
        (groups > 0).then_some(CrossGroupView { groups, share })
    }

    fn assign_group(&mut self, ai: usize, ts: Millis) {
        if let Some(f) = &self.fleet {
            let a = &mut self.agents[ai];
            // Its catalogue is the direct evidence of what it does: a group
            // whose members use most of its tools holds against the
            // centroid of a few sessions' rates.
            if a.by_catalogue && !a.foreign_tools {
                self.refresh_blend(ai, ts);
                return;
            }
            a.group = f.assign(
                &a.id,
                a.declared_class.as_deref(),
                &a.profile,
                a.group,
                &self.fleet_rules,
            );
        }
        self.refresh_blend(ai, ts);
    }

    /// Fleet hook: rebuilds the profile a young agent is scored against
    /// (own + group prior), or drops it once the agent's own calls make the
    /// prior weigh under 10% (n ≥ 9 n0) or its own sessions calibrate its
    /// threshold.
    fn refresh_blend(&mut self, ai: usize, ts: Millis) {
        // A member of the training fleet is in its group's prior already:
        // blending would count its own calls twice, as pseudo-counts.
        let member = self
            .fleet
            .as_ref()
            .is_some_and(|f| f.prior_holds(&self.agents[ai].id));
        // A calibrated agent has its own evidence, sharper than young
        // peers' novelty rates: kept, they made what its history finds
        // new look ordinary (heldout-13: 67.2% -> 62.2% flagged). The
        // decision's own test: counts are stored decay-scaled.
        let calibrated = {
            let a = &self.agents[ai];
            let inv_w = 1.0 / a.profile.weight(ts, &self.limits);
            decide::threshold(&a.profile, &a.policy, &self.policy, inv_w).1
                == decide::Basis::Calibrated
        };
        let a = &mut self.agents[ai];
        let catalogue = !a.foreign_tools;
        a.blend = a
            .group
            .filter(|_| !member && !calibrated)
            .and_then(|g| self.priors.get(g as usize)?.as_ref())
            .filter(|p| (a.profile.events_learned as f32) < 9.0 * p.calls())
            .map(|p| Box::new(p.blend(&a.profile, ts, &self.limits, catalogue)));
    }

    /// Fleet hook, on a call of `tool` (named `name`): an agent that nothing
    /// about its identity places joins the group whose members use the most
    /// of the tools it has called (its catalogue), re-decided each time it
    /// calls a tool it never called while it is scored against a blend. A
    /// group that knows at least half of its tools holds against the
    /// centroid; one that knows fewer places it only until the centroid can
    /// (a few sessions). Whatever placed it, its group lends it the prior's
    /// tools only while the group knows at least half of its own:
    /// pseudo-calls of tools it does not have would make each of its own
    /// look new.
    fn place_by_tools(&mut self, ai: usize, tool: Fp, name: &str, ts: Millis) {
        let Some(f) = &self.fleet else { return };
        let a = &self.agents[ai];
        let learned = a.profile.tool(tool).is_some();
        if a.placed && (learned || (a.blend.is_none() && a.group.is_some())) {
            return;
        }
        let new_tool = !learned
            && !a
                .sessions
                .iter()
                .any(|s| s.tool_counts.iter().any(|(t, _)| *t == tool));
        // Placed, it is re-decided only on a tool it never called: the
        // catalogue below is built (and allocated) only then.
        if a.placed && !new_tool {
            return;
        }
        // Its catalogue: the tools its profile learned and its open
        // sessions called (learned when they close).
        let mut own: Vec<Fp> = a.profile.tools.iter().map(|t| t.tool).collect();
        for (t, _) in a.sessions.iter().flat_map(|s| &s.tool_counts) {
            if !own.contains(t) {
                own.push(*t);
            }
        }
        if new_tool {
            own.push(tool);
        }
        if self.priors.iter().all(Option::is_none) {
            // No priors (`fleet.blend-prior` off, or a model trained from
            // checkpoints): the group whose members mostly share the tool,
            // for the session model and the group's young threshold.
            if a.group.is_none() {
                if let Some(g) = f.group_of_tool(name) {
                    self.agents[ai].group = Some(g);
                }
            }
            self.agents[ai].placed = true;
            return;
        }
        let distinct = own.len();
        let cover = |g: Option<u16>| {
            g.and_then(|g| self.priors.get(g as usize)?.as_ref())
                .map_or((0, 0.0), |p| p.coverage(own.iter().copied()))
        };
        let shares = |c: (usize, f32)| 2 * c.0 >= distinct;
        let mut group = a.group;
        let mut by_catalogue = a.by_catalogue;
        if (a.blend.is_some() || a.group.is_none())
            && f.placed_by_calls(&a.id, a.declared_class.as_deref(), &self.fleet_rules)
        {
            let best = (0..self.priors.len() as u16)
                .map(|g| (g, cover(Some(g))))
                .filter(|(_, (n, _))| *n > 0)
                .max_by(|x, y| x.1 .0.cmp(&y.1 .0).then(x.1 .1.total_cmp(&y.1 .1)));
            match best {
                Some((g, c)) if shares(c) => {
                    group = Some(g);
                    by_catalogue = true;
                }
                Some((g, _)) if group.is_none() || Fleet::too_young_to_assign(&a.profile) => {
                    group = Some(g);
                    by_catalogue = false;
                }
                _ => by_catalogue = false,
            }
        }
        let foreign = group.is_some() && !shares(cover(group));
        let changed = group != a.group || foreign != a.foreign_tools;
        let a = &mut self.agents[ai];
        a.placed = true;
        a.group = group;
        a.foreign_tools = foreign;
        a.by_catalogue = by_catalogue;
        if changed {
            self.refresh_blend(ai, ts);
        }
    }

    pub fn agents(&self) -> &[AgentState] {
        &self.agents
    }

    pub fn agent(&self, id: &str) -> Option<&AgentState> {
        self.index.get(id).map(|&i| &self.agents[i as usize])
    }

    /// Installs a profile and its open sessions restored from a checkpoint
    /// (replacing any).
    pub fn restore(&mut self, id: &str, snapshot: AgentSnapshot) {
        let AgentSnapshot {
            profile,
            sessions,
            declared_class,
        } = snapshot;
        let policy = decide::resolve(id, declared_class.as_deref(), &self.policy);
        match self.index.get(id) {
            Some(&i) => {
                let agent = &mut self.agents[i as usize];
                agent.profile = profile;
                agent.sessions = sessions;
                agent.policy = policy;
                agent.declared_class = declared_class;
                agent.placed = false;
                agent.by_catalogue = false;
            }
            None => {
                let i = self.agents.len() as u32;
                self.agents.push(AgentState {
                    id: id.into(),
                    profile,
                    policy,
                    sessions,
                    declared_class,
                    dirty: false,
                    group: None,
                    blend: None,
                    foreign_tools: false,
                    placed: false,
                    by_catalogue: false,
                });
                self.index.insert(id.into(), i);
            }
        }
        if let Some(&i) = self.index.get(id) {
            let ts = self.agents[i as usize].profile.last_ts;
            self.assign_group(i as usize, ts);
        }
    }

    fn agent_index(&mut self, id: &str, ts: Millis, class: Option<&str>) -> u32 {
        if let Some(&i) = self.index.get(id) {
            let agent = &mut self.agents[i as usize];
            if let (None, Some(class)) = (&agent.declared_class, class) {
                // First declaration of an agent first seen without one.
                agent.policy = decide::resolve(id, Some(class), &self.policy);
                agent.declared_class = Some(class.into());
                agent.dirty = true;
                self.assign_group(i as usize, ts);
            }
            return i;
        }
        let i = self.agents.len() as u32;
        self.agents.push(AgentState {
            id: id.into(),
            profile: Profile::new(ts),
            policy: decide::resolve(id, class, &self.policy),
            sessions: Vec::new(),
            declared_class: class.map(Into::into),
            dirty: true,
            group: None,
            blend: None,
            foreign_tools: false,
            placed: false,
            by_catalogue: false,
        });
        self.index.insert(id.into(), i);
        self.assign_group(i as usize, ts);
        i
    }

    /// Closes session `si` of agent `ai`. A clean session is learned, call
    /// by call and then its shape; a flagged one teaches nothing, not even
    /// the calls made before its flag.
    fn close_session(&mut self, ai: usize, si: usize) {
        let agent = &mut self.agents[ai];
        agent.dirty = true;
        let s = agent.sessions.swap_remove(si);
        // A finite cap marks a near miss (see `calibration_cap`).
        let near_miss = s.calibration_cap.is_finite();
        let learns = !s.flagged && (self.policy.learn_near_misses || !near_miss);
        if learns && s.calls > 0 {
            for pending in &s.pending {
                let name = pending.tool_name.as_deref().unwrap_or("?");
                agent.profile.learn(
                    &pending.sample,
                    name,
                    &pending.ctx,
                    Some(pending.bits),
                    &self.limits,
                );
            }
            for (tool, words) in &s.results {
                agent
                    .profile
                    .learn_result(*tool, words, s.last_ts, &self.limits);
            }
            let summary = SessionSummary {
                end: SeqContext {
                    prev1: s.prev1,
                    prev2: s.prev2,
                    gap_ms: None,
                },
                calls: s.calls,
                distinct_values: s.distinct.len() as u32,
                tool_counts: &s.tool_counts,
                max_score: s.calibrate.then_some(if self.policy.calibration_hold {
                    s.max_score.min(s.calibration_cap)
                } else {
                    s.max_score
                }),
                ts: s.last_ts,
            };
            agent.profile.learn_session(&summary, &self.limits);
            if self.binding && s.principal != 0 {
                let mut ids: Vec<SessionId> = Vec::new();
                for pending in &s.pending {
                    for (i, id) in pending.sample.ids.iter().enumerate() {
                        let scoped = pending.scoped & (1 << i) != 0;
                        let unrequested = pending.unrequested & (1 << i) != 0;
                        if let Some(x) = ids.iter_mut().find(|x| x.id.value == id.value) {
                            x.scoped |= scoped;
                            x.unrequested |= unrequested;
                            continue;
                        }
                        ids.push(SessionId {
                            id: *id,
                            principal: if pending.sample.owner != 0 {
                                pending.sample.owner
                            } else {
                                s.principal
                            },
                            tainted: pending.tainted & (1 << i) != 0,
                            unsourced: pending.unsourced & (1 << i) != 0,
                            owner_foreign: i == 0
                                && pending.sample.owner != 0
                                && pending.sample.owner != s.principal,
                            listed: s.own.binary_search(&id.value).is_ok()
                                || s.claimed.binary_search(&id.value).is_ok(),
                            scoped,
                            unrequested,
                            ts: pending.sample.ts,
                            day: pending.sample.day,
                        });
                    }
                }
                agent
                    .profile
                    .learn_bindings(&ids, self.binding_cap, &self.limits);
                // After the calls' ids, so that a listing and a use in one
                // session do not count as a recurrence.
                let day = crate::score::features::day_stamp(s.last_ts);
                agent
                    .profile
                    .binding
                    .bind_listed(&s.own, s.principal, day, self.binding_cap);
                agent
                    .profile
                    .binding
                    .bind_listed(&s.claimed, s.principal, day, self.binding_cap);
            }
            // Fleet hook: an agent outside the training fleet moves to the
            // group its growing profile resembles (at 4, 8, 16, … sessions).
            if agent.profile.sessions_learned.is_power_of_two() {
                self.assign_group(ai, s.last_ts);
            } else if agent.blend.is_some() {
                // Fleet hook: the blend follows what the agent learned.
                self.refresh_blend(ai, s.last_ts);
            }
        }
        self.counters.sessions_closed += 1;
        self.pool.push(s);
    }

    /// Finds (or opens) the call's session. Closing idle sessions (which
    /// learns them) is left to [`Engine::sweep_idle`], after the decision, so
    /// that scoring stays short; only this very session, resumed after its
    /// timeout, is closed and reopened here.
    fn session_index(&mut self, ai: usize, key: u64, ts: Millis) -> usize {
        if let Some(i) = self.agents[ai].sessions.iter().position(|s| s.key == key) {
            if ts - self.agents[ai].sessions[i].last_ts <= self.session_timeout_ms {
                return i;
            }
            self.close_session(ai, i);
        }
        if self.agents[ai].sessions.len() >= self.max_sessions {
            let oldest = self.agents[ai]
                .sessions
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_ts)
                .map_or(0, |(i, _)| i);
            self.close_session(ai, oldest);
        }
        let calibrate = self.agents[ai].profile.events_learned
            >= self
                .policy
                .warmup_events
                .max(self.policy.calibration_warmup_events);
        let mut s = self.pool.pop().unwrap_or_default();
        s.reset(key, ts, calibrate);
        self.agents[ai].sessions.push(s);
        self.agents[ai].sessions.len() - 1
    }

    /// Closes the agent's sessions idle for longer than the timeout at `ts`.
    fn sweep_idle(&mut self, ai: usize, ts: Millis) {
        let mut i = 0;
        while i < self.agents[ai].sessions.len() {
            if ts - self.agents[ai].sessions[i].last_ts > self.session_timeout_ms {
                self.close_session(ai, i);
            } else {
                i += 1;
            }
        }
    }

    fn session_key(&self, session: Option<&str>, instance: Option<&str>) -> u64 {
        match (session, instance) {
            (Some(s), _) => self.fp.session(s),
            (None, Some(i)) => self.fp.session(i) ^ 2,
            (None, None) => 2,
        }
    }

    /// Indexes what a prompt or a tool result brought into its session: the
    /// keyed hashes of its entities and of the entity-like tokens of its
    /// text, which is read here once and not kept.
    pub fn observe_context(&mut self, ev: &ContextEvent) {
        self.counters.context_events += 1;
        let ai = self.agent_index(&ev.agent_id, ev.ts, None) as usize;
        let key = self.session_key(ev.session_id.as_deref(), ev.agent_instance.as_deref());
        let si = self.session_index(ai, key, ev.ts);
        let fp = self.fp;
        let agent = &mut self.agents[ai];
        let bindings = &agent.profile.binding;
        let tool = ev.tool.as_deref().map_or(0, |t| fp.tool(t));
        // The words of an untrusted result, to compare with what its tool
        // usually says and to learn if the session ends clean.
        let words = match (ev.kind, ev.trusted, ev.text.as_deref()) {
            (EventKind::ToolResult, false, Some(text)) if tool != 0 => {
                let mut w: Vec<Fp> = words_in(text).map(|w| fp.word(w)).collect();
                w.sort_unstable();
                w.dedup();
                w.truncate(RESULT_WORDS_CAP);
                w
            }
            _ => Vec::new(),
        };
        let odd = agent
            .profile
            .tool(tool)
            .filter(|_| !words.is_empty())
            .and_then(|t| {
                let new_words = t.new_words(&words);
                let inv_w = 1.0 / agent.profile.weight(ev.ts, &self.limits);
                let results = t.results * inv_w;
                // A prior of two new words in one novel result: the mean
                // is always above one, since a novel result has a new word.
                let usual_new = (t.novel_words * inv_w + 2.0) / (t.novel_results * inv_w + 1.0);
                (new_words > 0 && results > 0.0).then(|| OddResult {
                    tool,
                    results,
                    rate: (t.novel_results * inv_w + 0.5) / (results + 1.0),
                    new_words: new_words.min(u16::MAX as usize) as u16,
                    usual_new,
                    charged: 0.0,
                })
            });
        let s = &mut agent.sessions[si];
        s.last_ts = s.last_ts.max(ev.ts);
        if ev.kind == EventKind::Prompt {
            for w in ev.text.as_deref().into_iter().flat_map(words_in) {
                if w.chars().count() >= 3 {
                    insert_sorted(&mut s.asked, fp.word(stem(w)), ASKED_CAP);
                }
            }
        }
        let odd_at = match odd {
            Some(o) if s.odd.len() < SESSION_ODD_CAP => {
                s.odd.push(o);
                Some((s.odd.len() - 1) as u8)
            }
            _ => None,
        };
        if !words.is_empty() && s.results.len() < SESSION_RESULTS_CAP {
            s.results.push((tool, words));
        }
        // A result of a call on the principal's own record lists their
        // things: those ids are theirs, whatever else the text says.
        let own_result = ev
            .call_event_id
            .as_deref()
            .is_some_and(|c| s.last_call.1 && s.last_call.0 == fp.session(c));
        // A record this principal's clean sessions listed before.
        let known_record = own_result
            && s.principal != 0
            && ev
                .entities
                .iter()
                .any(|e| bindings.owners(fp.value(e), s.principal).mine);
        let text_entities = ev.text.as_deref().into_iter().flat_map(entities_in);
        // What the user typed names the things the request is about: their
        // identifiers too, when the emitter lists no entities.
        let prompt = ev.kind == EventKind::Prompt;
        let text_ids = ev
            .text
            .as_deref()
            .filter(|_| prompt)
            .into_iter()
            .flat_map(ids_in);
        // Numbers printed in groups, joined as a call would pass them.
        let grouped = ev.text.as_deref().into_iter().flat_map(grouped_in);
        let mut seen: ArrayVec<Fp, 2> = ArrayVec::new();
        for e in ev
            .entities
            .iter()
            .map(|e| std::borrow::Cow::Borrowed(e.as_ref()))
            .chain(text_entities.map(std::borrow::Cow::Borrowed))
            .chain(text_ids.map(std::borrow::Cow::Borrowed))
            .chain(grouped.map(std::borrow::Cow::Owned))
        {
            if prompt {
                insert_sorted(&mut s.named_forms, id_form(&e), NAMED_FORMS_CAP);
            }
            if let Some(h) = parent_of(&e).1.filter(|h| !h.is_empty()) {
                let hosts = if ev.trusted {
                    &mut s.trusted_hosts
                } else {
                    &mut s.untrusted_hosts
                };
                insert_sorted(hosts, fp.host(h), SESSION_SOURCE_CAP);
            }
            seen.clear();
            seen.push(fp.value(&e));
            if let Some(c) = compact(&e) {
                seen.push(fp.value(&c));
            }
            for &v in &seen {
                if ev.trusted {
                    insert_sorted(&mut s.trusted, v, SESSION_SOURCE_CAP);
                    continue;
                }
                // What the odd result brought in first is what an
                // instruction in it would point at. A value the session
                // already held is the thing the result is about (a ticket
                // fetched by its id): its text is what the user or the
                // thing's owner wrote about it, and acting on it is what
                // the request was for.
                let introduced = s.untrusted.binary_search(&v).is_err()
                    && s.trusted.binary_search(&v).is_err()
                    && s.distinct.binary_search(&v).is_err();
                insert_sorted(&mut s.untrusted, v, SESSION_SOURCE_CAP);
                if let Some(k) = odd_at {
                    let k = if introduced { k } else { k | ECHO };
                    insert_keyed(&mut s.odd_values, v, k, SESSION_SOURCE_CAP);
                }
                // Text an attacker may write can sit in one's own record (an
                // order note): an id bound to someone else stays theirs.
                let elsewhere = || {
                    let o = bindings.owners(v, s.principal);
                    o.others > 0 && !o.mine
                };
                let contested = own_result && elsewhere();
                if own_result && !contested {
                    insert_sorted(&mut s.own, v, SESSION_SOURCE_CAP);
                    continue;
                }
                if contested {
                    insert_sorted(&mut s.claimed, v, SESSION_SOURCE_CAP);
                    if known_record {
                        insert_sorted(&mut s.fresh, v, SESSION_SOURCE_CAP);
                    }
                }
                insert_keyed(&mut s.sources, v, tool, SESSION_SOURCE_CAP);
            }
        }
        self.sweep_idle(ai, ev.ts);
    }

    /// Scores and decides one call. Nothing is learned until [`commit`].
    ///
    /// [`commit`]: Engine::commit
    pub fn evaluate<'a>(&mut self, call: &'a ToolCall<'a>, phase: Phase) -> Evaluation<'a> {
        let mut obs = Observation::extract(call, &self.fp);
        if !self.binding_groups.groups.is_empty() {
            // A configured group is one party: its members share a tag.
            if let Some(g) = obs
                .principal_name
                .and_then(|n| self.binding_groups.group_of(n))
            {
                obs.principal = self.fp.principal(g);
            }
            if let Some(g) = obs.owner_name.and_then(|n| self.binding_groups.group_of(n)) {
                obs.owner = self.fp.principal(g);
            }
        }
        let ai = self.agent_index(&call.agent_id, call.ts, call.agent_class.as_deref()) as usize;
        let key = self.session_key(call.session_id.as_deref(), call.agent_instance.as_deref());
        let si = self.session_index(ai, key, call.ts);
        self.place_by_tools(ai, obs.tool, &call.tool, call.ts);
        let agent = &self.agents[ai];
        let sess = &agent.sessions[si];
        let ctx = SeqContext {
            prev1: sess.prev1,
            prev2: sess.prev2,
            gap_ms: (sess.calls > 0)
                .then(|| call.ts - sess.last_ts)
                .filter(|g| *g >= 0),
        };
        let mut new_values = ArrayVec::new();
        let mut untrusted_only = 0u8;
        let mut seen_in_session = 0u8;
        let mut read_charged = 0u8;
        let mut from_user = 0u8;
        let mut odd_result: Option<score::OddResultView> = None;
        // A change whose tool no word of the user's request named (only
        // when the session has a request to read). Only an odd result's
        // echo asks, so a session without one hashes no tool words.
        let unasked = !sess.odd_values.is_empty()
            && !matches!(obs.action, Action::Read | Action::None)
            && !sess.asked.is_empty()
            && !tool_words(&call.tool)
                .any(|w| sess.asked.binary_search(&self.fp.word(stem(w))).is_ok());
        let declared = call.arg_sources.map(ArgSources::parse).unwrap_or_default();
        for (i, v) in obs.values.iter().enumerate() {
            if sess.distinct.binary_search(&v.key.fp).is_err() {
                new_values.push(v.key.fp);
            } else {
                seen_in_session |= 1 << i;
                if sess.read_charged.binary_search(&v.key.fp).is_ok() {
                    read_charged |= 1 << i;
                }
            }
            let arg = match &v.from {
                ValueFrom::ResourceId => "resource_id",
                ValueFrom::Arg(k) => k,
            };
            // A value with spaces is also looked up joined (an IBAN typed
            // in groups); only such values pay for the second hash.
            let joined = compact(&v.text).map_or(0, |c| self.fp.value(&c));
            let within = |set: &[Fp]| {
                set.binary_search(&v.key.fp).is_ok()
                    || (joined != 0 && set.binary_search(&joined).is_ok())
            };
            let trusted = within(&sess.trusted);
            sess.odd_carried(v.key.fp, joined, i as u8, false, unasked, &mut odd_result);
            // The runtime's own data flow wins; otherwise the session index.
            let only_untrusted = declared.untrusted_only(arg).unwrap_or_else(|| {
                if trusted {
                    return false;
                }
                if within(&sess.untrusted) {
                    return true;
                }
                // Never seen whole, but on a host only tool output named and
                // this agent never used: a URL built on the attacker's host.
                matches!(v.key.shape, Shape::Email | Shape::Url)
                    && v.key.parent != 0
                    && sess.untrusted_hosts.binary_search(&v.key.parent).is_ok()
                    && sess.trusted_hosts.binary_search(&v.key.parent).is_err()
                    && !agent.profile.parents.contains(v.key.parent)
            });
            if only_untrusted {
                untrusted_only |= 1 << i;
            }
            // Only the user's own words: a principal's record holds text
            // others can write (an address line), so an address found there
            // is no request.
            if trusted {
                from_user |= 1 << i;
            }
        }
        // Ids (order, card, booking numbers) are keys of their own.
        for (i, id) in obs.ids.iter().enumerate() {
            sess.odd_carried(id.value, 0, i as u8, true, unasked, &mut odd_result);
        }
        let mut bind = BindingView::default();
        let mut on_own = false;
        let mut tainted_ids = 0u8;
        let mut unsourced_ids = 0u8;
        let mut scoped_ids = 0u8;
        let mut unrequested_ids = 0u8;
        // A change (not a read: a request about one booking reads the
        // others the profile lists) to an id of a form the user's request
        // named, but not this id.
        let changes = !matches!(obs.action, Action::Read | Action::None);
        if self.binding {
            let me = if obs.principal == 0 {
                0
            } else {
                principal_tag(obs.principal)
            };
            let b = &agent.profile.binding;
            bind.principal = me;
            bind.principals = sess.others.len() as u32;
            let mut new_other = 0u32;
            let read_content = !sess.trusted.is_empty() || !sess.untrusted.is_empty();
            for (i, id) in obs.ids.iter().enumerate() {
                let from_user = sess.trusted.binary_search(&id.value).is_ok();
                let from_own = sess.own.binary_search(&id.value).is_ok();
                let source = sess
                    .sources
                    .binary_search_by_key(&id.value, |(x, _)| *x)
                    .ok()
                    .map(|j| sess.sources[j].1);
                // An id the principal's own record lists came from their
                // records, even when it is bound to someone else too.
                let claimed = sess.claimed.binary_search(&id.value).is_ok();
                let fresh = claimed && sess.fresh.binary_search(&id.value).is_ok();
                // Listed in words the record never used (an injected note),
                // not in the record's usual text (a household's booking).
                let odd_listed = claimed
                    && sess
                        .odd_values
                        .binary_search_by_key(&id.value, |(x, _)| *x)
                        .is_ok();
                // Neither the user nor the principal's records brought it.
                let outside = !from_user && !from_own && !claimed;
                let tainted = (outside || fresh) && source.is_some();
                if tainted {
                    tainted_ids |= 1 << i;
                }
                let scoped = changes
                    && !sess.named_forms.is_empty()
                    && sess.named_forms.binary_search(&id_form(&id.text)).is_ok();
                let unrequested = scoped && !from_user;
                if scoped {
                    scoped_ids |= 1 << i;
                }
                if unrequested {
                    unrequested_ids |= 1 << i;
                }
                if me == 0 {
                    continue;
                }
                let class = b.class(id.key);
                let owners = b.owners(id.value, me);
                let identity = class == KeyClass::Identity && id.names_principal;
                let owner = (i == 0 && obs.resource_is_id && obs.owner != 0)
                    .then(|| principal_tag(obs.owner));
                // The principal's own record is their identity record (a
                // profile that lists their things), not any object of
                // theirs: an order's notes are text anyone may write.
                // Nor is an object the user named: its text is no listing.
                if identity || id.names_principal || owner == Some(me) {
                    on_own = true;
                }
                if !matches!(class, KeyClass::Owned | KeyClass::Identity) && owner.is_none() {
                    continue;
                }
                let learned_foreign = owners.others > 0 && !owners.mine && !identity;
                // A change to another's owned id that nothing this session
                // read carried (neither request, records nor any tool's
                // output): the model brought it from elsewhere. Only a
                // session that read content can say what it did not read;
                // an id the session already used was judged then.
                let unsourced = learned_foreign
                    && changes
                    && class == KeyClass::Owned
                    && outside
                    && source.is_none()
                    && read_content
                    && sess.distinct.binary_search(&id.value).is_err();
                if unsourced {
                    unsourced_ids |= 1 << i;
                }
                // An object neither bound to anyone nor read in this
                // session's tool output is being made now (a booking for a
                // colleague): delegation, not reaching into someone else's
                // things. Neither is an object the user named.
                let known_object = owners.mine || owners.others > 0 || source.is_some();
                let foreign = match owner {
                    // The emitter's word wins; a disagreement is counted.
                    Some(o) => o != me && known_object && !from_user,
                    None => learned_foreign && !from_user && !from_own,
                };
                let by_owner = foreign && owner.is_some();
                let _ = bind.ids.try_push(IdView {
                    id: i as u8,
                    foreign,
                    shown: foreign && !by_owner && claimed && !fresh && (!changes || !odd_listed),
                    fresh: tainted && fresh,
                    others: owners.others,
                    other_sessions: owners.other_sessions,
                    top: if by_owner {
                        owner.unwrap_or(0)
                    } else {
                        owners.top
                    },
                    by_owner,
                    listed: foreign && !by_owner && owners.listed_elsewhere,
                    identity: foreign && class == KeyClass::Identity,
                    tainted,
                    unrequested,
                    unsourced,
                    source_tool: source.unwrap_or(0),
                });
                if foreign {
                    let who = if by_owner {
                        owner.unwrap_or(0)
                    } else {
                        owners.top
                    };
                    if who != 0 && new_other == 0 && !sess.others.contains(&who) {
                        new_other = who;
                    }
                }
            }
            if new_other != 0 {
                bind.principals += 1;
            }
            // A look-up by what the user typed (their e-mail address) is a
            // look-up of their own record too.
            on_own |= me != 0
                && obs
                    .values
                    .iter()
                    .any(|v| is_entity(&v.text) && sess.trusted.binary_search(&v.key.fp).is_ok());
        }
        let view = SessionView {
            calls: sess.calls,
            tool_calls: sess.tool_count(obs.tool),
            distinct_values: sess.distinct.len() as u32,
            new_values: new_values.len() as u32,
            untrusted_only,
            seen_in_session,
            read_charged,
            from_user,
            carry: sess.carry,
            cross_group: self.cross_group_view(agent, obs.tool),
            odd_result,
        };
        let p = &agent.profile;
        // Fleet hook: a young agent is scored against its blend with the
        // group prior.
        let scored = agent.blend.as_deref().unwrap_or(p);
        let mut score = score::score(
            scored,
            &obs,
            &ctx,
            &view,
            &bind,
            &self.params,
            self.limits.half_life_ms,
        );
        // Fleet hook: the peer group's session model judges the session
        // with this call counted.
        let shape = sess.shape.with_call(
            obs.action,
            call.ts,
            view.tool_calls,
            view.tool_calls == 0,
            view.new_values,
        );
        if let (Some(fleet), Some(group), true) =
            (&self.fleet, agent.group, self.fleet_cfg.session_model)
        {
            let floor = self.fleet_cfg.session_floor_bits;
            if let Some((bits, detail)) = fleet.session_reason(group, &shape, floor) {
                score.add_session_shape(bits, detail);
            }
        }
        let decision = match phase {
            Phase::Train => decide::decide(
                f32::NEG_INFINITY,
                (0.0, decide::Basis::WarmUp),
                agent.policy.mode,
            ),
            Phase::Live => {
                let inv_w = 1.0 / p.weight(call.ts, &self.limits);
                let mut threshold = decide::threshold(p, &agent.policy, &self.policy, inv_w);
                // Fleet hook: a young agent starts from its group's
                // calibration rather than warm-up and the flat default: the
                // blend's when it is scored against the blend.
                if let (Some(fleet), decide::Basis::WarmUp | decide::Basis::Default) =
                    (&self.fleet, threshold.1)
                {
                    let group = agent
                        .blend
                        .as_ref()
                        .filter(|_| !agent.foreign_tools)
                        .and_then(|_| fleet.blend_threshold(agent.group))
                        .or_else(|| {
                            (self.fleet_cfg.group_threshold || agent.blend.is_some())
                                .then(|| fleet.young_threshold(agent.group))
                                .flatten()
                        });
                    if let Some(t) = group {
                        threshold = (t, decide::Basis::Group);
                    }
                }
                decide::decide(score.total, threshold, agent.policy.mode)
            }
        };
        Evaluation {
            obs,
            score,
            decision,
            shape,
            agent: ai as u32,
            session: si as u32,
            ctx,
            new_values,
            untrusted_only,
            from_user,
            bind,
            on_own,
            tainted_ids,
            unsourced_ids,
            scoped_ids,
            unrequested_ids,
            event_key: self.fp.session(&call.event_id),
        }
    }

    /// The reasons of an evaluation as text, largest first.
    pub fn explain(&self, ev: &Evaluation) -> Vec<ExplainedReason> {
        let p = &self.agents[ev.agent as usize].profile;
        let mut said = false;
        ev.score
            .sorted_reasons()
            .iter()
            .filter(|r| r.bits >= 0.01)
            .map(|r| {
                let mut detail = render_detail(r, &ev.obs, p);
                // The first (largest) novelty reason says how novelty was
                // discounted, once.
                if let (Some(d), true, false) =
                    (ev.score.novelty, score::is_novelty(r.signal), said)
                {
                    said = true;
                    detail.push_str(&format!(
                        "; the new tool's novelty counted {:.1} of its {:.1} bits: little else backs it, and this agent's `{}` calls meet new values in {:.0}% of cases",
                        d.kept,
                        d.raw,
                        ev.obs.action.as_str(),
                        d.routine * 100.0
                    ));
                }
                ExplainedReason {
                    signal: r.signal.as_str(),
                    detail,
                    bits: (r.bits * 100.0).round() / 100.0,
                }
            })
            .collect()
    }

    /// Updates the session and queues the call to be learned when its
    /// session closes clean.
    pub fn commit(&mut self, ev: Evaluation) {
        let agent = &mut self.agents[ev.agent as usize];
        let inv_w = 1.0 / agent.profile.weight(ev.obs.ts, &self.limits);
        let allowance = if agent.profile.event_bits.total() * inv_w >= 50.0 {
            agent
                .profile
                .event_bits
                .quantile(0.9)
                .max(self.policy.carry_allowance_bits)
        } else {
            self.policy.carry_allowance_bits
        };
        let s = &mut agent.sessions[ev.session as usize];
        let event_bits = ev.score.carried_bits();
        if ev.decision.flagged {
            s.flagged = true;
            self.counters.flagged += 1;
        }
        // After a flag the session keeps its surprise: later calls are
        // judged in its light.
        let (allowance, decay) = if s.flagged {
            (0.0, 1.0)
        } else {
            (allowance, self.policy.carry_decay)
        };
        s.carry = (s.carry * decay + event_bits - allowance).clamp(0.0, self.policy.max_carry_bits);
        s.max_score = s.max_score.max(ev.score.total);
        // A live call that came within the margin of its threshold is a
        // near miss: the session may hold the threshold where it is, not
        // raise it. Else every attack that slipped under the threshold
        // would lift it for the next one (calibration poisoning).
        if ev.decision.basis != decide::Basis::WarmUp {
            let hold = ev.decision.threshold - self.policy.margin_bits;
            if ev.score.total >= hold {
                s.calibration_cap = s.calibration_cap.min(hold);
            }
        }
        s.shape = ev.shape;
        // An odd result's values owe, at a later use, only what this call's
        // consequence did not already pay.
        for r in &ev.score.reasons {
            if let score::Detail::ResultText { view, weight } = r.detail {
                if let Some(o) = s.odd.get_mut(view.odd as usize) {
                    o.charged = o.charged.max(weight);
                }
            }
        }
        // Provenance priced a value at a read's weight: a change owes the
        // rest; priced at full weight, it owes nothing more.
        let charged = ev.score.reasons.iter().find_map(|r| match r.detail {
            score::Detail::Provenance { value, .. } => ev.obs.values.get(value as usize),
            _ => None,
        });
        if let Some(v) = charged {
            let fp = v.key.fp;
            if matches!(ev.obs.action, Action::Read | Action::None) {
                insert_sorted(&mut s.read_charged, fp, SESSION_SOURCE_CAP);
            } else if let Ok(at) = s.read_charged.binary_search(&fp) {
                s.read_charged.remove(at);
            }
        }
        s.calls += 1;
        s.last_ts = s.last_ts.max(ev.obs.ts);
        s.prev2 = s.prev1;
        s.prev1 = ev.obs.tool;
        match s.tool_counts.iter_mut().find(|(t, _)| *t == ev.obs.tool) {
            Some((_, c)) => *c += 1,
            None => s.tool_counts.push((ev.obs.tool, 1)),
        }
        if self.binding {
            match ev.obs.principal {
                0 => self.counters.binding_abstained += 1,
                p => s.principal = principal_tag(p),
            }
            if ev.obs.owner != 0 && ev.obs.resource_is_id && s.principal != 0 {
                // resource_owner against what was learned of the resource.
                if let Some(id) = ev.obs.ids.first() {
                    let owners = agent
                        .profile
                        .binding
                        .owners(id.value, principal_tag(ev.obs.owner));
                    if !owners.mine && owners.others > 0 {
                        self.counters.owner_contradictions += 1;
                        tracing::debug!(
                            agent_id = %agent.id,
                            "A resource_owner contradicted a learned binding; the event's owner was used."
                        );
                    }
                }
            }
            for id in &ev.bind.ids {
                if id.foreign
                    && id.top != 0
                    && s.others.len() < SESSION_PRINCIPALS_CAP
                    && !s.others.contains(&id.top)
                {
                    s.others.push(id.top);
                }
            }
            s.last_call = (ev.event_key, ev.on_own);
            if let Some(name) = ev.obs.principal_name {
                agent.profile.binding.note_name(s.principal, name);
            }
        }
        for fp in &ev.new_values {
            if s.distinct.len() < SESSION_DISTINCT_CAP {
                if let Err(at) = s.distinct.binary_search(fp) {
                    s.distinct.insert(at, *fp);
                }
            }
        }
        self.counters.tool_calls += 1;
        let rate = agent.profile.rate_at(ev.obs.ts);
        agent.profile.note_call(ev.obs.ts);
        if let Some(b) = &mut agent.blend {
            // Fleet hook: the blend's rate is the agent's own.
            b.rate_now = agent.profile.rate_now;
            b.rate_ts = agent.profile.rate_ts;
        }
        agent.dirty = true;
        if !s.flagged && s.pending.len() < SESSION_PENDING_CAP {
            let tool_name = agent
                .profile
                .tool(ev.obs.tool)
                .is_none()
                .then(|| ev.obs.tool_name.into());
            s.pending.push(Pending {
                sample: ev.obs.sample(rate, ev.untrusted_only),
                tool_name,
                ctx: ev.ctx,
                bits: event_bits,
                tainted: ev.tainted_ids,
                unsourced: ev.unsourced_ids,
                scoped: ev.scoped_ids,
                unrequested: ev.unrequested_ids,
            });
        }
        self.sweep_idle(ev.agent as usize, ev.obs.ts);
    }

    /// Removes these agents, returning their profiles and open sessions:
    /// the agents moved to another instance, which continues their sessions.
    pub fn evict(&mut self, ids: &[String]) -> Vec<(String, AgentSnapshot)> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(&i) = self.index.get(id.as_str()) else {
                continue;
            };
            let ai = i as usize;
            self.index.remove(id.as_str());
            let agent = self.agents.swap_remove(ai);
            if ai < self.agents.len() {
                let moved = self.agents[ai].id.clone();
                self.index.insert(moved, i);
            }
            out.push((
                agent.id.to_string(),
                AgentSnapshot {
                    profile: agent.profile,
                    sessions: agent.sessions,
                    declared_class: agent.declared_class,
                },
            ));
        }
        out
    }

    /// Copies of every agent's profile and open sessions, by agent id.
    pub fn snapshots(&self) -> Vec<(String, AgentSnapshot)> {
        self.agents.iter().map(AgentState::snapshot).collect()
    }

    /// Copies of the agents changed since the last call (for a store that
    /// writes per agent).
    pub fn take_dirty(&mut self) -> Vec<(String, AgentSnapshot)> {
        self.agents
            .iter_mut()
            .filter(|a| a.dirty)
            .map(|a| {
                a.dirty = false;
                a.snapshot()
            })
            .collect()
    }

    /// The public id of the fingerprint key this engine hashes with.
    pub fn key_id(&self) -> u64 {
        self.key_id
    }

    /// Closes every agent's sessions idle at event time `ts` (periodic
    /// maintenance of a service whose agents may have gone quiet).
    pub fn sweep_all(&mut self, ts: Millis) {
        for ai in 0..self.agents.len() {
            self.sweep_idle(ai, ts);
        }
    }

    /// Closes every open session (end of a replay, shutdown).
    pub fn close_all(&mut self) {
        for ai in 0..self.agents.len() {
            while !self.agents[ai].sessions.is_empty() {
                self.close_session(ai, 0);
            }
        }
    }

    /// Learns calls a human released as false positives: scored as history
    /// (never flagged) in a session of their own, closed at once, so the
    /// agent's profile takes them now.
    pub fn learn_released(&mut self, calls: &mut [ToolCall], session: &str) {
        for call in calls.iter_mut() {
            call.session_id = Some(std::borrow::Cow::Owned(session.to_owned()));
        }
        for call in calls.iter() {
            let ev = self.evaluate(call, Phase::Train);
            self.commit(ev);
        }
        let key = self.fp.session(session);
        for call in calls.iter() {
            let Some(&ai) = self.index.get(call.agent_id.as_ref()) else {
                continue;
            };
            let ai = ai as usize;
            if let Some(si) = self.agents[ai].sessions.iter().position(|s| s.key == key) {
                self.close_session(ai, si);
            }
        }
    }

    /// The threshold that applies to an agent now, for reporting.
    pub fn threshold_of(&self, agent: &AgentState) -> (f32, decide::Basis) {
        let p = &agent.profile;
        let inv_w = 1.0 / p.weight(p.last_ts, &self.limits);
        decide::threshold(p, &agent.policy, &self.policy, inv_w)
    }
}

#[cfg(test)]
mod tests;

mod sources;
pub use sources::ValueSource;
