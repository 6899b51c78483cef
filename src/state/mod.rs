//! Profile checkpoints: a compact, versioned binary encoding, written
//! atomically to a data directory (the embedded default; Redis is the
//! shared store of a fleet).
//!
//! A file starts with a magic tag and the format version. A file of another
//! version is refused with a message that says so: a profile format change
//! never silently resets every baseline.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::AgentSnapshot;

pub mod hash_key;
pub mod redis;

/// Tag at the start of every checkpoint file.
const MAGIC: &[u8; 8] = b"WARDENCP";
/// Version of the encoding of [`Checkpoint`] and [`Profile`]; bump it with
/// any change to either.
/// Version 2: 64-bit keyed fingerprints, the key's id, open sessions.
/// Version 3: principal bindings in profiles, binding state in sessions.
/// Version 4: request scope and unsourced ids in bindings; provenance
/// hosts, read-charged values and the calibration hold in sessions.
/// Version 5: first-time listings in sessions (8aac398 changed them
/// without a bump); the words of tools' results in profiles, odd results
/// in sessions.
pub const FORMAT_VERSION: u32 = 5;

/// The profiles one worker holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Unix milliseconds when it was taken.
    pub taken_ms: i64,
    /// Public id of the fingerprint key the profiles were hashed with.
    pub key_id: u64,
    /// Profiles and open sessions, by agent id.
    pub agents: Vec<(String, AgentSnapshot)>,
    /// Hashes of the most recent event ids decided, oldest first, so that a
    /// redelivery after a restart gets no second decision.
    pub recent_events: Vec<u64>,
}

impl Checkpoint {
    /// Every profile of `engine`, taken now, with the dedup window `recent`.
    pub fn of(engine: &crate::engine::Engine, recent_events: Vec<u64>) -> Self {
        Self {
            taken_ms: chrono::Utc::now().timestamp_millis(),
            key_id: engine.key_id(),
            agents: engine.snapshots(),
            recent_events,
        }
    }
}

/// A checkpoint that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} is not a Warden checkpoint")]
    NotCheckpoint { path: PathBuf },
    #[error(
        "{path} holds profiles in format version {found}; this build reads version {FORMAT_VERSION}. \
         Refusing to start rather than reset every baseline: run the build that wrote it, \
         or move the file away to start from empty profiles"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "{path} holds profiles fingerprinted under another key (id {found:016x}; this instance's \
         key has id {expected:016x}). Refusing to mix keys, which would make every known value look \
         new: set WARDEN_HASH_KEY to the key that wrote it, or move the file away to start anew"
    )]
    KeyMismatch {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
}

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> StateError + 'p {
    move |source| StateError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Encodes a checkpoint: magic, version, postcard payload.
pub fn encode(cp: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Serialising plain data into a Vec cannot fail.
    out.extend(postcard::to_stdvec(cp).expect("checkpoint serialises"));
    out
}

/// Decodes what [`encode`] wrote, refusing profiles hashed under another
/// key than `key_id`; `path` names the source in errors.
pub fn decode(bytes: &[u8], path: &Path, key_id: u64) -> Result<Checkpoint, StateError> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(StateError::NotCheckpoint {
            path: path.to_owned(),
        });
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != FORMAT_VERSION {
        return Err(StateError::Version {
            path: path.to_owned(),
            found: version,
        });
    }
    let cp: Checkpoint = postcard::from_bytes(&bytes[12..]).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if cp.key_id != key_id {
        return Err(StateError::KeyMismatch {
            path: path.to_owned(),
            found: cp.key_id,
            expected: key_id,
        });
    }
    Ok(cp)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over the old one. Each write
/// has its own temporary name, so two writers of one path (an API call and
/// the periodic sync) never rename each other's file away.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.{seq}.tmp", std::process::id()));
    let tmp = dir.join(name);
    let written = (|| {
        let mut f = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err("rename into", path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The checkpoint file of worker `i` under `dir`.
pub fn worker_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("profiles-{i}.ckpt"))
}

/// Reads every checkpoint under `dir` (none is fine: a first start), oldest
/// first: a file left by a larger worker count may hold an older copy of
/// an agent that a current file also holds, and the newer must win.
pub fn load_all(dir: &Path, key_id: u64) -> Result<Vec<(PathBuf, Checkpoint)>, StateError> {
    load_all_seen(dir, key_id, |_, _| {})
}

/// [`load_all`], showing `seen` each file's bytes as read, in name order
/// (for a digest of what was loaded).
pub fn load_all_seen(
    dir: &Path,
    key_id: u64,
    mut seen: impl FnMut(&Path, &[u8]),
) -> Result<Vec<(PathBuf, Checkpoint)>, StateError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ckpt"))
        .collect();
    paths.sort();
    let mut out = paths
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).map_err(io_err("read", &p))?;
            seen(&p, &bytes);
            let cp = decode(&bytes, &p, key_id)?;
            Ok((p, cp))
        })
        .collect::<Result<Vec<_>, StateError>>()?;
    out.sort_by_key(|(_, cp)| cp.taken_ms);
    Ok(out)
}

