//! Features that hold across tool catalogues: what an agent's profile says
//! about how it works (action mix, novelty rate, cadence, hours, session
//! length and width), and what a session looks like so far. Tool names are
//! deliberately absent, so agents of different customers with different
//! catalogues still compare.
//!
//! The names below are the model file's feature schema: a file trained on
//! another list is refused (see [`super::file`]).

use serde::{Deserialize, Serialize};

use crate::baseline::Profile;
use crate::event::{Action, Millis};

/// Profile features, in order.
pub const AGENT_FEATURES: [&str; AGENT_DIM] = [
    "action_read",
    "action_write",
    "action_delete",
    "action_exec_admin",
    "ln_new_value_rate",
    "ln_tools",
    "hour_entropy",
    "ln_median_gap_s",
    "ln_median_session_calls",
    "ln_median_session_fanout",
];
pub const AGENT_DIM: usize = 10;

/// Session-shape features, in order.
pub const SESSION_FEATURES: [&str; SESSION_DIM] = [
    "ln_calls",
    "ln_distinct_tools",
    "ln_distinct_values",
    "frac_read",
    "frac_write",
    "frac_delete",
    "frac_exec_admin",
    "ln_max_calls_one_tool",
    "ln_duration_s",
    "ln_calls_per_min",
];
pub const SESSION_DIM: usize = 10;

/// Profile features of an agent.
pub fn agent_features(p: &Profile) -> [f64; AGENT_DIM] {
    let total: f32 = p.actions.iter().sum();
    let frac = |a: f32| if total > 0.0 { (a / total) as f64 } else { 0.0 };
    let a = &p.actions;
    let new_rate = if p.value_obs > 0.0 {
        (p.value_n1 / p.value_obs) as f64
    } else {
        1.0
    };
    [
        frac(a[Action::Read as usize]),
        frac(a[Action::Write as usize]),
        frac(a[Action::Delete as usize]),
        frac(a[Action::Execute as usize] + a[Action::Admin as usize]),
        (new_rate + 0.01).ln(),
        (1.0 + p.tools.len() as f64).ln(),
        p.hour_entropy as f64 / 24f64.log2(),
        // Gaps are kept in quarter seconds.
        (1.0 + p.gaps.quantile_edge(0.5) as f64 / 4.0).ln(),
        (1.0 + p.session_calls.quantile_edge(0.5) as f64).ln(),
        (1.0 + p.session_fanout.quantile_edge(0.5) as f64).ln(),
    ]
}

/// What a session has done so far: counters the engine keeps per open
/// session, enough for [`session_vector`] without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionShape {
    pub calls: u32,
    pub start_ts: Millis,
    pub last_ts: Millis,
    pub actions: [u32; Action::COUNT],
    pub distinct_tools: u32,
    pub distinct_values: u32,
    pub max_tool_calls: u32,
}

impl SessionShape {
    /// The shape with one more call (of `action`, at `ts`) counted: what
    /// the session looks like when this call is judged.
    pub fn with_call(
        mut self,
        action: Action,
        ts: Millis,
        tool_calls_before: u32,
        new_tool: bool,
        new_values: u32,
    ) -> Self {
        if self.calls == 0 {
            self.start_ts = ts;
        }
        self.calls += 1;
        self.last_ts = self.last_ts.max(ts);
        self.actions[action as usize] += 1;
        self.distinct_tools += new_tool as u32;
        self.distinct_values += new_values;
        self.max_tool_calls = self.max_tool_calls.max(tool_calls_before + 1);
        self
    }

    pub fn duration_s(&self) -> f64 {
        ((self.last_ts - self.start_ts).max(0) as f64) / 1000.0
    }

    /// Calls of one action, for explanations.
    pub fn count(&self, a: Action) -> u32 {
        self.actions[a as usize]
    }
}

/// The feature vector of a session shape.
pub fn session_vector(s: &SessionShape) -> [f64; SESSION_DIM] {
    let n = s.calls.max(1) as f64;
    let a = &s.actions;
    let secs = s.duration_s();
    [
        (1.0 + s.calls as f64).ln(),
        (1.0 + s.distinct_tools as f64).ln(),
        (1.0 + s.distinct_values as f64).ln(),
        a[Action::Read as usize] as f64 / n,
        a[Action::Write as usize] as f64 / n,
        a[Action::Delete as usize] as f64 / n,
        (a[Action::Execute as usize] + a[Action::Admin as usize]) as f64 / n,
        (1.0 + s.max_tool_calls as f64).ln(),
        (1.0 + secs).ln(),
        (1.0 + s.calls as f64 / (secs / 60.0 + 1.0)).ln(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_shape_counts_calls_and_actions() {
        let s = SessionShape::default()
            .with_call(Action::Read, 1_000, 0, true, 1)
            .with_call(Action::Delete, 61_000, 0, true, 1)
            .with_call(Action::Delete, 121_000, 1, false, 1);
        assert_eq!(s.calls, 3);
        assert_eq!(s.count(Action::Delete), 2);
        assert_eq!(s.distinct_tools, 2);
        assert_eq!(s.max_tool_calls, 2);
        assert_eq!(s.duration_s(), 120.0);
        let v = session_vector(&s);
        assert!((v[5] - 2.0 / 3.0).abs() < 1e-9);
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn a_new_profile_has_finite_features() {
        let f = agent_features(&Profile::new(0));
        assert!(f.iter().all(|x| x.is_finite()), "{f:?}");
    }
}
