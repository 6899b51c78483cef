//! Per-agent baselines, learned online.
//!
//! A [`Profile`] is everything Warden knows of one agent's normal behaviour:
//! which tools it calls and in what order, what it touches with each tool and
//! how often that is something new, its action mix, argument ranges, cadence
//! and hours, and how long and wide its sessions are. Every count decays with
//! a configurable half-life (see [`tables`]), every set is capped, so a
//! profile follows legitimate change and stays in the kilobytes.

pub mod binding;
pub mod tables;

use serde::{Deserialize, Serialize};

use crate::event::{Action, Millis};
use crate::score::features::{OriginKind, Sample, Shape};
use tables::{Fp, FpCounts, FpSet, LogHist, ScoreHist, Seen};

/// Context id of "the session's start" in the sequence model.
pub const START: Fp = 0x5354_4152;
/// Pseudo-tool "the session ended" in the sequence model.
pub const END: Fp = 0x454E_4421;

/// Bounds and rates the profile is learned with (from the config file).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileLimits {
    /// Half-life of every count, in milliseconds of event time.
    pub half_life_ms: f64,
    /// Distinct values remembered per tool.
    pub values_per_tool: usize,
    /// Distinct parents (domains, hosts, prefixes) remembered per tool.
    pub parents_per_tool: usize,
    /// Distinct values remembered per agent (back-off level).
    pub values_per_agent: usize,
    /// Distinct parents remembered per agent.
    pub parents_per_agent: usize,
    /// Distinct tools per agent; further tools are scored but not learned.
    pub tools_per_agent: usize,
    /// Entries of the tool-sequence tables.
    pub sequence_entries: usize,
}

impl Default for ProfileLimits {
    fn default() -> Self {
        Self {
            half_life_ms: 30.0 * 86_400_000.0,
            values_per_tool: 256,
            parents_per_tool: 64,
            values_per_agent: 512,
            parents_per_agent: 128,
            tools_per_agent: 64,
            sequence_entries: 1024,
        }
    }
}

/// Numeric arguments a tool's profile tracks.
pub const NUMBERS_PER_TOOL: usize = 8;

/// Most words of its results one tool remembers. A tool that returns free
/// text fills it, every later result then counts as saying something new,
/// and the result-text signal fades for it by itself.
pub const WORDS_PER_TOOL: usize = 256;

/// Range of one numeric argument (an amount, a recipient count) of a tool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NumStats {
    pub key: Fp,
    /// Decayed number of observations.
    pub n: f32,
    /// Decayed number of times a new maximum was set.
    pub records: f32,
    /// Largest value seen.
    pub max: f64,
}

/// What the agent does with one tool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolStats {
    pub tool: Fp,
    /// The tool's name, kept so explanations and alerts can say what the
    /// agent usually does.
    pub name: Box<str>,
    pub calls: f32,
    pub actions: [f32; Action::COUNT],
    pub rtypes: FpCounts,
    pub rtype_novel: f32,
    /// Calls, not decayed (to tell tools used once: Good–Turing).
    pub uses: u32,
    /// Values observed (a call may carry several).
    pub value_obs: f32,
    /// Values seen exactly once (decayed): Good–Turing's estimate of how
    /// often this tool meets a new value is `value_n1 / value_obs`.
    pub value_n1: f32,
    /// Parents seen exactly once, likewise for new parents.
    pub parent_n1: f32,
    pub values: FpSet,
    pub parents: FpSet,
    /// Forms of the values this tool touched (e-mail, URL, IBAN, path, id).
    pub shapes: [f32; Shape::COUNT],
    /// Where this tool's instructions came from (user, tool output, …).
    pub origins: [f32; OriginKind::COUNT],
    /// Values new to the agent this tool used, and of those, values that
    /// had reached the session only through untrusted tool output.
    pub prov_new: f32,
    pub prov_untrusted: f32,
    /// Calls of this tool per session that used it.
    pub per_session: LogHist,
    pub numbers: Vec<NumStats>,
    /// Results of this tool learned, and of those, results with a word its
    /// earlier results never used (decayed): how often it says something
    /// new.
    #[serde(default)]
    pub results: f32,
    #[serde(default)]
    pub novel_results: f32,
    /// New words those novel results brought, in all (decayed): how many a
    /// result that says something new usually says.
    #[serde(default)]
    pub novel_words: f32,
    /// Keyed hashes of the words its results used, sorted, at most
    /// [`WORDS_PER_TOOL`]. Never the text.
    #[serde(default)]
    pub words: Vec<Fp>,
}

