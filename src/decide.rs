//! Decisions: a score against the agent's threshold, under its mode.
//!
//! Thresholds come, in order of precedence, from the agent's own entry in
//! the config, its class's entry, its own calibration (a high quantile of
//! the highest score of each of its past unflagged sessions, scored before
//! they were learned, plus a margin), or the default. Agents in warm-up are
//! never flagged.

use serde::{Deserialize, Serialize};

use crate::baseline::Profile;
use crate::config::PolicyConfig;

/// What Warden does when an agent is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Record only.
    Learn,
    /// Alert, do not revoke.
    #[default]
    Shadow,
    /// Alert and revoke.
    Enforce,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Learn => "learn",
            Self::Shadow => "shadow",
            Self::Enforce => "enforce",
        }
    }
}

/// Where a threshold came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    WarmUp,
    Agent,
    Class,
    Calibrated,
    Default,
    /// Fleet hook: a young agent's peer-group calibration (src/fleet).
    Group,
}

impl Basis {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WarmUp => "warm-up",
            Self::Agent => "agent",
            Self::Class => "class",
            Self::Calibrated => "calibrated",
            Self::Default => "default",
            Self::Group => "group",
        }
    }
}

/// The policy that applies to one agent, resolved once from the config.
#[derive(Debug, Clone, Default)]
pub struct AgentPolicy {
    pub class: Option<String>,
    pub fixed_threshold: Option<(f32, Basis)>,
    pub mode: Mode,
}

/// The outcome for one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub flagged: bool,
    pub threshold: f32,
    pub basis: Basis,
    pub mode: Mode,
}

/// Resolves the agent's class, fixed threshold and mode from the config.
/// The class is the agent's own config entry's, else the one its events
/// declare (`agent_class`), else the first whose pattern matches its id.
pub fn resolve(agent_id: &str, declared_class: Option<&str>, cfg: &PolicyConfig) -> AgentPolicy {
    let own = cfg.agents.get(agent_id);
    let class_name = own
        .and_then(|a| a.class.clone())
        .or_else(|| declared_class.map(str::to_owned))
        .or_else(|| {
            cfg.classes
                .iter()
                .find(|c| c.agents.iter().any(|pat| glob_match(pat, agent_id)))
                .map(|c| c.name.clone())
        });
    let class = class_name
        .as_deref()
        .and_then(|n| cfg.classes.iter().find(|c| c.name == n));
    let fixed_threshold = own
        .and_then(|a| a.threshold_bits.map(|t| (t, Basis::Agent)))
        .or_else(|| class.and_then(|c| c.threshold_bits.map(|t| (t, Basis::Class))));
    let mode = own
        .and_then(|a| a.mode)
        .or_else(|| class.and_then(|c| c.mode))
        .unwrap_or(cfg.mode);
    AgentPolicy {
        class: class_name,
        fixed_threshold,
        mode,
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = s.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        return rest.is_empty();
    }
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The threshold that applies to this agent now; `inv_w` converts the
/// profile's decayed counts to effective ones at the current time.
pub fn threshold(p: &Profile, pol: &AgentPolicy, cfg: &PolicyConfig, inv_w: f32) -> (f32, Basis) {
    if p.events_learned < cfg.warmup_events {
        return (cfg.warmup_threshold_bits, Basis::WarmUp);
    }
    if let Some(t) = pol.fixed_threshold {
        return t;
    }
    let sessions = p.session_scores.total() * inv_w;
    if cfg.calibrate && sessions >= cfg.calibration_min_sessions {
        let q = tail_quantile(&p.session_scores, cfg.target_false_alarm_rate);
        let t = (q + cfg.margin_bits).clamp(cfg.min_threshold_bits, cfg.max_threshold_bits);
        return (t, Basis::Calibrated);
    }
    (cfg.threshold_bits, Basis::Default)
}

/// The score exceeded by a share `alpha` of sessions. Far quantiles of a
/// few hundred sessions are set by one or two outliers, so the tail is also
/// extrapolated: scores are log-probabilities, whose upper tail is close to
/// exponential, fitted through the median and the 90th percentile (both
/// stable with little data). The lower of the two is used: the fit ignores
/// a lone outlier, the empirical quantile a tail that stops short.
pub fn tail_quantile(h: &crate::baseline::tables::ScoreHist, alpha: f32) -> f32 {
    let empirical = h.quantile(1.0 - alpha);
    if alpha >= 0.1 {
        return empirical;
    }
    let q50 = h.quantile(0.5);
    let q90 = h.quantile(0.9);
    let scale = (q90 - q50).max(0.5) / 5f32.ln();
    empirical.min(q90 + scale * (0.1 / alpha).ln())
}

/// Flags when the score reaches the threshold (never in warm-up).
pub fn decide(total: f32, threshold: (f32, Basis), mode: Mode) -> Decision {
    let (t, basis) = threshold;
    Decision {
        flagged: basis != Basis::WarmUp && total >= t,
        threshold: t,
        basis,
        mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("pay-*", "pay-eu"));
        assert!(glob_match("*-eu", "pay-eu"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("pay-*", "support"));
    }

    #[test]
    fn precedence_agent_over_class_over_default() {
        let cfg: PolicyConfig = toml::from_str(
            r#"
            mode = "shadow"
            [[classes]]
            name = "payments"
            agents = ["pay-*"]
            threshold-bits = 20.0
            mode = "enforce"
            [agents.pay-eu]
            threshold-bits = 30.0
            "#,
        )
        .unwrap();
        let eu = resolve("pay-eu", None, &cfg);
        assert_eq!(eu.class.as_deref(), Some("payments"));
        assert_eq!(eu.fixed_threshold, Some((30.0, Basis::Agent)));
        assert_eq!(eu.mode, Mode::Enforce);
        let us = resolve("pay-us", None, &cfg);
        assert_eq!(us.fixed_threshold, Some((20.0, Basis::Class)));
        let other = resolve("mail", None, &cfg);
        assert_eq!(other.fixed_threshold, None);
        assert_eq!(other.mode, Mode::Shadow);
        // A declared `agent_class` picks the class where no pattern does,
        // and wins over patterns; the agent's own entry still wins.
        let declared = resolve("mail", Some("payments"), &cfg);
        assert_eq!(declared.class.as_deref(), Some("payments"));
        assert_eq!(declared.mode, Mode::Enforce);
        let unknown = resolve("pay-us", Some("support"), &cfg);
        assert_eq!(unknown.class.as_deref(), Some("support"));
        assert_eq!(
            unknown.mode,
            Mode::Shadow,
            "an unconfigured class gets the default"
        );
        assert_eq!(
            resolve("pay-eu", Some("support"), &cfg).fixed_threshold,
            Some((30.0, Basis::Agent))
        );
    }

    #[test]
    fn warmup_never_flags() {
        let d = decide(1000.0, (10.0, Basis::WarmUp), Mode::Enforce);
        assert!(!d.flagged);
        assert!(decide(10.0, (10.0, Basis::Calibrated), Mode::Shadow).flagged);
    }
}