/// The worker a checkpoint file written by [`worker_path`] belongs to.
pub fn worker_of(path: &Path) -> Option<usize> {
    path.file_stem()?
        .to_str()?
        .strip_prefix("profiles-")?
        .parse()
        .ok()
}

/// Removes the checkpoint files of workers `n` and beyond, once their
/// agents live in the files of workers below `n`.
pub fn remove_stale(dir: &Path, n: usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        if path.extension().is_some_and(|x| x == "ckpt") && worker_of(&path).is_some_and(|i| i >= n)
        {
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "Removed the checkpoint of a worker that no longer exists.")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "Cannot remove a stale checkpoint.")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::Profile;

    #[test]
    fn concurrent_writers_of_one_path_never_fail_and_leave_no_temp_files() {
        // An API call and the periodic sync can write one file at once;
        // with a shared temporary name one rename found nothing to move.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.json");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..50u8 {
                        write_atomic(path, &[t, i]).unwrap();
                    }
                });
            }
        });
        assert_eq!(fs::read(&path).unwrap().len(), 2);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("rules.json")]);
    }

    fn checkpoint(taken_ms: i64, key_id: u64, agents: &[(&str, u64)]) -> Checkpoint {
        Checkpoint {
            taken_ms,
            key_id,
            agents: agents
                .iter()
                .map(|(id, learned)| {
                    let mut profile = Profile::new(1_000);
                    profile.events_learned = *learned;
                    (id.to_string(), AgentSnapshot::new(profile))
                })
                .collect(),
            recent_events: vec![1, 2, 3],
        }
    }

    #[test]
    fn round_trip_and_version_check() {
        let dir = tempfile::tempdir().unwrap();
        let cp = checkpoint(7, 9, &[("a", 42)]);
        let path = worker_path(dir.path(), 0);
        write_atomic(&path, &encode(&cp)).unwrap();
        let back = load_all(dir.path(), 9).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].1.agents[0].0, "a");
        assert_eq!(back[0].1.agents[0].1.profile.events_learned, 42);
        assert_eq!(back[0].1.recent_events, [1, 2, 3]);

        let mut bytes = encode(&cp);
        bytes[8] = 99;
        let e = decode(&bytes, &path, 9).unwrap_err().to_string();
        assert!(
            e.contains("format version 99") && e.contains("Refusing"),
            "{e}"
        );
        let e = decode(b"garbage-bytes", &path, 9).unwrap_err();
        assert!(matches!(e, StateError::NotCheckpoint { .. }));
        let e = decode(&encode(&cp)[..20], &path, 9).unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }));
    }

    #[test]
    fn another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(
            &worker_path(dir.path(), 0),
            &encode(&checkpoint(7, 0xaaaa, &[("a", 1)])),
        )
        .unwrap();
        let e = load_all(dir.path(), 0xbbbb).unwrap_err();
        assert!(matches!(
            e,
            StateError::KeyMismatch {
                found: 0xaaaa,
                expected: 0xbbbb,
                ..
            }
        ));
        let text = e.to_string();
        assert!(
            text.contains("another key") && text.contains("WARDEN_HASH_KEY"),
            "{text}"
        );
    }

    /// Four workers wrote agent `a` to file 3 long ago; two workers now
    /// hold its newer copy in file 0 (a lower number, read first by name).
    /// The newer copy must win, and the extra files go.
    #[test]
    fn files_of_a_larger_worker_count_never_overwrite_newer_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let old = checkpoint(1_000, 5, &[("a", 10)]);
        let new = checkpoint(2_000, 5, &[("a", 99)]);
        write_atomic(&worker_path(dir.path(), 3), &encode(&old)).unwrap();
        write_atomic(&worker_path(dir.path(), 0), &encode(&new)).unwrap();
        let loaded = load_all(dir.path(), 5).unwrap();
        let last_a = loaded
            .iter()
            .flat_map(|(_, cp)| cp.agents.iter())
            .rfind(|(id, _)| id == "a")
            .unwrap();
        assert_eq!(
            last_a.1.profile.events_learned, 99,
            "the newest copy is restored last"
        );
        assert_eq!(worker_of(&worker_path(dir.path(), 3)), Some(3));
        remove_stale(dir.path(), 2);
        assert!(!worker_path(dir.path(), 3).exists());
        assert!(worker_path(dir.path(), 0).exists());
    }
}
