//! Thresholds and modes set through the admin API, live: a versioned
//! snapshot that workers read without a lock (an atomic version compare
//! per event; the snapshot is cloned only after a change).
//!
//! Precedence, highest first: an API agent override, the config's agent
//! entry, an API class override, the config's class entry, the agent's
//! calibration, an API default override, the config default. A class
//! override is keyed by a config class name or an agent-id pattern (`*`
//! matches any run of characters). Agents in warm-up are never flagged.
//!
//! Overrides persist to `<data-dir>/policy-overrides.json` (written
//! atomically), and with Redis on to the key `warden:policy:overrides`,
//! which every instance re-reads every few seconds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::config::PolicyConfig;
use crate::decide::{glob_match, Basis, Decision, Mode};

/// A threshold and/or a mode, with who set them and when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_bits: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    pub set_by: String,
    pub set_at: String,
    pub reason: String,
}

/// Every override set through the API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Setting>,
    /// By config class name or agent-id pattern.
    #[serde(default)]
    pub classes: BTreeMap<String, Setting>,
    #[serde(default)]
    pub agents: BTreeMap<String, Setting>,
}

/// Where a threshold or a mode came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    WarmUp,
    ApiAgent,
    ConfigAgent,
    ApiClass,
    ConfigClass,
    Calibration,
    ApiDefault,
    ConfigDefault,
}

/// The threshold and mode that apply to one agent, with their sources.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub threshold_bits: f32,
    pub threshold_source: Source,
    pub mode: Mode,
    pub mode_source: Source,
    /// The API class override that matched, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_override: Option<String>,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.classes.is_empty() && self.agents.is_empty()
    }

    /// The API class override for an agent: the one keyed by its class
    /// name, else the first pattern (in key order) its id matches.
    fn class_of(&self, agent_id: &str, class: Option<&str>) -> Option<(&String, &Setting)> {
        class
            .and_then(|c| self.classes.get_key_value(c))
            .or_else(|| {
                self.classes
                    .iter()
                    .find(|(pat, _)| pat.contains('*') && glob_match(pat, agent_id))
            })
            .or_else(|| self.classes.get_key_value(agent_id))
    }

    /// Applies the overrides to a decision the engine made (`score` is the
    /// call's), returning where threshold and mode now come from.
    pub fn apply(
        &self,
        cfg: &PolicyConfig,
        agent_id: &str,
        class: Option<&str>,
        d: &mut Decision,
        score: f32,
    ) -> Resolved {
        let own = self.agents.get(agent_id);
        let class_ov = self.class_of(agent_id, class);
        let cfg_agent = cfg.agents.get(agent_id);
        let cfg_class = class.and_then(|n| cfg.classes.iter().find(|c| c.name == n));
        let (threshold, t_src) = if d.basis == Basis::WarmUp {
            (d.threshold, Source::WarmUp)
        } else if let Some(t) = own.and_then(|s| s.threshold_bits) {
            (t, Source::ApiAgent)
        } else if d.basis == Basis::Agent {
            (d.threshold, Source::ConfigAgent)
        } else if let Some(t) = class_ov.and_then(|(_, s)| s.threshold_bits) {
            (t, Source::ApiClass)
        } else if d.basis == Basis::Class {
            (d.threshold, Source::ConfigClass)
        } else if d.basis == Basis::Calibrated {
            (d.threshold, Source::Calibration)
        } else if let Some(t) = self.default.as_ref().and_then(|s| s.threshold_bits) {
            (t, Source::ApiDefault)
        } else {
            (d.threshold, Source::ConfigDefault)
        };
        let (mode, m_src) = if let Some(m) = own.and_then(|s| s.mode) {
            (m, Source::ApiAgent)
        } else if let Some(m) = cfg_agent.and_then(|a| a.mode) {
            (m, Source::ConfigAgent)
        } else if let Some(m) = class_ov.and_then(|(_, s)| s.mode) {
            (m, Source::ApiClass)
        } else if let Some(m) = cfg_class.and_then(|c| c.mode) {
            (m, Source::ConfigClass)
        } else if let Some(m) = self.default.as_ref().and_then(|s| s.mode) {
            (m, Source::ApiDefault)
        } else {
            (d.mode, Source::ConfigDefault)
        };
        d.threshold = threshold;
        d.mode = mode;
        d.basis = match t_src {
            Source::WarmUp => Basis::WarmUp,
            Source::ApiAgent | Source::ConfigAgent => Basis::Agent,
            Source::ApiClass | Source::ConfigClass => Basis::Class,
            Source::Calibration => Basis::Calibrated,
            Source::ApiDefault | Source::ConfigDefault => Basis::Default,
        };
        d.flagged = d.basis != Basis::WarmUp && score >= threshold;
        Resolved {
            threshold_bits: threshold,
            threshold_source: t_src,
            mode,
            mode_source: m_src,
            class_override: class_ov.map(|(k, _)| k.clone()),
        }
    }
}

