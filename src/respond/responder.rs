//! The responder: one thread that owns the quarantine registry, and the
//! async tasks that call out for it.
//!
//! ```text
//!  workers ──Flag──► bounded queue ──► responder thread
//!                                        │ 1. registry.save (before any call out)
//!                                        │ 2. spawn a revocation task per revoker ──► broker
//!                                        │ 3. log + audit
//!                                        │ 4. alert (after the revocation outcome,
//!                                        │    or alert-delay) ──► per-notifier queue ──► Slack / PagerDuty
//!  tasks ──outcomes──────────────────────┘ (state, registry, audit)
//!  API ──release / sync──────────────────┘
//! ```
//!
//! Scoring never waits on the network: a worker only waits when the flag
//! queue is full, and that queue drains at the speed of local writes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot, Notify};

use super::audit::{AuditLog, AuditWriter};
use super::credential::{CredentialPolicy, SecretString};
use super::deliver::{self, Attempt, RetryPolicy, Revoker};
use super::incident::{
    now_rfc3339, Flag, Outcome, Quarantine, Release, State, Written, MAX_FLAGGED_CALLS,
};
use super::limits::{LimitMetrics, TokenBucket};
use super::registry::{Registry, RegistryError};
use super::render;
use crate::config::Config;
use crate::service::metrics::Metrics;

/// What the responder is sent.
pub enum Msg {
    Flag(Box<Flag>),
    /// A revoker finished with a credential of a quarantine (or gave up).
    Revoked {
        id: String,
        revoker: String,
        /// The credential's index in the quarantine's `credentials` (none:
        /// the flag carried no credential).
        credential: Option<usize>,
        attempts: u32,
        error: Option<String>,
    },
    /// A notifier delivered (or gave up on) a digest standing for `ids`.
    Digested {
        notifier: String,
        dedup_key: String,
        ids: Vec<String>,
        error: Option<String>,
    },
    /// A notifier finished with an alert.
    Alerted {
        id: String,
        notifier: String,
        attempts: u32,
        error: Option<String>,
    },
    /// The first alert of a quarantine is due (its revocation took longer
    /// than `alert-delay`).
    AlertDue(String),
    /// A rolled-up update of a quarantine is due.
    UpdateDue(String),
    Release {
        id: String,
        actor: String,
        reason: String,
        false_positive: bool,
        reply: oneshot::Sender<Result<Quarantine, ReleaseError>>,
    },
    /// Time to expire released incidents past `response.incident-retention`.
    Sweep,
    /// Time to commit what bursts without calls out deferred.
    Commit,
    /// Answered once every message sent before it is handled: flags sent
    /// before are then in the registry, and their audit records on disk.
    Sync(std::sync::mpsc::Sender<()>),
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("no quarantine {0}")]
    NotFound(String),
    #[error("quarantine {0} is already released")]
    AlreadyReleased(String),
    #[error("registry: {0}")]
    Registry(String),
}

/// What an alert says.
#[derive(Debug, Clone, PartialEq)]
enum Job {
    Open(String),
    Update(String, String),
    Release(String),
    /// Quarantines whose alerts did not fit in the queue.
    Digest(Vec<String>),
    /// Resolves a digest (its dedup key): its quarantines are released.
    ResolveDigest(String),
}

impl Job {
    fn id(&self) -> &str {
        match self {
            Self::Open(id) | Self::Update(id, _) | Self::Release(id) => id,
            Self::Digest(_) | Self::ResolveDigest(_) => "digest",
        }
    }
}

/// The dedup key of a digest: from the first quarantine it stands for, so
/// the same on every attempt.
fn digest_key(ids: &[String]) -> String {
    format!(
        "warden-digest-{}",
        ids.first().map_or("none", String::as_str)
    )
}

/// A notifier's bounded queue. Jobs for one quarantine merge (an update
/// queued behind another says the newest thing); past the bound, the ids
/// are rolled into one digest.
struct AlertQueue {
    jobs: Mutex<(VecDeque<Job>, Vec<String>)>,
    notify: Notify,
    cap: usize,
}

impl AlertQueue {
    fn push(&self, job: Job, metrics: &Metrics, notifier: &str) {
        let mut g = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let (queue, overflow) = &mut *g;
        if let Job::Update(id, what) = &job {
            if let Some(Job::Update(_, w)) = queue
                .iter_mut()
                .find(|j| matches!(j, Job::Update(i, _) if i == id))
            {
                *w = what.clone();
                return;
            }
            if queue.iter().any(|j| matches!(j, Job::Open(i) if i == id)) {
                // The opening alert is rendered when sent: it will say it.
                return;
            }
        }
        // A release or a digest's resolve is never folded into a digest
        // (that would page for it): they come from humans, one per
        // release, so they may pass the bound.
        let resolves = matches!(job, Job::Release(_) | Job::ResolveDigest(_));
        if queue.len() >= self.cap && !resolves {
            overflow.push(job.id().to_owned());
            metrics
                .alerts_rolled_up
                .get_or_create(&NotifierLabel {
                    notifier: notifier.to_owned(),
                })
                .inc();
        } else {
            queue.push_back(job);
        }
        drop(g);
        self.notify.notify_one();
    }

    /// The next job: the oldest opening alert first (a new incident pages
    /// before news of known ones, which pacing would otherwise put ahead
    /// of it), else the oldest job.
    fn pop(&self) -> Option<Job> {
        let mut g = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let (queue, overflow) = &mut *g;
        let job = match queue.iter().position(|j| matches!(j, Job::Open(_))) {
            Some(i) => queue.remove(i),
            None => queue.pop_front(),
        };
        if job.is_none() && !overflow.is_empty() {
            return Some(Job::Digest(std::mem::take(overflow)));
        }
        job
    }

    fn depth(&self) -> usize {
        let g = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        g.0.len() + g.1.len()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct NotifierLabel {
    pub notifier: String,
}

/// Where alerts go.
#[derive(Clone)]
enum NotifierKind {
    Slack { url: String },
    PagerDuty { url: String, routing_key: String },
}

struct Notifier {
    name: String,
    kind: NotifierKind,
    queue: Arc<AlertQueue>,
}

/// The log notifier's multi-line `ALERT` blocks: the first
/// [`LOG_BLOCKS_BURST`] back to back (a demo, a few incidents at once),
/// then one a second; one line a minute counts those not printed.
const LOG_BLOCKS_BURST: u32 = 100;

/// Paces the log notifier's `ALERT` blocks.
struct LogBlocks {
    bucket: TokenBucket,
    skipped: u32,
    since: Instant,
}

impl LogBlocks {
    fn new() -> Self {
        Self {
            bucket: TokenBucket::new(1.0, LOG_BLOCKS_BURST),
            skipped: 0,
            since: Instant::now(),
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        if self.skipped > 0 && now.duration_since(self.since) >= Duration::from_secs(60) {
            tracing::warn!(skipped = self.skipped,
                "ALERT blocks not logged (over one a second after {LOG_BLOCKS_BURST}); each incident's \"opened\" line was, and GET /v1/quarantines lists them.");
            self.skipped = 0;
            self.since = now;
        }
        if self.bucket.take(now).is_ok() {
            return true;
        }
        if self.skipped == 0 {
            self.since = now;
        }
        self.skipped += 1;
        false
    }
}

/// Longest a burst that calls nothing out leaves its writes uncommitted
/// (see `Responder::end_burst_deferring`).
const COMMIT_DEFER: Duration = Duration::from_millis(50);

/// How often incidents that only rolled-up flags changed are written (and
/// shown on the board, and audited) while a storm goes on. Each write
/// carries the incident's twenty raw events: per burst of a few flags it
/// cost more than scoring the calls. A crash in the window loses nothing
/// a source has committed past (a sync writes everything first). 5 s, as
/// the default `kafka.commit-interval`: with the sync of every commit,
/// an incident in a storm is written about once per interval, not twice.
const ROLL_UP_SAVE_EVERY: Duration = Duration::from_secs(5);

/// Messages handled between two group commits (see `Responder::run`).
const MAX_BURST: usize = 4096;

/// Amends an incident's record takes before it is written whole again:
/// bounds what a start-up replays and what compaction carries.
const MAX_AMENDS: u32 = 32;

/// Which incidents that only rolled-up flags changed a commit writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// All of them (a sync, a release, shutdown).
    All,
    /// All once [`ROLL_UP_SAVE_EVERY`] has passed, else as `Concerned`.
    Due,
    /// Only those the burst's calls out are about (alerts are rendered
    /// from the board, revocations wait for their record).
    Concerned,
}

/// What a flag does to the incidents of its agent (instance), as a worker
/// sees it before handing the flag over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rolls {
    /// No incident is open: the flag opens one, and shows all it carries.
    Opens,
    /// It rolls into an open incident: its baseline is never read.
    RollsIn,
    /// It rolls into one that keeps no more flagged calls: only its id,
    /// score, credential and (now and then) session timeline are read.
    RollsIntoFull,
}

/// The read side: every quarantine this process knows, as last saved. The
/// API and the notifiers read it without asking the responder thread.
/// It holds at most `cap` (`response.max-incidents-in-memory`): past it,
/// the oldest released ones are dropped (the registry still has them until
/// `response.incident-retention`); open ones are never dropped.
pub struct Board {
    quarantines: RwLock<HashMap<String, Arc<Quarantine>>>,
    /// Hashes of the keys of open incidents
    /// ([`key_hash`](super::incident::key_hash)), each with whether it
    /// holds [`MAX_FLAGGED_CALLS`] already: a worker whose flag will only
    /// roll into one skips what only an opening reads.
    open_keys: RwLock<HashMap<u64, bool>>,
    cap: usize,
    metrics: LimitMetrics,
    /// When the last over-cap warning was logged (one a minute).
    warned: Mutex<Option<Instant>>,
}

impl Default for Board {
    fn default() -> Self {
        Self::with_cap(20_000, LimitMetrics::default())
    }
}

/// What [`Board::put`] had to do to stay within its cap.
#[derive(Debug, Default, PartialEq, Eq)]
struct Trimmed {
    /// Released quarantines dropped from memory.
    dropped: u64,
    /// Open ones alone fill the cap (they are kept).
    over_cap: bool,
}

impl Board {
    pub fn with_cap(cap: usize, metrics: LimitMetrics) -> Self {
        Self {
            quarantines: RwLock::default(),
            open_keys: RwLock::default(),
            cap: cap.max(2),
            metrics,
            warned: Mutex::new(None),
        }
    }

