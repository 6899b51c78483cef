//! Scoring: how surprising one call is for its agent, in bits, and why.
//!
//! Each signal is a surprisal (−log2 of a smoothed probability) against the
//! agent's own profile, factored along the chain rule so that correlated
//! facts are not counted twice: a new tool pays for being new once, and what
//! it touches is then judged against the agent as a whole (back-off), not
//! against the tool's empty history. Novelty of values is scored by how often
//! *this tool* of *this agent* meets new values (an escape probability), so a
//! known value never costs more than a new one.
//!
//! The total has three parts: this call's bits, the session's current level
//! (hour, cadence, volume), and the carry: a CUSUM of earlier calls' excess
//! over the agent's usual per-call bits, because multi-step attacks build up
//! moderate surprise while new benign work spikes once.
//!
//! [`score`] allocates nothing: reasons are fixed-size and hold numbers; the
//! text a person reads is rendered later by [`render_detail`].

pub mod binding;
pub mod features;

use arrayvec::ArrayVec;
use serde::{Deserialize, Serialize};

use crate::baseline::tables::Fp;
use crate::baseline::{Profile, SeqContext, START};
use crate::event::Action;
use features::{NumKind, Observation, OriginKind, ValueFrom};

/// The channels a score is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Tool,
    Sequence,
    ResourceType,
    Resource,
    LookAlike,
    Action,
    Origin,
    Provenance,
    Argument,
    Hour,
    Weekday,
    Cadence,
    Volume,
    Session,
    /// Fleet hook: the peer group's session model (src/fleet).
    SessionShape,
    Binding,
    /// Fleet hook: a first call of a tool of another peer group's, never
    /// of this agent's group (src/fleet).
    CrossGroup,
    /// A value that came in a tool result unlike that tool's results.
    ResultText,
}

impl Signal {
    /// Signals about what the call did, as opposed to its session's state.
    pub const fn is_call_level(self) -> bool {
        !matches!(
            self,
            Self::Hour
                | Self::Weekday
                | Self::Cadence
                | Self::Volume
                | Self::Session
                | Self::SessionShape
        )
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Sequence => "sequence",
            Self::ResourceType => "resource_type",
            Self::Resource => "resource",
            Self::LookAlike => "lookalike",
            Self::Action => "action",
            Self::Origin => "origin",
            Self::Provenance => "provenance",
            Self::Argument => "argument",
            Self::Hour => "hour",
            Self::Weekday => "weekday",
            Self::Cadence => "cadence",
            Self::Volume => "volume",
            Self::Session => "session",
            Self::SessionShape => "session_shape",
            Self::Binding => "binding",
            Self::CrossGroup => "cross_group",
            Self::ResultText => "result_text",
        }
    }
}

/// How new a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Novelty {
    /// Known to the agent, first time with this tool.
    NewForTool,
    /// New to the agent; its parent (domain, bank, directory) is known.
    KnownParent,
    /// New to the agent and so is its parent.
    NewParent,
    /// New to the agent; the value has no parent.
    New,
}

/// What a volume reason counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    SessionCalls,
    ToolCalls,
    FanOut,
    Rate,
}

/// The numbers behind a reason; rendered to text only when emitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detail {
    NewTool {
        known_tools: u32,
        calls: f32,
    },
    Sequence {
        prev: Fp,
        prob: f32,
        ctx_calls: f32,
    },
    ResourceType {
        tool_known: bool,
        agent_known: bool,
        tool_calls: f32,
    },
    Resource {
        value: u8,
        novelty: Novelty,
        tool_calls: f32,
        novel_rate: f32,
        new_shape: bool,
    },
    LookAlike {
        value: u8,
        new_parents: f32,
    },
    Action {
        action: Action,
        tool_share: f32,
        agent_share: f32,
        calls: f32,
    },
    Origin {
        kind: OriginKind,
        tool_share: f32,
        agent_share: f32,
        calls: f32,
    },
    Provenance {
        value: u8,
        rate: f32,
        new_values: f32,
    },
    Argument {
        number: u8,
        max: f64,
        n: f32,
    },
    Hour {
        hour: u8,
        share: f32,
    },
    Weekday {
        weekday: u8,
        share: f32,
    },
    Gap {
        gap_ms: i64,
        share: f32,
    },
    Volume {
        kind: VolumeKind,
        count: f32,
        usual: f32,
        p: f32,
    },
    Carry {
        calls: u32,
    },
    /// Fleet hook: the session so far, and the share `p` of the peer
    /// group's training sessions at least as unlikely.
    SessionShape {
        calls: u32,
        deletes: u32,
        writes: u32,
        secs: f32,
        p: f32,
    },
    CrossGroup {
        /// Other groups whose agents use the tool.
        groups: u16,
        /// Share of the fleet's member tools that were so.
        share: f32,
    },
    ResultText {
        view: OddResultView,
        /// The consequence weight priced now: the odd result's later uses
        /// owe only the rest.
        weight: f32,
    },
    Binding {
        id: u8,
        foreign: bool,
        by_owner: bool,
        listed: bool,
        tainted: bool,
        unrequested: bool,
        unsourced: bool,
        fresh: bool,
        others: u8,
        sessions: u16,
        top: u32,
        source_tool: Fp,
        principals: u32,
        has_id: bool,
    },
}

/// One contribution to a score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reason {
    pub signal: Signal,
    pub bits: f32,
    pub detail: Detail,
}

