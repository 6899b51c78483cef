//! The principal-binding channel: a call for principal P on an owned id
//! bound to other principals and never to P; an owned id that reached the
//! call only through tool output that is not P's own records; a session
//! that touches more principals' things than this agent's sessions do.
//!
//! Every price is learned from the agent's own clean sessions: how often it
//! legitimately acts on another principal's things (a staff desk does it
//! all day, a customer assistant never) and on ids it only read in tool
//! output. Cost grows with the consequence of the call (read < write <
//! delete or a write that moves money) and with how exclusively the value
//! belongs to someone else. A separate signal with its own reason and bits,
//! so that later models compose with it.

use arrayvec::ArrayVec;

use crate::baseline::tables::Fp;
use crate::baseline::Profile;
use crate::event::Action;

use super::features::{NumKind, Observation, MAX_IDS};
use super::{bits, Detail};

/// What the session knows of one id of the call (filled by the engine).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IdView {
    /// Index into the observation's ids.
    pub id: u8,
    /// Bound to other principals and never to this one (or the event's
    /// `resource_owner` names another principal).
    pub foreign: bool,
    /// The principal's own record lists it too (a household's shared
    /// booking, or a note padded with others' ids), and the call reads it
    /// or the record listed it in its usual words: it is only half theirs.
    /// A change to one an odd note in that record named is not.
    pub shown: bool,
    /// Its taint is a record the agent read before listing it for the
    /// first time (see the engine's `fresh` claims).
    pub fresh: bool,
    /// Other principals it is bound to, their clean sessions, and the one
    /// with the most (0 when unknown).
    pub others: u8,
    pub other_sessions: u16,
    pub top: u32,
    /// The emitter's `resource_owner` decided it.
    pub by_owner: bool,
    /// Another principal's own record listed it (their profile names it).
    pub listed: bool,
    /// It is another principal's identity (their user id): the call reads
    /// or changes their whole record, which lists all their things.
    pub identity: bool,
    /// Reached the session only through output other than the principal's
    /// own records, and the tool whose output brought it (0 = unknown).
    pub tainted: bool,
    /// The call changes it while the user's request named another value of
    /// its form, not this one.
    pub unrequested: bool,
    /// Nothing this session read carried it: not the request, not the
    /// principal's records, no tool's output (sessions with content only).
    pub unsourced: bool,
    pub source_tool: Fp,
}

/// The channel's input for one call.
#[derive(Debug, Clone, Default)]
pub struct BindingView {
    /// Tag of the principal the call acts for.
    pub principal: u32,
    /// Ids of owned or identity keys, as the session sees them.
    pub ids: ArrayVec<IdView, MAX_IDS>,
    /// Distinct other principals whose things the session touched,
    /// this call included.
    pub principals: u32,
}

/// How much harm a call can do, as a weight on its bits: reads expose,
/// writes change, deletions and writes that move money are hard to undo.
/// A read of someone else's thing has already exposed it, so it weighs
/// little less than a change: it is the first call of most such attacks.
pub(crate) fn consequence(obs: &Observation) -> f32 {
    match obs.action {
        Action::Read | Action::None => 0.7,
        Action::Write if obs.numbers.iter().any(|n| n.kind == NumKind::Magnitude) => 1.0,
        Action::Write => 0.75,
        Action::Delete | Action::Execute | Action::Admin => 1.0,
    }
}

/// The channel's bits for one call, with the detail that explains them.
/// `provenance` is the value the provenance signal priced, with its bits:
/// an id that came through tool output is one fact, so its taint adds only
/// what it weighs beyond them.
pub fn score(
    p: &Profile,
    obs: &Observation,
    v: &BindingView,
    provenance: Option<(Fp, f32)>,
    inv_w: f32,
    min_sessions: f32,
) -> Option<(f32, Detail)> {
    let b = &p.binding;
    let n = b.owned_ops * inv_w;
    let foreign_bits = bits((b.foreign_ops * inv_w + 0.5) / (n + 1.0));
    let taint_bits = bits((b.tainted_ops * inv_w + 0.5) / (n + 1.0));
    let scope_bits = bits((b.unrequested_ops * inv_w + 0.5) / (b.scoped_ops * inv_w + 1.0));
    let unsourced_bits = bits((b.unsourced_ops * inv_w + 0.5) / (n + 1.0));
    let c = consequence(obs);
    let mut best: Option<(f32, IdView)> = None;
    for id in &v.ids {
        // The emitter's word and another's own record are declarations;
        // a binding learned from use grows surer with its sessions.
        let exclusive = if id.by_owner || id.listed {
            1.0
        } else {
            let s = id.other_sessions as f32;
            s / (s + 1.0)
        };
        // Someone else's identity record exposes everything it lists: a
        // read of it weighs as a write.
        let c = if id.identity { c.max(0.75) } else { c };
        let exclusive = if id.shown { exclusive * 0.5 } else { exclusive };
        let mut x = 0.0;
        if id.foreign {
            x += exclusive * foreign_bits * c;
        }
        if id.tainted {
            let priced = provenance
                .filter(|(fp, _)| *fp == obs.ids[id.id as usize].value)
                .map_or(0.0, |(_, b)| b);
            x += (taint_bits * c - priced).max(0.0);
        }
        if id.unrequested {
            x += scope_bits * c;
        }
        if id.unsourced {
            x += unsourced_bits * c;
        }
        if x > 0.0 && best.is_none_or(|(y, _)| x > y) {
            best = Some((x, *id));
        }
    }
    // The session's reach: the second distinct principal whose things it
    // touched, and beyond, against how many this agent's sessions touch.
    let mut fan = 0.0;
    let hist = &b.session_principals;
    if v.principals >= 2 && hist.total() * inv_w >= min_sessions {
        let above = hist.at_least(v.principals as f32, inv_w);
        fan = bits(above);
    }
    let (id_bits, id) = best.unwrap_or_default();
    let total = id_bits + fan;
    (total > 0.0).then_some((
        total,
        Detail::Binding {
            id: id.id,
            foreign: id.foreign,
            by_owner: id.by_owner,
            listed: id.listed,
            tainted: id.tainted,
            unrequested: id.unrequested,
            unsourced: id.unsourced,
            fresh: id.fresh,
            others: id.others,
            sessions: id.other_sessions,
            top: id.top,
            source_tool: id.source_tool,
            principals: v.principals,
            has_id: id_bits > 0.0,
        },
    ))
}