impl ToolStats {
    pub fn new(tool: Fp, name: &str) -> Self {
        Self {
            tool,
            name: name.into(),
            calls: 0.0,
            actions: [0.0; Action::COUNT],
            rtypes: FpCounts::default(),
            rtype_novel: 0.0,
            uses: 0,
            value_obs: 0.0,
            value_n1: 0.0,
            parent_n1: 0.0,
            values: FpSet::default(),
            parents: FpSet::default(),
            shapes: [0.0; Shape::COUNT],
            origins: [0.0; OriginKind::COUNT],
            prov_new: 0.0,
            prov_untrusted: 0.0,
            per_session: LogHist::default(),
            numbers: Vec::new(),
            results: 0.0,
            novel_results: 0.0,
            novel_words: 0.0,
            words: Vec::new(),
        }
    }

    /// How many of `words` (sorted, distinct) this tool's results never
    /// used.
    pub fn new_words(&self, words: &[Fp]) -> usize {
        words
            .iter()
            .filter(|w| self.words.binary_search(w).is_err())
            .count()
    }

    pub fn number(&self, key: Fp) -> Option<&NumStats> {
        self.numbers.iter().find(|n| n.key == key)
    }

    /// The range of argument `key`, begun at `first` if the tool has none
    /// yet; `None` when it already tracks [`NUMBERS_PER_TOOL`] others.
    pub fn number_mut(&mut self, key: Fp, first: f64) -> Option<&mut NumStats> {
        let i = match self.numbers.iter().position(|n| n.key == key) {
            Some(i) => i,
            None if self.numbers.len() < NUMBERS_PER_TOOL => {
                self.numbers.push(NumStats {
                    key,
                    n: 0.0,
                    records: 0.0,
                    max: first,
                });
                self.numbers.len() - 1
            }
            None => return None,
        };
        Some(&mut self.numbers[i])
    }

    fn scale(&mut self, f: f32) {
        self.calls *= f;
        self.actions.iter_mut().for_each(|a| *a *= f);
        self.origins.iter_mut().for_each(|a| *a *= f);
        self.rtypes.scale(f);
        self.rtype_novel *= f;
        self.value_obs *= f;
        self.value_n1 *= f;
        self.parent_n1 *= f;
        self.shapes.iter_mut().for_each(|c| *c *= f);
        self.prov_new *= f;
        self.prov_untrusted *= f;
        self.per_session.scale(f);
        for n in &mut self.numbers {
            n.n *= f;
            n.records *= f;
        }
        self.results *= f;
        self.novel_results *= f;
        self.novel_words *= f;
    }

    fn heap_bytes(&self) -> usize {
        self.name.len()
            + self.rtypes.heap_bytes()
            + self.values.heap_bytes()
            + self.parents.heap_bytes()
            + self.numbers.capacity() * std::mem::size_of::<NumStats>()
            + self.words.capacity() * std::mem::size_of::<Fp>()
    }
}

/// Where a call sits in its session, for learning and scoring.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SeqContext {
    /// The previous tool of the session, or [`START`].
    pub prev1: Fp,
    /// The one before it, or [`START`].
    pub prev2: Fp,
    /// Milliseconds since the session's previous call.
    pub gap_ms: Option<i64>,
}

