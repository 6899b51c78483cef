//! The audit log: append-only JSON Lines of everything Warden does that
//! acts (decisions that quarantine, outbound calls and their outcomes,
//! releases). Each record carries the SHA-256 of the previous one, so
//! editing, removing or reordering any line breaks the chain, and
//! `warden audit verify FILE` says where.
//!
//! A record is `{"seq","ts","kind","body","prev","hash"}`, where `hash` is
//! SHA-256 over `prev`, a newline, and the record's `seq`, `ts`, `kind` and
//! `body` serialised as JSON (object keys sorted, so the bytes hashed are
//! the same when the line is read back).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Broken {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// The hashed part of a record.
#[derive(Debug, Serialize, Deserialize)]
struct Content {
    seq: u64,
    ts: String,
    kind: String,
    body: Value,
}

/// One line of the log.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    seq: u64,
    ts: String,
    kind: String,
    body: Value,
    prev: String,
    hash: String,
}

fn digest(prev: &str, c: &Content) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    // Values serialise with sorted keys: the same bytes when read back.
    h.update(serde_json::to_vec(c).expect("audit content serialises"));
    hex::encode(h.finalize())
}

/// An open audit log, continuing the chain already in the file.
pub struct AuditLog {
    path: PathBuf,
    file: File,
    seq: u64,
    prev: String,
}

impl AuditLog {
    /// Opens (or creates) `path`, checking the existing chain first: a log
    /// that was tampered with is not silently extended.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        drop_torn_tail(path)?;
        let (seq, prev) = if path.exists() {
            let v = verify(path)?;
            (v.records, v.last_hash)
        } else {
            (0, GENESIS.to_owned())
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError::Io {
                action: "open",
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            file,
            seq,
            prev,
        })
    }

    /// Appends one record and flushes it to the file.
    pub fn append(&mut self, kind: &str, body: Value) -> Result<(), AuditError> {
        self.write(kind, body)?;
        self.sync()
    }

    /// Makes every record written so far durable.
    pub fn sync(&mut self) -> Result<(), AuditError> {
        self.file.sync_data().map_err(|source| AuditError::Io {
            action: "sync",
            path: self.path.clone(),
            source,
        })
    }

    /// Appends one record without waiting for the disk (see [`sync`]).
    ///
    /// [`sync`]: AuditLog::sync
    pub fn write(&mut self, kind: &str, body: Value) -> Result<(), AuditError> {
        let content = Content {
            seq: self.seq + 1,
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind: kind.to_owned(),
            body,
        };
        let hash = digest(&self.prev, &content);
        let record = Record {
            seq: content.seq,
            ts: content.ts,
            kind: content.kind,
            body: content.body,
            prev: std::mem::take(&mut self.prev),
            hash: hash.clone(),
        };
        let mut line = serde_json::to_vec(&record).expect("audit record serialises");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|source| AuditError::Io {
                action: "append to",
                path: self.path.clone(),
                source,
            })?;
        self.seq = record.seq;
        self.prev = hash;
        Ok(())
    }
}

/// A crash mid-append leaves a last line without its newline: that record
/// was never complete, so it is cut off (and said so) rather than keeping
/// Warden from starting. Anything else that does not verify still does.
fn drop_torn_tail(path: &Path) -> Result<(), AuditError> {
    let io = |action: &'static str| {
        move |source| AuditError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("read")(e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("open"))?;
    f.set_len(keep as u64).map_err(io("truncate"))?;
    f.sync_all().map_err(io("sync"))?;
    tracing::warn!(path = %path.display(), bytes = bytes.len() - keep, "Cut off a torn last audit record (a crash mid-write).");
    Ok(())
}

enum Op {
    Record(String, Value),
    Flush(std::sync::mpsc::Sender<()>),
}

/// The audit log behind its own thread: callers hand records over and go
/// on; the thread writes whatever has queued up and syncs once per batch
/// (group commit), so a burst of quarantines costs one fsync, not one per
/// record, and nobody on the response path waits for the disk.
#[derive(Clone)]
pub struct AuditWriter {
    tx: std::sync::mpsc::Sender<Op>,
}

