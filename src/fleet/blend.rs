//! The group prior as pseudo-observations: what a young agent is scored
//! against until its own history speaks for it.
//!
//! `warden train` learns one profile from all the members of a group (their
//! calls as if one agent made them), drops what belongs to one agent only
//! (the values, counterparties and principals it touched) and scales the
//! rest to `prior-calls` pseudo-calls: tools and their action, resource-type
//! and origin mixes, the transitions between tools (orders 0–2), how often
//! each tool and the group as a whole meets new values, what adopting a new
//! tool brings, hours, cadence, rates and session shapes.
//!
//! A young agent of the group is scored against its own profile plus these
//! pseudo-counts ([`KeyedPrior::blend`]): with n0 pseudo-calls and n calls of
//! its own, the prior weighs n0 / (n0 + n), so it fades as evidence grows
//! (a Dirichlet-style pseudo-count prior). An agent whose tools no peer
//! knows still gets the group's novelty rates, adoption rates, hours and
//! cadence: those are agent-level counts.
//!
//! The prior is stored by name (tool and resource-type names, transitions
//! as indices into the tool list), not by fingerprint, so that it holds
//! under any `detector.hash-key`: each engine re-keys it once when the model
//! is installed ([`PriorProfile::rekey`]).

use serde::{Deserialize, Serialize};

use crate::baseline::tables::{FpCounts, LogHist, LOG_BUCKETS};
use crate::baseline::{NumStats, Profile, ProfileLimits, SeqContext, ToolStats, END, START};
use crate::event::Action;
use crate::score::features::{Fingerprinter, OriginKind, Shape};

/// Index standing for the session's start (as a previous tool).
const IX_START: u16 = u16::MAX;
/// Index standing for the session's end (as a next tool).
const IX_END: u16 = u16::MAX - 1;
/// Most tools a prior keeps (the profile's own cap is 64).
const MAX_TOOLS: usize = 64;

/// One tool of a group prior, by name, counts in pseudo-calls.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PriorTool {
    pub name: String,
    pub calls: f32,
    pub actions: [f32; Action::COUNT],
    /// (index into [`PriorProfile::rtype_names`], pseudo-calls).
    pub rtypes: Vec<(u16, f32)>,
    pub rtype_novel: f32,
    pub value_obs: f32,
    pub value_n1: f32,
    pub parent_n1: f32,
    pub shapes: [f32; Shape::COUNT],
    pub origins: [f32; OriginKind::COUNT],
    pub prov_new: f32,
    pub prov_untrusted: f32,
    /// Calls per session of this tool ([`LogHist`] buckets).
    pub per_session: Vec<f32>,
    /// Ranges of its numeric arguments over the whole group; absent in
    /// files trained before they were kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numbers: Vec<PriorNumber>,
}

/// The range of one numeric argument of a tool across a group: the largest
/// value any member passed, how many calls passed one and how often a new
/// agent of the group would set a new largest, in pseudo-calls. An agent
/// with no amounts of its own is judged against its peers': a payment far
/// beyond any a peer made costs bits from its first call, by how far.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PriorNumber {
    pub key: String,
    /// [`crate::score::features::NumKind`] as a number (0 magnitude, 1 count).
    pub kind: u8,
    pub n: f32,
    pub records: f32,
    pub max: f64,
}

/// A transition: after tools `a, b` (order 2; order 1 reads `b` only,
/// order 0 neither) came `tool`, `count` pseudo-times. Tools are indices
/// into [`PriorProfile::tools`]; `u16::MAX` is the session start and
/// `u16::MAX − 1` its end.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Transition {
    pub order: u8,
    pub a: u16,
    pub b: u16,
    pub tool: u16,
    pub count: f32,
}

/// A context of the sequence model: its calls and its new continuations.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TransitionContext {
    pub order: u8,
    pub a: u16,
    pub b: u16,
    pub calls: f32,
    pub novel: f32,
}

