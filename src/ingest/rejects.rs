//! The dead-letter sink of a file or stream source: every rejected input is
//! counted per kind of fault, logged once per kind, and written with its
//! reason and location to a JSON Lines rejects file. A rejected event's
//! `credential_id` may be a bearer token: the file gets its fingerprint.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::decode::{DecodeError, DecodeErrorKind};
use crate::respond::credential::{redact_event, Fingerprinter};

/// One rejects-file record.
#[derive(Debug, Serialize)]
struct RejectRecord<'a> {
    source: &'a str,
    line: u64,
    kind: &'static str,
    field: Option<&'static str>,
    error: &'a str,
    /// The start of the input, lossily decoded (bytes beyond are cut).
    sample: &'a str,
}

/// Counts rejects by kind and writes them to an optional file.
pub struct RejectSink {
    out: Option<(PathBuf, BufWriter<File>)>,
    counts: [u64; DecodeErrorKind::ALL.len()],
    sample_bytes: usize,
    /// Replaces `credential_id` values in samples; `None` keeps them (a
    /// replay of files the user already holds).
    fingerprints: Option<Fingerprinter>,
}

impl RejectSink {
    pub fn new(path: Option<&Path>, sample_bytes: usize) -> io::Result<Self> {
        let out = match path {
            Some(p) => Some((p.to_owned(), BufWriter::new(File::create(p)?))),
            None => None,
        };
        Ok(Self {
            out,
            counts: [0; DecodeErrorKind::ALL.len()],
            sample_bytes,
            fingerprints: None,
        })
    }

    /// Writes `credential_id` values as their fingerprints.
    pub fn with_fingerprints(mut self, fingerprints: Fingerprinter) -> Self {
        self.fingerprints = Some(fingerprints);
        self
    }

    /// Records one rejected input found at `source:line`.
    pub fn reject(
        &mut self,
        source: &str,
        line: u64,
        raw: &[u8],
        err: &DecodeError,
    ) -> io::Result<()> {
        let i = DecodeErrorKind::ALL
            .iter()
            .position(|k| *k == err.kind)
            .unwrap_or(0);
        if self.counts[i] == 0 {
            tracing::warn!(
                source,
                line,
                kind = err.kind.as_str(),
                error = %err,
                "Rejected an event; further rejects of this kind are counted, not logged."
            );
        }
        self.counts[i] += 1;
        if let Some((_, w)) = &mut self.out {
            // Redacted whole, then cut: a cut must not split a value so
            // that half of it escapes the redaction.
            let text = String::from_utf8_lossy(raw);
            let text = match &self.fingerprints {
                Some(fp) => redact_event(&text, |c| fp.fingerprint(c)).into(),
                None => text,
            };
            let sample = cut_at_char(&text, self.sample_bytes);
            let message = err.to_string();
            let rec = RejectRecord {
                source,
                line,
                kind: err.kind.as_str(),
                field: err.field,
                error: &message,
                sample,
            };
            serde_json::to_writer(&mut *w, &rec)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Like [`new`](Self::new), but appends to an existing file (a service
    /// keeps its dead letters across restarts).
    pub fn append(path: Option<&Path>, sample_bytes: usize) -> io::Result<Self> {
        let out = match path {
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?;
                Some((p.to_owned(), BufWriter::new(f)))
            }
            None => None,
        };
        Ok(Self {
            out,
            counts: [0; DecodeErrorKind::ALL.len()],
            sample_bytes,
            fingerprints: None,
        })
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Non-zero counts by kind.
    pub fn counts(&self) -> impl Iterator<Item = (DecodeErrorKind, u64)> + '_ {
        DecodeErrorKind::ALL
            .iter()
            .zip(self.counts)
            .filter(|(_, c)| *c > 0)
            .map(|(k, c)| (*k, c))
    }

    pub fn path(&self) -> Option<&Path> {
        self.out.as_ref().map(|(p, _)| p.as_path())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some((_, w)) => w.flush(),
            None => Ok(()),
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes, on a char boundary.
fn cut_at_char(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode::decode_bytes;

    #[test]
    fn rejected_events_keep_no_credential() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.jsonl");
        let fp = Fingerprinter::new(b"k");
        let mut sink = RejectSink::append(Some(&path), 64)
            .unwrap()
            .with_fingerprints(fp.clone());
        let token = "hvs.CAESIJ-planted-token-0123456789";
        for line in [
            // Valid JSON, rejected for a missing field.
            format!(r#"{{"event_id":"e1","credential_id":"{token}"}}"#),
            // Not JSON at all.
            format!(r#"{{"event_id":"e2", "credential_id": "{token}", nope"#),
        ] {
            let err = decode_bytes(line.as_bytes(), 4096).unwrap_err();
            sink.reject("http", 1, line.as_bytes(), &err).unwrap();
        }
        sink.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(!text.contains("planted"), "{text}");
        assert!(!text.contains(&token[..20]), "{text}");
        assert_eq!(text.matches(&fp.fingerprint(token)).count(), 2, "{text}");
    }
}
