//! What bounds the response path in a storm: how long incidents are kept,
//! how many stay in memory (`response.incident-retention`,
//! `response.max-incidents-in-memory`), and how fast each notifier may post
//! (`[response.pacing]`). See docs/storm.md.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Released incidents are kept this long after their release, then expire
/// from the registry (and from memory).
pub(super) const fn default_incident_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

/// Shadow incidents quiet this long are released by Warden: a day without
/// a new flag ends one bad spell, and the next is paged afresh.
pub(super) const fn default_shadow_release_after() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Incidents the API's in-memory view holds before the oldest released
/// ones are dropped from it (open ones are never dropped).
pub(super) const fn default_max_incidents_in_memory() -> usize {
    20_000
}

/// Per-destination pacing of alerts: a token bucket per Slack webhook and
/// per PagerDuty routing key, set under the destinations' published
/// limits. When a bucket is empty, alerts wait in their queue, where
/// updates of one incident merge and openings past
/// `response.alert-queue-depth` roll into one digest; a 429 empties the
/// bucket until its `Retry-After`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PacingConfig {
    /// Slack messages a second per webhook (Slack: about one a second per
    /// webhook, short bursts tolerated).
    pub slack_per_second: f64,
    /// Slack messages sent back to back after a quiet spell.
    pub slack_burst: u32,
    /// PagerDuty events a minute per routing key (Events API v2 answers 429
    /// above about 120 a minute per integration key).
    pub pagerduty_per_minute: f64,
    /// PagerDuty events sent back to back after a quiet spell.
    pub pagerduty_burst: u32,
}

impl Default for PacingConfig {
    fn default() -> Self {
        Self {
            slack_per_second: 1.0,
            slack_burst: 3,
            pagerduty_per_minute: 100.0,
            pagerduty_burst: 10,
        }
    }
}

impl PacingConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("response.pacing.slack-per-second", self.slack_per_second),
            (
                "response.pacing.pagerduty-per-minute",
                self.pagerduty_per_minute,
            ),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1_000_000.0) {
                return Err(invalid(key, "must be a number above 0"));
            }
        }
        for (key, v) in [
            ("response.pacing.slack-burst", self.slack_burst),
            ("response.pacing.pagerduty-burst", self.pagerduty_burst),
        ] {
            if !(1..=10_000).contains(&v) {
                return Err(invalid(key, "must be between 1 and 10000"));
            }
        }
        Ok(())
    }
}

/// Checks `response.shadow-release-after`: `0s` (never) or at least a
/// second (it sets how often the responder sweeps).
pub(super) fn validate_shadow_release(after: Duration) -> Result<(), ConfigError> {
    if !after.is_zero() && after < Duration::from_secs(1) {
        return Err(invalid(
            "response.shadow-release-after",
            "must be 0s (never) or at least 1s",
        ));
    }
    Ok(())
}

/// Checks the retention keys of `[response]`.
pub(super) fn validate_retention(
    retention: Duration,
    max_in_memory: usize,
) -> Result<(), ConfigError> {
    if retention < Duration::from_secs(3600) {
        return Err(invalid(
            "response.incident-retention",
            "must be at least 1h (released incidents are answered from the registry until then)",
        ));
    }
    if max_in_memory < 100 {
        return Err(invalid(
            "response.max-incidents-in-memory",
            "must be at least 100",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pacing_and_retention_name_their_key() {
        let bad = PacingConfig {
            slack_per_second: 0.0,
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("response.pacing.slack-per-second"), "{e}");
        let bad = PacingConfig {
            pagerduty_burst: 0,
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("response.pacing.pagerduty-burst"), "{e}");
        assert!(PacingConfig::default().validate().is_ok());
        let e = validate_shadow_release(Duration::from_millis(500))
            .unwrap_err()
            .to_string();
        assert!(e.contains("response.shadow-release-after"), "{e}");
        assert!(validate_shadow_release(Duration::ZERO).is_ok());
        let e = validate_retention(Duration::from_secs(60), 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("response.incident-retention"), "{e}");
        let e = validate_retention(default_incident_retention(), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("response.max-incidents-in-memory"), "{e}");
    }
}