/// A group's prior profile, by name, scaled to `calls` pseudo-calls.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PriorProfile {
    /// Pseudo-calls the prior stands for (n0, `fleet.prior-calls` when it
    /// was trained).
    pub calls: f32,
    /// Tools the members called once, scaled like the calls (Good–Turing
    /// novelty of tools).
    pub tools_once: u32,
    pub tools: Vec<PriorTool>,
    pub rtype_names: Vec<String>,
    pub transitions: Vec<Transition>,
    pub contexts: Vec<TransitionContext>,
    pub actions: [f32; Action::COUNT],
    pub origins: [f32; OriginKind::COUNT],
    pub rtypes: Vec<(u16, f32)>,
    pub rtype_novel: f32,
    pub value_obs: f32,
    pub value_n1: f32,
    pub parent_n1: f32,
    pub parent_novel: f32,
    pub lookalike_novel: f32,
    pub adoptions: f32,
    pub adoption_new_rtype: f32,
    pub adoption_new_value: f32,
    pub adoption_new_action: f32,
    pub prov_new: f32,
    pub prov_untrusted: f32,
    pub hour_entropy: f32,
    pub hours: [f32; 24],
    pub weekdays: [f32; 7],
    /// [`LogHist`] buckets of gaps, rates, session calls, session fan-out.
    pub gaps: Vec<f32>,
    pub rate: Vec<f32>,
    pub session_calls: Vec<f32>,
    pub session_fanout: Vec<f32>,
}

/// How often young agents met values new to them: per tool name and
/// overall, values new to the agent over values seen (and new parents over
/// values seen), summed over members while they were young. A mature
/// profile's Good–Turing rates say how often *it* meets new values; an
/// agent on its first day meets far more, and its prior must say so or its
/// ordinary first calls would all look like attacks.
#[derive(Debug, Clone, Default)]
pub struct YoungRates {
    pub tools: std::collections::HashMap<String, (f32, f32)>,
    /// (values new to the agent, values seen, parents new to the agent).
    pub agent: (f32, f32, f32),
    /// Members summed.
    pub members: usize,
}

impl YoungRates {
    /// What one member's profile says at the end of its youth.
    pub fn of(p: &Profile) -> Self {
        Self {
            tools: p
                .tools
                .iter()
                .map(|t| (t.name.to_string(), (t.prov_new, t.value_obs)))
                .collect(),
            agent: (p.prov_new, p.value_obs, p.parent_novel),
            members: 1,
        }
    }

    pub fn add(&mut self, o: &Self) {
        for (name, (n, obs)) in &o.tools {
            let e = self.tools.entry(name.clone()).or_default();
            e.0 += n;
            e.1 += obs;
        }
        self.agent.0 += o.agent.0;
        self.agent.1 += o.agent.1;
        self.agent.2 += o.agent.2;
        self.members += o.members;
    }

    /// (new-value rate, new-parent rate) overall; `None` without values.
    fn agent_rates(&self) -> Option<(f32, f32)> {
        let (n, obs, parents) = self.agent;
        (obs > 0.0).then(|| ((n + 0.5) / (obs + 1.0), (parents + 0.5) / (obs + 1.0)))
    }

    fn tool_rate(&self, name: &str) -> Option<f32> {
        let (n, obs) = self.tools.get(name)?;
        // Pulled towards the overall rate when the tool saw few values.
        let (agent, _) = self.agent_rates()?;
        Some((n + 2.0 * agent) / (obs + 2.0))
    }
}

/// A [`LogHist`]'s buckets. The baseline keeps them private; their
/// serialised form is the checkpoint format, which is stable.
fn buckets(h: &LogHist) -> Vec<f32> {
    serde_json::to_value(h)
        .ok()
        .and_then(|v| serde_json::from_value::<Vec<f32>>(v.get("buckets")?.clone()).ok())
        .unwrap_or_else(|| vec![0.0; LOG_BUCKETS])
}

/// Adds `f` times `b`'s buckets to `h` (each at its bucket's lower edge).
fn add_buckets(h: &mut LogHist, b: &[f32], f: f32) {
    for (i, c) in b.iter().enumerate().take(LOG_BUCKETS) {
        if *c > 0.0 {
            let x = if i == 0 {
                0.0
            } else {
                (1u64 << (i - 1)) as f32
            };
            h.add(x, c * f);
        }
    }
}

fn scaled<const N: usize>(a: &[f32; N], f: f32) -> [f32; N] {
    a.map(|x| x * f)
}

