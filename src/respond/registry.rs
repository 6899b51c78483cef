//! The quarantine registry: where a quarantine is recorded before any
//! outbound call, so that a crash never leaves a revocation nobody resumes.
//!
//! Embedded, each quarantine is one JSON file under `<data-dir>/quarantines`,
//! written atomically (fsync, rename). With Redis on, it is the key
//! `<prefix>:quarantine:<id>` (JSON), with the set `<prefix>:quarantines:open`
//! of open ids and `<prefix>:quarantines:agent:<agent_id>` of each agent's
//! ids, so every instance of a group answers the broker's "is this agent
//! quarantined?" the same way.
//!
//! The raw credentials of an enforced quarantine are not in its record:
//! each is in the revocation queue under its index `n` in the quarantine's
//! `credentials`, `<data-dir>/quarantines/<id>.<n>.revoke` (mode 0600) or
//! the key `<prefix>:revoke:<id>:<n>`, written before the record that lists
//! it and deleted once every revoker has an outcome for it (or the
//! quarantine is released), so a restart can still revoke it and nothing
//! else reads it. Entries of an earlier release (`<id>.revoke`,
//! `<prefix>:revoke:<id>`) are read as credential 0.

use std::path::{Path, PathBuf};

use redis::Commands;

use super::credential::SecretString;
use super::incident::Quarantine;
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
    #[error("cannot open the Redis registry: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Connect(#[from] crate::state::redis::RedisConnectError),
}

pub enum Registry {
    File { dir: PathBuf },
    Redis(Box<RedisStore>),
}

