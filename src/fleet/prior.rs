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
    /// `young_threshold_bits` but without the margin, from each member
    /// streamed with no history against the prior of the other members
    /// (leave one out).
    #[serde(default)]
    pub blend_threshold_bits: Option<f32>,
    /// Young sessions that threshold came from.
    #[serde(default)]
    pub blend_sessions: usize,
    /// Whether they were pooled from the larger groups (a group of fewer
    /// than three members cannot calibrate its own).
    #[serde(default)]
    pub blend_pooled: bool,
}

/// The `1 − target-false-alarm-rate` quantile of young sessions' maximum
/// scores, plus the margin, within the configured bounds.
///
/// A group has tens of young sessions, fewer than the rate needs to be read
/// off the sample (at 1%, 61 sessions put it at their maximum, which one
/// odd session sets). Below [`TAIL_FIT_EXCEEDANCES`] expected exceedances
/// the quantile comes from the tail instead: the excesses of the top k
/// scores over the (k+1)-th, k = ⌈√n⌉, fitted as exponential (a score is a
/// surprisal in bits, whose tail is exponential when the events behind it
/// are), peaks over threshold with shape 0.
pub(crate) fn young_threshold(scores: &[f32], cfg: &Config) -> Option<f32> {
    quantile_threshold(scores, cfg, cfg.policy.margin_bits)
}

/// The blend threshold: as [`young_threshold`], without the margin. The
/// margin stands for work an agent's history has not seen; these sessions
/// are members left out of the prior they are scored against, so every
/// one of them is such work, and the fitted tail reaches past them.
pub(crate) fn blend_threshold(scores: &[f32], cfg: &Config) -> Option<f32> {
    quantile_threshold(scores, cfg, 0.0)
}

fn quantile_threshold(scores: &[f32], cfg: &Config, margin: f32) -> Option<f32> {
    if scores.is_empty() {
        return None;
    }
    let mut v = scores.to_vec();
    v.sort_unstable_by(f32::total_cmp);
    let p = &cfg.policy;
    let q = tail_quantile(&v, p.target_false_alarm_rate);
    Some((q + margin).clamp(p.min_threshold_bits, p.max_threshold_bits))
}

/// Expected exceedances a sample must hold for its empirical quantile.
const TAIL_FIT_EXCEEDANCES: f32 = 5.0;

/// The `1 − rate` quantile of sorted scores `v`: empirical with enough
/// data, else an exponential fit of the top ⌈√n⌉ (see [`young_threshold`]).
fn tail_quantile(v: &[f32], rate: f32) -> f32 {
    let n = v.len();
    let empirical = || {
        let idx = ((n as f32) * (1.0 - rate)).ceil() as usize;
        v[idx.saturating_sub(1).min(n - 1)]
    };
    let k = ((n as f32).sqrt().ceil() as usize).min(n.saturating_sub(1));
    if (n as f32) * rate >= TAIL_FIT_EXCEEDANCES || k < 3 {
        return empirical();
    }
    let u = v[n - k - 1];
    let beta = v[n - k..].iter().map(|x| x - u).sum::<f32>() / k as f32;
    u + beta * (k as f32 / (n as f32 * rate)).ln()
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
            blend_pooled: false,
            calibrated_members: thresholds.len(),
            threshold_bits: (!thresholds.is_empty()).then(|| median(thresholds)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tail_quantile;

    #[test]
    fn a_thin_sample_reads_its_tail_from_a_fit_and_a_thick_one_from_itself() {
        // 60 young sessions: 59 ordinary, one odd. Read off the sample, the
        // 1% quantile is the odd one; the fitted tail lies above the
        // ordinary sessions and below it.
        let mut v: Vec<f32> = (0..59).map(|i| i as f32 / 10.0).collect();
        v.push(30.0);
        let q = tail_quantile(&v, 0.01);
        assert!(q > 5.8 && q < 30.0, "{q}");
        // Without the outlier, the fit still ends above the sample's top:
        // 60 sessions are too few to have met the 1% tail.
        let w: Vec<f32> = (0..60).map(|i| i as f32 / 10.0).collect();
        assert!(tail_quantile(&w, 0.01) > 5.9);
        // 1,000 sessions hold ten at 1%: the sample answers.
        let big: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        assert_eq!(tail_quantile(&big, 0.01), 989.0);
        // Too few to fit a tail: the sample.
        assert_eq!(tail_quantile(&[1.0, 2.0, 3.0], 0.01), 3.0);
    }
}