/// Summary of a finished session, learned when the session closes.
#[derive(Debug, Clone, Copy)]
pub struct SessionSummary<'s> {
    /// The session's last two tools.
    pub end: SeqContext,
    pub calls: u32,
    pub distinct_values: u32,
    pub tool_counts: &'s [(Fp, u32)],
    /// Highest score of the session, for threshold calibration; `None` when
    /// the session must not be used (warm-up).
    pub max_score: Option<f32>,
    pub ts: Millis,
}

/// One agent's baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Event time at which the decay weight is 1.
    pub epoch_ms: Millis,
    pub first_ts: Millis,
    pub last_ts: Millis,
    /// Tool calls learned, not decayed (warm-up).
    pub events_learned: u64,
    /// Sessions learned, not decayed.
    pub sessions_learned: u64,
    /// Decayed number of calls.
    pub calls: f32,
    pub tools: Vec<ToolStats>,
    /// Tools called exactly once (not decayed): Good–Turing novelty of tools.
    pub tools_once: u32,
    /// Sequence model: (order, context) → calls, and → new continuations.
    pub seq_ctx: FpCounts,
    pub seq_ctx_novel: FpCounts,
    /// (order, context, tool) → calls.
    pub seq_pairs: FpCounts,
    pub actions: [f32; Action::COUNT],
    pub origins: [f32; OriginKind::COUNT],
    pub rtypes: FpCounts,
    pub rtype_novel: f32,
    pub value_obs: f32,
    /// Values / parents seen exactly once (decayed), as for tools.
    pub value_n1: f32,
    pub parent_n1: f32,
    /// Parents new to the agent, and those of them that looked like a known
    /// one: how rare a look-alike is among new counterparties.
    pub parent_novel: f32,
    pub lookalike_novel: f32,
    /// Tools adopted (first calls), and of those, how many touched a
    /// resource type or a value new to the agent: what a new tool brings.
    pub adoptions: f32,
    pub adoption_new_rtype: f32,
    pub adoption_new_value: f32,
    pub adoption_new_action: f32,
    /// Provenance, agent-wide: as for tools.
    pub prov_new: f32,
    pub prov_untrusted: f32,
    /// Entropy (bits) of the hour-of-day distribution, refreshed as it is
    /// learned: the hour signal counts bits beyond the agent's usual.
    pub hour_entropy: f32,
    pub values: FpSet,
    pub parents: FpSet,
    pub skeletons: FpSet,
    pub hours: [f32; 24],
    pub weekdays: [f32; 7],
    /// Gaps between calls in a session, in quarter seconds.
    pub gaps: LogHist,
    /// Calls per minute (exponentially weighted) at each call.
    pub rate: LogHist,
    pub rate_now: f32,
    pub rate_ts: Millis,
    pub session_calls: LogHist,
    pub session_fanout: LogHist,
    /// Highest score of each finished, unflagged session.
    pub session_scores: ScoreHist,
    /// Per-call bits of unflagged calls (the session carry's allowance).
    pub event_bits: ScoreHist,
    /// Which keys name a principal's own things, and whose they are.
    pub binding: binding::Bindings,
}

/// Rebase once the decay weight passes this (≈ 10 half-lives).
const REBASE_WEIGHT: f64 = 1024.0;
/// Time constant of the calls-per-minute rate.
const RATE_TAU_MS: f64 = 60_000.0;