impl PriorProfile {
    /// The prior of `p`, a profile learned from every member of a group, by
    /// the fingerprints of `fp` (the key it was learned with), scaled to
    /// `n0` pseudo-calls. `rtype_names` are the resource types of the
    /// training data (the profile keeps only their fingerprints).
    pub fn of(
        p: &Profile,
        fp: &Fingerprinter,
        rtype_names: &[String],
        number_keys: &[(String, u8)],
        young: &YoungRates,
        n0: f32,
        limits: &ProfileLimits,
    ) -> Option<Self> {
        let eff_calls = p.calls / p.weight(p.last_ts, limits);
        if eff_calls.is_nan() || eff_calls <= 0.0 {
            return None;
        }
        // Stored counts are relative to the profile's epoch; `g` turns them
        // into pseudo-counts.
        let g = n0 / p.calls;
        let rt_fp: Vec<(crate::baseline::tables::Fp, u16)> = rtype_names
            .iter()
            .enumerate()
            .map(|(i, n)| (fp.rtype(n), i as u16))
            .collect();
        let rtypes_of = |c: &FpCounts| -> Vec<(u16, f32)> {
            rt_fp
                .iter()
                .filter_map(|(f, i)| {
                    let v = c.get(*f);
                    (v > 0.0).then_some((*i, v * g))
                })
                .collect()
        };
        let key_of: Vec<(crate::baseline::tables::Fp, &(String, u8))> = number_keys
            .iter()
            .map(|k| (fp.number_key(&k.0, k.1), k))
            .collect();
        let numbers_of = |t: &ToolStats| -> Vec<PriorNumber> {
            t.numbers
                .iter()
                .filter_map(|n| {
                    let (_, (key, kind)) = key_of.iter().find(|(f, _)| *f == n.key)?;
                    // A new agent is one more member: if members' ranges
                    // are exchangeable, its largest value tops all m of
                    // theirs with chance 1/(m + 1). The pooled stream's
                    // own record rate counts when higher (ids that grow).
                    let n_pseudo = n.n * g;
                    let exchangeable = (n_pseudo + 1.0) / (young.members as f32 + 1.0) - 0.5;
                    Some(PriorNumber {
                        key: key.clone(),
                        kind: *kind,
                        n: n_pseudo,
                        records: (n.records * g).max(exchangeable).max(0.0),
                        max: n.max,
                    })
                })
                .collect()
        };
        let mut tools: Vec<&ToolStats> = p.tools.iter().collect();
        tools.sort_by(|a, b| b.calls.total_cmp(&a.calls));
        tools.truncate(MAX_TOOLS);
        let tool_fps: Vec<crate::baseline::tables::Fp> = tools.iter().map(|t| t.tool).collect();
        let prev: Vec<(u16, crate::baseline::tables::Fp)> = (0..tools.len() as u16)
            .map(|i| (i, tool_fps[i as usize]))
            .chain([(IX_START, START)])
            .collect();
        let next: Vec<(u16, crate::baseline::tables::Fp)> = (0..tools.len() as u16)
            .map(|i| (i, tool_fps[i as usize]))
            .chain([(IX_END, END)])
            .collect();
        let mut transitions = Vec::new();
        let mut contexts = Vec::new();
        let ctx_list: Vec<(u8, u16, u16, SeqContext)> = {
            let mut v = vec![(0u8, IX_START, IX_START, seq_ctx(START, START))];
            for &(b, fb) in &prev {
                v.push((1, IX_START, b, seq_ctx(START, fb)));
                for &(a, fa) in &prev {
                    v.push((2, a, b, seq_ctx(fa, fb)));
                }
            }
            v
        };
        for (order, a, b, ctx) in ctx_list {
            let ck = Profile::ctx_key(order as u32, &ctx);
            let n = p.seq_ctx.get(ck);
            if n <= 0.0 {
                continue;
            }
            contexts.push(TransitionContext {
                order,
                a,
                b,
                calls: n * g,
                novel: p.seq_ctx_novel.get(ck) * g,
            });
            for &(t, ft) in &next {
                let c = p.seq_pairs.get(Profile::pair_key(order as u32, &ctx, ft));
                if c > 0.0 {
                    transitions.push(Transition {
                        order,
                        a,
                        b,
                        tool: t,
                        count: c * g,
                    });
                }
            }
        }
        let mut out = Self {
            calls: n0,
            tools_once: (p.tools_once as f32 * n0 / eff_calls).round() as u32,
            tools: tools
                .iter()
                .map(|t| PriorTool {
                    name: t.name.to_string(),
                    calls: t.calls * g,
                    actions: scaled(&t.actions, g),
                    rtypes: rtypes_of(&t.rtypes),
                    rtype_novel: t.rtype_novel * g,
                    value_obs: t.value_obs * g,
                    value_n1: t.value_n1 * g,
                    parent_n1: t.parent_n1 * g,
                    shapes: scaled(&t.shapes, g),
                    origins: scaled(&t.origins, g),
                    prov_new: t.prov_new * g,
                    prov_untrusted: t.prov_untrusted * g,
                    per_session: buckets(&t.per_session).iter().map(|c| c * g).collect(),
                    numbers: numbers_of(t),
                })
                .collect(),
            rtype_names: rtype_names.to_vec(),
            transitions,
            contexts,
            actions: scaled(&p.actions, g),
            origins: scaled(&p.origins, g),
            rtypes: rtypes_of(&p.rtypes),
            rtype_novel: p.rtype_novel * g,
            value_obs: p.value_obs * g,
            value_n1: p.value_n1 * g,
            parent_n1: p.parent_n1 * g,
            parent_novel: p.parent_novel * g,
            lookalike_novel: p.lookalike_novel * g,
            adoptions: p.adoptions * g,
            adoption_new_rtype: p.adoption_new_rtype * g,
            adoption_new_value: p.adoption_new_value * g,
            adoption_new_action: p.adoption_new_action * g,
            prov_new: p.prov_new * g,
            prov_untrusted: p.prov_untrusted * g,
            hour_entropy: p.hour_entropy,
            hours: scaled(&p.hours, g),
            weekdays: scaled(&p.weekdays, g),
            gaps: buckets(&p.gaps).iter().map(|c| c * g).collect(),
            rate: buckets(&p.rate).iter().map(|c| c * g).collect(),
            session_calls: buckets(&p.session_calls).iter().map(|c| c * g).collect(),
            session_fanout: buckets(&p.session_fanout).iter().map(|c| c * g).collect(),
        };
        // Novelty as young members met it (see [`YoungRates`]).
        if let Some((value_rate, parent_rate)) = young.agent_rates() {
            out.value_n1 = out.value_obs * value_rate;
            out.parent_n1 = out.value_obs * parent_rate;
            out.parent_novel = out.value_obs * parent_rate;
            let parent_share = (parent_rate / value_rate).min(1.0);
            for t in &mut out.tools {
                let rate = young.tool_rate(&t.name).unwrap_or(value_rate);
                t.value_n1 = t.value_obs * rate;
                t.parent_n1 = t.value_n1 * parent_share;
            }
        }
        Some(out)
    }

