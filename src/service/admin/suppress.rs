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
//! Rules persist to `<data-dir>/suppressions.json`; with Redis on, to the
//! hash `<prefix>:suppressions`, with hit counts summed over instances in
//! `<prefix>:suppressions:hits`, so a rule added on one instance matches
//! on all within a sync (3 s) and shows every instance's hits. Expiry is
//! checked against each call's wall clock, so it holds everywhere.

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
    /// Flagged calls it suppressed (with Redis: on every instance, as of
    /// the last sync, plus this instance's since).
    #[serde(default)]
    pub hits: AtomicU64,
    /// Hits counted here and not yet added to the shared total (Redis).
    #[serde(skip)]
    pub unsynced: AtomicU64,
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
    #[error("Redis: {0}")]
    Redis(String),
}

fn redis_err(e: redis::RedisError) -> SuppressionStoreError {
    SuppressionStoreError::Redis(e.to_string())
}

/// Where rules live: a file of this instance, or Redis shared by all.
enum Backend {
    File(PathBuf),
    /// `<prefix>:suppressions` (id → rule JSON) and
    /// `<prefix>:suppressions:hits` (id → total hits of every instance).
    Redis {
        client: redis::Client,
        rules_key: String,
        hits_key: String,
    },
}

/// The rules: written by the API, read by workers.
pub struct SuppressionStore {
    rules: RwLock<Arc<Vec<Arc<Rule>>>>,
    version: AtomicU64,
    backend: Backend,
    /// Held from snapshot to rename, so the file always ends with the
    /// newest rules when an API call and the periodic sync write at once.
    file_write: std::sync::Mutex<()>,
}

