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
//! fills, ingest pushes back, and nothing is lost. What waiting cannot
//! fix (a certificate the CA does not sign, a refused password) stops
//! [`RedisStore::open`] instead.
//!
//! Every Redis client Warden opens comes from [`client`]: `rediss://` with
//! the configured CA (else the built-in public roots) and client
//! certificate, and the password from its environment variable.

use std::path::PathBuf;
use std::time::Duration;

use redis::Commands;

use super::hash_key::{HashKey, HashKeyError};
use super::{decode, encode, Checkpoint, StateError};
use crate::engine::AgentSnapshot;

pub struct RedisStore {
    client: redis::Client,
    conn: Option<redis::Connection>,
    prefix: String,
    /// Set once an outage has been logged, to log its end once.
    outage: bool,
}

impl RedisStore {
    /// A store on [`client`]`(cfg)`. It connects once: a server that is
    /// down is waited out later, but one that refuses Warden's
    /// certificate checks or password is an error now.
    pub fn open(cfg: &crate::config::RedisConfig) -> Result<Self, RedisConnectError> {
        let client = client(cfg)?;
        let conn = match client.get_connection_with_timeout(Duration::from_secs(2)) {
            Ok(c) => Some(c),
            Err(error) if is_permanent(&error) => {
                return Err(RedisConnectError::Refused {
                    addr: client.get_connection_info().addr.to_string(),
                    error,
                })
            }
            Err(_) => None,
        };
        Ok(Self {
            conn,
            ..Self::with_client(client, &cfg.key_prefix)
        })
    }

