//! `[detector.binding]`: the principal-binding channel (README, "Principal
//! binding").

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Principal binding: which ids belong to which principal, and calls that
/// act on another principal's things.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BindingConfig {
    /// Score the binding channel and learn bindings. Off, the channel
    /// neither learns nor scores (to compare, or for agents that serve one
    /// principal only, where it abstains anyway).
    pub enabled: bool,
    /// Exact bindings (value → principal) kept per agent; beyond, the least
    /// recently used spill into a fixed 4 KB sketch. About 24 bytes each.
    pub values_per_agent: usize,
    /// Principal groups: patterns on principal names (`*` matches any
    /// run), e.g. `"user:*@acme-corp.com"`. Principals (and resource
    /// owners) matching the same pattern are one party for binding: a
    /// travel desk booking for colleagues, a family sharing an account, a
    /// team sharing tickets. The first matching pattern wins. Empty by
    /// default: every principal is their own party.
    pub groups: Vec<String>,
}

const fn default_values_per_agent() -> usize {
    4096
}

impl Default for BindingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            values_per_agent: default_values_per_agent(),
            groups: Vec::new(),
        }
    }
}

impl BindingConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(16..=1_000_000).contains(&self.values_per_agent) {
            return Err(invalid(
                "detector.binding.values-per-agent",
                "must be between 16 and 1000000",
            ));
        }
        for (i, g) in self.groups.iter().enumerate() {
            if g.trim().is_empty() || g.trim() == "*" {
                return Err(invalid(
                    &format!("detector.binding.groups[{i}]"),
                    "must name a group of principals, not be empty or match everyone",
                ));
            }
        }
        Ok(())
    }

    /// The group a principal belongs to: the first pattern it matches.
    pub fn group_of(&self, principal: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|g| crate::decide::glob_match(g, principal))
            .map(String::as_str)
    }
}
