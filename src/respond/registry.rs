//! The quarantine registry: where a quarantine is recorded before any
//! outbound call, so that a crash never leaves a revocation nobody resumes.
//!
//! Writes are grouped: [`Registry::save`] and the revocation queue only
//! stage them, and [`Registry::commit`] makes them durable together (one
//! fsync, or one Redis pipeline per burst). The responder commits before
//! it calls anything out.
//!
//! Embedded, it is an append-only journal under `<data-dir>/quarantines`
//! (see [`super::journal`]). With Redis on, it is the key
//! `<prefix>:quarantine:<id>` (JSON), with the set `<prefix>:quarantines:open`
//! of open ids, `<prefix>:quarantines:agent:<agent_id>` of each agent's
//! ids and `<prefix>:quarantines:released` of released ones, so every
//! instance of a group answers the broker's "is this agent quarantined?"
//! the same way. A release is final: a record is saved by a script that
//! refuses to re-open a released one, whichever instance released it.
//!
//! The raw credentials of an enforced quarantine are not in its record:
//! each is in the revocation queue under its index `n` in the quarantine's
//! `credentials` (a `queue` entry of the journal, mode 0600, or the key
//! `<prefix>:revoke:<id>:<n>`), written before the record that lists it
//! and removed once every revoker has an outcome for it (or the
//! quarantine is released), so a restart can still revoke it and nothing
//! else reads it. Entries of an earlier release (`<id>.revoke`,
//! `<prefix>:revoke:<id>`) are read as credential 0.

use std::path::{Path, PathBuf};

use redis::Commands;

use super::credential::SecretString;
use super::incident::{Amend, Quarantine};
use super::journal::Journal;
use crate::state::redis::RedisStore;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{at}: not a quarantine record: {source}")]
    Corrupt {
        at: String,
        source: serde_json::Error,
    },
    #[error("{at}: {reason}")]
    Amend { at: String, reason: String },
    #[error("cannot amend quarantine {0}: it has no open record")]
    NotOpen(String),
    #[error("cannot open the Redis registry: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Connect(#[from] crate::state::redis::RedisConnectError),
}

pub enum Registry {
    File(Box<Journal>),
    /// Writes wait in `pending` until [`Registry::commit`] sends them in
    /// one atomic pipeline (group commit).
    Redis {
        store: Box<RedisStore>,
        pending: Vec<RedisWrite>,
        /// Open records a commit refused because another instance had
        /// released them meanwhile (see [`Registry::take_superseded`]).
        superseded: Vec<String>,
    },
}

/// Saves one quarantine record unless it would re-open a released one: a
/// release is final, whichever instance of a group made it, and an
/// instance still rolling flags into its copy must not undo it.
/// KEYS: record, open set, agent's set, released set. ARGV: id, JSON,
/// open ("1" or "0"). Answers 1 if written, 0 if refused.
const SAVE_SCRIPT: &str = r#"
if ARGV[3] == "1" and redis.call("SISMEMBER", KEYS[4], ARGV[1]) == 1 then
  return 0
end
redis.call("SET", KEYS[1], ARGV[2])
if ARGV[3] == "1" then
  redis.call("SADD", KEYS[2], ARGV[1])
else
  redis.call("SREM", KEYS[2], ARGV[1])
  redis.call("SADD", KEYS[4], ARGV[1])
end
redis.call("SADD", KEYS[3], ARGV[1])
return 1
"#;

/// A write to the Redis registry, waiting for the next commit.
pub enum RedisWrite {
    Save {
        id: String,
        agent_id: String,
        open: bool,
        json: Vec<u8>,
    },
    Queue {
        id: String,
        n: usize,
        credential: SecretString,
    },
    Dequeue {
        id: String,
        n: usize,
    },
}