/// Most reasons one score keeps.
pub const MAX_REASONS: usize = 12;

/// A scored call.
#[derive(Debug, Clone, Default)]
pub struct Score {
    /// Bits of this call alone.
    pub event_bits: f32,
    /// Bits of the session's current level (hour, cadence, volume).
    pub session_bits: f32,
    /// Bits carried from earlier calls of the session.
    pub carry_bits: f32,
    pub total: f32,
    pub reasons: ArrayVec<Reason, MAX_REASONS>,
    /// Set when lone novelty was counted for less than its bits: nothing
    /// else about the call backed it (see [`corroborate`]).
    pub novelty: Option<NoveltyDiscount>,
}

/// How lone novelty was discounted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoveltyDiscount {
    /// Bits of the novelty reasons before and after.
    pub raw: f32,
    pub kept: f32,
    /// How often this agent's calls of the same kind of action meet new
    /// values.
    pub routine: f32,
}

impl Score {
    /// Bits of this call that build up over a session: what the call itself
    /// did, except its place in the sequence (a new benign workflow is new
    /// at every step too). Session levels (hour, cadence, volume) persist by
    /// themselves and are not carried.
    pub fn carried_bits(&self) -> f32 {
        self.reasons
            .iter()
            .filter(|r| r.signal.is_call_level() && r.signal != Signal::Sequence)
            .map(|r| r.bits)
            .sum()
    }

    fn push(&mut self, signal: Signal, bits: f32, detail: Detail) {
        if bits > 0.0 && bits.is_finite() {
            let _ = self.reasons.try_push(Reason {
                signal,
                bits,
                detail,
            });
        }
    }

    /// Fleet hook: adds the session model's bits (src/fleet) as a level of
    /// the session, like volume: it persists by itself and is not carried.
    pub fn add_session_shape(&mut self, bits: f32, detail: Detail) {
        if bits > 0.0 && bits.is_finite() && !self.reasons.is_full() {
            self.push(Signal::SessionShape, bits, detail);
            self.session_bits += bits;
            self.total += bits;
        }
    }

    /// Reasons, largest first.
    pub fn sorted_reasons(&self) -> ArrayVec<Reason, MAX_REASONS> {
        let mut r = self.reasons.clone();
        r.sort_unstable_by(|a, b| b.bits.total_cmp(&a.bits));
        r
    }
}

/// Tunables of the scorer (from the config file).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreParams {
    /// Effective observations a histogram needs before its signal counts.
    pub min_history: f32,
    /// Prior strength pulling a tool's novelty rate towards the agent's.
    pub backoff_strength: f32,
    /// Most bits a never-used tool costs by itself. Estimated from one
    /// agent's history its probability only shrinks as history grows, yet
    /// tools do get rolled out: alone, a new tool is worth a look, not a
    /// quarantine; with another deviation it is.
    pub max_tool_bits: f32,
    /// Most bits a call's place in the sequence costs, for the same reason.
    pub max_sequence_bits: f32,
}

impl Default for ScoreParams {
    fn default() -> Self {
        Self {
            min_history: 20.0,
            backoff_strength: 2.0,
            max_tool_bits: 10.0,
            max_sequence_bits: 8.0,
        }
    }
}

/// The session as the scorer sees it, before this call.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionView {
    pub calls: u32,
    pub tool_calls: u32,
    pub distinct_values: u32,
    /// Values of this call not yet seen in the session.
    pub new_values: u32,
    /// Bit i: value i reached the session only through untrusted tool
    /// output, never from the user.
    pub untrusted_only: u8,
    /// Bit i: value i was already touched earlier in this session.
    pub seen_in_session: u8,
    /// Bit i: value i was priced by provenance at a read's weight earlier
    /// in this session: a change to it owes the rest.
    pub read_charged: u8,
    /// Bit i: value i came with the user's request (a prompt, a trusted
    /// result): new to the agent, but asked for.
    pub from_user: u8,
    pub carry: f32,
    /// Fleet hook: the call's tool is new to the agent, and another peer
    /// group's agents use it while the agent's own group does not.
    pub cross_group: Option<CrossGroupView>,
    /// The call uses a value an odd result of this session carried.
    pub odd_result: Option<OddResultView>,
}

/// A tool result that used words its tool's results never did, as its
/// session keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OddResult {
    pub tool: Fp,
    /// The tool's results learned before it, and how often they had a new
    /// word (smoothed).
    pub results: f32,
    pub rate: f32,
    pub new_words: u16,
    /// New words a novel result of the tool brings on average (smoothed).
    pub usual_new: f32,
    /// The consequence weight its values were priced at so far.
    pub charged: f32,
}

/// A value of the call that came in an odd result (see
/// [`SessionView::odd_result`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OddResultView {
    /// Index of the value in the call's values, or in its ids when `id`.
    pub at: u8,
    pub id: bool,
    /// The session held the value before the odd result (the result was
    /// its record), and the call is a change the request did not name.
    pub echo: bool,
    /// Index of the odd result in the session.
    pub odd: u8,
    pub result: OddResult,
}

/// See [`SessionView::cross_group`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossGroupView {
    pub groups: u16,
    /// (cross + 0.5) / (tools + 1) of the fleet model.
    pub share: f32,
}

impl Default for Detail {
    fn default() -> Self {
        Detail::Carry { calls: 0 }
    }
}