    /// The names of the tools the group's members use.
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.tools.iter().map(|t| t.name.as_str())
    }

    /// Checks the indices a file could get wrong.
    pub fn check(&self) -> Result<(), String> {
        let tools = self.tools.len() as u16;
        let rtypes = self.rtype_names.len() as u16;
        let tool_ok = |i: u16| i < tools || i == IX_START || i == IX_END;
        if self
            .transitions
            .iter()
            .any(|t| !tool_ok(t.a) || !tool_ok(t.b) || !tool_ok(t.tool))
            || self.contexts.iter().any(|c| !tool_ok(c.a) || !tool_ok(c.b))
        {
            return Err("a transition names a tool the prior does not list".into());
        }
        if self
            .rtypes
            .iter()
            .chain(self.tools.iter().flat_map(|t| t.rtypes.iter()))
            .any(|(i, _)| *i >= rtypes)
        {
            return Err("a resource type index is out of range".into());
        }
        if !(self.calls.is_finite() && self.calls > 0.0) {
            return Err("prior calls must be positive".into());
        }
        Ok(())
    }

    /// The prior under an engine's fingerprints, ready to blend.
    pub fn rekey(&self, fp: &Fingerprinter) -> KeyedPrior {
        let tool_fp: Vec<_> = self.tools.iter().map(|t| fp.tool(&t.name)).collect();
        let rt_fp: Vec<_> = self.rtype_names.iter().map(|n| fp.rtype(n)).collect();
        let prev = |i: u16| match i {
            IX_START => START,
            i => tool_fp.get(i as usize).copied().unwrap_or(START),
        };
        let next = |i: u16| match i {
            IX_END => END,
            i => tool_fp.get(i as usize).copied().unwrap_or(END),
        };
        let rts = |v: &[(u16, f32)]| -> Vec<(u64, f32)> {
            let mut out: Vec<_> = v
                .iter()
                .filter_map(|(i, c)| rt_fp.get(*i as usize).map(|f| (*f, *c)))
                .collect();
            out.sort_by_key(|(k, _)| *k);
            out
        };
        let mut pairs: Vec<(u64, f32)> = self
            .transitions
            .iter()
            .map(|t| {
                let ctx = seq_ctx(prev(t.a), prev(t.b));
                (
                    Profile::pair_key(t.order as u32, &ctx, next(t.tool)),
                    t.count,
                )
            })
            .collect();
        pairs.sort_by_key(|(k, _)| *k);
        let mut contexts: Vec<(u64, f32, f32)> = self
            .contexts
            .iter()
            .map(|c| {
                let ctx = seq_ctx(prev(c.a), prev(c.b));
                (Profile::ctx_key(c.order as u32, &ctx), c.calls, c.novel)
            })
            .collect();
        contexts.sort_by_key(|(k, _, _)| *k);
        KeyedPrior {
            tools: self
                .tools
                .iter()
                .zip(&tool_fp)
                .map(|(t, f)| {
                    let numbers = t
                        .numbers
                        .iter()
                        .map(|n| NumStats {
                            key: fp.number_key(&n.key, n.kind),
                            n: n.n,
                            records: n.records,
                            max: n.max,
                        })
                        .collect();
                    (*f, rts(&t.rtypes), numbers, t.clone())
                })
                .collect(),
            pairs,
            contexts,
            rtypes: rts(&self.rtypes),
            prior: self.clone(),
        }
    }
}

