//! The embedded registry's journal: append-only files instead of one
//! fsynced file per quarantine and per outcome.
//!
//! `<data-dir>/quarantines/journal.jsonl` holds one entry a line: the
//! newest record of an open quarantine (`save`), a change to its
//! credentials and revocations since (`amend`: what the revocation path
//! writes, a few hundred bytes where the incident is tens of kilobytes),
//! or a quarantine released (`close`; its record moves to
//! `released/<id>.json`, so a start-up reads only what is open however
//! long the history grows). The revocation
//! queue, the only place raw credentials are kept, is apart in
//! `revocations.jsonl` (mode 0600): a credential `queue`d or `dequeue`d;
//! emptied as soon as nothing is queued, so a settled deployment keeps no
//! raw credential on disk. Writes are buffered; [`commit`] makes everything
//! written so far durable (the queue first), one fsync per file for a
//! whole burst of incidents (group commit). The responder commits before
//! it calls anything out, so what it acts on is always recorded.
//!
//! On start the journal is read from the top; the newest record of each
//! quarantine wins, with the amends written after it applied in order. A last line without its newline was torn by a crash
//! before its commit returned (nothing was called out for it) and is cut
//! off. Once the file is several times larger than what is live, it is
//! rewritten with only the live entries (compacted) and renamed into place.
//!
//! [`commit`]: Journal::commit

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::credential::SecretString;
use super::incident::{Amend, Quarantine};
use super::registry::RegistryError;

/// The journal is compacted once it holds more than this many bytes...
const COMPACT_MIN_BYTES: u64 = 16 << 20;
/// ...and more than this many times the bytes still live.
const COMPACT_RATIO: u64 = 4;

/// One line, as read back.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Entry {
    Save {
        q: Box<Quarantine>,
    },
    Amend {
        a: Box<Amend>,
    },
    Queue {
        id: String,
        n: usize,
        credential: String,
    },
    Dequeue {
        id: String,
        n: usize,
    },
    Close {
        id: String,
    },
}

fn amend_line(a: &Amend) -> Vec<u8> {
    let mut line = Vec::with_capacity(512);
    line.extend_from_slice(br#"{"op":"amend","a":"#);
    serde_json::to_writer(&mut line, a).expect("amend serialises");
    line.extend_from_slice(b"}\n");
    line
}

/// An append-only file, written through a buffer.
struct Appender {
    path: PathBuf,
    file: BufWriter<File>,
    /// Bytes in the file, buffered ones included.
    len: u64,
    /// Written since the last commit.
    dirty: bool,
}

impl Appender {
    /// Opens `path`, cutting off a torn last line; returns its lines.
    fn open(path: PathBuf) -> Result<(Self, Vec<u8>), RegistryError> {
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io("read", &path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read", &path)(e)),
        }
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if keep < bytes.len() {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io("open", &path))?;
            f.set_len(keep as u64).map_err(io("truncate", &path))?;
            f.sync_all().map_err(io("sync", &path))?;
            tracing::warn!(path = %path.display(), bytes = bytes.len() - keep,
                "Cut off a torn last journal entry (a crash before its commit).");
            bytes.truncate(keep);
        }
        let file = BufWriter::with_capacity(1 << 20, open_append(&path)?);
        let me = Self {
            path,
            file,
            len: keep as u64,
            dirty: false,
        };
        Ok((me, bytes))
    }

    fn append(&mut self, line: &[u8]) -> Result<u64, RegistryError> {
        let at = self.len;
        self.file
            .write_all(line)
            .map_err(io("append to", &self.path))?;
        self.len += line.len() as u64;
        self.dirty = true;
        Ok(at)
    }

    fn commit(&mut self) -> Result<(), RegistryError> {
        if !self.dirty {
            return Ok(());
        }
        self.file.flush().map_err(io("append to", &self.path))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(io("sync", &self.path))?;
        self.dirty = false;
        Ok(())
    }

    /// Empties the file in place: one fsync, where a rewrite through a
    /// temporary file costs two and a directory sync. Truncation is atomic
    /// (the file is whole or empty), so a crash loses nothing still queued.
    fn truncate(&mut self) -> Result<(), RegistryError> {
        self.file.flush().map_err(io("append to", &self.path))?;
        let f = self.file.get_ref();
        f.set_len(0).map_err(io("truncate", &self.path))?;
        f.sync_data().map_err(io("sync", &self.path))?;
        self.len = 0;
        self.dirty = false;
        Ok(())
    }

    /// Replaces the file by `lines`, through a renamed temporary file: a
    /// crash leaves either the old file or the new one.
    fn rewrite(&mut self, lines: impl Iterator<Item = Vec<u8>>) -> Result<(), RegistryError> {
        self.file.flush().map_err(io("append to", &self.path))?;
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut out = BufWriter::new(opts.open(&tmp).map_err(io("create", &tmp))?);
        let mut len = 0u64;
        for line in lines {
            out.write_all(&line).map_err(io("write", &tmp))?;
            len += line.len() as u64;
        }
        let f = out
            .into_inner()
            .map_err(|e| io("write", &tmp)(e.into_error()))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io("rename into", &self.path))?;
        if let Some(d) = self.path.parent().and_then(|d| File::open(d).ok()) {
            let _ = d.sync_all();
        }
        self.file = BufWriter::with_capacity(1 << 20, open_append(&self.path)?);
        self.len = len;
        self.dirty = false;
        Ok(())
    }
}