/// P(category `i` | tool) with Witten–Bell escape to the agent's
/// distribution, and for a category the agent never used, its escape times
/// `risk`; for a new tool, a category new to the agent has probability
/// `new_tool_escape` (times `risk`) when one is given. Returns the probability and the tool's
/// and agent's shares.
fn categorical<const N: usize>(
    agent: &[f32; N],
    tool: Option<&[f32; N]>,
    i: usize,
    risk: f32,
    calls: f32,
    inv_w: f32,
    new_tool_escape: Option<f32>,
) -> (f32, f32, f32) {
    let distinct = |arr: &[f32; N]| arr.iter().filter(|c| **c > 0.0).count() as f32;
    let agent_c = agent[i] * inv_w;
    let agent_t = distinct(agent);
    let agent_new = match (tool, new_tool_escape) {
        (None, Some(escape)) => escape.min(1.0) * risk,
        _ => (agent_t + 0.5) / (calls + agent_t + 1.0) * risk,
    };
    let agent_p = known_or_new(agent_c, calls + agent_t, agent_new);
    let agent_share = if calls > 0.0 { agent_c / calls } else { 0.0 };
    match tool {
        Some(t) if t.iter().any(|c| *c > 0.0) => {
            let n: f32 = t.iter().sum::<f32>() * inv_w;
            let c = t[i] * inv_w;
            let tt = distinct(t);
            let escape = (tt + 0.5) / (n + tt + 1.0);
            if c > 0.0 {
                (
                    known_or_new(c, n + tt, escape * agent_new),
                    c / n,
                    agent_share,
                )
            } else {
                (escape * agent_p, 0.0, agent_share)
            }
        }
        _ => (agent_p, 0.0, agent_share),
    }
}

/// The probability of a value seen `c` times in `n` (escapes included), but
/// never below `new`, what an unseen value would get: a value met once among
/// many distinct ones must not cost more than one never met at all.
fn known_or_new(c: f32, n: f32, new: f32) -> f32 {
    if c > 0.0 {
        (c / n).max(new)
    } else {
        new
    }
}

fn bits(p: f32) -> f32 {
    if p >= 1.0 {
        0.0
    } else {
        -(p.max(1e-12)).log2()
    }
}

