//! The rejects file of HTTP ingest, written by its own thread.
//!
//! Handlers hand each request's rejected items over a bounded queue and
//! wait (asynchronously) until the thread has written and flushed them, so
//! a slow disk pushes back on ingest without blocking a runtime thread,
//! and no dead letter of an answered request is lost.

use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::ingest::decode::DecodeError;
use crate::ingest::rejects::RejectSink;

/// One rejected item of a request.
pub struct Rejected {
    /// Position of the item in its request.
    pub index: u64,
    /// The start of the item (the sink keeps at most its sample size).
    pub sample: Vec<u8>,
    pub error: DecodeError,
}

/// Batches queued before handlers wait.
const DEPTH: usize = 64;

/// The handlers' end of the rejects writer.
pub struct RejectWriter {
    tx: mpsc::Sender<(Vec<Rejected>, oneshot::Sender<()>)>,
}

impl RejectWriter {
    /// Starts the thread that owns `sink`. It ends when the writer is
    /// dropped, after writing what was queued.
    pub fn start(mut sink: RejectSink) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (tx, mut rx) = mpsc::channel::<(Vec<Rejected>, oneshot::Sender<()>)>(DEPTH);
        let thread = std::thread::Builder::new()
            .name("warden-rejects".to_owned())
            .spawn(move || {
                while let Some((batch, done)) = rx.blocking_recv() {
                    let written = batch
                        .iter()
                        .try_for_each(|r| sink.reject("http", r.index, &r.sample, &r.error))
                        .and_then(|()| sink.flush());
                    if let Err(e) = written {
                        tracing::error!(error = %e, "Cannot write the rejects file.");
                    }
                    let _ = done.send(());
                }
            })?;
        Ok((Self { tx }, thread))
    }

    /// Writes one request's rejects, waiting (without blocking the
    /// runtime) until they are flushed.
    pub async fn write(&self, batch: Vec<Rejected>) {
        if batch.is_empty() {
            return;
        }
        let (done, written) = oneshot::channel();
        if self.tx.send((batch, done)).await.is_err() || written.await.is_err() {
            tracing::error!("Rejects writer stopped; rejected items were not written.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode::decode_bytes;

    #[tokio::test]
    async fn a_written_batch_is_on_disk_when_write_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.jsonl");
        let sink = RejectSink::append(Some(&path), 8).unwrap();
        let (writer, thread) = RejectWriter::start(sink).unwrap();
        let raw = br#"{"event_id":5}"#;
        let error = decode_bytes(raw, 1024).unwrap_err();
        let batch = vec![
            Rejected {
                index: 3,
                sample: raw.to_vec(),
                error: error.clone(),
            },
            Rejected {
                index: 7,
                sample: raw.to_vec(),
                error,
            },
        ];
        writer.write(batch).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[1]["line"], 7);
        assert_eq!(lines[0]["field"], "event_id");
        // The sample is cut to the sink's size.
        assert_eq!(lines[0]["sample"], r#"{"event_"#);
        drop(writer);
        thread.join().unwrap();
    }
}