fn seq_ctx(prev2: u64, prev1: u64) -> SeqContext {
    SeqContext {
        prev1,
        prev2,
        gap_ms: None,
    }
}

type KeyedTool = (u64, Vec<(u64, f32)>, Vec<NumStats>, PriorTool);

/// A prior re-keyed for one engine's fingerprints, tables sorted by key so
/// that blending inserts in ascending order (cheap into a young profile).
#[derive(Debug, Clone)]
pub struct KeyedPrior {
    /// (tool fingerprint, its resource types and numeric arguments by
    /// fingerprint, the tool).
    tools: Vec<KeyedTool>,
    pairs: Vec<(u64, f32)>,
    contexts: Vec<(u64, f32, f32)>,
    rtypes: Vec<(u64, f32)>,
    prior: PriorProfile,
}

impl KeyedPrior {
    /// Pseudo-calls the prior stands for.
    pub fn calls(&self) -> f32 {
        self.prior.calls
    }

    /// How much of an agent's catalogue (its distinct tools) the group's
    /// members use: how many of the tools they know, and the share of the
    /// group's calls those tools take (which breaks ties between groups
    /// that know as many).
    pub fn coverage(&self, tools: impl Iterator<Item = u64>) -> (usize, f32) {
        let total = self.prior.calls.max(f32::MIN_POSITIVE);
        tools.fold((0, 0.0), |(n, share), tool| {
            match self.tools.iter().find(|(f, _, _, _)| *f == tool) {
                Some((_, _, _, t)) => (n + 1, share + t.calls / total),
                None => (n, share),
            }
        })
    }