/// Scores `obs` against the profile. Pure: no allocation, no I/O.
pub fn score(
    p: &Profile,
    obs: &Observation,
    ctx: &SeqContext,
    sess: &SessionView,
    bind: &binding::BindingView,
    params: &ScoreParams,
    half_life_ms: f64,
) -> Score {
    let mut s = Score::default();
    let inv_w = 1.0 / ((obs.ts - p.epoch_ms) as f64 / half_life_ms).exp2() as f32;
    let calls = p.calls * inv_w;
    let tool = p.tool(obs.tool);
    // What the session already paid for is not charged again: its calls are
    // learned only when it ends clean, and the carry holds their surprise.
    let repeat_new_tool = tool.is_none() && sess.tool_calls > 0;

    // Tool and sequence. A new tool pays its novelty once (order 0 escape);
    // a known tool pays for its place in the session (PPM back-off, 2→1→0).
    match tool {
        None if repeat_new_tool => {}
        None => {
            // Good–Turing: tools used once so far, over all calls.
            let prob = (p.tools_once as f32 + 0.5) / (calls + 1.0);
            s.push(
                Signal::Tool,
                bits(prob).min(params.max_tool_bits),
                Detail::NewTool {
                    known_tools: p.tools.len() as u32,
                    calls,
                },
            );
        }
        Some(_) => {
            // PPM back-off, orders 2 → 1 → 0; a transition new at order 1
            // pays one escape (new after (a, b) is implied by new after b),
            // and the first call has no order 2 (its context is the start).
            let known1 = p.seq_pairs.get(Profile::pair_key(1, ctx, obs.tool)) > 0.0;
            let orders: &[u32] = if ctx.prev1 == START || !known1 {
                &[1, 0]
            } else {
                &[2, 1, 0]
            };
            let mut prob = 1.0f32;
            let mut ctx_calls = 0.0;
            for &order in orders {
                let ck = Profile::ctx_key(order, ctx);
                let n = p.seq_ctx.get(ck) * inv_w;
                if n <= 0.0 {
                    continue;
                }
                let novel = p.seq_ctx_novel.get(ck) * inv_w;
                let c = p.seq_pairs.get(Profile::pair_key(order, ctx, obs.tool)) * inv_w;
                if order >= 1 {
                    ctx_calls = n;
                }
                if c > 0.0 {
                    prob *= c / (n + novel);
                    break;
                }
                prob *= novel / (n + novel);
                if order == 1 {
                    // Never seen after the previous tool: the escape is the
                    // cost, however rare the tool is overall (exclusion).
                    break;
                }
            }
            // A new order of reads is exploration; a new order of changes
            // is a decision.
            let weight = match obs.action {
                Action::Read | Action::None => 0.5,
                Action::Write => 0.75,
                Action::Delete | Action::Execute | Action::Admin => 1.0,
            };
            s.push(
                Signal::Sequence,
                (bits(prob) * weight).min(params.max_sequence_bits),
                Detail::Sequence {
                    prev: ctx.prev1,
                    prob,
                    ctx_calls,
                },
            );
        }
    }

    // Resource type, given the tool, backing off to the agent.
    if obs.rtype != 0 && !repeat_new_tool {
        let agent_c = p.rtypes.get(obs.rtype) * inv_w;
        let agent_t = p.rtype_novel * inv_w;
        let agent_new = (agent_t + 0.5) / (calls + agent_t + 1.0);
        let agent_p = known_or_new(agent_c, calls + agent_t, agent_new);
        let (prob, tool_known, tool_calls) = match tool {
            Some(t) if t.calls > 0.0 => {
                let n = t.calls * inv_w;
                let c = t.rtypes.get(obs.rtype) * inv_w;
                let tt = t.rtype_novel * inv_w;
                let escape = (tt + 0.5) / (n + tt + 1.0);
                if c > 0.0 {
                    (known_or_new(c, n + tt, escape * agent_new), true, n)
                } else {
                    (escape * agent_p, false, n)
                }
            }
            // A new tool often brings a new kind of resource: how often it
            // did when this agent adopted tools before.
            _ => {
                let adopted = (p.adoption_new_rtype * inv_w + 1.0) / (p.adoptions * inv_w + 2.0);
                (known_or_new(agent_c, calls + agent_t, adopted), false, 0.0)
            }
        };
        s.push(
            Signal::ResourceType,
            bits(prob),
            Detail::ResourceType {
                tool_known,
                agent_known: agent_c > 0.0,
                tool_calls,
            },
        );
    }

    // Action mix and instruction origin: categorical, given the tool,
    // backing off to the agent; a class the agent never used costs more the
    // more harm it can do.
    if !repeat_new_tool {
        let a = obs.action as usize;
        let risk = match obs.action {
            Action::Read | Action::None => 1.0,
            Action::Write => 0.5,
            Action::Delete | Action::Execute => 0.125,
            Action::Admin => 1.0 / 32.0,
        };
        // A new tool's action is judged by what adopted tools brought.
        let adopted = (p.adoption_new_action * inv_w + 1.0) / (p.adoptions * inv_w + 2.0);
        let (prob, tool_share, agent_share) = categorical(
            &p.actions,
            tool.map(|t| &t.actions),
            a,
            risk,
            calls,
            inv_w,
            Some(adopted),
        );
        s.push(
            Signal::Action,
            bits(prob),
            Detail::Action {
                action: obs.action,
                tool_share,
                agent_share,
                calls,
            },
        );
    }
    {
        let o = obs.origin as usize;
        let risk = if obs.origin.untrusted() { 0.25 } else { 1.0 };
        let (prob, tool_share, agent_share) = categorical(
            &p.origins,
            tool.map(|t| &t.origins),
            o,
            risk,
            calls,
            inv_w,
            None,
        );
        // Only instructions from content an attacker may write are a risk;
        // a user or the system asking for something new is just new work.
        let origin_bits = if obs.origin.untrusted() {
            bits(prob)
        } else {
            0.0
        };
        s.push(
            Signal::Origin,
            origin_bits,
            Detail::Origin {
                kind: obs.origin,
                tool_share,
                agent_share,
                calls,
            },
        );
    }

    // Values: resource ids and counterparties. Novelty rates are Good–Turing
    // estimates (values seen once over values seen), per tool, pulled
    // towards the agent's rate when the tool has little history. The most
    // surprising value speaks for the call (they are correlated).
    let obs_a = p.value_obs * inv_w;
    let agent_e = (p.value_n1 * inv_w + 0.5) / (obs_a + 1.0);
    let agent_ep = (p.parent_n1 * inv_w + 0.5) / (obs_a + 1.0);
    let m = params.backoff_strength;
    let mut best: Option<(f32, Detail)> = None;
    let mut lookalike: Option<(f32, Detail)> = None;
    for (i, v) in obs.values.iter().enumerate() {
        let (known_tool, e_t, e_p, tool_calls) = match tool {
            Some(t) => {
                let obs_n = t.value_obs * inv_w;
                let e_t = (t.value_n1 * inv_w + m * agent_e) / (obs_n + m);
                let e_p = (t.parent_n1 * inv_w + m * agent_ep) / (obs_n + m);
                (t.values.contains(v.key.fp), e_t, e_p, t.calls * inv_w)
            }
            None => {
                // A new tool's values: as new as adopted tools' first values were.
                let e = (p.adoption_new_value * inv_w + 1.0) / (p.adoptions * inv_w + 2.0);
                (false, e, e * (agent_ep / agent_e).min(1.0), 0.0)
            }
        };
        if known_tool || sess.seen_in_session & (1 << i) != 0 {
            continue;
        }
        // A form of value the tool never used (an e-mail address where it
        // names channels) costs its escape on top of the novelty.
        let (shape_bits, new_shape) = match tool {
            Some(t) if t.value_obs * inv_w >= 3.0 => {
                let n = t.value_obs * inv_w;
                let c = t.shapes[v.key.shape as usize] * inv_w;
                let kinds = t.shapes.iter().filter(|c| **c > 0.0).count() as f32;
                if c > 0.0 {
                    (bits(c / (n + kinds)), false)
                } else {
                    (bits((kinds + 0.5) / (n + kinds + 1.0)), true)
                }
            }
            _ => (0.0, false),
        };
        let (b, novelty, rate) = if p.values.contains(v.key.fp) {
            (bits(e_t), Novelty::NewForTool, e_t)
        } else if v.key.parent == 0 {
            (bits(e_t), Novelty::New, e_t)
        } else if p.parents.contains(v.key.parent) {
            (bits(e_t), Novelty::KnownParent, e_t)
        } else {
            let alike = v
                .key
                .skeletons
                .iter()
                .any(|k| *k != 0 && p.skeletons.contains(*k));
            if alike {
                // How rare a look-alike is among the agent's new parents,
                // with a prior of about one in fifty.
                let new_parents = p.parent_novel * inv_w;
                let lb = bits((p.lookalike_novel * inv_w + 0.1) / (new_parents + 5.0));
                if lookalike.is_none_or(|(x, _)| lb > x) {
                    lookalike = Some((
                        lb,
                        Detail::LookAlike {
                            value: i as u8,
                            new_parents,
                        },
                    ));
                }
            }
            let e = e_p.min(e_t);
            (bits(e), Novelty::NewParent, e)
        };
        let mut b = b + shape_bits;
        if sess.from_user & (1 << i) != 0 {
            // The user named it: new, but asked for. It costs at most one bit, what a coin
            // flip between "asked" and "not asked" would.
            b = b.min(1.0);
        }
        if best.is_none_or(|(x, _)| b > x) {
            best = Some((
                b,
                Detail::Resource {
                    value: i as u8,
                    novelty,
                    tool_calls,
                    novel_rate: rate,
                    new_shape,
                },
            ));
        }
    }
    if let Some((b, d)) = best {
        s.push(Signal::Resource, b, d);
    }
    if let Some((b, d)) = lookalike {
        s.push(Signal::LookAlike, b, d);
    }

    // Provenance: a value new to the agent that entered the session only
    // through content a tool returned (an attacker can write it), priced by
    // how often this tool of this agent acts on such values.
    let mut provenance: Option<(Fp, f32)> = None;
    if sess.untrusted_only != 0 {
        // Prior: a quarter of a pseudo-call in two acted on tool output.
        let p_a = (p.prov_untrusted * inv_w + 0.25) / (p.prov_new * inv_w + 2.0);
        let (rate, new_values) = match tool {
            Some(t) => (
                (t.prov_untrusted * inv_w + m * p_a) / (t.prov_new * inv_w + m),
                t.prov_new * inv_w,
            ),
            None => (p_a, p.prov_new * inv_w),
        };
        let weight = match obs.action {
            Action::Read | Action::None => 0.5,
            _ => 1.0,
        };
        // Each value is priced once per session, at its most consequential
        // use: looked up first (a read, half weight) and then written to,
        // it owes the other half, or a read first would launder it.
        let first = obs.values.iter().enumerate().find_map(|(i, v)| {
            let owed = if sess.seen_in_session & (1 << i) == 0 {
                weight
            } else if weight > 0.5 && sess.read_charged & (1 << i) != 0 {
                weight - 0.5
            } else {
                return None;
            };
            (sess.untrusted_only & (1 << i) != 0 && !p.values.contains(v.key.fp))
                .then_some((i, v, owed))
        });
        if let Some((i, v, owed)) = first {
            provenance = Some((v.key.fp, bits(rate) * owed));
            s.push(
                Signal::Provenance,
                bits(rate) * owed,
                Detail::Provenance {
                    value: i as u8,
                    rate,
                    new_values,
                },
            );
        }
    }

    // Argument shape: a value beyond the tool's largest, by how rarely the
    // maximum moves and by how far beyond it is.
    if let Some(t) = tool {
        let mut best: Option<(f32, Detail)> = None;
        for (i, num) in obs.numbers.iter().enumerate() {
            let Some(ns) = t.number(num.key_fp) else {
                continue;
            };
            let n = ns.n * inv_w;
            if n < 3.0 || num.value <= ns.max {
                continue;
            }
            let ratio = if ns.max > 0.0 {
                num.value / ns.max
            } else {
                num.value + 1.0
            };
            let floor = if num.kind == NumKind::Count { 1.0 } else { 0.0 };
            // Beyond the maximum the tail is Pareto with exponent 2, as for volumes.
            let b = bits((ns.records * inv_w + 0.5) / (n + 1.0))
                + (2.0 * ratio.log2() as f32).max(floor);
            if best.is_none_or(|(x, _)| b > x) {
                best = Some((
                    b,
                    Detail::Argument {
                        number: i as u8,
                        max: ns.max,
                        n,
                    },
                ));
            }
        }
        if let Some((b, d)) = best {
            s.push(Signal::Argument, b, d);
        }
    }
    // Principal binding: whose things this call touches.
    if !bind.ids.is_empty() || bind.principals >= 2 {
        if let Some((b, d)) =
            binding::score(p, obs, bind, provenance, inv_w, params.min_history / 2.0)
        {
            s.push(Signal::Binding, b, d);
        }
    }
    // Fleet hook: a role's tools are what its peers use. A tool the
    // agent's group never uses though another group's agents do is the
    // work of another role; priced by how often the fleet's members took
    // up such a tool, it backs the new tool's novelty.
    if let (None, Some(c)) = (tool, sess.cross_group) {
        s.push(
            Signal::CrossGroup,
            bits(c.share),
            Detail::CrossGroup {
                groups: c.groups,
                share: c.share,
            },
        );
    }
    // Result text: a tool that nearly always answers in the same words
    // returned new ones (an injected instruction reads unlike an order's
    // status line), and this call uses a value that result carried. Priced
    // by how rarely that tool's results say something new, once per
    // session at the use of most consequence, as provenance is.
    if let Some(view) = sess.odd_result {
        let o = view.result;
        let weight = match obs.action {
            Action::Read | Action::None => 0.5,
            _ => binding::consequence(obs),
        };
        let owed = weight - o.charged;
        if owed > 0.0 {
            // The count of new words is a second fact about the result:
            // geometric with the tool's usual count as its mean, so one
            // word more than usual costs little and a paragraph much; at
            // most as much as the result's novelty itself.
            let per_word = bits(1.0 - 1.0 / o.usual_new.max(1.0 + f32::EPSILON));
            let count = (per_word * (o.new_words as f32 - o.usual_new).max(0.0)).min(bits(o.rate));
            s.push(
                Signal::ResultText,
                (bits(o.rate) + count) * owed,
                Detail::ResultText { view, weight },
            );
        }
    }
    s.event_bits = s.reasons.iter().map(|r| r.bits).sum();

    // Session level: when, how fast, how much.
    let level_start = s.reasons.len();
    let hours_n: f32 = p.hours.iter().sum::<f32>() * inv_w;
    if hours_n >= params.min_history {
        let h = obs.hour as usize;
        let near = p.hours[h] + 0.5 * (p.hours[(h + 23) % 24] + p.hours[(h + 1) % 24]);
        let share = (near * inv_w + 0.5) / (2.0 * hours_n + 12.0);
        s.push(
            Signal::Hour,
            bits(share) - p.hour_entropy.max(1.0),
            Detail::Hour {
                hour: obs.hour,
                share: p.hours[h] * inv_w / hours_n,
            },
        );
        let d = obs.weekday as usize;
        let share = (p.weekdays[d] * inv_w + 0.5) / (hours_n + 3.5);
        s.push(
            Signal::Weekday,
            bits(share) - 7f32.log2(),
            Detail::Weekday {
                weekday: obs.weekday,
                share,
            },
        );
    }
    if let Some(gap) = ctx.gap_ms {
        if p.gaps.total() * inv_w >= params.min_history {
            let share = p.gaps.lower_tail(gap as f32 / 250.0, inv_w);
            s.push(
                Signal::Cadence,
                bits(share) - 1.0,
                Detail::Gap { gap_ms: gap, share },
            );
        }
    }
    let mut volume: Option<(f32, Detail)> = None;
    let mut consider = |kind, hist: &crate::baseline::tables::LogHist, count: f32, min: f32| {
        if hist.total() * inv_w < min {
            return;
        }
        let prob = hist.upper_tail(count, inv_w);
        let b = bits(prob) - 1.0;
        if b > 0.0 && volume.is_none_or(|(x, _)| b > x) {
            volume = Some((
                b,
                Detail::Volume {
                    kind,
                    count,
                    usual: hist.quantile_edge(0.9),
                    p: prob,
                },
            ));
        }
    };
    let min_sessions = params.min_history / 2.0;
    consider(
        VolumeKind::SessionCalls,
        &p.session_calls,
        (sess.calls + 1) as f32,
        min_sessions,
    );
    consider(
        VolumeKind::FanOut,
        &p.session_fanout,
        (sess.distinct_values + sess.new_values) as f32,
        min_sessions,
    );
    if let Some(t) = tool {
        consider(
            VolumeKind::ToolCalls,
            &t.per_session,
            (sess.tool_calls + 1) as f32,
            min_sessions,
        );
    }
    consider(
        VolumeKind::Rate,
        &p.rate,
        p.rate_at(obs.ts),
        params.min_history,
    );
    if let Some((b, d)) = volume {
        s.push(Signal::Volume, b, d);
    }
    s.session_bits = s.reasons[level_start..].iter().map(|r| r.bits).sum();

    if sess.carry > 0.0 {
        s.carry_bits = sess.carry;
        s.push(
            Signal::Session,
            sess.carry,
            Detail::Carry { calls: sess.calls },
        );
    }
    // Lone novelty: taking up a tool is new on several facets at once (the
    // tool, the kind of resource it brings), and the chain rule prices each
    // as if the agent's history could have foretold it. For an agent whose
    // work of this kind routinely meets new things that is double counting,
    // so a new tool's novelty is believed beyond the routine rate only as
    // far as other evidence (its values, consequence, taint, binding,
    // origin, range, timing, the session's carry) backs it. A known tool's
    // values are already priced by that tool's own rate.
    if tool.is_none() {
        if let Some(d) = corroborate(&mut s.reasons, routine_novelty(p, obs.action, inv_w)) {
            s.event_bits -= d.raw - d.kept;
            s.novelty = Some(d);
        }
    }
    s.total = s.event_bits + s.session_bits + s.carry_bits;
    s
}

