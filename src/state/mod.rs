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

use crate::baseline::Profile;

pub mod redis;

/// Tag at the start of every checkpoint file.
const MAGIC: &[u8; 8] = b"WARDENCP";
/// Version of the encoding of [`Checkpoint`] and [`Profile`]; bump it with
/// any change to either.
pub const FORMAT_VERSION: u32 = 1;

/// The profiles one worker holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Unix milliseconds when it was taken.
    pub taken_ms: i64,
    pub agents: Vec<(String, Profile)>,
    /// Hashes of the most recent event ids decided, oldest first, so that a
    /// redelivery after a restart gets no second decision.
    pub recent_events: Vec<u64>,
}

impl Checkpoint {
    /// Every profile of `engine`, taken now, with the dedup window `recent`.
    pub fn of(engine: &crate::engine::Engine, recent_events: Vec<u64>) -> Self {
        Self {
            taken_ms: chrono::Utc::now().timestamp_millis(),
            agents: engine.profiles(),
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

/// Decodes what [`encode`] wrote; `path` names the source in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Checkpoint, StateError> {
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
    postcard::from_bytes(&bytes[12..]).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over the old one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("sync", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The checkpoint file of worker `i` under `dir`.
pub fn worker_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("profiles-{i}.ckpt"))
}

/// Reads every checkpoint under `dir` (none is fine: a first start).
pub fn load_all(dir: &Path) -> Result<Vec<Checkpoint>, StateError> {
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
    paths
        .iter()
        .map(|p| decode(&fs::read(p).map_err(io_err("read", p))?, p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut profile = Profile::new(1_000);
        profile.events_learned = 42;
        let cp = Checkpoint {
            taken_ms: 7,
            agents: vec![("a".into(), profile)],
            recent_events: vec![1, 2, 3],
        };
        let path = worker_path(dir.path(), 0);
        write_atomic(&path, &encode(&cp)).unwrap();
        let back = load_all(dir.path()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].agents[0].0, "a");
        assert_eq!(back[0].agents[0].1.events_learned, 42);
        assert_eq!(back[0].recent_events, [1, 2, 3]);

        let mut bytes = encode(&cp);
        bytes[8] = 99;
        let e = decode(&bytes, &path).unwrap_err().to_string();
        assert!(
            e.contains("format version 99") && e.contains("Refusing"),
            "{e}"
        );
        let e = decode(b"garbage-bytes", &path).unwrap_err();
        assert!(matches!(e, StateError::NotCheckpoint { .. }));
        let e = decode(&encode(&cp)[..20], &path).unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }));
    }
}