    /// `own` plus the prior's pseudo-counts, at event time `ts`: the profile
    /// a young agent is scored against. `own` is not changed: it stays the
    /// agent's own evidence (checkpointed, calibrated, used to regroup).
    ///
    /// With `catalogue` false (an agent whose tools its peers do not use),
    /// only what holds across catalogues is lent: novelty, adoption and
    /// provenance rates, hours, cadence and session shapes; pseudo-calls of
    /// tools it does not have would make each of its own tools look new.
    pub fn blend(
        &self,
        own: &Profile,
        ts: i64,
        limits: &ProfileLimits,
        catalogue: bool,
    ) -> Profile {
        let q = &self.prior;
        let mut b = own.clone();
        // Counts are stored relative to the profile's epoch: a pseudo-count
        // worth c now is stored as c · w.
        let w = own.weight(ts.max(own.epoch_ms), limits);
        let cap = limits.sequence_entries;
        if !catalogue {
            self.blend_rates(&mut b, w, own.events_learned);
            return b;
        }
        b.calls += q.calls * w;
        b.tools_once += q.tools_once;
        for (k, c) in &self.pairs {
            b.seq_pairs.add(*k, c * w, cap);
        }
        for (k, c, novel) in &self.contexts {
            b.seq_ctx.add(*k, c * w, cap);
            if *novel > 0.0 {
                b.seq_ctx_novel.add(*k, novel * w, cap);
            }
        }
        for (a, x) in b.actions.iter_mut().zip(q.actions) {
            *a += x * w;
        }
        for (a, x) in b.origins.iter_mut().zip(q.origins) {
            *a += x * w;
        }
        for (k, c) in &self.rtypes {
            b.rtypes.add(*k, c * w, 64);
        }
        b.rtype_novel += q.rtype_novel * w;
        self.blend_rates(&mut b, w, own.events_learned);
        for (fp, rtypes, numbers, t) in &self.tools {
            let i = match b.tools.iter().position(|x| x.tool == *fp) {
                Some(i) => i,
                None if b.tools.len() < limits.tools_per_agent => {
                    b.tools.push(empty_tool(*fp, &t.name));
                    b.tools.len() - 1
                }
                None => continue,
            };
            let x = &mut b.tools[i];
            x.calls += t.calls * w;
            for (a, y) in x.actions.iter_mut().zip(t.actions) {
                *a += y * w;
            }
            for (k, c) in rtypes {
                x.rtypes.add(*k, c * w, 16);
            }
            x.rtype_novel += t.rtype_novel * w;
            x.value_obs += t.value_obs * w;
            x.value_n1 += t.value_n1 * w;
            x.parent_n1 += t.parent_n1 * w;
            for (a, y) in x.shapes.iter_mut().zip(t.shapes) {
                *a += y * w;
            }
            for (a, y) in x.origins.iter_mut().zip(t.origins) {
                *a += y * w;
            }
            x.prov_new += t.prov_new * w;
            x.prov_untrusted += t.prov_untrusted * w;
            add_buckets(&mut x.per_session, &t.per_session, w);
            // The group's range widens the agent's: its own largest value
            // stands if beyond the peers'.
            for q in numbers {
                if let Some(n) = x.number_mut(q.key, q.max) {
                    n.n += q.n * w;
                    n.records += q.records * w;
                    n.max = n.max.max(q.max);
                }
            }
        }
        b
    }

    /// The catalogue-free part of the prior: agent-level novelty, adoption
    /// and provenance rates, hours, cadence, session shapes.
    fn blend_rates(&self, b: &mut Profile, w: f32, events_learned: u64) {
        let q = &self.prior;
        b.value_obs += q.value_obs * w;
        b.value_n1 += q.value_n1 * w;
        b.parent_n1 += q.parent_n1 * w;
        b.parent_novel += q.parent_novel * w;
        b.lookalike_novel += q.lookalike_novel * w;
        b.adoptions += q.adoptions * w;
        b.adoption_new_rtype += q.adoption_new_rtype * w;
        b.adoption_new_value += q.adoption_new_value * w;
        b.adoption_new_action += q.adoption_new_action * w;
        b.prov_new += q.prov_new * w;
        b.prov_untrusted += q.prov_untrusted * w;
        for (h, x) in b.hours.iter_mut().zip(q.hours) {
            *h += x * w;
        }
        for (h, x) in b.weekdays.iter_mut().zip(q.weekdays) {
            *h += x * w;
        }
        // The own profile refreshes its hour entropy every 32 calls.
        if events_learned < 32 {
            b.hour_entropy = q.hour_entropy;
        }
        add_buckets(&mut b.gaps, &q.gaps, w);
        add_buckets(&mut b.rate, &q.rate, w);
        add_buckets(&mut b.session_calls, &q.session_calls, w);
        add_buckets(&mut b.session_fanout, &q.session_fanout, w);
    }
}

fn empty_tool(tool: u64, name: &str) -> ToolStats {
    ToolStats {
        // Not a tool called once: the group knows it.
        uses: 2,
        ..ToolStats::new(tool, name)
    }
}