/// How often this agent's calls of this kind of action (read, write,
/// delete…) meet a new value: its tools' Good–Turing rates, each weighted
/// by the share of its calls that are of this kind. One pseudo-observation
/// of a known value keeps an agent without such calls at no routine
/// novelty: it is credited only with what its own history shows, so a
/// first delete or admin call is never "routine".
fn routine_novelty(p: &Profile, action: Action, inv_w: f32) -> f32 {
    let a = action as usize;
    let (mut n1, mut n) = (0.0f32, 0.0f32);
    for t in &p.tools {
        if t.calls > 0.0 {
            let share = t.actions[a] / t.calls;
            n1 += t.value_n1 * share;
            n += t.value_obs * share;
        }
    }
    n1 * inv_w / (n * inv_w + 1.0)
}

/// Signals that only say the agent took up a tool: the tool and the kind
/// of resource it brings. The values it touches stay priced as they are
/// (a new counterparty, a new domain, is what exfiltration looks like).
pub const fn is_novelty(signal: Signal) -> bool {
    matches!(signal, Signal::Tool | Signal::ResourceType)
}

/// Caps the novelty reasons at `bits(routine)` plus the bits of every other
/// reason (scaling them down together), and says by how much.
pub fn corroborate(
    reasons: &mut ArrayVec<Reason, MAX_REASONS>,
    routine: f32,
) -> Option<NoveltyDiscount> {
    let (mut raw, mut backing) = (0.0f32, 0.0f32);
    for r in reasons.iter() {
        if is_novelty(r.signal) {
            raw += r.bits;
        } else {
            backing += r.bits;
        }
    }
    let kept = bits(routine) + backing;
    if raw <= kept || raw <= 0.0 {
        return None;
    }
    let f = kept / raw;
    for r in reasons.iter_mut().filter(|r| is_novelty(r.signal)) {
        r.bits *= f;
    }
    Some(NoveltyDiscount { raw, kept, routine })
}

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn pct(x: f32) -> String {
    let x = x * 100.0;
    if x >= 10.0 {
        format!("{x:.0}%")
    } else if x >= 0.1 {
        format!("{x:.1}%")
    } else {
        format!("{x:.2}%")
    }
}