impl Profile {
    pub fn new(ts: Millis) -> Self {
        Self {
            epoch_ms: ts,
            first_ts: ts,
            last_ts: ts,
            events_learned: 0,
            sessions_learned: 0,
            calls: 0.0,
            tools: Vec::new(),
            tools_once: 0,
            seq_ctx: FpCounts::default(),
            seq_ctx_novel: FpCounts::default(),
            seq_pairs: FpCounts::default(),
            actions: [0.0; Action::COUNT],
            origins: [0.0; OriginKind::COUNT],
            rtypes: FpCounts::default(),
            rtype_novel: 0.0,
            value_obs: 0.0,
            value_n1: 0.0,
            parent_n1: 0.0,
            parent_novel: 0.0,
            lookalike_novel: 0.0,
            adoptions: 0.0,
            adoption_new_rtype: 0.0,
            adoption_new_value: 0.0,
            adoption_new_action: 0.0,
            prov_new: 0.0,
            prov_untrusted: 0.0,
            hour_entropy: 24f32.log2(),
            values: FpSet::default(),
            parents: FpSet::default(),
            skeletons: FpSet::default(),
            hours: [0.0; 24],
            weekdays: [0.0; 7],
            gaps: LogHist::default(),
            rate: LogHist::default(),
            rate_now: 0.0,
            rate_ts: ts,
            session_calls: LogHist::default(),
            session_fanout: LogHist::default(),
            session_scores: ScoreHist::default(),
            event_bits: ScoreHist::default(),
            binding: binding::Bindings::default(),
        }
    }

    /// Decay weight of an observation at `ts`.
    pub fn weight(&self, ts: Millis, limits: &ProfileLimits) -> f32 {
        ((ts - self.epoch_ms) as f64 / limits.half_life_ms).exp2() as f32
    }

    pub fn tool(&self, tool: Fp) -> Option<&ToolStats> {
        self.tools.iter().find(|t| t.tool == tool)
    }

    /// Sequence-table keys of an order-`k` context and of a tool after it.
    pub fn ctx_key(order: u32, c: &SeqContext) -> Fp {
        let (a, b) = match order {
            2 => (c.prev2, c.prev1),
            1 => (0, c.prev1),
            _ => (0, 0),
        };
        mix(order, a, b, 0)
    }

    pub fn pair_key(order: u32, c: &SeqContext, tool: Fp) -> Fp {
        let (a, b) = match order {
            2 => (c.prev2, c.prev1),
            1 => (0, c.prev1),
            _ => (0, 0),
        };
        mix(order | 0x100, a, b, tool)
    }

    /// The calls-per-minute rate if a call happened at `ts`.
    pub fn rate_at(&self, ts: Millis) -> f32 {
        let dt = (ts - self.rate_ts).max(0) as f64;
        (self.rate_now as f64 * (-dt / RATE_TAU_MS).exp()) as f32 + 1.0
    }

    fn rebase_if_needed(&mut self, ts: Millis, limits: &ProfileLimits) {
        let w = ((ts - self.epoch_ms) as f64 / limits.half_life_ms).exp2();
        if w < REBASE_WEIGHT {
            return;
        }
        let f = (1.0 / w) as f32;
        self.epoch_ms = ts;
        self.calls *= f;
        self.tools.iter_mut().for_each(|t| t.scale(f));
        self.seq_ctx.scale(f);
        self.seq_ctx_novel.scale(f);
        self.seq_pairs.scale(f);
        self.actions.iter_mut().for_each(|a| *a *= f);
        self.origins.iter_mut().for_each(|a| *a *= f);
        self.rtypes.scale(f);
        self.rtype_novel *= f;
        self.value_obs *= f;
        self.value_n1 *= f;
        self.parent_n1 *= f;
        self.parent_novel *= f;
        self.lookalike_novel *= f;
        self.adoptions *= f;
        self.adoption_new_rtype *= f;
        self.adoption_new_value *= f;
        self.adoption_new_action *= f;
        self.prov_new *= f;
        self.prov_untrusted *= f;
        self.hours.iter_mut().for_each(|h| *h *= f);
        self.weekdays.iter_mut().for_each(|h| *h *= f);
        self.gaps.scale(f);
        self.rate.scale(f);
        self.session_calls.scale(f);
        self.session_fanout.scale(f);
        self.session_scores.scale(f);
        self.event_bits.scale(f);
        self.binding.scale(f);
    }

    /// Moves the calls-per-minute rate to a call at `ts` (every call, flagged
    /// or not: the rate is a fact about the stream, not a habit).
    pub fn note_call(&mut self, ts: Millis) {
        if ts >= self.rate_ts {
            self.rate_now = self.rate_at(ts);
            self.rate_ts = ts;
        }
    }