    /// What a flag of this incident key
    /// ([`key_hash`](super::incident::key_hash)) does here now.
    pub fn rolls(&self, key_hash: u64) -> Rolls {
        match self
            .open_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key_hash)
        {
            None => Rolls::Opens,
            Some(false) => Rolls::RollsIn,
            Some(true) => Rolls::RollsIntoFull,
        }
    }

    /// Marks the incident of `q`'s key open (and whether it is full), or
    /// closed.
    fn set_open_key(&self, q: &Quarantine, open: bool) {
        let h = xxhash_rust::xxh3::xxh3_64(q.key.as_bytes());
        let mut keys = self.open_keys.write().unwrap_or_else(|p| p.into_inner());
        if open {
            keys.insert(h, q.flagged_calls.len() >= MAX_FLAGGED_CALLS);
        } else {
            keys.remove(&h);
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Quarantine>> {
        self.quarantines
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Quarantines of one agent, newest first.
    pub fn of_agent(&self, agent_id: &str) -> Vec<Arc<Quarantine>> {
        let mut v: Vec<_> = self
            .quarantines
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|q| q.agent_id == agent_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        v
    }

    /// Every quarantine, newest first, optionally only in `state`.
    pub fn list(&self, state: Option<State>) -> Vec<Arc<Quarantine>> {
        let mut v: Vec<_> = self
            .quarantines
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|q| state.is_none_or(|s| q.state == s))
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        v
    }

    /// Shows `q` as saved, keeping within the cap: counts what it dropped,
    /// and says (once a minute) when open incidents alone fill it.
    fn put(&self, q: &Quarantine) {
        let t = self.insert(q);
        self.metrics.incidents_dropped_from_memory.inc_by(t.dropped);
        if t.over_cap {
            self.metrics.incidents_over_memory_cap.inc();
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(60)) {
                *warned = Some(Instant::now());
                tracing::warn!(cap = self.cap, open = self.len(),
                    "Open incidents alone fill response.max-incidents-in-memory: all are kept (none is dropped while open); release or raise the cap.");
            }
        }
    }

    fn len(&self) -> usize {
        self.quarantines
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn insert(&self, q: &Quarantine) -> Trimmed {
        // The board answers the API, which never shows the redelivery
        // hashes (up to 4,096 per incident): not kept for up to
        // `max-incidents-in-memory` incidents.
        let shown = Arc::new(Quarantine {
            seen_events: Vec::new(),
            ..q.clone()
        });
        let mut map = self.quarantines.write().unwrap_or_else(|p| p.into_inner());
        map.insert(q.id.clone(), shown);
        if map.len() <= self.cap {
            return Trimmed::default();
        }
        // Down to half the cap at once, so that a steady stream of new
        // incidents sorts the released ones once per cap/2 incidents.
        let mut released: Vec<(String, String)> = map
            .values()
            .filter(|q| !q.state.is_open())
            .map(|q| (q.updated_at.clone(), q.id.clone()))
            .collect();
        released.sort();
        let excess = map.len().saturating_sub(self.cap / 2);
        let mut dropped = 0;
        for (_, id) in released.into_iter().take(excess) {
            map.remove(&id);
            dropped += 1;
        }
        Trimmed {
            dropped,
            over_cap: map.len() > self.cap,
        }
    }

    /// Drops released quarantines last updated before `cutoff` (RFC 3339);
    /// returns how many.
    fn expire(&self, cutoff: &str) -> u64 {
        let mut map = self.quarantines.write().unwrap_or_else(|p| p.into_inner());
        let before = map.len();
        map.retain(|_, q| q.state.is_open() || q.updated_at.as_str() >= cutoff);
        (before - map.len()) as u64
    }
}

/// The handle the rest of the service holds.
#[derive(Clone)]
pub struct Handle {
    pub tx: mpsc::Sender<Msg>,
    pub board: Arc<Board>,
    /// Embedded registries answer from the board; a shared one is asked.
    /// (client, key prefix): TLS material is read once, at start.
    pub shared_registry: Option<(redis::Client, String)>,
    /// The audit log, for admin API changes (one chain with the rest).
    pub audit: AuditWriter,
}

impl Handle {
    /// Blocks until the responder has handled everything sent before
    /// (flags recorded): a barrier commits offsets only after this.
    pub fn sync_blocking(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.blocking_send(Msg::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

/// Flags a worker holds back while the responder's queue is full, before
/// it folds further flags of the same agent (instance) and credential into
/// one (see [`Flag::folded`]).
const OUTBOX_FOLD_AT: usize = 1024;

/// A worker's end of the flag queue. Scoring never waits on the
/// responder: a flag that does not fit in its queue waits here and is
/// handed over after the next batch; past [`OUTBOX_FOLD_AT`] held back,
/// flags of an agent and credential already held are folded into that one
/// and counted (a storm rolls up into its open incident anyway). Nothing
/// is dropped: a barrier hands everything over before a commit.
pub struct Outbox {
    handle: Handle,
    metrics: Arc<Metrics>,
    held: VecDeque<Flag>,
    /// (incident key, raw credential) of held flags, once folding.
    index: HashMap<(String, Option<String>), usize>,
}

impl Outbox {
    pub fn new(handle: Handle, metrics: Arc<Metrics>) -> Self {
        Self {
            handle,
            metrics,
            held: VecDeque::new(),
            index: HashMap::new(),
        }
    }

    /// Hands `flag` over, or holds it back when the queue is full.
    pub fn send(&mut self, flag: Flag) {
        if self.held.is_empty() {
            match self.handle.tx.try_send(Msg::Flag(Box::new(flag))) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(Msg::Flag(f))) => return self.hold(*f),
                Err(_) => {
                    tracing::error!("Responder stopped; a flag was not acted on.");
                    return;
                }
            }
        }
        self.hold(flag);
    }

    /// What a flag of the incident key `key_hash` would do now.
    pub fn rolls(&self, key_hash: u64) -> Rolls {
        self.handle.board.rolls(key_hash)
    }

    fn hold(&mut self, flag: Flag) {
        self.metrics.response_queue_full.inc();
        if self.held.len() < OUTBOX_FOLD_AT {
            self.held.push_back(flag);
            return;
        }
        if self.index.is_empty() {
            self.reindex();
        }
        let k = (
            flag.key(),
            flag.credential_id.as_ref().map(|c| c.expose().to_owned()),
        );
        match self.index.get(&k).and_then(|&i| self.held.get_mut(i)) {
            Some(into) => {
                into.folded += 1 + flag.folded;
                if flag.score > into.score {
                    into.score = flag.score;
                }
            }
            None => {
                self.index.insert(k, self.held.len());
                self.held.push_back(flag);
            }
        }
    }

    fn reindex(&mut self) {
        self.index = self
            .held
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    (
                        f.key(),
                        f.credential_id.as_ref().map(|c| c.expose().to_owned()),
                    ),
                    i,
                )
            })
            .collect();
    }

    /// Hands over what was held back, as far as the queue takes it.
    pub fn drain(&mut self) {
        let mut sent = false;
        while let Some(f) = self.held.pop_front() {
            match self.handle.tx.try_send(Msg::Flag(Box::new(f))) {
                Ok(()) => sent = true,
                Err(mpsc::error::TrySendError::Full(Msg::Flag(f))) => {
                    self.held.push_front(*f);
                    break;
                }
                Err(_) => {
                    tracing::error!("Responder stopped; held flags were not acted on.");
                    self.held.clear();
                }
            }
        }
        if sent {
            // Positions moved: rebuilt when folding starts again.
            self.index.clear();
        }
    }

    /// Hands over everything held back, waiting for room: before a
    /// barrier commits past these flags, and at shutdown.
    pub fn flush_blocking(&mut self) {
        self.index.clear();
        while let Some(f) = self.held.pop_front() {
            if self
                .handle
                .tx
                .blocking_send(Msg::Flag(Box::new(f)))
                .is_err()
            {
                tracing::error!("Responder stopped; held flags were not acted on.");
                self.held.clear();
            }
        }
    }

