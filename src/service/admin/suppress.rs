//! Suppression rules: known-benign patterns whose flagged calls raise no
//! alert. A rule names an agent (id, config class, or id pattern with
//! `*`), and optionally a tool, a resource pattern and a reason signal;
//! every rule has a reason and an expiry, after which it stops matching on
//! its own. `skip = "alert"`: the decision is recorded and counted, no
//! incident opens, and the call is learned as benign (the pattern becomes
//! normal); `skip = "learning"`: no incident either, and the session is
//! not learned.
//!
//! Workers read the rules through a versioned snapshot, as for the
//! policy overrides; each rule counts its hits with an atomic.
//! Rules persist to `<data-dir>/suppressions.json`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::decide::glob_match;

/// What a matching rule skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skip {
    /// The alert (and the incident); the call is learned as benign.
    Alert,
    /// The alert, and learning the session.
    Learning,
}

impl Skip {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Learning => "learning",
        }
    }
}

/// One rule.
#[derive(Debug, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    /// Agent id, config class name, or agent-id pattern (`*`).
    pub agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Pattern over the call's `resource_id` (`*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// A reason signal (`origin`, `provenance`, `sequence`, …) the
    /// decision must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    pub skip: Skip,
    pub reason: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    /// `expires_at` in Unix milliseconds.
    pub expires_ms: i64,
    /// Flagged calls it suppressed.
    #[serde(default)]
    pub hits: AtomicU64,
}

/// What a flagged call offers to the matcher.
pub struct Candidate<'a> {
    pub agent_id: &'a str,
    pub class: Option<&'a str>,
    pub tool: &'a str,
    pub resource: Option<&'a str>,
    pub signals: &'a [&'a str],
    pub now_ms: i64,
}

