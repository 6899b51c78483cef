//! Profiles in Redis: the state store shared by the instances of a group.
//!
//! Each agent's profile is its own key, `<prefix>:profile:<agent_id>`,
//! holding the versioned encoding of [`super::encode`]. Any instance can
//! load any agent, so an agent follows its partition when the group
//! rebalances. A worker loads an agent the first time it sees it and writes
//! back only the agents that changed. The recently decided event ids of
//! each worker are kept under `<prefix>:recent:<instance>:<worker>`.
//!
//! Redis being down is waited out: every call is retried with exponential
//! backoff (100 ms to 5 s) until it works. Meanwhile the worker's queue
//! fills, ingest pushes back, and nothing is lost.

use std::path::PathBuf;
use std::time::Duration;

use redis::Commands;

use super::{decode, encode, Checkpoint, StateError};
use crate::baseline::Profile;

pub struct RedisStore {
    client: redis::Client,
    conn: Option<redis::Connection>,
    prefix: String,
    /// Set once an outage has been logged, to log its end once.
    outage: bool,
}

impl RedisStore {
    pub fn open(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            conn: None,
            prefix: prefix.to_owned(),
            outage: false,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The client, for callers that need their own connections (with
    /// their own timeouts) to the same server.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    fn profile_key(&self, agent: &str) -> String {
        format!("{}:profile:{agent}", self.prefix)
    }

    pub fn recent_key(&self, instance: &str, worker: usize) -> String {
        format!("{}:recent:{instance}:{worker}", self.prefix)
    }

    /// Runs `f` on a connection, reconnecting and retrying with backoff
    /// until it succeeds.
    pub fn retry<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> T {
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = match self.conn.as_mut() {
                Some(c) => f(c),
                None => match self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(2))
                {
                    Ok(c) => f(self.conn.insert(c)),
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(v) => {
                    if self.outage {
                        tracing::info!(what, "Redis is back.");
                        self.outage = false;
                    }
                    return v;
                }
                Err(e) => {
                    if !self.outage {
                        tracing::error!(what, error = %e, "Redis unavailable; retrying with backoff.");
                        self.outage = true;
                    }
                    self.conn = None;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The agent's stored profile, if any.
    pub fn load(&mut self, agent: &str) -> Result<Option<Profile>, StateError> {
        let key = self.profile_key(agent);
        let bytes: Option<Vec<u8>> = self.retry("load a profile", |c| c.get(&key));
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let cp = decode(&bytes, &PathBuf::from(format!("redis key {key}")))?;
        Ok(cp.agents.into_iter().next().map(|(_, p)| p))
    }

    /// Writes profiles in one pipeline.
    pub fn save(&mut self, agents: &[(String, Profile)]) {
        if agents.is_empty() {
            return;
        }
        let items: Vec<(String, Vec<u8>)> = agents
            .iter()
            .map(|(id, p)| {
                let cp = Checkpoint {
                    taken_ms: chrono::Utc::now().timestamp_millis(),
                    agents: vec![(id.clone(), p.clone())],
                    recent_events: Vec::new(),
                };
                (self.profile_key(id), encode(&cp))
            })
            .collect();
        self.retry("save profiles", |c| {
            let mut pipe = redis::pipe();
            for (k, v) in &items {
                pipe.set(k, v).ignore();
            }
            pipe.query::<()>(c)
        });
    }

    /// Whether any profile is stored under this prefix.
    pub fn has_profiles(&mut self) -> bool {
        let pattern = format!("{}:profile:*", self.prefix);
        let found: Vec<String> = self.retry("look for profiles", |c| {
            let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(0)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(c)?;
            Ok(keys)
        });
        !found.is_empty()
    }

    pub fn save_recent(&mut self, key: &str, ids: &[u64]) {
        let bytes = postcard::to_stdvec(ids).expect("ids serialise");
        self.retry("save recent event ids", |c| c.set::<_, _, ()>(key, &bytes));
    }

    pub fn load_recent(&mut self, key: &str) -> Vec<u64> {
        let bytes: Option<Vec<u8>> = self.retry("load recent event ids", |c| c.get(key));
        bytes
            .and_then(|b| postcard::from_bytes(&b).ok())
            .unwrap_or_default()
    }
}