impl Registry {
    pub fn file(data_dir: &Path) -> Result<Self, RegistryError> {
        let dir = data_dir.join("quarantines");
        std::fs::create_dir_all(&dir).map_err(|source| RegistryError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        Ok(Self::File(Box::new(Journal::open(&dir)?)))
    }

    pub fn redis(cfg: &crate::config::RedisConfig) -> Result<Self, RegistryError> {
        Ok(Self::Redis {
            store: Box::new(RedisStore::open(cfg)?),
            pending: Vec::new(),
            superseded: Vec::new(),
        })
    }

    /// The registry on a client built once (see `responder::Handle`).
    pub fn shared(client: redis::Client, prefix: &str) -> Self {
        Self::Redis {
            store: Box::new(RedisStore::with_client(client, prefix)),
            pending: Vec::new(),
            superseded: Vec::new(),
        }
    }

    /// Records `q`, durably once [`commit`](Self::commit) returns. Nothing
    /// is called out for a quarantine before its record is committed.
    pub fn save(&mut self, q: &Quarantine) -> Result<(), RegistryError> {
        match self {
            Self::File(j) => j.save(q),
            Self::Redis { pending, .. } => {
                pending.push(RedisWrite::Save {
                    id: q.id.clone(),
                    agent_id: q.agent_id.clone(),
                    open: q.state.is_open(),
                    json: serde_json::to_vec(q).expect("quarantine serialises"),
                });
                Ok(())
            }
        }
    }

    /// Records what changed in open quarantine `q`'s credentials and
    /// revocations (`a`, see [`Quarantine::amend`]): an amend line in the
    /// journal; Redis, with no fsync to spare, takes the whole record.
    /// `queued`: it lists a credential just queued for revocation, so the
    /// queue keeps a copy and [`commit_for_callout`] makes both durable
    /// with one fsync.
    ///
    /// [`commit_for_callout`]: Self::commit_for_callout
    pub fn amend(&mut self, q: &Quarantine, a: &Amend, queued: bool) -> Result<(), RegistryError> {
        match self {
            Self::File(j) => {
                let r = if queued {
                    j.amend_queued(a)
                } else {
                    j.amend(a)
                };
                match r {
                    // Only a quarantine this journal never opened has no
                    // record to amend: then the whole record is written.
                    Err(RegistryError::NotOpen(_)) => j.save(q),
                    r => r,
                }
            }
            Self::Redis { .. } => self.save(q),
        }
    }

    /// Makes durable what the calls out of a burst depend on (see
    /// [`Journal::commit_for_callout`]); the rest waits for
    /// [`commit`](Self::commit), which [`uncommitted`](Self::uncommitted)
    /// says is due. Redis commits everything.
    pub fn commit_for_callout(&mut self) -> Result<(), RegistryError> {
        match self {
            Self::File(j) => j.commit_for_callout(),
            Self::Redis { .. } => self.commit(),
        }
    }

    pub fn uncommitted(&self) -> bool {
        match self {
            Self::File(j) => j.uncommitted(),
            Self::Redis { pending, .. } => !pending.is_empty(),
        }
    }

    /// Makes every write since the last commit durable at once: one fsync
    /// of the journal, or one atomic Redis pipeline (outages waited out,
    /// retried with backoff).
    pub fn commit(&mut self) -> Result<(), RegistryError> {
        match self {
            Self::File(j) => j.commit(),
            Self::Redis {
                store,
                pending,
                superseded,
            } => {
                if pending.is_empty() {
                    return Ok(());
                }
                let p = store.prefix().to_owned();
                let writes = std::mem::take(pending);
                let saves: Vec<&str> = writes
                    .iter()
                    .filter_map(|w| match w {
                        RedisWrite::Save { id, .. } => Some(id.as_str()),
                        _ => None,
                    })
                    .collect();
                let written: Vec<i64> = store.retry("record quarantines", |c| {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    for w in &writes {
                        match w {
                            RedisWrite::Save {
                                id,
                                agent_id,
                                open,
                                json,
                            } => {
                                pipe.cmd("EVAL")
                                    .arg(SAVE_SCRIPT)
                                    .arg(4)
                                    .arg(format!("{p}:quarantine:{id}"))
                                    .arg(format!("{p}:quarantines:open"))
                                    .arg(format!("{p}:quarantines:agent:{agent_id}"))
                                    .arg(format!("{p}:quarantines:released"))
                                    .arg(id)
                                    .arg(json.as_slice())
                                    .arg(if *open { "1" } else { "0" });
                            }
                            RedisWrite::Queue { id, n, credential } => {
                                pipe.set(format!("{p}:revoke:{id}:{n}"), credential.expose())
                                    .ignore();
                            }
                            RedisWrite::Dequeue { id, n } => {
                                pipe.del(queue_keys(&p, id, *n)).ignore();
                            }
                        }
                    }
                    pipe.query::<Vec<i64>>(c)
                });
                for (id, ok) in saves.iter().zip(written) {
                    if ok == 0 && !superseded.iter().any(|s| s == id) {
                        superseded.push((*id).to_owned());
                    }
                }
                Ok(())
            }
        }
    }

    /// The open quarantines whose record a commit refused since the last
    /// call, because another instance released them: the caller drops its
    /// copy (and the calls out it planned for them). Always empty embedded.
    pub fn take_superseded(&mut self) -> Vec<String> {
        match self {
            Self::File(_) => Vec::new(),
            Self::Redis { superseded, .. } => std::mem::take(superseded),
        }
    }

    /// Reads from Redis see the writes staged before them; the journal
    /// reads its own.
    fn commit_shared(&mut self) -> Result<(), RegistryError> {
        if self.is_shared() {
            self.commit()?;
        }
        Ok(())
    }

    /// One quarantine by id.
    pub fn get(&mut self, id: &str) -> Result<Option<Quarantine>, RegistryError> {
        // Ids are ours (`q-` and hex); anything else names no file.
        if !is_id(id) {
            return Ok(None);
        }
        self.commit_shared()?;
        match self {
            Self::File(j) => j.get(id),
            Self::Redis { store, .. } => {
                let key = format!("{}:quarantine:{id}", store.prefix());
                let bytes: Option<Vec<u8>> = store.retry("read a quarantine", |c| c.get(&key));
                bytes.map(|b| parse(&b, &key)).transpose()
            }
        }
    }

    /// Every open quarantine (to resume after a restart).
    pub fn open_quarantines(&mut self) -> Result<Vec<Quarantine>, RegistryError> {
        self.commit_shared()?;
        match self {
            Self::File(j) => j.open_quarantines(),
            Self::Redis { store, .. } => {
                let open = format!("{}:quarantines:open", store.prefix());
                let ids: Vec<String> = store.retry("list open quarantines", |c| c.smembers(&open));
                let mut out = Vec::new();
                for id in ids {
                    if let Some(q) = self.get(&id)? {
                        out.push(q);
                    }
                }
                out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
                Ok(out)
            }
        }
    }

    /// Every quarantine of one agent, newest first (Redis only: embedded,
    /// the responder's memory is the answer).
    pub fn of_agent(&mut self, agent_id: &str) -> Result<Vec<Quarantine>, RegistryError> {
        self.commit_shared()?;
        let Self::Redis { store, .. } = self else {
            return Ok(Vec::new());
        };
        let key = format!("{}:quarantines:agent:{agent_id}", store.prefix());
        let ids: Vec<String> = store.retry("list an agent's quarantines", |c| c.smembers(&key));
        let mut out = Vec::new();
        for id in ids {
            if let Some(q) = self.get(&id)? {
                out.push(q);
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(out)
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Redis { .. })
    }

    /// Removes released quarantines last updated before `cutoff`
    /// (`response.incident-retention`), with their ids in the released and
    /// per-agent sets; returns how many. Open ones never expire. Once
    /// expired, a redelivery of the event that opened one could open it
    /// again: retention is meant to outlast any redelivery.
    pub fn expire_released(&mut self, cutoff: std::time::SystemTime) -> Result<u64, RegistryError> {
        match self {
            Self::File(j) => j.expire_released(cutoff),
            Self::Redis { store, .. } => {
                let p = store.prefix().to_owned();
                let cutoff = chrono::DateTime::<chrono::Utc>::from(cutoff)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                let released = format!("{p}:quarantines:released");
                let ids: Vec<String> =
                    store.retry("list released quarantines", |c| c.smembers(&released));
                let mut expired = 0;
                for chunk in ids.chunks(500) {
                    let keys: Vec<String> = chunk
                        .iter()
                        .map(|id| format!("{p}:quarantine:{id}"))
                        .collect();
                    let values: Vec<Option<Vec<u8>>> = store
                        .retry("read released quarantines", |c| {
                            redis::cmd("MGET").arg(&keys).query(c)
                        });
                    let mut pipe = redis::pipe();
                    let mut n = 0;
                    for ((id, key), v) in chunk.iter().zip(&keys).zip(values) {
                        let agent = match v.map(|b| parse(&b, key)) {
                            // Compared as text: every timestamp is RFC 3339 UTC
                            // with milliseconds (`now_rfc3339`).
                            Some(Ok(q)) if q.state.is_open() || q.updated_at >= cutoff => continue,
                            Some(Ok(q)) => Some(q.agent_id),
                            // Unreadable: left for a human, never deleted unseen.
                            Some(Err(_)) => continue,
                            // Gone already: only the set entry is left.
                            None => None,
                        };
                        pipe.del(key).ignore();
                        pipe.srem(&released, id).ignore();
                        if let Some(a) = agent {
                            pipe.srem(format!("{p}:quarantines:agent:{a}"), id).ignore();
                        }
                        n += 1;
                    }
                    if n > 0 {
                        store.retry("expire released quarantines", |c| pipe.query::<()>(c));
                        expired += n;
                    }
                }
                Ok(expired)
            }
        }
    }
}

/// Reads one quarantine from Redis once, without the retries of
/// [`Registry::get`]: for HTTP handlers, which answer within a deadline and
/// fail closed.
pub fn redis_get_once(
    conn: &mut redis::Connection,
    prefix: &str,
    id: &str,
) -> Result<Option<Quarantine>, RegistryError> {
    if !is_id(id) {
        return Ok(None);
    }
    let key = format!("{prefix}:quarantine:{id}");
    let bytes: Option<Vec<u8>> = conn.get(&key)?;
    bytes.map(|b| parse(&b, &key)).transpose()
}

/// Every quarantine of one agent, newest first, read from Redis once (two
/// round trips, no retries).
pub fn redis_of_agent_once(
    conn: &mut redis::Connection,
    prefix: &str,
    agent_id: &str,
) -> Result<Vec<Quarantine>, RegistryError> {
    let ids: Vec<String> = conn.smembers(format!("{prefix}:quarantines:agent:{agent_id}"))?;
    let keys: Vec<String> = ids
        .iter()
        .filter(|id| is_id(id))
        .map(|id| format!("{prefix}:quarantine:{id}"))
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query(conn)?;
    let mut out = Vec::with_capacity(values.len());
    for (key, bytes) in keys.iter().zip(values) {
        if let Some(b) = bytes {
            out.push(parse(&b, key)?);
        }
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    Ok(out)
}

/// Ids are ours (`q-` and hex); anything else names no file or key.
pub(crate) fn is_id(id: &str) -> bool {
    id.strip_prefix("q-")
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Registry {
    /// Queues the raw credential `n` of quarantine `id` for its revokers,
    /// in the same commit as (and before) the record that lists it.
    pub fn queue_revocation(
        &mut self,
        id: &str,
        n: usize,
        credential: &SecretString,
    ) -> Result<(), RegistryError> {
        match self {
            Self::File(j) => j.queue_revocation(id, n, credential),
            Self::Redis { pending, .. } => {
                pending.push(RedisWrite::Queue {
                    id: id.to_owned(),
                    n,
                    credential: credential.clone(),
                });
                Ok(())
            }
        }
    }

    /// The raw credential `n` queued for quarantine `id`, if still queued.
    pub fn queued_revocation(
        &mut self,
        id: &str,
        n: usize,
    ) -> Result<Option<SecretString>, RegistryError> {
        self.commit_shared()?;
        match self {
            Self::File(j) => Ok(j.queued_revocation(id, n)),
            Self::Redis { store, .. } => {
                let keys = queue_keys(store.prefix(), id, n);
                let v: Option<String> = store.retry("read a queued revocation", |c| {
                    for k in &keys {
                        if let Some(v) = c.get::<_, Option<String>>(k)? {
                            return Ok(Some(v));
                        }
                    }
                    Ok(None)
                });
                Ok(v.map(SecretString::new))
            }
        }
    }

    /// Every (quarantine id, credential index) in the revocation queue, to
    /// sweep out what a crash left behind (a revocation settled but not
    /// yet dequeued).
    pub fn queued_revocations(&mut self) -> Result<Vec<(String, usize)>, RegistryError> {
        self.commit_shared()?;
        match self {
            Self::File(j) => Ok(j.queued_revocations()),
            Self::Redis { store, .. } => {
                let prefix = format!("{}:revoke:", store.prefix());
                let pattern = format!("{prefix}*");
                let keys: Vec<String> = store.retry("list queued revocations", |c| {
                    c.scan_match::<_, String>(&pattern)
                        .map(|keys| keys.collect::<Vec<String>>())
                });
                Ok(keys
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&prefix).and_then(|s| split_entry(s, ':')))
                    .collect())
            }
        }
    }

    /// Drops credential `n` of quarantine `id` from the revocation queue:
    /// every revoker has an outcome for it, or the quarantine was released.
    pub fn dequeue_revocation(&mut self, id: &str, n: usize) -> Result<(), RegistryError> {
        match self {
            Self::File(j) => j.dequeue_revocation(id, n),
            Self::Redis { pending, .. } => {
                pending.push(RedisWrite::Dequeue {
                    id: id.to_owned(),
                    n,
                });
                Ok(())
            }
        }
    }
}

fn queue_keys(prefix: &str, id: &str, n: usize) -> Vec<String> {
    let mut v = vec![format!("{prefix}:revoke:{id}:{n}")];
    if n == 0 {
        v.push(format!("{prefix}:revoke:{id}"));
    }
    v
}

/// `<id><sep><n>`, or a bare `<id>` of an earlier release (credential 0).
pub(crate) fn split_entry(s: &str, sep: char) -> Option<(String, usize)> {
    match s.rsplit_once(sep) {
        Some((id, n)) => Some((id.to_owned(), n.parse().ok()?)),
        None => Some((s.to_owned(), 0)),
    }
}

fn parse(bytes: &[u8], at: &str) -> Result<Quarantine, RegistryError> {
    serde_json::from_slice(bytes).map_err(|source| RegistryError::Corrupt {
        at: at.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Mode;
    use crate::respond::incident::{fixtures, State};

    fn quarantine(event: &str) -> Quarantine {
        let flag = fixtures::flag(event, Mode::Enforce, 20.0);
        Quarantine::open(&flag, &[("vault".into(), Some("c".into()))], &[], "me")
    }

    #[test]
    fn file_registry_keeps_open_ones_apart_from_released_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::file(dir.path()).unwrap();
        let mut a = quarantine("e1");
        let b = quarantine("e2");
        reg.save(&a).unwrap();
        reg.save(&b).unwrap();
        reg.commit().unwrap();
        assert_eq!(reg.open_quarantines().unwrap().len(), 2);
        a.state = State::Released;
        a.touch();
        reg.save(&a).unwrap();
        reg.commit().unwrap();
        let mut reg = Registry::file(dir.path()).unwrap();
        let open = reg.open_quarantines().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, b.id);
        // Still found by id, with its latest state.
        assert_eq!(reg.get(&a.id).unwrap().unwrap().state, State::Released);
        assert_eq!(reg.get("q-0000").unwrap(), None);
        assert_eq!(reg.get("../../etc/passwd").unwrap(), None);
    }

    #[test]
    fn revocation_queue_is_private_and_apart_from_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::file(dir.path()).unwrap();
        let q = quarantine("e1");
        let secret = SecretString::new("hvs.raw-token");
        let second = SecretString::new("hvs.second-token");
        reg.queue_revocation(&q.id, 0, &secret).unwrap();
        reg.queue_revocation(&q.id, 1, &second).unwrap();
        reg.save(&q).unwrap();
        reg.commit().unwrap();
        // Only the quarantine records are read back as quarantines, and
        // none holds the raw value.
        let open = reg.open_quarantines().unwrap();
        assert_eq!(open.len(), 1);
        let record = serde_json::to_string(&open[0]).unwrap();
        assert!(!record.contains("hvs.raw-token"), "{record}");
        let mut reg = Registry::file(dir.path()).unwrap();
        assert_eq!(reg.queued_revocation(&q.id, 0).unwrap(), Some(secret));
        assert_eq!(reg.queued_revocation(&q.id, 1).unwrap(), Some(second));
        assert_eq!(
            reg.queued_revocations().unwrap(),
            vec![(q.id.clone(), 0), (q.id.clone(), 1)]
        );
        // Each credential leaves the queue on its own, for good.
        reg.dequeue_revocation(&q.id, 0).unwrap();
        reg.commit().unwrap();
        let mut reg = Registry::file(dir.path()).unwrap();
        assert_eq!(reg.queued_revocations().unwrap(), vec![(q.id.clone(), 1)]);
        assert_eq!(reg.queued_revocation(&q.id, 0).unwrap(), None);
        reg.dequeue_revocation(&q.id, 1).unwrap();
        assert!(reg.queued_revocations().unwrap().is_empty());
        reg.dequeue_revocation(&q.id, 0).unwrap();
    }

    /// Two instances of a group on one Redis: the one still rolling flags
    /// into its open copy cannot undo the other's release, and learns of
    /// it from the commit.
    #[cfg(feature = "integration-tests")]
    #[test]
    fn a_release_elsewhere_is_final() {
        let cfg = crate::config::RedisConfig {
            url: std::env::var("WARDEN_TEST_REDIS")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            key_prefix: format!("warden-final-{}", std::process::id()),
            ..Default::default()
        };
        let mut a = Registry::redis(&cfg).unwrap();
        let mut b = Registry::redis(&cfg).unwrap();
        let mut q = quarantine("e1");
        a.save(&q).unwrap();
        a.commit().unwrap();
        assert!(a.take_superseded().is_empty());

        let mut released = b.get(&q.id).unwrap().unwrap();
        released.state = State::Released;
        released.touch();
        b.save(&released).unwrap();
        b.commit().unwrap();
        assert!(b.take_superseded().is_empty());

        // A's copy moved on meanwhile (a higher version than B's).
        q.touch();
        q.touch();
        a.save(&q).unwrap();
        a.save(&quarantine("e2")).unwrap();
        a.commit().unwrap();
        assert_eq!(a.take_superseded(), vec![q.id.clone()]);
        assert!(a.take_superseded().is_empty());
        assert_eq!(a.get(&q.id).unwrap().unwrap().state, State::Released);
        let open: Vec<String> = a
            .open_quarantines()
            .unwrap()
            .into_iter()
            .map(|q| q.id)
            .collect();
        assert_eq!(open, vec![quarantine("e2").id]);
        assert_eq!(a.of_agent(&q.agent_id).unwrap().len(), 2);

        // Retention: the released one expires with its set entries; the
        // open one stays.
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(a.expire_released(past).unwrap(), 0);
        let future = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        assert_eq!(a.expire_released(future).unwrap(), 1);
        assert_eq!(a.get(&q.id).unwrap(), None);
        assert_eq!(a.of_agent(&q.agent_id).unwrap().len(), 1);
        assert_eq!(a.open_quarantines().unwrap().len(), 1);
        assert_eq!(a.expire_released(future).unwrap(), 0);
    }
}