    /// A store on a client already built (by [`client`]); connects lazily.
    pub fn with_client(client: redis::Client, prefix: &str) -> Self {
        Self {
            client,
            conn: None,
            prefix: prefix.to_owned(),
            outage: false,
        }
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

    /// The agent's stored profile and open sessions, if any; refused when
    /// they were fingerprinted under another key than `key_id`.
    pub fn load(&mut self, agent: &str, key_id: u64) -> Result<Option<AgentSnapshot>, StateError> {
        let key = self.profile_key(agent);
        let bytes: Option<Vec<u8>> = self.retry("load a profile", |c| c.get(&key));
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let cp = decode(&bytes, &PathBuf::from(format!("redis key {key}")), key_id)?;
        Ok(cp.agents.into_iter().next().map(|(_, p)| p))
    }

    /// Writes agents in one pipeline, each under the key id it was
    /// fingerprinted with.
    pub fn save(&mut self, agents: &[(String, AgentSnapshot)], key_id: u64) {
        if agents.is_empty() {
            return;
        }
        let items: Vec<(String, Vec<u8>)> = agents
            .iter()
            .map(|(id, p)| {
                let cp = Checkpoint {
                    taken_ms: chrono::Utc::now().timestamp_millis(),
                    key_id,
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

    /// Whether any profile is stored under this prefix. SCAN pages may be
    /// empty while later ones match, so it walks until the cursor returns
    /// to 0 or a key is found.
    pub fn has_profiles(&mut self) -> bool {
        let pattern = format!("{}:profile:*", self.prefix);
        let mut cursor = 0u64;
        loop {
            let (next, keys) = self.retry("look for profiles", |c| scan_page(c, &pattern, cursor));
            if !keys.is_empty() {
                return true;
            }
            if next == 0 {
                return false;
            }
            cursor = next;
        }
    }

    /// The fingerprint key the group shares (see [`HashKey::for_redis`]).
    pub fn shared_hash_key(&mut self, configured: Option<&str>) -> Result<HashKey, HashKeyError> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self
                .client
                .get_connection_with_timeout(Duration::from_secs(5))
                .map_err(|source| HashKeyError::Redis {
                    key: format!("{}:hash-key", self.prefix),
                    source,
                })?,
        };
        let key = HashKey::for_redis(configured, &mut conn, &self.prefix);
        self.conn = Some(conn);
        key
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

/// Redis settings that cannot work. Never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum RedisConnectError {
    #[error("config key `redis.url`: not a redis:// or rediss:// URL: {0}")]
    Url(redis::RedisError),
    // The underlying errors are part of the message, not sources: the
    // CLI prints a chain, and rustls errors would repeat there.
    #[error("config key `{key}`: cannot read {path}: {error}")]
    Read {
        key: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config key `redis.password-env`: environment variable {var} is not set")]
    MissingSecret { var: String },
    #[error("config keys `redis.ca-file`, `redis.client-cert-file`, `redis.client-key-file`: {0}")]
    Tls(redis::RedisError),
    #[error("Redis at {addr} refused Warden: {error}")]
    Refused {
        addr: String,
        error: redis::RedisError,
    },
}

/// The one way Warden builds a Redis client (profile store, quarantine
/// registry, API reads).
pub fn client(cfg: &crate::config::RedisConfig) -> Result<redis::Client, RedisConnectError> {
    let mut info = redis::IntoConnectionInfo::into_connection_info(cfg.url.as_str())
        .map_err(RedisConnectError::Url)?;
    if !cfg.password_env.is_empty() {
        let password = std::env::var(&cfg.password_env)
            .ok()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| RedisConnectError::MissingSecret {
                var: cfg.password_env.clone(),
            })?;
        info.redis.password = Some(password);
    }
    if !matches!(info.addr, redis::ConnectionAddr::TcpTls { .. }) {
        return redis::Client::open(info).map_err(RedisConnectError::Url);
    }
    let read =
        |key: &'static str, path: &std::path::Path| -> Result<Option<Vec<u8>>, RedisConnectError> {
            if path.as_os_str().is_empty() {
                return Ok(None);
            }
            std::fs::read(path)
                .map(Some)
                .map_err(|error| RedisConnectError::Read {
                    key,
                    path: path.to_owned(),
                    error,
                })
        };
    let root_cert = read("redis.ca-file", &cfg.ca_file)?;
    let cert = read("redis.client-cert-file", &cfg.client_cert_file)?;
    let key = read("redis.client-key-file", &cfg.client_key_file)?;
    let client_tls = match (cert, key) {
        (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
            client_cert,
            client_key,
        }),
        _ => None,
    };
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(RedisConnectError::Tls)
}

/// One page of a SCAN over keys matching `pattern`: the next cursor (0 at
/// the end) and the keys.
fn scan_page(
    c: &mut redis::Connection,
    pattern: &str,
    cursor: u64,
) -> redis::RedisResult<(u64, Vec<String>)> {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000)
        .query(c)
}

/// A deployment's stored profiles, read once over one connection under the
/// key they were fingerprinted with (`warden train --from-redis`): an
/// outage is an error here, never a wait, and no key is ever created.
pub struct StoredProfiles {
    /// Profiles by agent id.
    pub agents: Vec<(String, AgentSnapshot)>,
    /// SHA-256 over the stored values, in key order.
    pub digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadProfilesError {
    #[error(transparent)]
    Connect(#[from] RedisConnectError),
    #[error("Redis at {addr}: {error}")]
    Redis {
        addr: String,
        error: redis::RedisError,
    },
    #[error("Redis key {key} holds no fingerprint key: no Warden has stored profiles under prefix `{prefix}` (redis.key-prefix)")]
    NoKey { key: String, prefix: String },
    #[error("{0}")]
    Key(#[from] HashKeyError),
    #[error("{0}")]
    Decode(#[from] StateError),
}

/// Reads every profile under `cfg.key_prefix` (see [`StoredProfiles`]).
pub fn read_profiles(
    cfg: &crate::config::RedisConfig,
    configured_key: Option<&str>,
) -> Result<StoredProfiles, ReadProfilesError> {
    let client = client(cfg)?;
    let addr = client.get_connection_info().addr.to_string();
    let err = |error| ReadProfilesError::Redis {
        addr: addr.clone(),
        error,
    };
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(err)?;
    let prefix = &cfg.key_prefix;
    let rkey = format!("{prefix}:hash-key");
    let stored: Option<String> = redis::cmd("GET").arg(&rkey).query(&mut conn).map_err(err)?;
    let Some(stored) = stored else {
        return Err(ReadProfilesError::NoKey {
            key: rkey,
            prefix: prefix.clone(),
        });
    };
    let key = HashKey::shared(&stored, configured_key, &rkey)?;
    let pattern = format!("{prefix}:profile:*");
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page) = scan_page(&mut conn, &pattern, cursor).map_err(err)?;
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    let mut agents = Vec::with_capacity(keys.len());
    let mut digest = <sha2::Sha256 as sha2::Digest>::new();
    for k in keys {
        let bytes: Option<Vec<u8>> = redis::cmd("GET").arg(&k).query(&mut conn).map_err(err)?;
        // Deleted between SCAN and GET: nothing to learn from.
        let Some(bytes) = bytes else { continue };
        sha2::Digest::update(&mut digest, &bytes);
        let cp = decode(&bytes, &PathBuf::from(format!("redis key {k}")), key.id())?;
        agents.extend(cp.agents);
    }
    Ok(StoredProfiles {
        agents,
        digest: format!("sha256:{}", hex::encode(sha2::Digest::finalize(digest))),
    })
}

/// Failures that retrying cannot fix: a certificate not trusted (or a
/// host name it does not carry), a refused login, unusable TLS settings.
fn is_permanent(e: &redis::RedisError) -> bool {
    use redis::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig
    ) || e.code() == Some("WRONGPASS")
        || e.code() == Some("NOAUTH")
        // rustls reports handshake failures as InvalidData I/O errors.
        || (e.is_io_error()
            && std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_takes_its_password_from_the_variable_and_reads_tls_files() {
        use crate::config::RedisConfig;
        std::env::set_var("WARDEN_REDIS_TEST_CLIENT_PASSWORD", "pw-from-env");
        let cfg = RedisConfig {
            url: "redis://warden@127.0.0.1:6379".to_owned(),
            password_env: "WARDEN_REDIS_TEST_CLIENT_PASSWORD".to_owned(),
            ..RedisConfig::default()
        };
        let info = client(&cfg).unwrap().get_connection_info().clone();
        assert_eq!(info.redis.username.as_deref(), Some("warden"));
        assert_eq!(info.redis.password.as_deref(), Some("pw-from-env"));

        let missing = RedisConfig {
            password_env: "WARDEN_REDIS_TEST_CLIENT_UNSET".to_owned(),
            ..cfg.clone()
        };
        let e = client(&missing).unwrap_err().to_string();
        assert!(
            e.contains("WARDEN_REDIS_TEST_CLIENT_UNSET is not set"),
            "{e}"
        );

        let no_ca = RedisConfig {
            url: "rediss://127.0.0.1:6380".to_owned(),
            ca_file: "/nonexistent/ca.pem".into(),
            ..cfg.clone()
        };
        let e = client(&no_ca).unwrap_err().to_string();
        assert!(
            e.contains("redis.ca-file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        assert!(!e.contains("pw-from-env"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("ca.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let bad_pem = RedisConfig {
            ca_file: junk,
            ..no_ca
        };
        let e = client(&bad_pem).unwrap_err().to_string();
        assert!(e.contains("redis.ca-file"), "{e}");
    }
}