    /// Learns one call of a clean session; `tool_name` names a tool the
    /// profile may not know yet.
    pub fn learn(
        &mut self,
        obs: &Sample,
        tool_name: &str,
        ctx: &SeqContext,
        bits: Option<f32>,
        limits: &ProfileLimits,
    ) {
        self.rebase_if_needed(obs.ts, limits);
        let w = self.weight(obs.ts, limits);
        self.first_ts = self.first_ts.min(obs.ts);
        self.last_ts = self.last_ts.max(obs.ts);
        self.events_learned += 1;
        self.calls += w;
        if let Some(b) = bits {
            self.event_bits.add(b, w);
        }

        // Sequence model, orders 2, 1, 0.
        for order in 0..=2 {
            let pair = Self::pair_key(order, ctx, obs.tool);
            let cap = limits.sequence_entries;
            if self.seq_pairs.add(pair, w, cap) {
                self.seq_ctx_novel.add(Self::ctx_key(order, ctx), w, cap);
            }
            self.seq_ctx.add(Self::ctx_key(order, ctx), w, cap);
        }

        let new_action = self.actions[obs.action as usize] <= 0.0;
        self.actions[obs.action as usize] += w;
        self.origins[obs.origin as usize] += w;
        let new_rtype = obs.rtype != 0 && self.rtypes.add(obs.rtype, w, 64);
        if new_rtype {
            self.rtype_novel += w;
        }
        let mut new_to_agent = 0u8;
        for (i, v) in obs.values.iter().enumerate() {
            if !self.values.contains(v.fp) {
                new_to_agent |= 1 << i;
            }
        }
        let new_value = new_to_agent != 0;
        let prov_new = new_to_agent.count_ones() as f32 * w;
        let prov_untrusted = (new_to_agent & obs.untrusted_only).count_ones() as f32 * w;
        self.prov_new += prov_new;
        self.prov_untrusted += prov_untrusted;

        // Agent-level values: back-off for tools with little history.
        for v in &obs.values {
            self.value_obs += w;
            let seen = self.values.insert(v.fp, obs.day, limits.values_per_agent);
            n1_update(&mut self.value_n1, seen, w, self.epoch_ms, limits);
            if v.parent != 0 {
                if seen == Seen::New && !self.parents.contains(v.parent) {
                    self.parent_novel += w;
                    if v.skeletons
                        .iter()
                        .any(|s| *s != 0 && self.skeletons.contains(*s))
                    {
                        self.lookalike_novel += w;
                    }
                }
                let pseen = self
                    .parents
                    .insert(v.parent, obs.day, limits.parents_per_agent);
                n1_update(&mut self.parent_n1, pseen, w, self.epoch_ms, limits);
            }
            for s in v.skeletons.iter().filter(|s| **s != 0) {
                self.skeletons.insert(*s, obs.day, limits.parents_per_agent);
            }
        }

        self.hours[obs.hour as usize] += w;
        self.weekdays[obs.weekday as usize] += w;
        if self.events_learned % 32 == 1 {
            self.hour_entropy = smoothed_hour_entropy(&self.hours);
        }
        if let Some(gap) = ctx.gap_ms {
            self.gaps.add(gap as f32 / 250.0, w);
        }
        self.rate.add(obs.rate, w);

        // Tool level.
        let idx = match self.tools.iter().position(|t| t.tool == obs.tool) {
            Some(i) => i,
            None if self.tools.len() < limits.tools_per_agent => {
                self.adoptions += w;
                if new_rtype {
                    self.adoption_new_rtype += w;
                }
                if new_value {
                    self.adoption_new_value += w;
                }
                if new_action {
                    self.adoption_new_action += w;
                }
                self.tools.push(ToolStats::new(obs.tool, tool_name));
                self.tools.len() - 1
            }
            None => return,
        };
        let t = &mut self.tools[idx];
        t.uses = t.uses.saturating_add(1);
        match t.uses {
            1 => self.tools_once += 1,
            2 => self.tools_once = self.tools_once.saturating_sub(1),
            _ => {}
        }
        t.calls += w;
        t.actions[obs.action as usize] += w;
        t.origins[obs.origin as usize] += w;
        t.prov_new += prov_new;
        t.prov_untrusted += prov_untrusted;
        if obs.rtype != 0 && t.rtypes.add(obs.rtype, w, 16) {
            t.rtype_novel += w;
        }
        for v in &obs.values {
            t.value_obs += w;
            t.shapes[v.shape as usize] += w;
            let seen = t.values.insert(v.fp, obs.day, limits.values_per_tool);
            n1_update(&mut t.value_n1, seen, w, self.epoch_ms, limits);
            if v.parent != 0 {
                let pseen = t.parents.insert(v.parent, obs.day, limits.parents_per_tool);
                n1_update(&mut t.parent_n1, pseen, w, self.epoch_ms, limits);
            }
        }
        for num in &obs.numbers {
            let Some(stats) = t.number_mut(num.key_fp, num.value) else {
                continue;
            };
            stats.n += w;
            if num.value > stats.max {
                stats.records += w;
                stats.max = num.value;
            }
        }
    }