impl Registry {
    pub fn file(data_dir: &Path) -> Result<Self, RegistryError> {
        let dir = data_dir.join("quarantines");
        std::fs::create_dir_all(&dir).map_err(|source| RegistryError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        Ok(Self::File { dir })
    }

    pub fn redis(cfg: &crate::config::RedisConfig) -> Result<Self, RegistryError> {
        Ok(Self::Redis(Box::new(RedisStore::open(cfg)?)))
    }

    /// The registry on a client built once (see `responder::Handle`).
    pub fn shared(client: redis::Client, prefix: &str) -> Self {
        Self::Redis(Box::new(RedisStore::with_client(client, prefix)))
    }

    /// Records `q` durably. Redis outages are waited out (retried with
    /// backoff); a file that cannot be written is an error for the caller
    /// to retry.
    pub fn save(&mut self, q: &Quarantine) -> Result<(), RegistryError> {
        let json = serde_json::to_vec(q).expect("quarantine serialises");
        match self {
            Self::File { dir } => {
                // Released ones move aside, so a start-up reads only the
                // open ones however long the history grows.
                let open = dir.join(format!("{}.json", q.id));
                let path = if q.state.is_open() {
                    open.clone()
                } else {
                    dir.join("released").join(format!("{}.json", q.id))
                };
                crate::state::write_atomic(&path, &json).map_err(|e| RegistryError::Io {
                    action: "write",
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                if path != open {
                    match std::fs::remove_file(&open) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(RegistryError::Io {
                                action: "remove",
                                path: open,
                                source,
                            })
                        }
                    }
                }
                Ok(())
            }
            Self::Redis(store) => {
                let p = store.prefix().to_owned();
                let key = format!("{p}:quarantine:{}", q.id);
                let open = format!("{p}:quarantines:open");
                let agent = format!("{p}:quarantines:agent:{}", q.agent_id);
                let is_open = q.state.is_open();
                store.retry("record a quarantine", |c| {
                    let mut pipe = redis::pipe();
                    pipe.atomic().set(&key, &json).ignore();
                    if is_open {
                        pipe.sadd(&open, &q.id).ignore();
                    } else {
                        pipe.srem(&open, &q.id).ignore();
                    }
                    pipe.sadd(&agent, &q.id).ignore();
                    pipe.query::<()>(c)
                });
                Ok(())
            }
        }
    }

    /// One quarantine by id.
    pub fn get(&mut self, id: &str) -> Result<Option<Quarantine>, RegistryError> {
        // Ids are ours (`q-` and hex); anything else names no file.
        if !id.starts_with("q-") || !id[2..].bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        match self {
            Self::File { dir } => {
                let paths = [
                    dir.join(format!("{id}.json")),
                    dir.join("released").join(format!("{id}.json")),
                ];
                match read_first(paths)? {
                    Some((path, bytes)) => parse(&bytes, &path.display().to_string()).map(Some),
                    None => Ok(None),
                }
            }
            Self::Redis(store) => {
                let key = format!("{}:quarantine:{id}", store.prefix());
                let bytes: Option<Vec<u8>> = store.retry("read a quarantine", |c| c.get(&key));
                bytes.map(|b| parse(&b, &key)).transpose()
            }
        }
    }

    /// Every open quarantine (to resume after a restart).
    pub fn open_quarantines(&mut self) -> Result<Vec<Quarantine>, RegistryError> {
        match self {
            Self::File { dir } => {
                let entries = std::fs::read_dir(&*dir).map_err(|source| RegistryError::Io {
                    action: "list",
                    path: dir.clone(),
                    source,
                })?;
                let mut out = Vec::new();
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().and_then(|e| e.to_str()) != Some("json") {
                        continue;
                    }
                    let bytes = std::fs::read(&path).map_err(|source| RegistryError::Io {
                        action: "read",
                        path: path.clone(),
                        source,
                    })?;
                    match parse(&bytes, &path.display().to_string()) {
                        Ok(q) if q.state.is_open() => out.push(q),
                        Ok(_) => {}
                        // One bad file must not hide the others.
                        Err(e) => tracing::error!(error = %e, "Skipping an unreadable quarantine."),
                    }
                }
                out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
                Ok(out)
            }
            Self::Redis(store) => {
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
        let Self::Redis(store) = self else {
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
        matches!(self, Self::Redis(_))
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
fn is_id(id: &str) -> bool {
    id.strip_prefix("q-")
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Registry {
    /// Queues the raw credential `n` of quarantine `id` for its revokers,
    /// durably, before the record that lists it is written.
    pub fn queue_revocation(
        &mut self,
        id: &str,
        n: usize,
        credential: &SecretString,
    ) -> Result<(), RegistryError> {
        match self {
            Self::File { dir } => {
                let path = dir.join(format!("{id}.{n}.revoke"));
                write_private(&path, credential.expose().as_bytes()).map_err(|source| {
                    RegistryError::Io {
                        action: "write",
                        path,
                        source,
                    }
                })
            }
            Self::Redis(store) => {
                let key = format!("{}:revoke:{id}:{n}", store.prefix());
                store.retry("queue a revocation", |c| {
                    c.set::<_, _, ()>(&key, credential.expose())
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
        match self {
            Self::File { dir } => Ok(read_first(queue_files(dir, id, n))?
                .map(|(_, bytes)| SecretString::new(String::from_utf8_lossy(&bytes).into_owned()))),
            Self::Redis(store) => {
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
        match self {
            Self::File { dir } => {
                let entries = std::fs::read_dir(&*dir).map_err(|source| RegistryError::Io {
                    action: "list",
                    path: dir.clone(),
                    source,
                })?;
                Ok(entries
                    .flatten()
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        name.strip_suffix(".revoke")
                            .and_then(|s| split_entry(s, '.'))
                    })
                    .collect())
            }
            Self::Redis(store) => {
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
            Self::File { dir } => {
                for path in queue_files(dir, id, n) {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(RegistryError::Io {
                                action: "remove",
                                path,
                                source,
                            })
                        }
                    }
                }
                Ok(())
            }
            Self::Redis(store) => {
                let keys = queue_keys(store.prefix(), id, n);
                store.retry("dequeue a revocation", |c| c.del::<_, ()>(&keys));
                Ok(())
            }
        }
    }
}

/// The queue files of credential `n` of `id`: its own, and for the first
/// credential the one an earlier release wrote.
fn queue_files(dir: &Path, id: &str, n: usize) -> Vec<PathBuf> {
    let mut v = vec![dir.join(format!("{id}.{n}.revoke"))];
    if n == 0 {
        v.push(dir.join(format!("{id}.revoke")));
    }
    v
}

fn queue_keys(prefix: &str, id: &str, n: usize) -> Vec<String> {
    let mut v = vec![format!("{prefix}:revoke:{id}:{n}")];
    if n == 0 {
        v.push(format!("{prefix}:revoke:{id}"));
    }
    v
}

/// `<id><sep><n>`, or a bare `<id>` of an earlier release (credential 0).
fn split_entry(s: &str, sep: char) -> Option<(String, usize)> {
    match s.rsplit_once(sep) {
        Some((id, n)) => Some((id.to_owned(), n.parse().ok()?)),
        None => Some((s.to_owned(), 0)),
    }
}

/// Writes `bytes` to `path` atomically, readable by the owner only from
/// the first byte on.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("revoke.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The first of `paths` that exists, read whole; a file that is absent is
/// skipped, any other failure is an error naming it.
fn read_first(
    paths: impl IntoIterator<Item = PathBuf>,
) -> Result<Option<(PathBuf, Vec<u8>)>, RegistryError> {
    for path in paths {
        match std::fs::read(&path) {
            Ok(bytes) => return Ok(Some((path, bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RegistryError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        }
    }
    Ok(None)
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
        assert_eq!(reg.open_quarantines().unwrap().len(), 2);
        a.state = State::Released;
        a.touch();
        reg.save(&a).unwrap();
        let open = reg.open_quarantines().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, b.id);
        // Still found by id, with its latest state.
        assert_eq!(reg.get(&a.id).unwrap().unwrap().state, State::Released);
        assert_eq!(reg.get("q-0000").unwrap(), None);
        assert_eq!(reg.get("../../etc/passwd").unwrap(), None);
        // A corrupt file is skipped, not fatal.
        std::fs::write(dir.path().join("quarantines/q-bad.json"), b"{").unwrap();
        assert_eq!(reg.open_quarantines().unwrap().len(), 1);
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
        let file = dir.path().join(format!("quarantines/{}.0.revoke", q.id));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let record =
            std::fs::read_to_string(dir.path().join(format!("quarantines/{}.json", q.id))).unwrap();
        assert!(!record.contains("hvs.raw-token"), "{record}");
        // Only the quarantine records are read back as quarantines.
        assert_eq!(reg.open_quarantines().unwrap().len(), 1);
        assert_eq!(reg.queued_revocation(&q.id, 0).unwrap(), Some(secret));
        assert_eq!(reg.queued_revocation(&q.id, 1).unwrap(), Some(second));
        let mut all = reg.queued_revocations().unwrap();
        all.sort();
        assert_eq!(all, vec![(q.id.clone(), 0), (q.id.clone(), 1)]);
        // Each credential leaves the queue on its own.
        reg.dequeue_revocation(&q.id, 0).unwrap();
        assert!(!file.exists());
        assert_eq!(reg.queued_revocations().unwrap(), vec![(q.id.clone(), 1)]);
        assert_eq!(reg.queued_revocation(&q.id, 0).unwrap(), None);
        reg.dequeue_revocation(&q.id, 1).unwrap();
        assert!(reg.queued_revocations().unwrap().is_empty());
        reg.dequeue_revocation(&q.id, 0).unwrap();
        // An entry of an earlier release is credential 0.
        std::fs::write(
            dir.path().join(format!("quarantines/{}.revoke", q.id)),
            "old",
        )
        .unwrap();
        assert_eq!(reg.queued_revocations().unwrap(), vec![(q.id.clone(), 0)]);
        assert_eq!(
            reg.queued_revocation(&q.id, 0).unwrap(),
            Some(SecretString::new("old"))
        );
        reg.dequeue_revocation(&q.id, 0).unwrap();
        assert!(reg.queued_revocations().unwrap().is_empty());
    }
}