/// A person's reading of a reason: "send_payment to DE89… (resource_id): …".
pub fn render_detail(r: &Reason, obs: &Observation, p: &Profile) -> String {
    let tool = obs.tool_name;
    let tool_name = |fp: Fp| -> String {
        if fp == START {
            "the session's start".to_owned()
        } else {
            p.tool(fp)
                .map(|t| format!("`{}`", t.name))
                .unwrap_or_else(|| "an unknown tool".to_owned())
        }
    };
    match r.detail {
        Detail::NewTool { known_tools, calls } => format!(
            "first call of `{tool}` by this agent ({known_tools} tools known over {calls:.0} calls)"
        ),
        Detail::Sequence { prev, prob, ctx_calls } => format!(
            "`{tool}` after {}: probability {} ({ctx_calls:.0} calls seen after it)",
            tool_name(prev),
            pct(prob)
        ),
        Detail::ResourceType {
            tool_known,
            agent_known,
            tool_calls,
        } => {
            let rt = format!("resource type `{}`", obs.rtype_name.unwrap_or("?"));
            if tool_known {
                format!(
                    "`{tool}` on {rt}: {} of its {tool_calls:.0} calls",
                    pct((-r.bits).exp2())
                )
            } else if agent_known {
                format!("`{tool}` on {rt}, never touched with this tool in {tool_calls:.0} calls")
            } else {
                format!("`{tool}` on {rt}, never touched by this agent")
            }
        }
        Detail::Resource {
            value,
            novelty,
            tool_calls,
            novel_rate,
            new_shape,
        } => {
            let v = &obs.values[value as usize];
            let field = match &v.from {
                ValueFrom::ResourceId => "resource_id".to_owned(),
                ValueFrom::Arg(k) => format!("args.{k}"),
            };
            let what = match novelty {
                Novelty::NewForTool => "known to this agent but never used with this tool",
                Novelty::KnownParent => "new to this agent (its domain/parent is known)",
                Novelty::NewParent => "new to this agent, and so is its domain/parent",
                Novelty::New => "new to this agent",
            };
            let shape = if new_shape {
                format!("; {} where this tool never used one", v.key.shape.as_str())
            } else {
                String::new()
            };
            // A tool never called before has no calls to count from: its
            // rate is what the tools the agent adopted met at first.
            let expected = if tool_calls < 0.5 {
                format!(
                    "never called this tool before (new tools meet a new value in {} of calls)",
                    pct(novel_rate)
                )
            } else {
                format!(
                    "expected for {} of calls (from {tool_calls:.0} calls of this tool)",
                    pct(novel_rate)
                )
            };
            format!("`{tool}` to `{}` ({field}): {what}; {expected}{shape}", v.text)
        }
        Detail::LookAlike { value, new_parents } => format!(
            "`{}` looks like a counterparty this agent knows, but is not it ({new_parents:.0} new domains seen before)",
            obs.values[value as usize].text
        ),
        Detail::Action {
            action,
            tool_share,
            agent_share,
            calls,
        } => {
            if tool_share > 0.0 {
                format!("`{}` by `{tool}`: {} of its calls", action.as_str(), pct(tool_share))
            } else if agent_share > 0.0 {
                format!(
                    "`{}` action by `{tool}`, which never did it; {} of the agent's {calls:.0} calls are `{}`",
                    action.as_str(),
                    pct(agent_share),
                    action.as_str()
                )
            } else {
                format!("first `{}` action by this agent in {calls:.0} calls", action.as_str())
            }
        }
        Detail::Origin {
            kind,
            tool_share,
            agent_share,
            calls,
        } => {
            let excerpt = obs
                .origin_excerpt
                .map(|e| format!(" (\"{}\")", e.chars().take(80).collect::<String>()))
                .unwrap_or_default();
            if tool_share > 0.0 {
                format!("instruction from {}{excerpt}: {} of `{tool}` calls", kind.as_str(), pct(tool_share))
            } else if agent_share > 0.0 {
                format!(
                    "`{tool}` instructed by {}{excerpt}, which it never was; {} of the agent's {calls:.0} calls are",
                    kind.as_str(),
                    pct(agent_share)
                )
            } else {
                format!("first call instructed by {}{excerpt} in {calls:.0} calls", kind.as_str())
            }
        }
        Detail::Provenance {
            value,
            rate,
            new_values,
        } => format!(
            "`{}` reached this session only through a tool's output, never from the user, and is new to this agent; `{tool}` acts on such values for {} of {new_values:.0} new values",
            obs.values[value as usize].text,
            pct(rate)
        ),
        Detail::Argument { number, max, n } => {
            let num = &obs.numbers[number as usize];
            let what = match num.kind {
                NumKind::Count => format!("{} items in args.{}", num.value, num.key),
                NumKind::Magnitude => format!("args.{} = {}", num.key, num.value),
            };
            format!(
                "{what}: {:.1}× the largest in {n:.0} calls of `{tool}` ({max})",
                if max > 0.0 { num.value / max } else { num.value }
            )
        }
        Detail::Hour { hour, share } => format!(
            "call at {hour:02}h UTC: {} of this agent's calls fall in this hour",
            pct(share)
        ),
        Detail::Weekday { weekday, share } => format!(
            "call on a {}: {} of this agent's calls",
            WEEKDAYS[weekday as usize % 7],
            pct(share)
        ),
        Detail::Gap { gap_ms, share } => format!(
            "{:.2} s after the previous call; {} of its gaps are this short",
            gap_ms as f64 / 1000.0,
            pct(share)
        ),
        Detail::Volume { kind, count, usual, p } => {
            let what = match kind {
                VolumeKind::SessionCalls => "calls in this session",
                VolumeKind::ToolCalls => "calls of this tool in this session",
                VolumeKind::FanOut => "distinct resources in this session",
                VolumeKind::Rate => "calls per minute",
            };
            let basis = if kind == VolumeKind::Rate { "of the time" } else { "of its sessions" };
            format!("{count:.0} {what}; 90% {basis} stay under {usual:.0}, {} reach this", pct(p))
        }
        Detail::Binding {
            id,
            foreign,
            by_owner,
            listed,
            tainted,
            unrequested,
            unsourced,
            fresh,
            others,
            sessions,
            top,
            source_tool,
            principals,
            has_id,
        } => {
            let me = obs.principal_name.unwrap_or("the principal");
            let mut out = String::new();
            if has_id {
                if let Some(i) = obs.ids.get(id as usize) {
                    out = format!("`{tool}` on {} `{}`", i.key_name, i.text);
                }
                if foreign {
                    let whom = if by_owner {
                        format!("owned by {} (resource_owner)", obs.owner_name.unwrap_or("another principal"))
                    } else {
                        let name = p.binding.name(top).unwrap_or("another principal");
                        let more = if others > 1 { format!(" and {} more", others - 1) } else { String::new() };
                        let basis = if listed { "listed in their own record; " } else { "" };
                        format!("bound to {name}{more} ({basis}{sessions} earlier sessions)")
                    };
                    out.push_str(&format!(", {whom}, while acting for {me}"));
                }
                if tainted && fresh {
                    out.push_str(&format!(
                        "; {me}'s own record lists it for the first time (not when read before), as if written into it"
                    ));
                } else if tainted {
                    let from = if source_tool == 0 {
                        "a tool's output".to_owned()
                    } else {
                        format!("the output of {}", tool_name(source_tool))
                    };
                    out.push_str(&format!("; the id came from {from}, not from {me}'s records or request"));
                }
                if unrequested {
                    out.push_str("; the user's request named another value of this form, not this one");
                }
                if unsourced {
                    out.push_str(&format!(
                        "; nothing this session read carried the id (not {me}'s request or records, no tool's output)"
                    ));
                }
            }
            if principals >= 2 {
                if !out.is_empty() {
                    out.push_str("; ");
                }
                out.push_str(&format!(
                    "the session has touched the things of {principals} other principals"
                ));
            }
            out
        }
        Detail::Carry { calls } => format!(
            "the session's {calls} earlier calls were already surprising ({:.1} bits above usual)",
            r.bits
        ),
        Detail::CrossGroup { groups, share } => format!(
            "`{tool}` is a tool of {}, never of this agent's group; {} of the tools the fleet's agents use are so",
            if groups == 1 {
                "another peer group's agents".to_owned()
            } else {
                format!("{groups} other peer groups' agents")
            },
            pct(share)
        ),
        Detail::ResultText {
            view:
                OddResultView {
                    at,
                    id,
                    echo,
                    result:
                        OddResult {
                            tool: source,
                            results,
                            rate,
                            new_words,
                            usual_new,
                            ..
                        },
                    ..
                },
            ..
        } => format!(
            "`{}` {} a result of {} with {new_words} word{} its {results:.0} earlier results never used (they say something new {} of the time, {usual_new:.1} new words when they do){}: text a tool returned may be instructing the agent",
            if id {
                obs.ids.get(at as usize).map(|i| i.text.as_ref())
            } else {
                obs.values.get(at as usize).map(|v| v.text.as_ref())
            }
            .unwrap_or("a value"),
            if echo { "is the subject of" } else { "came in" },
            tool_name(source),
            if new_words == 1 { "" } else { "s" },
            pct(rate),
            if echo {
                format!(", and the user's request names no `{tool}`")
            } else {
                String::new()
            }
        ),
        Detail::SessionShape {
            calls,
            deletes,
            writes,
            secs,
            p,
        } => format!(
            "session shape: {calls} calls ({deletes} deletes, {writes} writes) in {secs:.0} s, unlike the sessions of its peer group (p = {})",
            pct(p)
        ),
    }
}

#[cfg(test)]
mod tests;