    /// Learns the words of one result of `tool` (sorted, distinct keyed
    /// hashes) from a clean session. A tool the profile does not know yet
    /// learns nothing: its calls are learned first.
    pub fn learn_result(&mut self, tool: Fp, words: &[Fp], ts: Millis, limits: &ProfileLimits) {
        self.rebase_if_needed(ts, limits);
        let w = self.weight(ts, limits);
        let Some(t) = self.tools.iter_mut().find(|t| t.tool == tool) else {
            return;
        };
        t.results += w;
        let new = t.new_words(words);
        if new > 0 {
            t.novel_results += w;
            t.novel_words += new as f32 * w;
        }
        for &word in words {
            tables::insert_sorted(&mut t.words, word, WORDS_PER_TOOL);
        }
    }

    /// Learns the shape of a finished session, and that it ended after its
    /// last tools (so a call after a usual last step is a surprise).
    pub fn learn_session(&mut self, s: &SessionSummary, limits: &ProfileLimits) {
        self.rebase_if_needed(s.ts, limits);
        let w = self.weight(s.ts, limits);
        let cap = limits.sequence_entries;
        for order in 1..=2 {
            let ck = Self::ctx_key(order, &s.end);
            if self
                .seq_pairs
                .add(Self::pair_key(order, &s.end, END), w, cap)
            {
                self.seq_ctx_novel.add(ck, w, cap);
            }
            self.seq_ctx.add(ck, w, cap);
        }
        self.sessions_learned += 1;
        self.session_calls.add(s.calls as f32, w);
        self.session_fanout.add(s.distinct_values as f32, w);
        for (tool, count) in s.tool_counts {
            if let Some(t) = self.tools.iter_mut().find(|t| t.tool == *tool) {
                t.per_session.add(*count as f32, w);
            }
        }
        if let Some(score) = s.max_score {
            self.session_scores.add(score, w);
        }
    }

    /// Approximate memory held by this profile, in bytes.
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.tools.capacity() * std::mem::size_of::<ToolStats>()
            + self.tools.iter().map(ToolStats::heap_bytes).sum::<usize>()
            + self.seq_ctx.heap_bytes()
            + self.seq_ctx_novel.heap_bytes()
            + self.seq_pairs.heap_bytes()
            + self.rtypes.heap_bytes()
            + self.values.heap_bytes()
            + self.parents.heap_bytes()
            + self.skeletons.heap_bytes()
            + self.binding.heap_bytes()
            + 2 * 128 * 4
    }
}

