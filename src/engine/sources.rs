//! Where a call's values came from in its session, for the explain route's
//! provenance habits. Read-only: asked between `evaluate` and `commit`.

use arrayvec::ArrayVec;

use super::{Engine, Evaluation};
use crate::baseline::tables::Fp;
use crate::score::features::MAX_VALUES;

/// The source of one value of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSource {
    /// A prompt or a trusted result: the user asked for it.
    User,
    /// Only tool output; the tool that returned it (0 when unknown).
    ToolOutput(Fp),
    /// Nothing the session read carried it: a constant of the agent, or
    /// written by the model.
    Unseen,
}

impl Engine {
    /// The source of each value of `ev` (in `ev.obs.values` order).
    pub fn value_sources(&self, ev: &Evaluation) -> ArrayVec<ValueSource, MAX_VALUES> {
        let Some(sess) = self
            .agents
            .get(ev.agent as usize)
            .and_then(|a| a.sessions.get(ev.session as usize))
        else {
            return ev.obs.values.iter().map(|_| ValueSource::Unseen).collect();
        };
        ev.obs
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let fp = v.key.fp;
                let tool = || {
                    sess.sources
                        .binary_search_by_key(&fp, |(x, _)| *x)
                        .map_or(0, |j| sess.sources[j].1)
                };
                if ev.untrusted_only & (1 << i) != 0 {
                    ValueSource::ToolOutput(tool())
                } else if ev.from_user & (1 << i) != 0 {
                    ValueSource::User
                } else if sess.untrusted.binary_search(&fp).is_ok() {
                    ValueSource::ToolOutput(tool())
                } else {
                    ValueSource::Unseen
                }
            })
            .collect()
    }
}