/// Why overrides could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("Redis: {0}")]
    Redis(String),
}

/// The live overrides: one writer (the API, serialised by the write lock),
/// many readers (workers, through [`PolicyReader`]).
pub struct PolicyStore {
    current: RwLock<Arc<Overrides>>,
    version: AtomicU64,
    path: PathBuf,
    redis: Option<(redis::Client, String)>,
}

/// The Redis key of the shared overrides, under the registry's prefix.
pub fn redis_key(prefix: &str) -> String {
    format!("{prefix}:policy:overrides")
}

impl PolicyStore {
    /// Loads the overrides persisted under `data_dir` (or from Redis when
    /// `redis` is given; `prefix` is the key prefix).
    pub fn open(
        data_dir: &std::path::Path,
        redis: Option<(redis::Client, String)>,
    ) -> Result<Self, PolicyStoreError> {
        let path = data_dir.join("policy-overrides.json");
        let store = Self {
            current: RwLock::new(Arc::default()),
            version: AtomicU64::new(1),
            path,
            redis,
        };
        let loaded = match &store.redis {
            Some(_) => store.read_redis()?,
            None => store.read_file()?,
        };
        if let Some(o) = loaded {
            *store.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(o);
        }
        Ok(store)
    }

    fn read_file(&self) -> Result<Option<Overrides>, PolicyStoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| PolicyStoreError::Read {
                        path: self.path.display().to_string(),
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PolicyStoreError::Read {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }

    fn read_redis(&self) -> Result<Option<Overrides>, PolicyStoreError> {
        let Some((client, prefix)) = &self.redis else {
            return Ok(None);
        };
        let mut con = client
            .get_connection_with_timeout(std::time::Duration::from_secs(2))
            .map_err(|e| PolicyStoreError::Redis(e.to_string()))?;
        let raw: Option<String> = redis::cmd("GET")
            .arg(redis_key(prefix))
            .query(&mut con)
            .map_err(|e| PolicyStoreError::Redis(e.to_string()))?;
        raw.map(|s| {
            serde_json::from_str(&s).map_err(|e| PolicyStoreError::Read {
                path: redis_key(prefix),
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    /// The current overrides.
    pub fn snapshot(&self) -> Arc<Overrides> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Changes the overrides with `f`, persists them, then publishes them
    /// to the workers; returns what `f` returned and the new overrides.
    /// Blocking (file or Redis write).
    pub fn update<R, E>(
        &self,
        f: impl FnOnce(&mut Overrides) -> Result<R, E>,
    ) -> Result<Result<(R, Arc<Overrides>), E>, PolicyStoreError> {
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (**cur).clone();
        let out = match f(&mut next) {
            Ok(out) => out,
            Err(e) => return Ok(Err(e)),
        };
        let body = serde_json::to_vec_pretty(&next).unwrap_or_default();
        match &self.redis {
            Some((client, prefix)) => {
                let mut con = client
                    .get_connection_with_timeout(std::time::Duration::from_secs(2))
                    .map_err(|e| PolicyStoreError::Redis(e.to_string()))?;
                redis::cmd("SET")
                    .arg(redis_key(prefix))
                    .arg(&body)
                    .query::<()>(&mut con)
                    .map_err(|e| PolicyStoreError::Redis(e.to_string()))?;
            }
            None => crate::state::write_atomic(&self.path, &body).map_err(|source| {
                PolicyStoreError::Write {
                    path: self.path.display().to_string(),
                    source: std::io::Error::other(source.to_string()),
                }
            })?,
        }
        let next = Arc::new(next);
        *cur = next.clone();
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(Ok((out, next)))
    }

    /// With Redis on: picks up what another instance wrote; on failure
    /// the last overrides stay in force. Blocking.
    pub fn refresh(&self) -> Result<(), PolicyStoreError> {
        if self.redis.is_none() {
            return Ok(());
        }
        if let Some(o) = self.read_redis()? {
            let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
            if **cur != o {
                *cur = Arc::new(o);
                self.version.fetch_add(1, Ordering::AcqRel);
            }
        }
        Ok(())
    }
}

/// A worker's view of the overrides: re-read only when the version moved.
pub struct PolicyReader {
    store: Arc<PolicyStore>,
    version: u64,
    cached: Arc<Overrides>,
}

impl PolicyReader {
    pub fn new(store: Arc<PolicyStore>) -> Self {
        let cached = store.snapshot();
        let version = store.version();
        Self {
            store,
            version,
            cached,
        }
    }

    /// The current overrides (one atomic load unless they changed).
    pub fn get(&mut self) -> &Overrides {
        let v = self.store.version();
        if v != self.version {
            self.cached = self.store.snapshot();
            self.version = v;
        }
        &self.cached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(threshold: f32, basis: Basis) -> Decision {
        Decision {
            flagged: false,
            threshold,
            basis,
            mode: Mode::Shadow,
        }
    }

    fn setting(t: Option<f32>, m: Option<Mode>) -> Setting {
        Setting {
            threshold_bits: t,
            mode: m,
            ..Default::default()
        }
    }

    #[test]
    fn agent_beats_class_beats_calibration_beats_default() {
        let cfg = PolicyConfig::default();
        let mut o = Overrides {
            default: Some(setting(Some(30.0), Some(Mode::Learn))),
            ..Default::default()
        };
        let mut d = decision(14.0, Basis::Default);
        let r = o.apply(&cfg, "a-1", None, &mut d, 20.0);
        assert_eq!(
            (r.threshold_source, r.mode_source),
            (Source::ApiDefault, Source::ApiDefault)
        );
        assert!(!d.flagged && d.mode == Mode::Learn);
        // Calibration is more specific than a default.
        let mut d = decision(12.0, Basis::Calibrated);
        let r = o.apply(&cfg, "a-1", None, &mut d, 20.0);
        assert_eq!(r.threshold_source, Source::Calibration);
        assert!(d.flagged);
        o.classes
            .insert("a-*".into(), setting(Some(25.0), Some(Mode::Enforce)));
        let mut d = decision(12.0, Basis::Calibrated);
        let r = o.apply(&cfg, "a-1", None, &mut d, 20.0);
        assert_eq!(r.threshold_source, Source::ApiClass);
        assert_eq!(r.class_override.as_deref(), Some("a-*"));
        assert!(!d.flagged && d.mode == Mode::Enforce);
        o.agents.insert("a-1".into(), setting(Some(10.0), None));
        let mut d = decision(12.0, Basis::Calibrated);
        let r = o.apply(&cfg, "a-1", None, &mut d, 11.0);
        assert_eq!(
            (r.threshold_source, r.mode_source),
            (Source::ApiAgent, Source::ApiClass)
        );
        assert!(d.flagged && d.basis == Basis::Agent);
        // Another agent is untouched by a-1's override, not by the class.
        let mut d = decision(12.0, Basis::Calibrated);
        let r = o.apply(&cfg, "b-1", None, &mut d, 20.0);
        assert_eq!(r.threshold_source, Source::Calibration);
        assert!(d.flagged);
    }

    #[test]
    fn warm_up_is_never_flagged() {
        let mut o = Overrides::default();
        o.agents.insert("a".into(), setting(Some(1.0), None));
        let mut d = decision(99.0, Basis::WarmUp);
        let r = o.apply(&PolicyConfig::default(), "a", None, &mut d, 50.0);
        assert_eq!(r.threshold_source, Source::WarmUp);
        assert!(!d.flagged);
    }

    #[test]
    fn updates_persist_and_readers_see_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(PolicyStore::open(dir.path(), None).unwrap());
        let mut reader = PolicyReader::new(store.clone());
        assert!(reader.get().is_empty());
        store
            .update(|o| {
                o.agents.insert("x".into(), setting(Some(9.0), None));
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(reader.get().agents["x"].threshold_bits, Some(9.0));
        let again = PolicyStore::open(dir.path(), None).unwrap();
        assert_eq!(again.snapshot().agents["x"].threshold_bits, Some(9.0));
    }
}
