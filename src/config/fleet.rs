//! `[fleet]`: how the fleet model (`models/fleet.json`, `warden train`) is
//! used. Where the file is comes from the command line (`--models DIR`,
//! `--no-models`); what it may do to decisions is configured here.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// The fleet model's part in scoring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct FleetConfig {
    /// Add the peer group's session model as a `session_shape` reason.
    /// Off by default: on the replay data it flagged no attacked session the
    /// other signals missed, and below a floor of 16 bits it added false
    /// alarms on benign sessions of unseen task types (docs/fleet.md).
    pub session_model: bool,
    /// Rarity, in bits, a session must pass among its group's training
    /// sessions before the session model adds anything (16 = rarer than
    /// 1 in 65,536); only the bits beyond it count.
    pub session_floor_bits: f32,
    /// An agent outside the training fleet, not yet calibrated on its own
    /// sessions, is judged against its group's calibrated threshold
    /// instead of `policy.threshold-bits`, and without warm-up.
    pub group_threshold: bool,
    /// Score a young agent against its own profile plus its group's prior
    /// as pseudo-observations (tools, transitions, novelty and adoption
    /// rates, hours, cadence, session shapes), judged from its first call
    /// against the group's blend threshold. The prior fades as the agent's
    /// own calls accumulate and is dropped once it weighs under 10% or the
    /// agent's own sessions calibrate its threshold. Members of the
    /// training fleet are in the prior already and are not blended. On by
    /// default: a new agent is otherwise blind for its warm-up.
    pub blend_prior: bool,
    /// Pseudo-calls the group prior stands for (n0): with n calls of its
    /// own, an agent's prior weighs n0 / (n0 + n). Read by `warden train`,
    /// which calibrates the blend threshold with it and records it in the
    /// model file; the service uses the file's value.
    pub prior_calls: f32,
    /// Peer groups by agent id, for agents outside the training fleet that
    /// declare no `agent_class`: the first rule whose pattern matches puts
    /// the agent in the group of `peer`, an agent of the training fleet.
    pub assign: Vec<AssignRule>,
}

/// `[[fleet.assign]]`: agents matching `agents` join the group of `peer`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AssignRule {
    /// `agent_id` patterns (`*` matches any run of characters).
    pub agents: Vec<String>,
    /// An agent id of the training fleet (`warden models inspect` lists
    /// the members of each group): group ids change from one training to
    /// the next, a member's group follows it.
    pub peer: String,
}

const fn default_session_floor_bits() -> f32 {
    16.0
}

const fn default_prior_calls() -> f32 {
    200.0
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            session_model: false,
            session_floor_bits: default_session_floor_bits(),
            group_threshold: false,
            blend_prior: true,
            prior_calls: default_prior_calls(),
            assign: Vec::new(),
        }
    }
}

impl FleetConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.session_floor_bits.is_finite() && (0.0..=64.0).contains(&self.session_floor_bits))
        {
            return Err(invalid(
                "fleet.session-floor-bits",
                "must be between 0 and 64",
            ));
        }
        if !(self.prior_calls.is_finite() && (1.0..=100_000.0).contains(&self.prior_calls)) {
            return Err(invalid("fleet.prior-calls", "must be between 1 and 100000"));
        }
        for (i, rule) in self.assign.iter().enumerate() {
            if rule.agents.is_empty() || rule.agents.iter().any(|p| p.trim().is_empty()) {
                return Err(invalid(
                    &format!("fleet.assign[{i}].agents"),
                    "must list at least one non-empty agent_id pattern",
                ));
            }
            if rule.peer.trim().is_empty() {
                return Err(invalid(
                    &format!("fleet.assign[{i}].peer"),
                    "must name an agent of the training fleet",
                ));
            }
        }
        Ok(())
    }
}
