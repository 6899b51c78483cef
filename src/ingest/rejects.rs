//! The dead-letter sink of a file or stream source: every rejected input is
//! counted per kind of fault, logged once per kind, and written with its
//! reason and location to a JSON Lines rejects file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::decode::{DecodeError, DecodeErrorKind};

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
        })
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
            let cut = &raw[..raw.len().min(self.sample_bytes)];
            let sample = String::from_utf8_lossy(cut);
            let message = err.to_string();
            let rec = RejectRecord {
                source,
                line,
                kind: err.kind.as_str(),
                field: err.field,
                error: &message,
                sample: &sample,
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
