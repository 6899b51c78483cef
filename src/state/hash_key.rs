//! The deployment's fingerprint key: the 128-bit secret under which every
//! value, tool and session is fingerprinted.
//!
//! A public default would let anyone compute fingerprints offline and
//! search for a look-alike value that collides with a known one, so
//! `warden run` never uses one. The key comes from `WARDEN_HASH_KEY` (or
//! `detector.hash-key`); without it, the first start generates one, kept in
//! the data directory (`hash.key`, mode 0600) or, with Redis on, under
//! `<prefix>:hash-key` so that every instance of a group shares it.
//! Checkpoints record the key's id (not the key) and refuse to load under
//! another key: profiles fingerprinted under two keys would make every
//! known value look new.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// File, under the data directory, of a generated key.
pub const KEY_FILE: &str = "hash.key";

/// A 128-bit fingerprint key. `Debug` never prints it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HashKey([u8; 16]);

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashKey(id {:016x})", self.id())
    }
}

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HashKeyError {
    #[error("{origin} must be 32 hex digits (a 128-bit key), e.g. from `openssl rand -hex 16`")]
    Malformed { origin: String },
    #[error("cannot {action} the fingerprint key file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read or store the shared fingerprint key in Redis ({key}): {source}")]
    Redis {
        key: String,
        source: redis::RedisError,
    },
    #[error(
        "the configured fingerprint key (WARDEN_HASH_KEY, id {configured:016x}) differs from the \
         key this group shares in Redis under {key} (id {shared:016x}); every instance of a group \
         must use the same key, or profiles from one look new to another"
    )]
    Mismatch {
        key: String,
        configured: u64,
        shared: u64,
    },
}

impl HashKey {
    /// The key of offline tools (`warden replay`, benches, tests) when none
    /// is configured: they keep no state an attacker could meet, and their
    /// figures must be repeatable. `warden run` never uses it.
    pub const OFFLINE: HashKey = HashKey(*b"warden-offline-k");

    /// A fresh key from the operating system's generator.
    pub fn generate() -> Self {
        let mut k = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// Parses 32 hex digits; `origin` names where they came from in errors.
    pub fn parse(hex_key: &str, origin: &str) -> Result<Self, HashKeyError> {
        let malformed = || HashKeyError::Malformed {
            origin: origin.to_owned(),
        };
        let bytes = hex::decode(hex_key.trim()).map_err(|_| malformed())?;
        let k: [u8; 16] = bytes.try_into().map_err(|_| malformed())?;
        Ok(Self(k))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// The two SipHash key words.
    pub fn halves(&self) -> (u64, u64) {
        let (a, b) = self.0.split_at(8);
        (
            u64::from_le_bytes(a.try_into().unwrap_or_default()),
            u64::from_le_bytes(b.try_into().unwrap_or_default()),
        )
    }

    /// A public id of the key (a hash of it): recorded in checkpoints and
    /// logs to tell keys apart without revealing them.
    pub fn id(&self) -> u64 {
        let d = Sha256::new()
            .chain_update(b"warden-hash-key-id\0")
            .chain_update(self.0)
            .finalize();
        u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
    }

    /// The configured key (`WARDEN_HASH_KEY`, `detector.hash-key`).
    fn configured(hex_key: &str) -> Result<Self, HashKeyError> {
        Self::parse(hex_key, "WARDEN_HASH_KEY (detector.hash-key)")
    }

    /// The key a deployment whose state lives in files already has: the
    /// configured one, else the one in `data_dir`; `None` when neither is
    /// (nothing is generated).
    pub fn existing(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> Result<Option<Self>, HashKeyError> {
        if let Some(hex_key) = configured {
            return Self::configured(hex_key).map(Some);
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(HashKeyError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// The key of a deployment whose state lives in files: the configured
    /// one, else the one generated into `data_dir` on first start.
    pub fn for_data_dir(configured: Option<&str>, data_dir: &Path) -> Result<Self, HashKeyError> {
        if let Some(key) = Self::existing(configured, data_dir)? {
            return Ok(key);
        }
        let path = data_dir.join(KEY_FILE);
        let io = |action| {
            let path = path.clone();
            move |source| HashKeyError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(data_dir).map_err(io("create the directory of"))?;
        let key = Self::generate();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&path).map_err(io("create"))?;
        f.write_all(key.to_hex().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io("write"))?;
        tracing::info!(path = %path.display(), key_id = %format!("{:016x}", key.id()), "Generated the fingerprint key of this deployment.");
        Ok(key)
    }

    /// The key a Redis group shares: the first instance to start stores
    /// its own (configured or generated) with `SET NX`; the others take it.
    /// A configured key that differs from the stored one is an error.
    pub fn for_redis(
        configured: Option<&str>,
        conn: &mut redis::Connection,
        prefix: &str,
    ) -> Result<Self, HashKeyError> {
        let rkey = format!("{prefix}:hash-key");
        let redis_err = |source| HashKeyError::Redis {
            key: rkey.clone(),
            source,
        };
        let mine = match configured {
            Some(hex_key) => Self::configured(hex_key)?,
            None => Self::generate(),
        };
        let _: bool = redis::cmd("SET")
            .arg(&rkey)
            .arg(mine.to_hex())
            .arg("NX")
            .query::<Option<String>>(conn)
            .map(|r| r.is_some())
            .map_err(redis_err)?;
        let stored: String = redis::cmd("GET")
            .arg(&rkey)
            .query(conn)
            .map_err(redis_err)?;
        Self::shared(&stored, configured, &rkey)
    }

    /// The key stored in Redis key `rkey`, checked against the configured
    /// one when there is one: a group uses one key or none.
    pub fn shared(
        stored: &str,
        configured: Option<&str>,
        rkey: &str,
    ) -> Result<Self, HashKeyError> {
        let shared = Self::parse(stored, &format!("Redis key {rkey}"))?;
        match configured.map(Self::configured).transpose()? {
            Some(mine) if mine != shared => Err(HashKeyError::Mismatch {
                key: rkey.to_owned(),
                configured: mine.id(),
                shared: shared.id(),
            }),
            _ => Ok(shared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_rejects_bad_keys() {
        let k = HashKey::generate();
        assert_eq!(HashKey::parse(&k.to_hex(), "t").unwrap(), k);
        for bad in ["", "57415244454e2121", "zz", &"0".repeat(34)] {
            let e = HashKey::parse(bad, "WARDEN_HASH_KEY")
                .unwrap_err()
                .to_string();
            assert!(e.contains("WARDEN_HASH_KEY") && e.contains("32 hex"), "{e}");
        }
        assert_ne!(HashKey::generate(), HashKey::generate());
    }

    #[test]
    fn debug_and_id_never_show_the_key() {
        let k = HashKey::generate();
        let shown = format!("{k:?}");
        assert!(!shown.contains(&k.to_hex()), "{shown}");
        assert!(!format!("{:016x}", k.id()).contains(&k.to_hex()[..16]));
    }

    #[test]
    fn data_dir_key_is_generated_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = HashKey::for_data_dir(None, dir.path()).unwrap();
        let b = HashKey::for_data_dir(None, dir.path()).unwrap();
        assert_eq!(a, b, "the generated key is kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = HashKey::generate();
        let c = HashKey::for_data_dir(Some(&other.to_hex()), dir.path()).unwrap();
        assert_eq!(c, other, "a configured key wins");
    }
}
