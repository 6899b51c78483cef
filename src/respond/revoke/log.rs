//! The local revocation log: enforce mode with no broker configured
//! appends what to revoke to a JSON Lines file a human works through.

use serde::Serialize;

use crate::config::LogRevokerConfig;
use crate::respond::credential::Credential;
use crate::respond::incident::{now_rfc3339, Quarantine};
use crate::respond::retry::Attempt;

/// One line of the log.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    pub ts: String,
    pub quarantine: &'a str,
    pub agent_id: &'a str,
    pub agent_instance: Option<&'a str>,
    /// This file is the embedded default's revocation queue: it keeps the
    /// value a human must revoke.
    pub credential_id: Option<&'a str>,
    pub credential: Option<&'a Credential>,
    pub note: &'static str,
}

/// Appends the line for `credential` of `q`; a write that fails is
/// retried (a full disk may clear).
pub async fn append(
    l: &LogRevokerConfig,
    q: &Quarantine,
    credential: Option<&str>,
    shown: Option<&Credential>,
) -> Attempt {
    let line = Line {
        ts: now_rfc3339(),
        quarantine: &q.id,
        agent_id: &q.agent_id,
        agent_instance: q.agent_instance.as_deref(),
        credential_id: credential,
        credential: shown,
        note: "no credential broker configured: revoke this credential by hand",
    };
    let mut bytes = match serde_json::to_vec(&line) {
        Ok(b) => b,
        Err(e) => return Attempt::Refused(format!("cannot encode the revocation line: {e}")),
    };
    bytes.push(b'\n');
    let path = l.path.clone();
    // Its fsync takes milliseconds on a disk the broker also writes, and
    // the runtime's threads run the sources: a storm of revocations must
    // not stall ingest.
    let written = tokio::task::spawn_blocking(move || append_line(&path, &bytes))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match written {
        Ok(()) => Attempt::Done,
        Err(e) => Attempt::Retry {
            error: format!("cannot append to {}: {e}", l.path.display()),
            after: None,
        },
    }
}

fn append_line(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    // It holds raw credentials: the owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}