/// Where a line is in the file.
#[derive(Clone, Copy)]
struct Span {
    offset: u64,
    len: u64,
}

/// Where an open quarantine's newest record and the amends written after
/// it are.
#[derive(Clone)]
struct Record {
    base: Span,
    version: u64,
    amends: Vec<Span>,
}

impl Record {
    fn new(base: Span, version: u64) -> Self {
        Self {
            base,
            version,
            amends: Vec::new(),
        }
    }

    fn len(&self) -> u64 {
        self.base.len + self.amends.iter().map(|s| s.len).sum::<u64>()
    }
}

pub struct Journal {
    dir: PathBuf,
    records: Appender,
    queue_file: Appender,
    open: HashMap<String, Record>,
    queue: HashMap<(String, usize), SecretString>,
    /// The records hold a write that no copy in the queue covers.
    records_due: bool,
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RegistryError + 'a {
    move |source| RegistryError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn open_append(path: &Path) -> Result<File, RegistryError> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true).read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // It holds the raw credentials of pending revocations.
        opts.mode(0o600);
    }
    opts.open(path).map_err(io("open", path))
}

impl Journal {
    /// Opens the journal under `dir` (the `quarantines` directory),
    /// replaying it.
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        let (records, bytes) = Appender::open(dir.join("journal.jsonl"))?;
        let (queue_file, queued) = Appender::open(dir.join("revocations.jsonl"))?;
        let mut open: HashMap<String, Record> = HashMap::new();
        let mut queue = HashMap::new();
        // The queue's copies of amends whose originals a crash may have
        // kept from the records (see `amend_queued`).
        let mut copies: Vec<(String, Vec<u8>)> = Vec::new();
        for (path, bytes) in [(&records.path, &bytes), (&queue_file.path, &queued)] {
            let in_queue = *path == queue_file.path;
            let mut offset = 0u64;
            for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
                let span_len = line.len() as u64;
                match serde_json::from_slice::<Entry>(line) {
                    Ok(Entry::Save { q }) => {
                        let newer = open.get(&q.id).is_none_or(|r| q.version >= r.version);
                        if newer {
                            let span = Span {
                                offset,
                                len: span_len,
                            };
                            open.insert(q.id, Record::new(span, q.version));
                        }
                    }
                    Ok(Entry::Amend { a }) if in_queue => copies.push((a.id, line.to_vec())),
                    Ok(Entry::Amend { a }) => {
                        if let Some(r) = open.get_mut(&a.id) {
                            r.amends.push(Span {
                                offset,
                                len: span_len,
                            });
                        }
                    }
                    Ok(Entry::Queue { id, n, credential }) => {
                        queue.insert((id, n), SecretString::new(credential));
                    }
                    Ok(Entry::Dequeue { id, n }) => {
                        queue.remove(&(id, n));
                    }
                    Ok(Entry::Close { id }) => {
                        open.remove(&id);
                    }
                    // One bad line must not hide the others.
                    Err(e) => tracing::error!(path = %path.display(), line = i + 1, error = %e,
                        "Skipping an unreadable journal entry."),
                }
                offset += span_len;
            }
        }
        let mut me = Self {
            dir: dir.to_owned(),
            records,
            queue_file,
            open,
            queue,
            records_due: false,
        };
        // Applied again after their originals: an amend no newer than the
        // incident is skipped, one of its version applies idempotently.
        // A copy whose original the records kept is not appended again, so
        // restarts while revocations stay queued do not grow the journal.
        let mut recopied = false;
        for (id, line) in copies {
            let kept = me.open.get(&id).is_some_and(|r| {
                r.amends.iter().any(|s| {
                    bytes.get(s.offset as usize..(s.offset + s.len) as usize)
                        == Some(line.as_slice())
                })
            });
            if kept {
                continue;
            }
            match me.append_amend(&id, &line) {
                Ok(()) => recopied = true,
                Err(RegistryError::NotOpen(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if recopied {
            me.records.commit()?;
        }
        me.migrate_files()?;
        Ok(me)
    }

    /// Moves what an earlier release kept in one file per quarantine
    /// (`<id>.json`) and per queued credential (`<id>.<n>.revoke`,
    /// `<id>.revoke`) into the journal, then removes those files. A crash
    /// in between only migrates them again.
    fn migrate_files(&mut self) -> Result<(), RegistryError> {
        let entries = std::fs::read_dir(&self.dir).map_err(io("list", &self.dir))?;
        let mut moved = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if let Some(id) = name.strip_suffix(".json") {
                if !super::registry::is_id(id) {
                    continue;
                }
                let bytes = std::fs::read(&path).map_err(io("read", &path))?;
                match serde_json::from_slice::<Quarantine>(&bytes) {
                    Ok(q) => {
                        let newer = self.open.get(&q.id).is_none_or(|r| q.version > r.version);
                        if q.state.is_open() && newer {
                            self.save(&q)?;
                        }
                    }
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "Skipping an unreadable quarantine.");
                        continue;
                    }
                }
                moved.push(path);
            } else if let Some(entry) = name.strip_suffix(".revoke") {
                let Some((id, n)) = super::registry::split_entry(entry, '.') else {
                    continue;
                };
                let raw = std::fs::read(&path).map_err(io("read", &path))?;
                let c = SecretString::new(String::from_utf8_lossy(&raw).into_owned());
                if !self.queue.contains_key(&(id.clone(), n)) {
                    self.queue_revocation(&id, n, &c)?;
                }
                moved.push(path);
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        self.commit()?;
        for path in &moved {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!(
            files = moved.len(),
            "Moved quarantine files into the registry journal."
        );
        Ok(())
    }

    /// Records `q` (durable at the next [`commit`](Self::commit)). A
    /// released one is written to `released/<id>.json` at once.
    pub fn save(&mut self, q: &Quarantine) -> Result<(), RegistryError> {
        if !q.state.is_open() {
            let path = self.dir.join("released").join(format!("{}.json", q.id));
            let json = serde_json::to_vec(q).expect("quarantine serialises");
            crate::state::write_atomic(&path, &json).map_err(|e| RegistryError::Io {
                action: "write",
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            if self.open.remove(&q.id).is_some() {
                let line = serde_json::to_vec(&serde_json::json!({"op": "close", "id": q.id}))
                    .expect("entry serialises");
                self.records.append(&[line.as_slice(), b"\n"].concat())?;
                self.records_due = true;
            }
            return Ok(());
        }
        let mut line = Vec::with_capacity(4096);
        line.extend_from_slice(br#"{"op":"save","q":"#);
        serde_json::to_writer(&mut line, q).expect("quarantine serialises");
        line.extend_from_slice(b"}\n");
        let offset = self.records.append(&line)?;
        self.records_due = true;
        let span = Span {
            offset,
            len: line.len() as u64,
        };
        self.open.insert(q.id.clone(), Record::new(span, q.version));
        Ok(())
    }

    /// Records a change to open quarantine `a.id`'s credentials and
    /// revocations (durable at the next commit). A quarantine the journal
    /// does not hold open has no record to amend: refused.
    pub fn amend(&mut self, a: &Amend) -> Result<(), RegistryError> {
        self.append_amend(&a.id, &amend_line(a))?;
        self.records_due = true;
        Ok(())
    }

    /// As [`amend`](Self::amend), with a copy in the revocation queue, so
    /// that [`commit_for_callout`](Self::commit_for_callout) makes it
    /// durable with the credential it lists: the amend of a credential
    /// about to be revoked, queued just before.
    pub fn amend_queued(&mut self, a: &Amend) -> Result<(), RegistryError> {
        let line = amend_line(a);
        self.append_amend(&a.id, &line)?;
        self.queue_file.append(&line)?;
        Ok(())
    }

    fn append_amend(&mut self, id: &str, line: &[u8]) -> Result<(), RegistryError> {
        if !self.open.contains_key(id) {
            return Err(RegistryError::NotOpen(id.to_owned()));
        }
        let offset = self.records.append(line)?;
        if let Some(r) = self.open.get_mut(id) {
            r.amends.push(Span {
                offset,
                len: line.len() as u64,
            });
        }
        Ok(())
    }

    /// Makes everything written so far durable: one fsync per file for
    /// all of it, the queue before the records that list its credentials.
    pub fn commit(&mut self) -> Result<(), RegistryError> {
        let empty = self.queue.is_empty() && self.queue_file.len > 0;
        let bloated = self.queue_file.len > COMPACT_MIN_BYTES / 16
            && self.queue_file.len > COMPACT_RATIO * self.queued_bytes();
        if empty || bloated {
            // The queue's copies of amends go with it: their originals in
            // the records come first.
            self.records.commit()?;
            self.records_due = false;
        }
        if empty {
            // Nothing left to revoke: no raw credential stays in the file.
            self.queue_file.truncate()?;
        } else if bloated {
            let lines: Vec<Vec<u8>> = self
                .queue
                .iter()
                .map(|((id, n), c)| queue_line(id, *n, c))
                .collect();
            self.queue_file.rewrite(lines.into_iter())?;
        }
        self.queue_file.commit()?;
        self.records.commit()?;
        self.records_due = false;
        let live: u64 = self.open.values().map(Record::len).sum();
        if self.records.len > COMPACT_MIN_BYTES && self.records.len > COMPACT_RATIO * live {
            self.compact()?;
        }
        Ok(())
    }

    /// Makes durable what a call out about to be made depends on: the
    /// queue alone when the records hold nothing else new but amends the
    /// queue has copies of ([`amend_queued`](Self::amend_queued)), so the
    /// revocation of a further credential waits for one fsync, not two.
    /// The records follow at the next [`commit`](Self::commit).
    pub fn commit_for_callout(&mut self) -> Result<(), RegistryError> {
        if self.records_due {
            return self.commit();
        }
        self.queue_file.commit()
    }

    /// Whether writes wait for the next [`commit`](Self::commit).
    pub fn uncommitted(&self) -> bool {
        self.records.dirty || self.queue_file.dirty
    }

    fn queued_bytes(&self) -> u64 {
        self.queue
            .iter()
            .map(|((id, _), c)| id.len() as u64 + c.expose().len() as u64 + 48)
            .sum()
    }

    /// Rewrites the records with only the newest of each open quarantine
    /// and its amends.
    fn compact(&mut self) -> Result<(), RegistryError> {
        let mut records: Vec<(String, Record)> = self
            .open
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        records.sort_by_key(|(_, r)| r.base.offset);
        let mut lines = Vec::with_capacity(records.len());
        let mut open = HashMap::with_capacity(records.len());
        let mut len = 0u64;
        for (id, r) in records {
            let mut moved = |span: Span, lines: &mut Vec<Vec<u8>>| -> Result<Span, RegistryError> {
                lines.push(self.read_span(span)?);
                let at = Span {
                    offset: len,
                    len: span.len,
                };
                len += span.len;
                Ok(at)
            };
            let base = moved(r.base, &mut lines)?;
            let mut amends = Vec::with_capacity(r.amends.len());
            for a in &r.amends {
                amends.push(moved(*a, &mut lines)?);
            }
            open.insert(
                id,
                Record {
                    base,
                    version: r.version,
                    amends,
                },
            );
        }
        let before = self.records.len;
        self.records.rewrite(lines.into_iter())?;
        self.open = open;
        tracing::info!(before, after = len, "Compacted the registry journal.");
        Ok(())
    }

    fn read_span(&mut self, span: Span) -> Result<Vec<u8>, RegistryError> {
        let path = &self.records.path;
        // A record still in the buffer is read back from the file.
        self.records.file.flush().map_err(io("append to", path))?;
        let mut f = File::open(path).map_err(io("open", path))?;
        f.seek(SeekFrom::Start(span.offset))
            .map_err(io("read", path))?;
        let mut buf = vec![0; span.len as usize];
        f.read_exact(&mut buf).map_err(io("read", path))?;
        Ok(buf)
    }

    fn read_open(&mut self, id: &str) -> Result<Option<Quarantine>, RegistryError> {
        let Some(r) = self.open.get(id).cloned() else {
            return Ok(None);
        };
        let path = self.records.path.display().to_string();
        let at = |span: Span| format!("{path}@{}", span.offset);
        let line = self.read_span(r.base)?;
        let mut q = match serde_json::from_slice::<Entry>(&line) {
            Ok(Entry::Save { q }) => *q,
            Ok(_) => return Ok(None),
            Err(source) => {
                return Err(RegistryError::Corrupt {
                    at: at(r.base),
                    source,
                })
            }
        };
        for span in r.amends {
            let line = self.read_span(span)?;
            match serde_json::from_slice::<Entry>(&line) {
                Ok(Entry::Amend { a }) => q.apply(*a).map_err(|reason| RegistryError::Amend {
                    at: at(span),
                    reason,
                })?,
                Ok(_) => {}
                Err(source) => {
                    return Err(RegistryError::Corrupt {
                        at: at(span),
                        source,
                    })
                }
            }
        }
        Ok(Some(q))
    }

    /// One quarantine by id: open ones from the journal, released ones
    /// from their file.
    pub fn get(&mut self, id: &str) -> Result<Option<Quarantine>, RegistryError> {
        if let Some(q) = self.read_open(id)? {
            return Ok(Some(q));
        }
        let path = self.dir.join("released").join(format!("{id}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| RegistryError::Corrupt {
                        at: path.display().to_string(),
                        source,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Every open quarantine, oldest first.
    pub fn open_quarantines(&mut self) -> Result<Vec<Quarantine>, RegistryError> {
        let ids: Vec<String> = self.open.keys().cloned().collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.read_open(&id) {
                Ok(Some(q)) => out.push(q),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "Skipping an unreadable quarantine."),
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(out)
    }

    pub fn queue_revocation(
        &mut self,
        id: &str,
        n: usize,
        credential: &SecretString,
    ) -> Result<(), RegistryError> {
        let line = queue_line(id, n, credential);
        self.queue_file.append(&line)?;
        self.queue.insert((id.to_owned(), n), credential.clone());
        Ok(())
    }

    pub fn queued_revocation(&self, id: &str, n: usize) -> Option<SecretString> {
        self.queue.get(&(id.to_owned(), n)).cloned()
    }

    pub fn queued_revocations(&self) -> Vec<(String, usize)> {
        let mut v: Vec<_> = self.queue.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn dequeue_revocation(&mut self, id: &str, n: usize) -> Result<(), RegistryError> {
        if self.queue.remove(&(id.to_owned(), n)).is_none() {
            return Ok(());
        }
        let line = serde_json::to_vec(&serde_json::json!({"op": "dequeue", "id": id, "n": n}))
            .expect("entry serialises");
        self.queue_file.append(&[line.as_slice(), b"\n"].concat())?;
        Ok(())
    }

    /// Removes released records last written before `cutoff`
    /// (`response.incident-retention`); returns how many. Open ones live
    /// in the journal and never expire; released ones left it at release.
    pub fn expire_released(&mut self, cutoff: std::time::SystemTime) -> Result<u64, RegistryError> {
        let dir = self.dir.join("released");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io("list", &dir)(e)),
        };
        let mut expired = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let ours = path
                .file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(super::registry::is_id)
                && path.extension().is_some_and(|e| e == "json");
            // Written once at release (and when a late alert outcome is
            // recorded): its modification time is its last update.
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
            if ours && old {
                match std::fs::remove_file(&path) {
                    Ok(()) => expired += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("remove", &path)(e)),
                }
            }
        }
        Ok(expired)
    }

    /// The revocation queue's file (for tests and operators).
    pub fn queue_path(&self) -> &Path {
        &self.queue_file.path
    }
}

fn queue_line(id: &str, n: usize, credential: &SecretString) -> Vec<u8> {
    let mut line = serde_json::to_vec(
        &serde_json::json!({"op": "queue", "id": id, "n": n, "credential": credential.expose()}),
    )
    .expect("entry serialises");
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Mode;
    use crate::respond::incident::{fixtures, State};

    fn quarantine(event: &str) -> Quarantine {
        Quarantine::open(
            &fixtures::flag(event, Mode::Enforce, 30.0),
            &[("vault".into(), None)],
            &["slack".into()],
            "w1",
        )
    }

    fn vault() -> [(String, Option<String>); 1] {
        [("vault".to_owned(), None)]
    }

    /// A journal holding one open enforce incident, opened by `event` with
    /// credential `n` and one revoker.
    fn agent_incident(event: &str, n: u32) -> (tempfile::TempDir, Journal, Quarantine) {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let q = Quarantine::open(&fixtures::other_session(event, n), &vault(), &[], "w1");
        j.save(&q).unwrap();
        (dir, j, q)
    }

    #[test]
    fn replays_the_newest_record_and_the_queue_after_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let mut a = quarantine("e1");
        let b = quarantine("e2");
        j.queue_revocation(&a.id, 0, &SecretString::new("tok-a"))
            .unwrap();
        j.save(&a).unwrap();
        j.save(&b).unwrap();
        a.rolled_up = 7;
        a.touch();
        j.save(&a).unwrap();
        j.queue_revocation(&b.id, 0, &SecretString::new("tok-b"))
            .unwrap();
        j.dequeue_revocation(&b.id, 0).unwrap();
        j.commit().unwrap();
        // A crash mid-append of an entry never committed.
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("journal.jsonl"))
            .unwrap();
        f.write_all(br#"{"op":"save","q":{"id":"#).unwrap();
        drop(f);
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.get(&a.id).unwrap().unwrap().rolled_up, 7);
        assert_eq!(j.open_quarantines().unwrap().len(), 2);
        assert_eq!(j.queued_revocations(), vec![(a.id.clone(), 0)]);
        assert_eq!(
            j.queued_revocation(&a.id, 0),
            Some(SecretString::new("tok-a"))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(j.queue_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Released: out of the journal, into its own file.
        a.state = State::Released;
        a.touch();
        j.save(&a).unwrap();
        j.commit().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.open_quarantines().unwrap().len(), 1);
        assert_eq!(j.get(&a.id).unwrap().unwrap().state, State::Released);
    }

    #[test]
    fn released_records_expire_open_ones_never() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let mut a = quarantine("e1");
        let b = quarantine("e2");
        j.save(&b).unwrap();
        a.state = State::Released;
        a.touch();
        j.save(&a).unwrap();
        j.commit().unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(j.expire_released(past).unwrap(), 0, "not old enough yet");
        assert!(j.get(&a.id).unwrap().is_some());
        let future = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        assert_eq!(j.expire_released(future).unwrap(), 1);
        assert_eq!(j.get(&a.id).unwrap(), None);
        assert_eq!(j.get(&b.id).unwrap().unwrap().id, b.id, "open: kept");
        assert_eq!(j.expire_released(future).unwrap(), 0);
    }

    #[test]
    fn amends_replay_onto_their_record_through_compaction_and_a_gap_is_refused() {
        use crate::respond::incident::Outcome;
        let (dir, mut j, mut q) = agent_incident("e1", 1);
        let revokers = vault();
        let saved = j.records.len;
        // A second credential, then its revocation's outcome: two amends.
        let mut second = fixtures::other_session("e2", 2);
        assert!(q.roll_in(&mut second));
        assert_eq!(q.add_credential(&second, &revokers), Some(1));
        j.amend(&q.amend(&[1], &[1])).unwrap();
        q.revocations[1].outcome = Outcome::Succeeded;
        q.revocations[1].attempts = 1;
        q.settle_state();
        q.touch();
        j.amend(&q.amend(&[1], &[1])).unwrap();
        j.commit().unwrap();
        assert!(
            j.records.len - saved < 2 * 1024,
            "two amends took {} bytes",
            j.records.len - saved
        );
        let check = |got: Quarantine| {
            assert_eq!(got.credentials, q.credentials);
            assert_eq!(got.revocations, q.revocations);
            assert_eq!((got.state, got.version), (q.state, q.version));
            // Rolled-up flags wait for the next full record.
            assert_eq!(got.rolled_up, 0);
        };
        let reopened = || {
            Journal::open(dir.path())
                .unwrap()
                .get(&q.id)
                .unwrap()
                .unwrap()
        };
        check(reopened());
        let mut j = Journal::open(dir.path()).unwrap();
        j.compact().unwrap();
        check(reopened());
        // A full record supersedes the amends before it.
        q.touch();
        j.save(&q).unwrap();
        j.commit().unwrap();
        let got = Journal::open(dir.path())
            .unwrap()
            .get(&q.id)
            .unwrap()
            .unwrap();
        assert_eq!((got.rolled_up, got.credentials.len()), (1, 2));
        // An amend that skips an index is refused, naming where it is.
        let mut gap = q.amend(&[1], &[]);
        gap.credentials[0].0 = 5;
        gap.version += 1;
        j.amend(&gap).unwrap();
        j.commit().unwrap();
        let e = Journal::open(dir.path()).unwrap().get(&q.id).unwrap_err();
        assert!(
            e.to_string().contains("journal.jsonl@") && e.to_string().contains("credential 5"),
            "{e}"
        );
        // Amending what the journal never opened is refused.
        let other = quarantine("e9");
        assert!(matches!(
            j.amend(&other.amend(&[0], &[0])),
            Err(RegistryError::NotOpen(_))
        ));
    }

    #[test]
    fn an_incident_written_by_amends_reads_back_whole() {
        use crate::respond::incident::Outcome;
        let (dir, mut j, mut q) = agent_incident("e0", 0);
        let revokers = vault();
        let mut w = q.written();
        for i in 1..40u32 {
            // Flags of known and new credentials, some with an origin and
            // a session view; every few, the roll-up is written.
            let mut f = fixtures::other_session(&format!("e{i}"), i % 3);
            f.timeline = vec![f.call.clone()];
            assert!(q.roll_in(&mut f));
            if let Some(n) = q.add_credential(&f, &revokers) {
                let revs: Vec<usize> = (0..q.revocations.len())
                    .filter(|&r| q.revocations[r].is_for(n))
                    .collect();
                j.amend(&q.amend(&[n], &revs)).unwrap();
            }
            if i % 4 == 0 {
                j.amend(&q.roll_amend(&mut w)).unwrap();
            }
            if i == 20 {
                q.revocations[0].outcome = Outcome::Succeeded;
                q.settle_state();
                q.touch();
                j.amend(&q.amend(&[0], &[0])).unwrap();
            }
        }
        j.amend(&q.roll_amend(&mut w)).unwrap();
        j.commit().unwrap();
        assert_eq!(w.amends, 10);
        let got = Journal::open(dir.path())
            .unwrap()
            .get(&q.id)
            .unwrap()
            .unwrap();
        assert_eq!(got, q);
        let mut j = Journal::open(dir.path()).unwrap();
        j.compact().unwrap();
        assert_eq!(
            Journal::open(dir.path())
                .unwrap()
                .get(&q.id)
                .unwrap()
                .unwrap(),
            q
        );
    }

    /// A later session's credential of the agent rolls in and is queued
    /// for revocation, its amend copied into the queue; returns its index.
    fn queue_second_credential(
        j: &mut Journal,
        q: &mut Quarantine,
        revokers: &[(String, Option<String>)],
    ) -> usize {
        let mut f = fixtures::other_session("e2", 2);
        assert!(q.roll_in(&mut f));
        let n = q.add_credential(&f, revokers).unwrap();
        j.queue_revocation(&q.id, n, &SecretString::new("tok-2"))
            .unwrap();
        j.amend_queued(&q.amend(&[n], &[n])).unwrap();
        n
    }

    #[test]
    fn restarts_with_a_queued_revocation_do_not_grow_the_journal() {
        let (dir, mut j, mut q) = agent_incident("e1", 1);
        let revokers = vault();
        let n = queue_second_credential(&mut j, &mut q, &revokers);
        j.commit().unwrap();
        drop(j);
        let size = || {
            std::fs::metadata(dir.path().join("journal.jsonl"))
                .unwrap()
                .len()
        };
        let before = size();
        for _ in 0..3 {
            let mut j = Journal::open(dir.path()).unwrap();
            assert_eq!(j.get(&q.id).unwrap().unwrap().credentials, q.credentials);
            assert!(j.queued_revocation(&q.id, n).is_some());
        }
        assert_eq!(
            size(),
            before,
            "the records kept the amend: no copy appended"
        );
    }

    #[test]
    fn a_queued_credential_survives_losing_the_records_not_yet_synced() {
        let (dir, mut j, mut q) = agent_incident("e1", 1);
        let revokers = vault();
        j.commit().unwrap();
        let synced = std::fs::metadata(dir.path().join("journal.jsonl"))
            .unwrap()
            .len();
        let n = queue_second_credential(&mut j, &mut q, &revokers);
        // One fsync, of the queue: what the call out needs.
        j.commit_for_callout().unwrap();
        assert!(j.uncommitted(), "the records wait for the next commit");
        drop(j);
        // A crash before the records' fsync: their tail is lost.
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join("journal.jsonl"))
            .unwrap();
        file.set_len(synced).unwrap();
        drop(file);
        let mut j = Journal::open(dir.path()).unwrap();
        let got = j.get(&q.id).unwrap().unwrap();
        assert_eq!(got.credentials, q.credentials);
        assert_eq!(got.revocations, q.revocations);
        assert_eq!(
            j.queued_revocation(&q.id, n),
            Some(SecretString::new("tok-2"))
        );
        // Settled and dequeued: the queue is emptied, the record keeps it.
        j.dequeue_revocation(&q.id, n).unwrap();
        j.commit().unwrap();
        assert_eq!(std::fs::metadata(j.queue_path()).unwrap().len(), 0);
        let got = Journal::open(dir.path())
            .unwrap()
            .get(&q.id)
            .unwrap()
            .unwrap();
        assert_eq!(got.credentials.len(), 2);
    }

    #[test]
    fn an_emptied_queue_is_truncated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let q = quarantine("e1");
        j.queue_revocation(&q.id, 0, &SecretString::new("tok-a"))
            .unwrap();
        j.save(&q).unwrap();
        j.commit().unwrap();
        assert!(std::fs::metadata(j.queue_path()).unwrap().len() > 0);
        j.dequeue_revocation(&q.id, 0).unwrap();
        j.commit().unwrap();
        assert_eq!(std::fs::metadata(j.queue_path()).unwrap().len(), 0);
        // Appends after the cut start at the top.
        j.queue_revocation(&q.id, 1, &SecretString::new("tok-b"))
            .unwrap();
        j.commit().unwrap();
        let text = std::fs::read_to_string(j.queue_path()).unwrap();
        assert!(text.starts_with('{') && !text.contains("tok-a"), "{text}");
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.queued_revocations(), vec![(q.id.clone(), 1)]);
    }

    #[test]
    fn compaction_keeps_only_what_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let mut a = quarantine("e1");
        let b = quarantine("e2");
        j.save(&b).unwrap();
        j.queue_revocation(&b.id, 0, &SecretString::new("tok-b"))
            .unwrap();
        while j.records.len <= COMPACT_MIN_BYTES {
            a.rolled_up += 1;
            a.touch();
            j.save(&a).unwrap();
        }
        j.commit().unwrap();
        assert!(
            j.records.len < 1 << 20,
            "compacted to {} bytes",
            j.records.len
        );
        assert_eq!(j.get(&a.id).unwrap().unwrap().rolled_up, a.rolled_up);
        a.rolled_up += 1;
        a.touch();
        j.save(&a).unwrap();
        j.commit().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.get(&a.id).unwrap().unwrap().rolled_up, a.rolled_up);
        assert_eq!(j.get(&b.id).unwrap().unwrap().id, b.id);
        assert_eq!(j.queued_revocations(), vec![(b.id.clone(), 0)]);
    }

    #[test]
    fn files_of_an_earlier_release_move_into_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let a = quarantine("e1");
        std::fs::write(
            dir.path().join(format!("{}.json", a.id)),
            serde_json::to_vec(&a).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join(format!("{}.revoke", a.id)), "old").unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.open_quarantines().unwrap()[0].id, a.id);
        assert_eq!(
            j.queued_revocation(&a.id, 0),
            Some(SecretString::new("old"))
        );
        assert!(!dir.path().join(format!("{}.json", a.id)).exists());
        assert!(!dir.path().join(format!("{}.revoke", a.id)).exists());
    }
}