/// One id a clean session used, as binding learns it.
#[derive(Debug, Clone, Copy)]
pub struct SessionId {
    pub id: crate::score::features::IdKey,
    /// The principal it was used for: the call's `resource_owner` when
    /// given, else the session's principal.
    pub principal: u32,
    /// It reached the session only through output other than the
    /// principal's own records.
    pub tainted: bool,
    /// Nothing the session read carried it (and the session read content).
    pub unsourced: bool,
    /// The event's `resource_owner` named someone other than the principal
    /// the session acted for (a staff desk working customers' tickets).
    pub owner_foreign: bool,
    /// The session's own records (the principal's profile) listed it.
    pub listed: bool,
    /// A call changed it while the user's request named a value of its
    /// form; and the request did not name it.
    pub scoped: bool,
    pub unrequested: bool,
    pub ts: Millis,
    pub day: u16,
}

impl Profile {
    /// Learns the ids of a clean session (each once): bindings, key
    /// classes, and how often this agent legitimately acts on other
    /// principals' things or on ids it only read in tool output.
    pub fn learn_bindings(&mut self, ids: &[SessionId], cap: usize, limits: &ProfileLimits) {
        let Some(last) = ids.last() else {
            return;
        };
        self.rebase_if_needed(last.ts, limits);
        let w = self.weight(last.ts, limits);
        let mut foreign: arrayvec::ArrayVec<u32, 64> = arrayvec::ArrayVec::new();
        for s in ids {
            let class = self.binding.class(s.id.key);
            let before = self.binding.learn(
                s.id.key,
                s.id.value,
                s.principal,
                s.id.names_principal,
                s.listed,
                w,
                s.day,
                cap,
            );
            let owned = matches!(
                class,
                binding::KeyClass::Owned | binding::KeyClass::Identity
            );
            if owned || s.owner_foreign {
                self.binding.owned_ops += w;
                let learned = owned && before.others > 0 && !before.mine && !s.listed;
                if s.owner_foreign || learned {
                    self.binding.foreign_ops += w;
                    let who = if s.owner_foreign {
                        s.principal
                    } else {
                        before.top
                    };
                    if !foreign.contains(&who) {
                        let _ = foreign.try_push(who);
                    }
                }
                if s.tainted {
                    self.binding.tainted_ops += w;
                }
                if s.unsourced {
                    self.binding.unsourced_ops += w;
                }
                if s.scoped {
                    self.binding.scoped_ops += w;
                    if s.unrequested {
                        self.binding.unrequested_ops += w;
                    }
                }
            }
        }
        self.binding.session_principals.add(foreign.len() as f32, w);
    }
}

/// Keeps a decayed singleton count: +w for a new key, minus the weight it
/// was added with when it is seen a second time.
fn n1_update(n1: &mut f32, seen: Seen, w: f32, epoch_ms: Millis, limits: &ProfileLimits) {
    match seen {
        Seen::New => *n1 += w,
        Seen::Second(day) => {
            let then = (day as i64 * 86_400_000 - epoch_ms) as f64 / limits.half_life_ms;
            *n1 = (*n1 - then.exp2().min(w as f64) as f32).max(0.0);
        }
        Seen::Known => {}
    }
}

/// Entropy of the hour histogram after the scorer's neighbour smoothing.
fn smoothed_hour_entropy(hours: &[f32; 24]) -> f32 {
    let near: [f32; 24] =
        std::array::from_fn(|h| hours[h] + 0.5 * (hours[(h + 23) % 24] + hours[(h + 1) % 24]));
    let total: f32 = near.iter().sum();
    if total <= 0.0 {
        return 24f32.log2();
    }
    near.iter()
        .filter(|c| **c > 0.0)
        .map(|c| {
            let p = c / total;
            -p * p.log2()
        })
        .sum()
}

/// Mixes an order tag and up to three fingerprints into one table key
/// (splitmix64 finaliser, chained so that the order of the inputs counts).
fn mix(order: u32, a: Fp, b: Fp, c: Fp) -> Fp {
    fn sm(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    sm(sm(sm(sm(order as u64) ^ a) ^ b) ^ c).max(1)
}

#[cfg(test)]
mod tests;
