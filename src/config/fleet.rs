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
}

const fn default_session_floor_bits() -> f32 {
    16.0
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            session_model: false,
            session_floor_bits: default_session_floor_bits(),
            group_threshold: false,
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
        Ok(())
    }
}
