//! What a peer group's members have in common, for an agent that joins the
//! group with little history of its own: the tools they share, how often
//! their calls meet new values (overall and per action), their cadence,
//! their session shapes and the thresholds their own histories calibrated.

use serde::{Deserialize, Serialize};

use super::blend::PriorProfile;
use crate::baseline::Profile;
use crate::config::Config;
use crate::decide;
use crate::event::Action;

/// Share of members that must use a tool for the group to share it.
const SHARED_TOOL_SHARE: f32 = 0.5;

/// A group's prior.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupPrior {
    /// Tools used by at least half of the members, with that share
    /// (empty when the members' catalogues differ).
    pub shared_tools: Vec<(String, f32)>,
    /// Share of values new to the tool that met them (Good–Turing),
    /// median over members.
    pub new_value_rate: f32,
    /// The same, per action of the tools (tools counted under their main
    /// action), pooled over members.
    pub new_value_rate_by_action: Vec<(String, f32)>,
    /// Share of calls that were a tool's first call (adoptions), median.
    pub new_tool_rate: f32,
    /// Median gap between calls in a session, seconds (median of members).
    pub median_gap_s: f32,
    /// Calls per session: median and 90th percentile (medians of members).
    pub session_calls_median: f32,
    pub session_calls_p90: f32,
    /// Distinct values per session, median of members.
    pub session_fanout_median: f32,
    /// Threshold (bits) each member's own history calibrated, median over
    /// members whose threshold was calibrated; `None` when none was.
    pub threshold_bits: Option<f32>,
    /// Members whose threshold was calibrated.
    pub calibrated_members: usize,
    /// Threshold (bits) for a young agent of the group: the score that
    /// `policy.target-false-alarm-rate` of the members' sessions exceeded
    /// while the member itself was young (fewer than
    /// `policy.calibration-min-sessions` sessions learned), plus
    /// `policy.margin-bits`. `None` without young sessions.
    #[serde(default)]
    pub young_threshold_bits: Option<f32>,
    /// Young sessions that threshold came from.
    #[serde(default)]
    pub young_sessions: usize,
    /// The group as pseudo-observations a young agent is scored against
    /// (`fleet.blend-prior`, src/fleet/blend.rs); `None` in files trained
    /// before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<PriorProfile>,
    /// Threshold (bits) for a young agent scored against the blend: as
    /// `young_threshold_bits`, from each member streamed with no history
    /// against the prior of the other members (leave one out).
    #[serde(default)]
    pub blend_threshold_bits: Option<f32>,
    /// Young sessions that threshold came from.
    #[serde(default)]
    pub blend_sessions: usize,
}

/// The `1 − target-false-alarm-rate` quantile of young sessions' maximum
/// scores, plus the margin, within the configured bounds.
pub(crate) fn young_threshold(scores: &[f32], cfg: &Config) -> Option<f32> {
    if scores.is_empty() {
        return None;
    }
    let mut v = scores.to_vec();
    v.sort_unstable_by(f32::total_cmp);
    let p = &cfg.policy;
    let idx = ((v.len() as f32) * (1.0 - p.target_false_alarm_rate)).ceil() as usize;
    let q = v[idx.saturating_sub(1).min(v.len() - 1)];
    Some((q + p.margin_bits).clamp(p.min_threshold_bits, p.max_threshold_bits))
}

fn median(mut v: Vec<f32>) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f32::total_cmp);
    v[v.len() / 2]
}

impl GroupPrior {
    /// The prior of the profiles of a group's members.
    pub fn of(members: &[&Profile], young_scores: &[f32], cfg: &Config) -> Self {
        let n = members.len().max(1) as f32;
        let mut tools: Vec<(String, f32)> = Vec::new();
        let mut by_action_obs = [0f32; Action::COUNT];
        let mut by_action_n1 = [0f32; Action::COUNT];
        for p in members {
            for t in &p.tools {
                match tools.iter_mut().find(|(name, _)| **name == *t.name) {
                    Some((_, c)) => *c += 1.0,
                    None => tools.push((t.name.to_string(), 1.0)),
                }
                let main = t
                    .actions
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(Action::None as usize, |(i, _)| i);
                by_action_obs[main] += t.value_obs;
                by_action_n1[main] += t.value_n1;
            }
        }
        let mut shared_tools: Vec<(String, f32)> = tools
            .into_iter()
            .map(|(name, c)| (name, c / n))
            .filter(|(_, share)| *share >= SHARED_TOOL_SHARE)
            .collect();
        shared_tools.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let new_value_rate_by_action = Action::ALL
            .iter()
            .filter(|a| by_action_obs[**a as usize] > 0.0)
            .map(|a| {
                let i = *a as usize;
                (a.as_str().to_owned(), by_action_n1[i] / by_action_obs[i])
            })
            .collect();
        let mut thresholds = Vec::new();
        for p in members {
            let policy = decide::resolve("", None, &cfg.policy);
            let inv_w = 1.0 / p.weight(p.last_ts, &cfg.detector.limits());
            let (t, basis) = decide::threshold(p, &policy, &cfg.policy, inv_w);
            if basis == decide::Basis::Calibrated {
                thresholds.push(t);
            }
        }
        Self {
            shared_tools,
            new_value_rate: median(
                members
                    .iter()
                    .filter(|p| p.value_obs > 0.0)
                    .map(|p| p.value_n1 / p.value_obs)
                    .collect(),
            ),
            new_value_rate_by_action,
            new_tool_rate: median(
                members
                    .iter()
                    .filter(|p| p.calls > 0.0)
                    .map(|p| p.adoptions / p.calls)
                    .collect(),
            ),
            median_gap_s: median(
                members
                    .iter()
                    .map(|p| p.gaps.quantile_edge(0.5) / 4.0)
                    .collect(),
            ),
            session_calls_median: median(
                members
                    .iter()
                    .map(|p| p.session_calls.quantile_edge(0.5))
                    .collect(),
            ),
            session_calls_p90: median(
                members
                    .iter()
                    .map(|p| p.session_calls.quantile_edge(0.9))
                    .collect(),
            ),
            session_fanout_median: median(
                members
                    .iter()
                    .map(|p| p.session_fanout.quantile_edge(0.5))
                    .collect(),
            ),
            young_threshold_bits: young_threshold(young_scores, cfg),
            young_sessions: young_scores.len(),
            profile: None,
            blend_threshold_bits: None,
            blend_sessions: 0,
            calibrated_members: thresholds.len(),
            threshold_bits: (!thresholds.is_empty()).then(|| median(thresholds)),
        }
    }
}