    /// Hands everything over, then waits until the responder has recorded
    /// it (see [`Handle::sync_blocking`]).
    pub fn sync_blocking(&mut self) {
        self.flush_blocking();
        self.handle.sync_blocking();
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// A call out, waiting for the group commit of its burst.
enum Outbound {
    Revoke {
        id: String,
        revoker: String,
        credential: Option<usize>,
    },
    /// A job for the notifier at this index.
    Alert(usize, Job),
}

impl Outbound {
    /// The quarantine a revocation or an open/update alert acts on.
    fn quarantine(&self) -> Option<&str> {
        match self {
            Self::Revoke { id, .. } | Self::Alert(_, Job::Open(id) | Job::Update(id, _)) => {
                Some(id)
            }
            Self::Alert(..) => None,
        }
    }
}

/// Where a quarantine's paging stands (memory only): one opening alert,
/// then updates at most once per `update-interval`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Paging {
    /// The opening alert waits (`alert-delay`, so that it can carry the
    /// revocation's outcome); updates are folded into it.
    #[default]
    Unsent,
    /// The opening alert was queued; `last` is when the last alert about
    /// it was (`None` after a restart: an update may go at once).
    Sent { last: Option<Instant> },
    /// As `Sent`, with an update already scheduled (`Msg::UpdateDue`):
    /// further flags wait for it.
    UpdateScheduled { last: Option<Instant> },
}

impl Paging {
    fn alerted(self) -> bool {
        self != Self::Unsent
    }
}

/// Per quarantine, what the responder tracks in memory only.
#[derive(Default)]
struct Progress {
    paging: Paging,
    cancel: Arc<AtomicBool>,
    /// When the flag that brought each credential left its worker (the
    /// start of `warden_revocation_seconds`), until it is settled.
    flagged_at: HashMap<Option<usize>, Instant>,
}

pub struct Responder {
    cfg: Config,
    owner: String,
    registry: Registry,
    /// Shared with the delivery tasks, which record each call out as it
    /// happens; its thread keeps the chain in order.
    audit: AuditWriter,
    open: HashMap<String, Quarantine>,
    by_key: HashMap<String, String>,
    progress: HashMap<String, Progress>,
    /// Open quarantines whose record lags their state in `open` by flags
    /// rolled up since (nothing was called out for them): written every
    /// [`ROLL_UP_SAVE_EVERY`], before an alert about one goes out, and
    /// before every sync or release, so a storm costs a write per incident
    /// and interval, not one per flagged call.
    unsaved: std::collections::BTreeSet<String>,
    /// How much of each open quarantine the journal holds: its next write
    /// is an amend of what is new (absent: a full record).
    written: HashMap<String, Written>,
    /// When `unsaved` was last written.
    unsaved_written_at: Instant,
    /// Per open quarantine, the flags rolled into it since its last audit
    /// record (see `audit_rolled`).
    rolled: HashMap<String, Vec<serde_json::Value>>,
    /// The gauges need setting at the end of the burst.
    gauges_dirty: bool,
    /// Calls out decided in this burst, made once its registry writes are
    /// committed and its audit records on disk (see `end_burst`).
    outbound: Vec<Outbound>,
    /// Raw credentials (quarantine id, index) whose revocation is under
    /// way (a copy of the registry's revocation queue), for the revokers
    /// only.
    credentials: HashMap<(String, usize), SecretString>,
    /// Fingerprints credentials (or shows their handle).
    credential_policy: CredentialPolicy,
    board: Arc<Board>,
    revokers: Arc<Vec<Revoker>>,
    notifiers: Vec<Notifier>,
    http: reqwest::Client,
    rt: tokio::runtime::Handle,
    tx: mpsc::Sender<Msg>,
    policy: RetryPolicy,
    metrics: Arc<Metrics>,
    /// Where released false positives are sent to be learned.
    learn: Learner,
    log_blocks: LogBlocks,
    /// When the deferred commit is scheduled (see `end_burst_deferring`):
    /// a write that must follow sooner schedules an earlier one.
    commit_at: Option<Instant>,
}

/// The moment `age` ago, as a time and as the RFC 3339 text incidents
/// carry (`updated_at`), which compares in time order.
fn cutoff(age: Duration) -> Option<(std::time::SystemTime, String)> {
    let t = std::time::SystemTime::now().checked_sub(age)?;
    let text = chrono::DateTime::<chrono::Utc>::from(t)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Some((t, text))
}

/// Hands the raw events of a released false positive, with the session
/// name to learn them under, to the worker that owns the agent.
pub type Learner = Box<dyn Fn(&str, Vec<String>, String) + Send>;

/// Everything needed to start the responder.
pub struct Start {
    pub handle: Handle,
    pub thread: std::thread::JoinHandle<()>,
}

/// Builds the responder (reading secrets, opening the registry and audit
/// log, loading open quarantines), resumes what was in flight, and starts
/// its thread.
pub fn start(cfg: &Config, metrics: Arc<Metrics>, learn: Learner) -> anyhow::Result<Start> {
    let r = &cfg.response;
    // Enforce with no broker still records what to revoke, locally.
    let default_log = [crate::config::RevokerConfig::Log(
        crate::config::LogRevokerConfig {
            name: "local-log".to_owned(),
            path: cfg.server.data_dir.join("revocations.jsonl"),
        },
    )];
    let configured = if r.revokers.is_empty() {
        &default_log[..]
    } else {
        &r.revokers[..]
    };
    let revokers = configured
        .iter()
        .map(Revoker::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let mut notifiers = Vec::new();
    let queue = || {
        Arc::new(AlertQueue {
            jobs: Mutex::new((VecDeque::new(), Vec::new())),
            notify: Notify::new(),
            cap: r.alert_queue_depth,
        })
    };
    if !r.slack.webhook_url.is_empty() {
        notifiers.push(Notifier {
            name: "slack".to_owned(),
            kind: NotifierKind::Slack {
                url: r.slack.webhook_url.clone(),
            },
            queue: queue(),
        });
    }
    if !r.pagerduty.routing_key.is_empty() {
        notifiers.push(Notifier {
            name: "pagerduty".to_owned(),
            kind: NotifierKind::PagerDuty {
                url: r.pagerduty.events_url.clone(),
                routing_key: r.pagerduty.routing_key.clone(),
            },
            queue: queue(),
        });
    }
    let mut registry = if cfg.redis.enabled {
        Registry::redis(&cfg.redis)?
    } else {
        Registry::file(&cfg.server.data_dir)?
    };
    let audit_path = r.audit_path(&cfg.server.data_dir);
    if let Some(dir) = audit_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let audit = AuditWriter::start(AuditLog::open(&audit_path)?)?;
    let audit_handle = audit.clone();
    let http = reqwest::Client::builder()
        .timeout(r.request_timeout)
        .connect_timeout(r.request_timeout)
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let (tx, rx) = mpsc::channel(r.queue_depth);
    let board = Arc::new(Board::with_cap(
        r.max_incidents_in_memory,
        metrics.limits.clone(),
    ));
    let shared_registry = if registry.is_shared() {
        Some((
            crate::state::redis::client(&cfg.redis)?,
            cfg.redis.key_prefix.clone(),
        ))
    } else {
        None
    };
    let open = registry.open_quarantines()?;
    let mut me = Responder {
        cfg: cfg.clone(),
        owner: cfg.kafka.instance(),
        registry,
        audit,
        open: HashMap::new(),
        by_key: HashMap::new(),
        progress: HashMap::new(),
        unsaved: Default::default(),
        unsaved_written_at: Instant::now(),
        written: HashMap::new(),
        rolled: HashMap::new(),
        gauges_dirty: false,
        outbound: Vec::new(),
        credentials: HashMap::new(),
        credential_policy: CredentialPolicy::of(cfg),
        board: board.clone(),
        revokers: Arc::new(revokers),
        notifiers,
        http,
        rt: tokio::runtime::Handle::current(),
        tx: tx.clone(),
        policy: RetryPolicy::of(r),
        metrics,
        learn,
        log_blocks: LogBlocks::new(),
        commit_at: None,
    };
    for n in &me.notifiers {
        me.spawn_notifier(n);
    }
    me.resume(open);
    // The first sweep at start, then every retention/24 (1 min to 1 h).
    me.schedule(Msg::Sweep, Duration::ZERO);
    let thread = std::thread::Builder::new()
        .name("warden-responder".to_owned())
        .spawn(move || me.run(rx))?;
    Ok(Start {
        handle: Handle {
            tx,
            board,
            shared_registry,
            audit: audit_handle,
        },
        thread,
    })
}

impl Responder {
    /// Picks up quarantines left open by the last run: revocations not yet
    /// confirmed are retried, alerts never delivered are sent.
    fn resume(&mut self, open: Vec<Quarantine>) {
        let mut resumed = 0;
        for mut q in open {
            // In a group, each instance finishes its own.
            if self.registry.is_shared() && !self.cfg.kafka.owns(&q.owner) {
                // Shown without the raw credential; its owner migrates it.
                q.migrate_legacy_credential(&self.credential_policy);
                self.board.put(&q);
                continue;
            }
            q.adopt_first_credential();
            if let Some(raw) = q.migrate_legacy_credential(&self.credential_policy) {
                if q.revocations.iter().any(|r| r.outcome == Outcome::Pending) {
                    self.queue_revocation(&q.id, 0, &raw);
                }
                self.save(&q);
            }
            let id = q.id.clone();
            self.by_key.insert(q.key.clone(), id.clone());
            self.board.set_open_key(&q, true);
            let pending: Vec<(String, Option<usize>)> = q
                .revocations
                .iter()
                .filter(|r| r.outcome == Outcome::Pending)
                .map(|r| (r.revoker.clone(), r.credential))
                .collect();
            let undelivered = q.alerts.iter().any(|a| a.delivered == 0);
            let mut queued: Vec<usize> = pending.iter().filter_map(|(_, n)| *n).collect();
            queued.dedup();
            for n in queued {
                match self.registry.queued_revocation(&id, n) {
                    Ok(Some(c)) => {
                        self.credentials.insert((id.clone(), n), c);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(quarantine = %id, error = %e, "Cannot read a queued revocation.")
                    }
                }
            }
            self.board.put(&q);
            // As the journal holds it.
            self.written.insert(id.clone(), q.written());
            self.open.insert(id.clone(), q);
            self.progress.entry(id.clone()).or_default();
            for (name, n) in &pending {
                self.spawn_revocation(&id, name, *n);
            }
            if pending.is_empty() {
                if undelivered {
                    self.queue_alert(Job::Open(id.clone()), true);
                }
                self.progress.entry(id.clone()).or_default().paging = Paging::Sent { last: None };
            } else {
                self.schedule(Msg::AlertDue(id.clone()), self.cfg.response.alert_delay);
            }
            resumed += 1;
        }
        self.end_burst();
        if resumed > 0 {
            tracing::info!(quarantines = resumed, "Resumed open quarantines.");
        }
        self.sweep_revocation_queue();
    }

    /// Removes raw credentials nothing will revoke any more: a crash
    /// between recording an outcome and dequeuing, or before the record of
    /// a quarantine was written at all.
    fn sweep_revocation_queue(&mut self) {
        let queued = match self.registry.queued_revocations() {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(error = %e, "Cannot list the revocation queue.");
                return;
            }
        };
        for (id, n) in queued {
            if self.credentials.contains_key(&(id.clone(), n)) {
                continue;
            }
            let still_wanted = match self.registry.get(&id) {
                // In a group, another instance may be revoking it.
                Ok(Some(q)) => {
                    q.state.is_open()
                        && q.revocations
                            .iter()
                            .any(|r| r.is_for(n) && r.outcome == Outcome::Pending)
                        && (!self.cfg.kafka.owns(&q.owner) || self.open.contains_key(&id))
                }
                // Shared: another instance may be about to record it (or
                // the credential it lists).
                Ok(None) => self.registry.is_shared(),
                Err(_) => true,
            };
            if !still_wanted {
                self.dequeue_revocation(&id, n);
            }
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.blocking_recv() {
            // A deferred commit alone leaves nothing to defer again.
            let mut work = !matches!(msg, Msg::Commit);
            self.handle(msg);
            // Group commit: handle a burst, then write each incident it
            // rolled flags into once. Bounded, so that under a steady storm
            // the API and the registry still catch up every few ms.
            let mut n = 1;
            while n < MAX_BURST {
                let Ok(msg) = rx.try_recv() else {
                    break;
                };
                work |= !matches!(msg, Msg::Commit);
                self.handle(msg);
                n += 1;
            }
            if work {
                self.end_burst_deferring();
            }
        }
        self.end_burst();
    }

    /// Ends a burst that revokes nothing (an outcome recorded, flags rolled
    /// into open incidents, alerts queued) without waiting for its fsyncs:
    /// they are committed, and its alerts handed to the notifiers, with
    /// the next burst that revokes, by a sync or release, or
    /// [`COMMIT_DEFER`] later, whichever comes first. So a new flag never
    /// waits behind the commit of the previous incident's outcome. A
    /// revocation still waits for its record; a crash in the window only
    /// repeats an idempotent revocation or an alert (PagerDuty dedups by
    /// the incident's id).
    ///
    /// Incidents that only rolled-up flags changed are written (and shown
    /// on the board, and audited) by that commit too, not per burst: in a
    /// storm, bursts are a few flags each, and rewriting an incident with
    /// its twenty raw events for every few flags cost more than scoring.
    fn end_burst_deferring(&mut self) {
        if self
            .outbound
            .iter()
            .any(|o| matches!(o, Outbound::Revoke { .. }))
        {
            // The revocation waits for its own incident's record only; a
            // periodic write of every rolled-up incident that falls due
            // now follows its call out.
            let due = self.unsaved_written_at.elapsed() >= ROLL_UP_SAVE_EVERY;
            self.commit(Writes::Concerned);
            if due {
                self.commit(Writes::Due);
            }
            return;
        }
        self.commit_within(COMMIT_DEFER);
        if std::mem::take(&mut self.gauges_dirty) {
            self.publish_gauges();
        }
    }

    /// Makes sure a deferred commit runs within `after`: an outcome's
    /// record must not wait behind the roll-up writes' 5 s schedule.
    fn commit_within(&mut self, after: Duration) {
        let at = Instant::now() + after;
        if self.commit_at.is_none_or(|t| at < t) {
            self.commit_at = Some(at);
            self.schedule(Msg::Commit, after);
        }
    }

    /// Commits everything: the open quarantines that only rolled-up flags
    /// changed included (before a sync, a release, at shutdown).
    fn end_burst(&mut self) {
        self.commit(Writes::All);
    }

    /// Group commit of a burst: writes the open quarantines that only
    /// rolled-up flags changed (see [`Writes`]), with one audit record
    /// each for those flags, commits the registry, makes the calls out,
    /// and sets the gauges.
    fn commit(&mut self, writes: Writes) {
        self.commit_at = None;
        let all = match writes {
            Writes::All => true,
            Writes::Due => self.unsaved_written_at.elapsed() >= ROLL_UP_SAVE_EVERY,
            Writes::Concerned => false,
        };
        if all {
            for id in std::mem::take(&mut self.unsaved) {
                self.save_open(&id);
                self.audit_rolled(&id);
            }
            // Flags rolled into a quarantine released meanwhile.
            for id in self.rolled.keys().cloned().collect::<Vec<_>>() {
                self.audit_rolled(&id);
            }
            self.unsaved_written_at = Instant::now();
        } else {
            // Alerts are rendered from the board: it shows what they say.
            // (A revocation's own record is its amend.)
            let alerted: Vec<String> = self
                .unsaved
                .iter()
                .filter(|id| {
                    self.outbound.iter().any(|o| {
                        matches!(o, Outbound::Alert(..)) && o.quarantine() == Some(id.as_str())
                    })
                })
                .cloned()
                .collect();
            for id in alerted {
                self.unsaved.remove(&id);
                self.save_open(&id);
                self.audit_rolled(&id);
            }
        }
        // Group commit: every record of the burst in one write, then the
        // calls out it decided.
        let audited = (!self.outbound.is_empty()).then(|| self.audit.flush_begin());
        let registry = &mut self.registry;
        retrying("commit quarantine records", "*", || match writes {
            Writes::Concerned => registry.commit_for_callout(),
            Writes::All | Writes::Due => registry.commit(),
        });
        if let Some(done) = audited {
            let _ = done.recv();
        }
        let superseded = self.drop_superseded();
        for o in std::mem::take(&mut self.outbound) {
            if superseded
                .iter()
                .any(|id| o.quarantine() == Some(id.as_str()))
            {
                continue;
            }
            match o {
                Outbound::Revoke {
                    id,
                    revoker,
                    credential,
                } => self.start_revocation(&id, &revoker, credential),
                Outbound::Alert(i, job) => {
                    if let Some(n) = self.notifiers.get(i) {
                        n.queue.push(job, &self.metrics, &n.name);
                    }
                }
            }
        }
        if self.registry.uncommitted() {
            // What the calls out did not need follows shortly.
            self.commit_within(COMMIT_DEFER);
        } else if !self.unsaved.is_empty() {
            let wait = ROLL_UP_SAVE_EVERY.saturating_sub(self.unsaved_written_at.elapsed());
            self.commit_within(wait.max(COMMIT_DEFER));
        }
        if std::mem::take(&mut self.gauges_dirty) {
            self.publish_gauges();
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Flag(f) => self.on_flag(*f),
            Msg::Revoked {
                id,
                revoker,
                credential,
                attempts,
                error,
            } => self.on_revoked(&id, &revoker, credential, attempts, error),
            Msg::Digested {
                notifier,
                dedup_key,
                ids,
                error,
            } => self.on_digested(&notifier, &dedup_key, &ids, error),
            Msg::Alerted {
                id,
                notifier,
                attempts,
                error,
            } => self.on_alerted(&id, &notifier, attempts, error),
            Msg::AlertDue(id) => {
                let due = self.progress.get(&id).is_some_and(|p| !p.paging.alerted());
                if due {
                    self.queue_alert(Job::Open(id.clone()), true);
                }
            }
            Msg::UpdateDue(id) => {
                if let Some(p) = self.progress.get_mut(&id) {
                    if let Paging::UpdateScheduled { last } = p.paging {
                        p.paging = Paging::Sent { last };
                    }
                }
                self.send_update(&id, "further flagged calls rolled up".to_owned());
            }
            Msg::Release {
                id,
                actor,
                reason,
                false_positive,
                reply,
            } => {
                let r = self.on_release(&id, actor, reason, false_positive);
                // Answered once the release is committed.
                self.end_burst();
                let _ = reply.send(r);
            }
            Msg::Commit => {
                // An earlier schedule superseded a later one's message, or
                // a commit since made it moot.
                if self
                    .commit_at
                    .is_some_and(|at| at <= Instant::now() + Duration::from_millis(1))
                {
                    self.commit(Writes::Due);
                }
            }
            Msg::Sweep => {
                self.release_quiet_shadow();
                self.expire();
                let mut every = (self.cfg.response.incident_retention / 24)
                    .clamp(Duration::from_secs(60), Duration::from_secs(3600));
                let quiet = self.cfg.response.shadow_release_after;
                if !quiet.is_zero() {
                    every = every.min((quiet / 4).max(Duration::from_secs(1)));
                }
                self.schedule(Msg::Sweep, every);
            }
            Msg::Sync(ack) => {
                // Every flag sent before is recorded before a source
                // commits past it.
                self.end_burst();
                self.audit.flush();
                let _ = ack.send(());
            }
        }
    }

    /// Releases shadow incidents with no new flag for
    /// `response.shadow-release-after`, as a human release would (their
    /// pages resolved): in shadow mode nobody has to release anything, and
    /// an incident left open would swallow the agent's later flags as
    /// updates, never paging again.
    fn release_quiet_shadow(&mut self) {
        let after = self.cfg.response.shadow_release_after;
        if after.is_zero() {
            return;
        }
        let Some((_, cutoff)) = cutoff(after) else {
            return;
        };
        let quiet: Vec<String> = self
            .open
            .values()
            .filter(|q| q.state == State::Shadow && q.updated_at < cutoff)
            .map(|q| q.id.clone())
            .collect();
        let reason = format!(
            "no flagged call for {} (response.shadow-release-after)",
            humantime_serde::re::humantime::format_duration(after)
        );
        for id in quiet {
            match self.on_release(&id, "warden".to_owned(), reason.clone(), false) {
                // Another instance of a Redis group released it first.
                Ok(_) | Err(ReleaseError::AlreadyReleased(_)) => {}
                Err(e) => {
                    tracing::error!(quarantine = %id, error = %e, "Cannot release a quiet shadow incident; retrying at the next sweep.")
                }
            }
        }
    }

    /// Removes released incidents older than `response.incident-retention`
    /// from the registry and from memory, counted in
    /// `warden_incidents_expired_total`.
    fn expire(&mut self) {
        let retention = self.cfg.response.incident_retention;
        let Some((cutoff, text)) = cutoff(retention) else {
            return;
        };
        let in_memory = self.board.expire(&text);
        // Those expired from memory only (dropped earlier by the cap) are
        // counted once, when they leave the registry.
        let expired = match self.registry.expire_released(cutoff) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "Cannot expire released incidents; retrying at the next sweep.");
                in_memory
            }
        };
        self.metrics.limits.incidents_expired.inc_by(expired);
        if expired > 0 {
            tracing::info!(
                expired,
                retention_secs = retention.as_secs(),
                "Expired released incidents past response.incident-retention."
            );
        }
    }

    /// Saves `q`, retrying a failed write: a quarantine is never acted on
    /// before it is recorded, and never dropped.
    fn save(&mut self, q: &Quarantine) {
        let registry = &mut self.registry;
        retrying("record a quarantine", &q.id, || registry.save(q));
        if q.state.is_open() {
            self.written.insert(q.id.clone(), q.written());
        } else {
            self.written.remove(&q.id);
        }
        self.board.put(q);
    }

    /// Queues credential `n` of quarantine `id` for revocation, retrying a
    /// failed write as `save` does.
    fn queue_revocation(&mut self, id: &str, n: usize, credential: &SecretString) {
        let registry = &mut self.registry;
        retrying("queue a revocation", id, || {
            registry.queue_revocation(id, n, credential)
        });
    }

    /// Forgets a credential once nothing will revoke it any more.
    fn dequeue_revocation(&mut self, id: &str, n: usize) {
        self.credentials.remove(&(id.to_owned(), n));
        if let Err(e) = self.registry.dequeue_revocation(id, n) {
            tracing::error!(quarantine = %id, error = %e, "Cannot remove a finished revocation from the queue.");
        }
    }

    fn audit(&mut self, kind: &str, body: serde_json::Value) {
        self.audit.record(kind, body);
    }

    fn on_flag(&mut self, mut flag: Flag) {
        let key = flag.key();
        if let Some(id) = self.by_key.get(&key).cloned() {
            self.refresh(&id);
            if self.open.contains_key(&id) {
                self.roll_up(&id, flag);
                return;
            }
        }
        flag.seal(&self.credential_policy);
        let id = flag.quarantine_id();
        // The very event that opened a quarantine, redelivered after that
        // quarantine was released, opens nothing.
        if self.open.contains_key(&id) || matches!(self.registry.get(&id), Ok(Some(_))) {
            return;
        }
        let targets = self.targets(&flag);
        let names: Vec<String> = self.notifiers.iter().map(|n| n.name.clone()).collect();
        let q = Quarantine::open(&flag, &targets, &names, &self.owner);
        if let (false, Some(c)) = (q.revocations.is_empty(), flag.credential_id) {
            // Queued before the record: a record with pending revocations
            // always finds its credential after a crash.
            self.queue_revocation(&id, 0, &c);
            self.credentials.insert((id.clone(), 0), c);
        }
        self.save(&q);
        self.board.set_open_key(&q, true);
        self.by_key.insert(key, id.clone());
        self.open.insert(id.clone(), q.clone());
        self.progress.insert(
            id.clone(),
            Progress {
                flagged_at: q
                    .revocations
                    .iter()
                    .map(|r| (r.credential, flag.flagged_at))
                    .collect(),
                ..Default::default()
            },
        );
        for (r, n) in q
            .revocations
            .iter()
            .map(|r| (r.revoker.clone(), r.credential))
            .collect::<Vec<_>>()
        {
            self.spawn_revocation(&id, &r, n);
        }
        self.metrics
            .quarantines_opened
            .get_or_create(&super::super::service::metrics::ModeLabel {
                mode: q.mode.as_str(),
            })
            .inc();
        // Shadow opens an incident but quarantines nothing: say so.
        let opened = if q.state == State::Shadow {
            "Would quarantine (shadow mode)"
        } else {
            "Quarantine opened"
        };
        self.metrics
            .incidents_by_class
            .get_or_create(&super::super::service::metrics::ClassModeLabel {
                class: q.class.clone().unwrap_or_else(|| "none".to_owned()),
                mode: q.mode.as_str(),
            })
            .inc();
        tracing::warn!(quarantine = %q.id, agent_id = %q.agent_id, state = q.state.as_str(),
            score = q.score, "{opened}: {}", q.headline());
        self.audit(
            "quarantine",
            json!({"quarantine": q.id, "key": q.key, "agent_id": q.agent_id,
                   "agent_instance": q.agent_instance, "principal": q.principal,
                   "credential": q.credential, "mode": q.mode.as_str(),
                   "state": q.state.as_str(), "score": q.score, "threshold": q.threshold,
                   "basis": q.basis, "reasons": q.reasons, "event_id": flag.call.event_id,
                   "call": flag.call}),
        );
        if q.revocations.is_empty() {
            self.queue_alert(Job::Open(id), true);
        } else {
            self.schedule(Msg::AlertDue(id), self.cfg.response.alert_delay);
        }
        self.update_gauges();
    }

    /// Rolls a further flag into open quarantine `id`, in place: in a storm
    /// this runs once per flagged call, so it copies no incident. Its
    /// record, the board and the audit record of its flags follow once per
    /// burst (see `unsaved`, `rolled`), unless it brings a new credential:
    /// that is recorded, and audited, before its revocation is called.
    fn roll_up(&mut self, id: &str, mut flag: Flag) {
        let Some(q) = self.open.get(id) else {
            return;
        };
        if q.flagged_calls.len() < MAX_FLAGGED_CALLS {
            flag.seal(&self.credential_policy);
        } else {
            flag.seal_dropping_raw(&self.credential_policy);
        }
        let new_credential = flag.credential.as_ref().is_some_and(|c| {
            !q.credentials
                .iter()
                .any(|e| e.credential.fingerprint == c.fingerprint)
        });
        let targets = if new_credential {
            self.targets(&flag)
        } else {
            Vec::new()
        };
        let Some(q) = self.open.get_mut(id) else {
            return;
        };
        let kept = q.flagged_calls.len();
        if !q.roll_in(&mut flag) {
            return;
        }
        if kept < MAX_FLAGGED_CALLS && q.flagged_calls.len() == MAX_FLAGGED_CALLS {
            self.board.set_open_key(q, true);
        }
        let before = q.state;
        let added = q.add_credential(&flag, &targets);
        let state_changed = before != q.state;
        let rolled_up = q.rolled_up;
        let credentials = q.credentials.len();
        let (revs, revokers): (Vec<usize>, Vec<String>) =
            added.map_or_else(Default::default, |n| {
                q.revocations
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.is_for(n))
                    .map(|(i, r)| (i, r.revoker.clone()))
                    .unzip()
            });
        self.metrics
            .flags_rolled_up
            .inc_by(1 + u64::from(flag.folded));
        self.rolled.entry(id.to_owned()).or_default().push(json!({
            "event_id": flag.call.event_id, "score": flag.score,
            "credential": flag.credential, "new_credential": new_credential,
            "folded": flag.folded}));
        // One line per flag would be a line per call in a storm: the
        // incident's updates and warden_flags_rolled_up_total say it.
        tracing::debug!(quarantine = %id, event_id = %flag.call.event_id,
            rolled_up, credentials, "Further flag rolled into an open quarantine.");
        match (added, flag.credential_id.take()) {
            (Some(n), Some(c)) => {
                // Queued before the record that lists it, as for the first
                // credential, and both before the revokers are called.
                self.queue_revocation(id, n, &c);
                self.credentials.insert((id.to_owned(), n), c);
                // The credential and its revocations, not the incident:
                // its rolled-up flags follow with its next full record.
                self.amend_open(id, &[n], &revs, true);
                self.unsaved.insert(id.to_owned());
                self.audit_rolled(id);
                if let Some(p) = self.progress.get_mut(id) {
                    p.flagged_at.insert(Some(n), flag.flagged_at);
                }
                for r in revokers {
                    self.spawn_revocation(id, &r, Some(n));
                }
                if state_changed {
                    self.update_gauges();
                }
            }
            _ => {
                self.unsaved.insert(id.to_owned());
            }
        }
        self.rate_limited_update(id, new_credential);
    }

    /// Writes the audit record of the flags rolled into `id` since its
    /// last one: one record per incident and burst, not one per call.
    fn audit_rolled(&mut self, id: &str) {
        let Some(flags) = self.rolled.remove(id) else {
            return;
        };
        let (agent_id, rolled_up) = self
            .open
            .get(id)
            .map_or((None, 0), |q| (Some(q.agent_id.clone()), q.rolled_up));
        self.audit(
            "flags",
            json!({"quarantine": id, "agent_id": agent_id, "flags": flags,
                   "rolled_up": rolled_up}),
        );
    }

    /// Records open quarantine `id` as it stands (retrying as `save`
    /// does) and shows it on the board, without copying it first.
    fn save_open(&mut self, id: &str) {
        let Some(q) = self.open.get(id) else {
            return;
        };
        let registry = &mut self.registry;
        match self.written.get_mut(id).filter(|w| w.amends < MAX_AMENDS) {
            // What rolled in since it was last written, not the incident.
            Some(w) => {
                let a = q.roll_amend(w);
                retrying("record a quarantine", id, || registry.amend(q, &a, false));
            }
            None => {
                retrying("record a quarantine", id, || registry.save(q));
                self.written.insert(id.to_owned(), q.written());
            }
        }
        self.board.put(q);
    }

    /// Records what changed in open quarantine `id`'s credentials `creds`
    /// and revocations `revs` (indices) as an amend, not the whole
    /// incident: the revocation path's write. Its other changes follow
    /// with its next full record (it stays `unsaved` if it was).
    fn amend_open(&mut self, id: &str, creds: &[usize], revs: &[usize], queued: bool) {
        let Some(q) = self.open.get(id) else {
            return;
        };
        let a = q.amend(creds, revs);
        let registry = &mut self.registry;
        retrying("record a quarantine", id, || registry.amend(q, &a, queued));
        if let Some(w) = self.written.get_mut(id) {
            w.amends += 1;
        }
        self.board.put(q);
    }

    /// Each revoker's name and what it would revoke of the flag's
    /// credential, as it may be shown.
    fn targets(&self, flag: &Flag) -> Vec<(String, Option<String>)> {
        self.revokers
            .iter()
            .map(|r| (r.name().to_owned(), r.target(flag.credential.as_ref())))
            .collect()
    }

    /// With a shared registry, another instance may have released it.
    fn refresh(&mut self, id: &str) {
        if !self.registry.is_shared() {
            return;
        }
        let Ok(Some(stored)) = self.registry.get(id) else {
            return;
        };
        // A release elsewhere is final, however many flags this copy
        // rolled in since it last read the record.
        let newer = self
            .open
            .get(id)
            .is_some_and(|q| stored.version > q.version || !stored.state.is_open());
        if newer {
            if stored.state.is_open() {
                self.open.insert(id.to_owned(), stored);
            } else {
                self.board.put(&stored);
                self.forget(id);
            }
        }
    }

    /// Drops the copies of open quarantines that another instance of the
    /// group released while this one rolled flags into them (their record
    /// refused the save): shown as released, no further revocation or
    /// alert, and their queued credentials removed. Later flags of the
    /// agent open a new incident.
    fn drop_superseded(&mut self) -> Vec<String> {
        let ids = self.registry.take_superseded();
        for id in &ids {
            let Some(q) = self.open.get(id) else {
                continue;
            };
            let credentials = q.credentials.len().max(1);
            let agent_id = q.agent_id.clone();
            if let Ok(Some(stored)) = self.registry.get(id) {
                self.board.put(&stored);
            }
            self.forget(id);
            for n in 0..credentials {
                self.dequeue_revocation(id, n);
            }
            self.rolled.remove(id);
            self.gauges_dirty = true;
            tracing::info!(quarantine = %id, %agent_id,
                "Quarantine released by another instance; its further flags are dropped from it.");
        }
        if !ids.is_empty() {
            // The dequeues above.
            let _ = self.registry.commit();
        }
        ids
    }

    fn forget(&mut self, id: &str) {
        self.written.remove(id);
        if let Some(q) = self.open.remove(id) {
            self.by_key.remove(&q.key);
            self.board.set_open_key(&q, false);
        }
        if let Some(p) = self.progress.remove(id) {
            p.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Revokes credential `n` of `id` through `revoker` once the burst is
    /// committed.
    fn spawn_revocation(&mut self, id: &str, revoker: &str, n: Option<usize>) {
        self.outbound.push(Outbound::Revoke {
            id: id.to_owned(),
            revoker: revoker.to_owned(),
            credential: n,
        });
    }

    fn start_revocation(&self, id: &str, revoker_name: &str, n: Option<usize>) {
        // The board's copy, shared: an agent's incident holds its events
        // and redelivery hashes, too much to copy per credential.
        let Some(open) = self.open.get(id) else {
            return;
        };
        let q = self
            .board
            .get(id)
            .filter(|b| b.version == open.version)
            .unwrap_or_else(|| Arc::new(open.clone()));
        let Some(idx) = self.revokers.iter().position(|r| r.name() == revoker_name) else {
            // Configured when the quarantine opened, gone since: say so.
            let _ = self.tx.try_send(Msg::Revoked {
                id: id.to_owned(),
                revoker: revoker_name.to_owned(),
                credential: n,
                attempts: 0,
                error: Some("revoker no longer configured".to_owned()),
            });
            return;
        };
        let revokers = self.revokers.clone();
        let credential = n.and_then(|n| self.credentials.get(&(id.to_owned(), n)).cloned());
        let shown = n
            .and_then(|n| q.credentials.get(n))
            .map(|e| e.credential.clone());
        let http = self.http.clone();
        let tx = self.tx.clone();
        let policy = self.policy;
        let cancel = self
            .progress
            .get(id)
            .map(|p| p.cancel.clone())
            .unwrap_or_default();
        let metrics = self.metrics.clone();
        let audit = self.audit.clone();
        self.rt.spawn(async move {
            let r = &revokers[idx];
            let name = r.name().to_owned();
            let done = deliver::retry(
                policy,
                || r.attempt(&http, &q, credential.as_ref(), shown.as_ref()),
                |n, a| {
                    metrics
                        .revocation_attempts
                        .get_or_create(&super::super::service::metrics::DestinationLabel {
                            destination: name.clone(),
                            outcome: outcome_str(a),
                        })
                        .inc();
                    audit_call(&audit, &q.id, &name, "revoke", n, a);
                },
                || cancel.load(Ordering::Relaxed),
            )
            .await;
            let _ = tx
                .send(Msg::Revoked {
                    id: q.id.clone(),
                    revoker: name,
                    credential: n,
                    attempts: done.attempts,
                    error: done.error,
                })
                .await;
        });
    }

    fn on_revoked(
        &mut self,
        id: &str,
        revoker: &str,
        n: Option<usize>,
        attempts: u32,
        error: Option<String>,
    ) {
        let Some(q) = self.open.get_mut(id) else {
            return;
        };
        let Some(ri) = q
            .revocations
            .iter()
            .position(|r| r.revoker == revoker && r.credential == n)
        else {
            return;
        };
        let r = &mut q.revocations[ri];
        r.attempts += attempts;
        r.outcome = if error.is_none() {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        r.last_error = error.clone();
        r.done_at = Some(now_rfc3339());
        let before = q.state;
        q.settle_state();
        q.touch();
        let state = q.state;
        let settled_n = n.filter(|n| q.credential_settled(*n));
        let credential = n
            .and_then(|n| q.credentials.get(n))
            .map(|e| e.credential.clone());
        self.amend_open(id, n.as_slice(), &[ri], false);
        if let Some(n) = settled_n {
            self.dequeue_revocation(id, n);
        }
        let progress = self.progress.entry(id.to_owned()).or_default();
        if error.is_none() {
            if let Some(t) = progress.flagged_at.get(&n) {
                self.metrics
                    .revocation_seconds
                    .observe(t.elapsed().as_secs_f64());
            }
        }
        if settled_n.is_some() {
            progress.flagged_at.remove(&n);
        }
        self.audit(
            "revocation",
            json!({"quarantine": id, "revoker": revoker, "credential": credential,
                   "outcome": if error.is_none() { "revoked" } else { "failed" },
                   "attempts": attempts, "error": error, "state": state.as_str()}),
        );
        match &error {
            None => {
                tracing::info!(quarantine = %id, revoker, credential = n, attempts, "Credential revoked.")
            }
            Some(e) => {
                tracing::error!(quarantine = %id, revoker, credential = n, attempts, error = %e, "Revocation FAILED: the credential may still work.")
            }
        }
        self.update_gauges();
        let settled = state != State::Pending;
        let alerted = self.progress.get(id).is_some_and(|p| p.paging.alerted());
        if settled && !alerted {
            self.queue_alert(Job::Open(id.to_owned()), true);
        } else if settled && before != state {
            self.send_update(id, format!("revocation now: {}", state.as_str()));
        }
    }

    /// Counts one alert (or digest) delivered or given up on.
    fn count_alert(&self, notifier: &str, delivered: bool) {
        self.metrics
            .alerts
            .get_or_create(&super::super::service::metrics::DestinationLabel {
                destination: notifier.to_owned(),
                outcome: if delivered { "delivered" } else { "failed" },
            })
            .inc();
    }

    fn on_alerted(&mut self, id: &str, notifier: &str, attempts: u32, error: Option<String>) {
        self.count_alert(notifier, error.is_none());
        let q = self.open.get_mut(id).cloned().or_else(|| {
            self.board
                .get(id)
                .map(|q| (*q).clone())
                .filter(|_| id != "digest")
        });
        self.audit(
            "alert",
            json!({"quarantine": id, "notifier": notifier, "attempts": attempts,
                   "outcome": if error.is_none() { "delivered" } else { "failed" }, "error": error}),
        );
        if let Some(e) = &error {
            tracing::error!(quarantine = %id, notifier, attempts, error = %e, "Alert not delivered.");
        }
        let Some(mut q) = q else {
            return;
        };
        if let Some(a) = q.alerts.iter_mut().find(|a| a.notifier == notifier) {
            a.attempts += attempts;
            if error.is_none() {
                a.delivered += 1;
                a.rolled_up_alerted = q.rolled_up;
            }
            a.last_error = error;
        }
        q.touch();
        if let Some(open) = self.open.get_mut(id) {
            *open = q.clone();
        }
        self.save(&q);
    }

    /// Sends an update now, or schedules one for when `update-interval`
    /// has passed since the last.
    fn rate_limited_update(&mut self, id: &str, new_credential: bool) {
        let every = self.cfg.response.update_interval;
        let Some(p) = self.progress.get_mut(id) else {
            return;
        };
        let last = match p.paging {
            // The opening alert, still to be sent, will carry the count;
            // a scheduled update will.
            Paging::Unsent | Paging::UpdateScheduled { .. } => return,
            Paging::Sent { last } => last,
        };
        match last.map(|t| t.elapsed()) {
            Some(since) if since < every => {
                p.paging = Paging::UpdateScheduled { last };
                self.schedule(Msg::UpdateDue(id.to_owned()), every - since);
            }
            _ if new_credential => self.send_update(
                id,
                "a further credential of the agent flagged and rolled up".to_owned(),
            ),
            _ => self.send_update(id, "further flagged calls rolled up".to_owned()),
        }
    }

    fn send_update(&mut self, id: &str, what: String) {
        if !self.open.contains_key(id) {
            return;
        }
        if let Some(p) = self.progress.get_mut(id) {
            p.paging = Paging::Sent {
                last: Some(Instant::now()),
            };
        }
        self.queue_alert(Job::Update(id.to_owned(), what), false);
    }

    fn queue_alert(&mut self, job: Job, opening: bool) {
        if opening {
            let p = self.progress.entry(job.id().to_owned()).or_default();
            if p.paging.alerted() {
                return;
            }
            p.paging = Paging::Sent {
                last: Some(Instant::now()),
            };
        }
        // The console/log notifier: the same alert, at the same moment; in
        // a storm, a few blocks a minute (each incident already has its
        // one-line "opened" warning, and the API lists them all).
        let block = matches!(job, Job::Open(_)) && self.log_blocks.allow(Instant::now());
        if let Some(q) = self.open.get(job.id()) {
            let links = render::links(&self.cfg.response.public_url, q);
            match &job {
                Job::Open(_) if block => tracing::warn!(quarantine = %q.id, agent_id = %q.agent_id,
                    state = q.state.as_str(), "ALERT\n{}", render::text_alert(q, &links)),
                Job::Update(_, what) => tracing::warn!(quarantine = %q.id, agent_id = %q.agent_id,
                    state = q.state.as_str(), flags = q.flags(), "Alert update: {what}: {}", q.headline()),
                _ => {}
            }
        }
        let q = self.open.get(job.id());
        for (i, n) in self.notifiers.iter().enumerate() {
            let pagerduty = matches!(n.kind, NotifierKind::PagerDuty { .. });
            // One page per incident: updates go to Slack and the API only,
            // so a PagerDuty incident a human resolved stays resolved.
            if pagerduty && matches!(job, Job::Update(..)) {
                continue;
            }
            // An opening alert a notifier already delivered (before a
            // restart, or in a digest) is not sent again.
            let delivered = q.is_some_and(|q| {
                q.alerts
                    .iter()
                    .any(|a| a.notifier == n.name && a.delivered > 0)
            });
            if delivered && matches!(job, Job::Open(_)) {
                continue;
            }
            self.outbound.push(Outbound::Alert(i, job.clone()));
        }
        self.update_gauges();
    }

    /// A digest was delivered for `ids`: each counts as alerted there, and
    /// remembers the digest so that its release can resolve it.
    fn on_digested(&mut self, notifier: &str, key: &str, ids: &[String], error: Option<String>) {
        self.count_alert(notifier, error.is_none());
        self.audit(
            "alert",
            json!({"quarantine": "digest", "dedup_key": key, "quarantines": ids,
                   "notifier": notifier,
                   "outcome": if error.is_none() { "delivered" } else { "failed" }, "error": error}),
        );
        if let Some(e) = &error {
            tracing::error!(notifier, error = %e, digest = key, "Digest alert not delivered.");
            return;
        }
        for id in ids {
            let Some(mut q) = self.open.get(id).cloned() else {
                continue;
            };
            if let Some(a) = q.alerts.iter_mut().find(|a| a.notifier == notifier) {
                a.delivered += 1;
                a.rolled_up_alerted = q.rolled_up;
                a.digest = Some(key.to_owned());
            }
            q.touch();
            self.open.insert(id.clone(), q.clone());
            self.save(&q);
        }
    }

    fn schedule(&self, msg: Msg, after: Duration) {
        let tx = self.tx.clone();
        self.rt.spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(msg).await;
        });
    }

    fn on_release(
        &mut self,
        id: &str,
        actor: String,
        reason: String,
        false_positive: bool,
    ) -> Result<Quarantine, ReleaseError> {
        self.refresh(id);
        let mut q = match self.open.get(id) {
            Some(q) => q.clone(),
            None => match self.registry.get(id) {
                Ok(Some(q)) => q,
                Ok(None) => return Err(ReleaseError::NotFound(id.to_owned())),
                Err(e) => return Err(ReleaseError::Registry(e.to_string())),
            },
        };
        let was = q
            .release(Release {
                actor: actor.clone(),
                reason: reason.clone(),
                false_positive,
                at: now_rfc3339(),
            })
            .map_err(|_| ReleaseError::AlreadyReleased(id.to_owned()))?;
        self.save(&q);
        let alerted = self.progress.get(id).is_some_and(|p| p.paging.alerted());
        self.forget(id);
        // Released: nothing will revoke its credentials any more.
        for n in 0..q.credentials.len().max(1) {
            self.dequeue_revocation(id, n);
        }
        self.metrics.releases.inc();
        self.audit(
            "release",
            json!({"quarantine": id, "agent_id": q.agent_id, "actor": actor, "reason": reason,
                   "false_positive": false_positive, "state_before": was.as_str()}),
        );
        tracing::info!(quarantine = %id, agent_id = %q.agent_id, actor, false_positive, "Quarantine released.");
        if alerted {
            for i in 0..self.notifiers.len() {
                self.outbound
                    .push(Outbound::Alert(i, Job::Release(id.to_owned())));
            }
        }
        // A digest page stands for several quarantines: resolved with the
        // last of them.
        for a in &q.alerts {
            let Some(key) = &a.digest else {
                continue;
            };
            let others = self.open.values().any(|o| {
                o.alerts
                    .iter()
                    .any(|b| b.notifier == a.notifier && b.digest.as_ref() == Some(key))
            });
            if others {
                continue;
            }
            if let Some(i) = self.notifiers.iter().position(|n| n.name == a.notifier) {
                self.outbound
                    .push(Outbound::Alert(i, Job::ResolveDigest(key.clone())));
            }
        }
        if false_positive {
            (self.learn)(
                &q.agent_id,
                q.flagged_events.clone(),
                format!("release:{id}"),
            );
        }
        self.update_gauges();
        Ok(q)
    }

    /// The gauges are set once per burst: counting every open quarantine
    /// per flag or alert would cost a pass over all of them each time.
    fn update_gauges(&mut self) {
        self.gauges_dirty = true;
    }

    fn publish_gauges(&self) {
        let mut counts: HashMap<&'static str, i64> = HashMap::new();
        for q in self.open.values() {
            *counts.entry(q.state.as_str()).or_default() += 1;
        }
        for s in [
            State::Pending,
            State::Revoked,
            State::RevokeFailed,
            State::Shadow,
        ] {
            self.metrics
                .quarantines_open
                .get_or_create(&super::super::service::metrics::StateLabel { state: s.as_str() })
                .set(counts.get(s.as_str()).copied().unwrap_or(0));
        }
        for n in &self.notifiers {
            self.metrics
                .alert_queue_depth
                .get_or_create(&NotifierLabel {
                    notifier: n.name.clone(),
                })
                .set(n.queue.depth() as i64);
        }
    }

    /// One task per notifier: takes jobs in order, renders them from the
    /// newest state, delivers with retries.
    fn spawn_notifier(&self, n: &Notifier) {
        let queue = n.queue.clone();
        let name = n.name.clone();
        let kind = n.kind.clone();
        let board = self.board.clone();
        let http = self.http.clone();
        let tx = self.tx.clone();
        let policy = self.policy;
        let public = self.cfg.response.public_url.clone();
        let metrics = self.metrics.clone();
        let audit = self.audit.clone();
        let pacing = &self.cfg.response.pacing;
        // One bucket per notifier: one Slack webhook, one routing key.
        let bucket = Arc::new(Mutex::new(match kind {
            NotifierKind::Slack { .. } => {
                TokenBucket::new(pacing.slack_per_second, pacing.slack_burst)
            }
            NotifierKind::PagerDuty { .. } => {
                TokenBucket::new(pacing.pagerduty_per_minute / 60.0, pacing.pagerduty_burst)
            }
        }));
        let label = NotifierLabel {
            notifier: name.clone(),
        };
        self.rt.spawn(async move {
            loop {
                if queue.depth() == 0 {
                    queue.notify.notified().await;
                    continue;
                }
                // The job stays queued while the bucket is empty: updates
                // of its incident merge into it there, and openings past
                // the queue's bound roll into one digest.
                let wait = bucket
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take(Instant::now());
                if let Err(wait) = wait {
                    metrics.limits.alerts_paced.get_or_create(&label).inc();
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let refund = || bucket.lock().unwrap_or_else(|p| p.into_inner()).refund();
                let Some(job) = queue.pop() else {
                    refund();
                    continue;
                };
                let Some(body) = render_job(&kind, &job, &board, &public) else {
                    refund();
                    continue;
                };
                let id = job.id().to_owned();
                let url = match &kind {
                    NotifierKind::Slack { url } | NotifierKind::PagerDuty { url, .. } => {
                        url.clone()
                    }
                };
                let done = deliver::retry(
                    policy,
                    || async {
                        match &kind {
                            NotifierKind::Slack { .. } => {
                                deliver::post_slack(&http, &url, &body).await
                            }
                            NotifierKind::PagerDuty { .. } => {
                                deliver::post_pagerduty(&http, &url, &body).await
                            }
                        }
                    },
                    |n, a| {
                        if let Attempt::Retry { error, after } = a {
                            if error.starts_with("HTTP 429") {
                                // Everything behind it waits too.
                                metrics.limits.alerts_throttled.get_or_create(&label).inc();
                                bucket
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .throttled(Instant::now(), *after);
                            }
                        }
                        metrics
                            .alert_attempts
                            .get_or_create(&super::super::service::metrics::DestinationLabel {
                                destination: name.clone(),
                                outcome: outcome_str(a),
                            })
                            .inc();
                        audit_call(&audit, &id, &name, "alert", n, a);
                    },
                    || false,
                )
                .await;
                let msg = match job {
                    Job::Digest(ids) => Msg::Digested {
                        notifier: name.clone(),
                        dedup_key: digest_key(&ids),
                        ids,
                        error: done.error,
                    },
                    // A resolved digest belongs to no quarantine.
                    Job::ResolveDigest(_) => continue,
                    _ => Msg::Alerted {
                        id,
                        notifier: name.clone(),
                        attempts: done.attempts,
                        error: done.error,
                    },
                };
                let _ = tx.send(msg).await;
            }
        });
    }
}

/// Records one call out (a revocation or alert attempt) in the audit log.
/// Retries a registry write with backoff until it succeeds: nothing is
/// called out before it is recorded, and nothing is dropped.
fn retrying(what: &str, id: &str, mut write: impl FnMut() -> Result<(), RegistryError>) {
    let mut backoff = Duration::from_millis(100);
    while let Err(e) = write() {
        tracing::error!(quarantine = %id, error = %e, "Cannot {what}; retrying.");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn audit_call(audit: &AuditWriter, id: &str, destination: &str, what: &str, n: u32, a: &Attempt) {
    audit.record(
        "outbound",
        json!({"quarantine": id, "destination": destination, "call": what,
               "attempt": n, "result": a.describe()}),
    );
}

fn render_job(
    kind: &NotifierKind,
    job: &Job,
    board: &Board,
    public: &str,
) -> Option<serde_json::Value> {
    if let Job::Digest(ids) = job {
        let qs: Vec<Arc<Quarantine>> = ids.iter().filter_map(|id| board.get(id)).collect();
        return Some(render::digest(
            kind_is_slack(kind),
            &qs,
            ids.len(),
            public,
            routing_key(kind),
            &digest_key(ids),
        ));
    }
    if let Job::ResolveDigest(key) = job {
        return match kind {
            NotifierKind::PagerDuty { routing_key, .. } => {
                Some(render::pagerduty_resolve_key(key, routing_key))
            }
            NotifierKind::Slack { .. } => None,
        };
    }
    let q = board.get(job.id())?;
    let links = render::links(public, &q);
    Some(match (kind, job) {
        (NotifierKind::Slack { .. }, Job::Open(_)) => render::slack_alert(&q, &links),
        (NotifierKind::Slack { .. }, Job::Update(_, what)) => {
            render::slack_update(&q, &links, what)
        }
        (NotifierKind::Slack { .. }, Job::Release(_)) => render::slack_release(&q, &links),
        (NotifierKind::PagerDuty { routing_key, .. }, Job::Open(_)) => {
            render::pagerduty_trigger(&q, routing_key, &links)
        }
        // Never a re-trigger: it would re-open what a human resolved.
        (NotifierKind::PagerDuty { .. }, Job::Update(..)) => return None,
        (NotifierKind::PagerDuty { routing_key, .. }, Job::Release(_)) => {
            render::pagerduty_resolve(&q, routing_key)
        }
        (_, Job::Digest(_) | Job::ResolveDigest(_)) => return None,
    })
}

fn kind_is_slack(kind: &NotifierKind) -> bool {
    matches!(kind, NotifierKind::Slack { .. })
}

fn routing_key(kind: &NotifierKind) -> &str {
    match kind {
        NotifierKind::PagerDuty { routing_key, .. } => routing_key,
        NotifierKind::Slack { .. } => "",
    }
}

fn outcome_str(a: &Attempt) -> &'static str {
    match a {
        Attempt::Done => "ok",
        Attempt::Retry { .. } => "retry",
        Attempt::Refused(_) => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(cap: usize) -> AlertQueue {
        AlertQueue {
            jobs: Mutex::new((VecDeque::new(), Vec::new())),
            notify: Notify::new(),
            cap,
        }
    }

    #[test]
    fn updates_merge_and_overflow_rolls_into_one_digest() {
        let m = Metrics::default();
        let q = queue(3);
        q.push(Job::Open("a".into()), &m, "slack");
        // An update behind the opening alert adds nothing: it is rendered
        // from the newest state when sent.
        q.push(Job::Update("a".into(), "more".into()), &m, "slack");
        q.push(Job::Update("b".into(), "one".into()), &m, "slack");
        q.push(Job::Update("b".into(), "two".into()), &m, "slack");
        q.push(Job::Open("c".into()), &m, "slack");
        q.push(Job::Open("d".into()), &m, "slack");
        q.push(Job::Open("e".into()), &m, "slack");
        assert_eq!(q.depth(), 5);
        assert_eq!(q.pop(), Some(Job::Open("a".into())));
        // A new incident pages before news of a known one.
        assert_eq!(q.pop(), Some(Job::Open("c".into())));
        assert_eq!(q.pop(), Some(Job::Update("b".into(), "two".into())));
        assert_eq!(q.pop(), Some(Job::Digest(vec!["d".into(), "e".into()])));
        assert_eq!(q.pop(), None);
        // Releases and a digest's resolve pass the bound: folded into a
        // digest, they would page.
        q.push(Job::Open("f".into()), &m, "slack");
        q.push(Job::Open("g".into()), &m, "slack");
        q.push(Job::Open("h".into()), &m, "slack");
        q.push(Job::Open("i".into()), &m, "slack");
        q.push(Job::Release("a".into()), &m, "slack");
        q.push(Job::ResolveDigest("warden-digest-d".into()), &m, "slack");
        assert_eq!(q.pop(), Some(Job::Open("f".into())));
        assert_eq!(q.pop(), Some(Job::Open("g".into())));
        assert_eq!(q.pop(), Some(Job::Open("h".into())));
        assert_eq!(q.pop(), Some(Job::Release("a".into())));
        assert_eq!(q.pop(), Some(Job::ResolveDigest("warden-digest-d".into())));
        assert_eq!(q.pop(), Some(Job::Digest(vec!["i".into()])));
        let rolled = m
            .alerts_rolled_up
            .get_or_create(&NotifierLabel {
                notifier: "slack".into(),
            })
            .get();
        assert_eq!(rolled, 3, "d, e and i; no release");
    }
}