impl Rule {
    pub fn matches(&self, c: &Candidate<'_>) -> bool {
        c.now_ms < self.expires_ms
            && (self.agent == c.agent_id
                || Some(self.agent.as_str()) == c.class
                || (self.agent.contains('*') && glob_match(&self.agent, c.agent_id)))
            && self.tool.as_deref().is_none_or(|t| t == c.tool)
            && self
                .resource
                .as_deref()
                .is_none_or(|p| c.resource.is_some_and(|r| glob_match(p, r)))
            && self
                .signal
                .as_deref()
                .is_none_or(|s| c.signals.contains(&s))
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_ms
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SuppressionStoreError {
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
}

/// The rules: written by the API, read by workers.
pub struct SuppressionStore {
    rules: RwLock<Arc<Vec<Arc<Rule>>>>,
    version: AtomicU64,
    path: PathBuf,
}

impl SuppressionStore {
    pub fn open(data_dir: &std::path::Path) -> Result<Self, SuppressionStoreError> {
        let path = data_dir.join("suppressions.json");
        let rules: Vec<Rule> = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| SuppressionStoreError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(SuppressionStoreError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        Ok(Self {
            rules: RwLock::new(Arc::new(rules.into_iter().map(Arc::new).collect())),
            version: AtomicU64::new(1),
            path,
        })
    }

    pub fn snapshot(&self) -> Arc<Vec<Arc<Rule>>> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Writes the rules (with their hit counts) to disk.
    pub fn persist(&self) -> Result<(), SuppressionStoreError> {
        let rules = self.snapshot();
        let list: Vec<&Rule> = rules.iter().map(|r| &**r).collect();
        let body = serde_json::to_vec_pretty(&list).unwrap_or_default();
        crate::state::write_atomic(&self.path, &body).map_err(|e| SuppressionStoreError::Write {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Adds a rule and persists.
    pub fn add(&self, rule: Rule) -> Result<Arc<Rule>, SuppressionStoreError> {
        let rule = Arc::new(rule);
        {
            let mut cur = self.rules.write().unwrap_or_else(|p| p.into_inner());
            let mut next: Vec<Arc<Rule>> = (**cur).clone();
            next.push(rule.clone());
            *cur = Arc::new(next);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        self.persist()?;
        Ok(rule)
    }

    /// Removes a rule by id and persists; `None` when unknown.
    pub fn remove(&self, id: &str) -> Result<Option<Arc<Rule>>, SuppressionStoreError> {
        let removed = {
            let mut cur = self.rules.write().unwrap_or_else(|p| p.into_inner());
            let Some(at) = cur.iter().position(|r| r.id == id) else {
                return Ok(None);
            };
            let mut next: Vec<Arc<Rule>> = (**cur).clone();
            let removed = next.remove(at);
            *cur = Arc::new(next);
            self.version.fetch_add(1, Ordering::AcqRel);
            removed
        };
        self.persist()?;
        Ok(Some(removed))
    }
}

/// A worker's view of the rules.
pub struct SuppressionReader {
    store: Arc<SuppressionStore>,
    version: u64,
    cached: Arc<Vec<Arc<Rule>>>,
}

impl SuppressionReader {
    pub fn new(store: Arc<SuppressionStore>) -> Self {
        Self {
            version: store.version(),
            cached: store.snapshot(),
            store,
        }
    }

    /// The first unexpired rule matching `c`, its hit counted.
    pub fn check(&mut self, c: &Candidate<'_>) -> Option<Skip> {
        let v = self.store.version();
        if v != self.version {
            self.cached = self.store.snapshot();
            self.version = v;
        }
        let rule = self.cached.iter().find(|r| r.matches(c))?;
        rule.hits.fetch_add(1, Ordering::Relaxed);
        Some(rule.skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(agent: &str, resource: Option<&str>, signal: Option<&str>, expires_ms: i64) -> Rule {
        Rule {
            id: "s-1".into(),
            agent: agent.into(),
            tool: Some("send_email".into()),
            resource: resource.map(str::to_owned),
            signal: signal.map(str::to_owned),
            skip: Skip::Alert,
            reason: "newsletter".into(),
            created_by: "ops".into(),
            created_at: String::new(),
            expires_at: String::new(),
            expires_ms,
            hits: AtomicU64::new(0),
        }
    }

    fn cand<'a>(
        agent: &'a str,
        resource: &'a str,
        signals: &'a [&'a str],
        now: i64,
    ) -> Candidate<'a> {
        Candidate {
            agent_id: agent,
            class: Some("mail"),
            tool: "send_email",
            resource: Some(resource),
            signals,
            now_ms: now,
        }
    }

    #[test]
    fn matches_by_agent_class_pattern_resource_and_signal_until_expiry() {
        let r = rule("mail-*", Some("*@example.com"), Some("resource"), 1000);
        assert!(r.matches(&cand("mail-1", "a@example.com", &["resource"], 999)));
        assert!(
            !r.matches(&cand("mail-1", "a@example.com", &["resource"], 1000)),
            "expired"
        );
        assert!(!r.matches(&cand("mail-1", "a@evil.com", &["resource"], 0)));
        assert!(!r.matches(&cand("mail-1", "a@example.com", &["origin"], 0)));
        assert!(!r.matches(&cand("bank-1", "a@example.com", &["resource"], 0)));
        let by_class = rule("mail", None, None, 1000);
        assert!(by_class.matches(&cand("x", "y", &[], 0)));
    }

    #[test]
    fn rules_persist_with_hits_and_readers_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SuppressionStore::open(dir.path()).unwrap());
        let mut reader = SuppressionReader::new(store.clone());
        assert_eq!(
            reader.check(&cand("mail-1", "a@example.com", &["resource"], 0)),
            None
        );
        store.add(rule("mail-1", None, None, i64::MAX)).unwrap();
        assert_eq!(
            reader.check(&cand("mail-1", "a@example.com", &[], 0)),
            Some(Skip::Alert)
        );
        store.persist().unwrap();
        let again = SuppressionStore::open(dir.path()).unwrap();
        assert_eq!(again.snapshot()[0].hits.load(Ordering::Relaxed), 1);
        assert!(store.remove("s-1").unwrap().is_some());
        assert_eq!(reader.check(&cand("mail-1", "a@example.com", &[], 0)), None);
    }
}
