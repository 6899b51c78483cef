//! What `warden train --from-checkpoint DIR` and `--from-redis` read: a
//! deployment's own profiles, restored under the fingerprint key they were
//! made with, so that peer groups are retrained from the fleet as it runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::engine::AgentSnapshot;
use crate::state::hash_key::{HashKey, HashKeyError, KEY_FILE};
use crate::state::redis::ReadProfilesError;
use crate::state::StateError;

/// A deployment's profiles, ready for [`super::train::train_on_profiles`].
pub struct Profiles {
    pub agents: Vec<(String, AgentSnapshot)>,
    /// What they were read from, for the model file.
    pub inputs: Vec<String>,
    pub digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{dir} holds no {KEY_FILE} and neither WARDEN_HASH_KEY nor detector.hash-key is set: profiles cannot be read without the key they were fingerprinted with")]
    NoKey { dir: PathBuf },
    #[error("{0}")]
    Key(#[from] HashKeyError),
    #[error("{0}")]
    State(#[from] StateError),
    #[error("no checkpoint (profiles-N.ckpt) under {dir}: pass the service's server.data-dir")]
    NoCheckpoint { dir: PathBuf },
    #[error("--from-redis: {0}")]
    Redis(#[from] ReadProfilesError),
}

/// The profiles of a data directory's checkpoints (a newer copy of an
/// agent wins), read with the directory's `hash.key` or the configured key.
pub fn from_checkpoint(dir: &Path, cfg: &Config) -> Result<Profiles, SourceError> {
    let key = HashKey::existing(cfg.detector.configured_hash_key(), dir)?.ok_or_else(|| {
        SourceError::NoKey {
            dir: dir.to_owned(),
        }
    })?;
    let mut digest = Sha256::new();
    let mut inputs = Vec::new();
    let files = crate::state::load_all_seen(dir, key.id(), |path, bytes| {
        digest.update(bytes);
        inputs.push(path.display().to_string());
    })?;
    if files.is_empty() {
        return Err(SourceError::NoCheckpoint {
            dir: dir.to_owned(),
        });
    }
    // Oldest first: a later copy of an agent replaces an earlier one.
    let mut agents: BTreeMap<String, AgentSnapshot> = BTreeMap::new();
    for (_, cp) in files {
        agents.extend(cp.agents);
    }
    Ok(Profiles {
        agents: agents.into_iter().collect(),
        inputs,
        digest: format!("sha256:{}", hex::encode(digest.finalize())),
    })
}

/// The profiles a Redis deployment stores under `redis.key-prefix`.
pub fn from_redis(cfg: &Config) -> Result<Profiles, SourceError> {
    let stored =
        crate::state::redis::read_profiles(&cfg.redis, cfg.detector.configured_hash_key())?;
    Ok(Profiles {
        agents: stored.agents,
        inputs: vec![format!("redis:{}:profile:*", cfg.redis.key_prefix)],
        digest: stored.digest,
    })
}
