//! Registry reads for HTTP handlers: bounded in time, never retried.
//!
//! The responder waits Redis outages out; a handler must not. The broker
//! asks "is this agent quarantined?" and needs an answer, or a `503` it
//! treats as "yes", within a second. Each read runs on the blocking pool
//! over a connection whose connect, read and write timeouts are
//! `server.redis-read-timeout`, and the handler stops waiting at that
//! deadline whatever the socket does. Connections are reused while they
//! work and dropped on any error; one that Redis closed while it sat idle
//! (a restart) is replaced once within the same deadline.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::respond::incident::Quarantine;
use crate::respond::registry::{self, Registry, RegistryError};

/// Why a lookup has no answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("the quarantine registry did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the quarantine registry cannot be read: {0}")]
    Registry(#[from] RegistryError),
    #[error("the registry lookup stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Idle connections kept for reuse.
const IDLE: usize = 8;

/// The shared (Redis) registry, as handlers read it.
pub struct RedisLookup {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    idle: Mutex<Vec<redis::Connection>>,
}

impl RedisLookup {
    pub fn new(client: redis::Client, prefix: &str, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            client,
            prefix: prefix.to_owned(),
            timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// One quarantine by id.
    pub async fn get(self: &Arc<Self>, id: String) -> Result<Option<Quarantine>, LookupError> {
        self.run(move |c, prefix| registry::redis_get_once(c, prefix, &id))
            .await
    }

    /// Every quarantine of one agent, newest first.
    pub async fn of_agent(
        self: &Arc<Self>,
        agent_id: String,
    ) -> Result<Vec<Quarantine>, LookupError> {
        self.run(move |c, prefix| registry::redis_of_agent_once(c, prefix, &agent_id))
            .await
    }

    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl Fn(&mut redis::Connection, &str) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, LookupError> {
        let me = self.clone();
        let task = tokio::task::spawn_blocking(move || me.with_connection(f));
        // The socket timeouts free the blocking thread; this bounds the
        // answer even when a connect and two reads each take nearly all.
        match tokio::time::timeout(self.timeout, task).await {
            Ok(joined) => Ok(joined??),
            Err(_) => Err(LookupError::TimedOut(self.timeout)),
        }
    }

    fn with_connection<T>(
        &self,
        f: impl Fn(&mut redis::Connection, &str) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(mut conn) = reused {
            match f(&mut conn, &self.prefix) {
                Ok(v) => {
                    self.keep(conn);
                    return Ok(v);
                }
                // Closed by the server while idle: try a fresh one.
                Err(RegistryError::Redis(e)) if e.is_connection_dropped() => {}
                // A failed connection may hold a late answer: never reuse it.
                Err(e) => return Err(e),
            }
        }
        let mut conn = self.client.get_connection_with_timeout(self.timeout)?;
        conn.set_read_timeout(Some(self.timeout))?;
        conn.set_write_timeout(Some(self.timeout))?;
        let result = f(&mut conn, &self.prefix);
        if result.is_ok() {
            self.keep(conn);
        }
        result
    }

    fn keep(&self, conn: redis::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE {
            idle.push(conn);
        }
    }
}

/// Reads one quarantine from the file registry off the async runtime:
/// the board keeps recent ones in memory, older released ones are only on
/// disk.
pub async fn file_get(data_dir: PathBuf, id: String) -> Result<Option<Quarantine>, LookupError> {
    Ok(tokio::task::spawn_blocking(move || Registry::file(&data_dir)?.get(&id)).await??)
}