impl SuppressionStore {
    /// Loads the rules: from `<data-dir>/suppressions.json`, or with
    /// `redis` (client, key prefix) from Redis, where every instance finds
    /// the rules any of them added.
    pub fn open(
        data_dir: &std::path::Path,
        redis: Option<(redis::Client, String)>,
    ) -> Result<Self, SuppressionStoreError> {
        let backend = match redis {
            Some((client, prefix)) => Backend::Redis {
                client,
                rules_key: format!("{prefix}:suppressions"),
                hits_key: format!("{prefix}:suppressions:hits"),
            },
            None => Backend::File(data_dir.join("suppressions.json")),
        };
        let store = Self {
            rules: RwLock::new(Arc::default()),
            version: AtomicU64::new(1),
            backend,
            file_write: std::sync::Mutex::new(()),
        };
        match &store.backend {
            Backend::File(path) => {
                let rules: Vec<Rule> = match std::fs::read(path) {
                    Ok(b) => {
                        serde_json::from_slice(&b).map_err(|e| SuppressionStoreError::Read {
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        })?
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => {
                        return Err(SuppressionStoreError::Read {
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        })
                    }
                };
                *store.rules.write().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(rules.into_iter().map(Arc::new).collect());
            }
            Backend::Redis { .. } => store.sync()?,
        }
        Ok(store)
    }

    fn connection(client: &redis::Client) -> Result<redis::Connection, SuppressionStoreError> {
        client
            .get_connection_with_timeout(std::time::Duration::from_secs(2))
            .map_err(redis_err)
    }

    pub fn snapshot(&self) -> Arc<Vec<Arc<Rule>>> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Saves hit counts and picks up other instances' changes: the file is
    /// rewritten; with Redis, this instance's new hits are added to the
    /// shared totals, and rules another instance added or removed are taken
    /// in. Blocking; run every few seconds and at shutdown.
    pub fn sync(&self) -> Result<(), SuppressionStoreError> {
        let (client, rules_key, hits_key) = match &self.backend {
            Backend::File(path) => {
                let _one_writer = self.file_write.lock().unwrap_or_else(|p| p.into_inner());
                let rules = self.snapshot();
                let list: Vec<&Rule> = rules.iter().map(|r| &**r).collect();
                let body = serde_json::to_vec_pretty(&list).unwrap_or_default();
                return crate::state::write_atomic(path, &body).map_err(|e| {
                    SuppressionStoreError::Write {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    }
                });
            }
            Backend::Redis {
                client,
                rules_key,
                hits_key,
            } => (client, rules_key, hits_key),
        };
        let mut con = Self::connection(client)?;
        // Hits counted here since the last sync go to the shared totals; on
        // failure they are put back for the next round.
        let current = self.snapshot();
        let deltas: Vec<(&Arc<Rule>, u64)> = current
            .iter()
            .map(|r| (r, r.unsynced.swap(0, Ordering::AcqRel)))
            .filter(|(_, d)| *d > 0)
            .collect();
        if !deltas.is_empty() {
            let mut pipe = redis::pipe();
            for (r, d) in &deltas {
                pipe.cmd("HINCRBY")
                    .arg(hits_key)
                    .arg(&r.id)
                    .arg(*d)
                    .ignore();
            }
            if let Err(e) = pipe.query::<()>(&mut con) {
                for (r, d) in &deltas {
                    r.unsynced.fetch_add(*d, Ordering::AcqRel);
                }
                return Err(redis_err(e));
            }
        }
        let (stored, totals): (
            std::collections::HashMap<String, String>,
            std::collections::HashMap<String, u64>,
        ) = redis::pipe()
            .cmd("HGETALL")
            .arg(rules_key)
            .cmd("HGETALL")
            .arg(hits_key)
            .query(&mut con)
            .map_err(redis_err)?;
        let mut cur = self.rules.write().unwrap_or_else(|p| p.into_inner());
        let same = cur.len() == stored.len() && cur.iter().all(|r| stored.contains_key(&r.id));
        let mut next: Vec<Arc<Rule>> = if same {
            (**cur).clone()
        } else {
            let mut list: Vec<Arc<Rule>> = stored
                .iter()
                .filter_map(|(id, json)| {
                    // A rule already held keeps its counters.
                    cur.iter().find(|r| &r.id == id).cloned().or_else(|| {
                        match serde_json::from_str::<Rule>(json) {
                            Ok(r) => Some(Arc::new(r)),
                            Err(e) => {
                                tracing::warn!(id = %id, error = %e, "Unreadable suppression rule in Redis; skipped.");
                                None
                            }
                        }
                    })
                })
                .collect();
            list.sort_by(|a, b| {
                a.created_at
                    .cmp(&b.created_at)
                    .then_with(|| a.id.cmp(&b.id))
            });
            list
        };
        for r in &mut next {
            let total = totals.get(&r.id).copied().unwrap_or(0);
            r.hits.store(
                total + r.unsynced.load(Ordering::Acquire),
                Ordering::Release,
            );
        }
        if !same {
            *cur = Arc::new(next);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Adds a rule and persists (with Redis: for every instance).
    pub fn add(&self, rule: Rule) -> Result<Arc<Rule>, SuppressionStoreError> {
        let rule = Arc::new(rule);
        if let Backend::Redis {
            client, rules_key, ..
        } = &self.backend
        {
            let json = serde_json::to_string(&*rule).unwrap_or_default();
            redis::cmd("HSET")
                .arg(rules_key)
                .arg(&rule.id)
                .arg(json)
                .query::<()>(&mut Self::connection(client)?)
                .map_err(redis_err)?;
        }
        {
            let mut cur = self.rules.write().unwrap_or_else(|p| p.into_inner());
            let mut next: Vec<Arc<Rule>> = (**cur).clone();
            // The background sync may already have taken it in from Redis.
            next.retain(|r| r.id != rule.id);
            next.push(rule.clone());
            *cur = Arc::new(next);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        if let Backend::File(_) = &self.backend {
            self.sync()?;
        }
        Ok(rule)
    }

    /// Removes a rule by id and persists; `None` when unknown.
    pub fn remove(&self, id: &str) -> Result<Option<Arc<Rule>>, SuppressionStoreError> {
        let Backend::Redis {
            client,
            rules_key,
            hits_key,
        } = &self.backend
        else {
            let removed = self.take_local(id);
            if removed.is_some() {
                self.sync()?;
            }
            return Ok(removed);
        };
        // Another instance may have added it: take the shared set first.
        self.sync()?;
        let held = self.snapshot().iter().find(|r| r.id == id).cloned();
        let removed: u32 = redis::pipe()
            .cmd("HDEL")
            .arg(rules_key)
            .arg(id)
            .cmd("HDEL")
            .arg(hits_key)
            .arg(id)
            .ignore()
            .query::<(u32,)>(&mut Self::connection(client)?)
            .map_err(redis_err)?
            .0;
        if removed == 0 {
            return Ok(None);
        }
        // The background sync may have dropped it here between the HDEL
        // and now: the removal happened all the same.
        Ok(self.take_local(id).or(held))
    }

    /// Drops a rule from this instance's list.
    fn take_local(&self, id: &str) -> Option<Arc<Rule>> {
        let mut cur = self.rules.write().unwrap_or_else(|p| p.into_inner());
        let at = cur.iter().position(|r| r.id == id)?;
        let mut next: Vec<Arc<Rule>> = (**cur).clone();
        let removed = next.remove(at);
        *cur = Arc::new(next);
        self.version.fetch_add(1, Ordering::AcqRel);
        Some(removed)
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
        rule.unsynced.fetch_add(1, Ordering::Relaxed);
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
            unsynced: AtomicU64::new(0),
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
        let store = Arc::new(SuppressionStore::open(dir.path(), None).unwrap());
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
        store.sync().unwrap();
        let again = SuppressionStore::open(dir.path(), None).unwrap();
        assert_eq!(again.snapshot()[0].hits.load(Ordering::Relaxed), 1);
        assert!(store.remove("s-1").unwrap().is_some());
        assert_eq!(reader.check(&cand("mail-1", "a@example.com", &[], 0)), None);
    }
}