impl AuditWriter {
    pub fn start(mut log: AuditLog) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("warden-audit".to_owned())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Take what has queued up, bounded so a flood still syncs.
                    let mut batch = vec![first];
                    while batch.len() < 1024 {
                        match rx.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                    let mut acks = Vec::new();
                    for op in batch {
                        match op {
                            Op::Record(kind, body) => {
                                if let Err(e) = log.write(&kind, body) {
                                    tracing::error!(error = %e, "Cannot append to the audit log.");
                                }
                            }
                            Op::Flush(ack) => acks.push(ack),
                        }
                    }
                    if let Err(e) = log.sync() {
                        tracing::error!(error = %e, "Cannot sync the audit log.");
                    }
                    for ack in acks {
                        let _ = ack.send(());
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Queues one record.
    pub fn record(&self, kind: &str, body: Value) {
        if self.tx.send(Op::Record(kind.to_owned(), body)).is_err() {
            tracing::error!("Audit writer stopped; a record was not written.");
        }
    }

    /// Returns once everything queued before is on disk.
    pub fn flush(&self) {
        let _ = self.flush_begin().recv();
    }

    /// Asks for everything queued before to be made durable; the answer
    /// comes on the returned channel (or it closes), so that the caller
    /// can sync something else meanwhile.
    pub fn flush_begin(&self) -> std::sync::mpsc::Receiver<()> {
        let (ack, done) = std::sync::mpsc::channel();
        let _ = self.tx.send(Op::Flush(ack));
        done
    }
}

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub last_hash: String,
}

/// Checks every link of the chain; the error names the first bad line.
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let f = File::open(path).map_err(|source| AuditError::Io {
        action: "open",
        path: path.to_owned(),
        source,
    })?;
    let broken = |line: usize, reason: String| AuditError::Broken {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut prev = GENESIS.to_owned();
    let mut seq = 0u64;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| broken(n, format!("unreadable: {e}")))?;
        let r: Record = serde_json::from_str(&line)
            .map_err(|e| broken(n, format!("not an audit record: {e}")))?;
        if r.seq != seq + 1 {
            return Err(broken(
                n,
                format!(
                    "sequence {} follows {seq}: a record is missing or moved",
                    r.seq
                ),
            ));
        }
        if r.prev != prev {
            return Err(broken(n, "does not link to the previous record".to_owned()));
        }
        let content = Content {
            seq: r.seq,
            ts: r.ts,
            kind: r.kind,
            body: r.body,
        };
        if digest(&prev, &content) != r.hash {
            return Err(broken(
                n,
                "content does not match its hash: the record was altered".to_owned(),
            ));
        }
        seq = r.seq;
        prev = r.hash;
    }
    Ok(Verified {
        records: seq,
        last_hash: prev,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn write(path: &Path, n: usize) {
        let mut log = AuditLog::open(path).unwrap();
        for i in 0..n {
            log.append(
                "decision",
                json!({"event_id": format!("e{i}"), "score": 21.5, "z": 1, "a": [1, 2]}),
            )
            .unwrap();
        }
    }

    #[test]
    fn chain_verifies_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, 3);
        write(&path, 2); // a restart continues the chain
        let v = verify(&path).unwrap();
        assert_eq!(v.records, 5);
    }

    #[test]
    fn tampering_is_detected_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, 4);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        let altered = text.replace("\"e2\"", "\"e9\"");
        std::fs::write(&path, altered).unwrap();
        let e = verify(&path).unwrap_err().to_string();
        assert!(e.contains(":3:") && e.contains("altered"), "{e}");

        let removed = [lines[0], lines[1], lines[3]].join("\n") + "\n";
        std::fs::write(&path, removed).unwrap();
        let e = verify(&path).unwrap_err().to_string();
        assert!(e.contains(":3:") && e.contains("missing"), "{e}");

        // A broken log is not extended.
        assert!(AuditLog::open(&path).is_err());
    }

    #[test]
    fn the_writer_thread_keeps_the_chain_and_flushes_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let w = AuditWriter::start(AuditLog::open(&path).unwrap()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        w.record("outbound", json!({"thread": t, "i": i}));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        w.flush();
        assert_eq!(verify(&path).unwrap().records, 1000);
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, 3);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"seq\":4,\"ts\":\"20");
        std::fs::write(&path, text).unwrap();
        assert!(verify(&path).is_err());
        write(&path, 1);
        assert_eq!(verify(&path).unwrap().records, 4);
    }
}

#[cfg(test)]
mod float_tests {
    use super::*;

    #[test]
    fn floats_survive_the_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        for i in 0..200 {
            let x = 30.12f32 + i as f32 * 0.37;
            log.append(
                "decision",
                serde_json::json!({"score": x, "bits": [x / 3.0, 1e-7 * x as f64]}),
            )
            .unwrap();
        }
        assert_eq!(verify(&path).unwrap().records, 200);
    }
}
