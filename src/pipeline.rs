//! The seam between sources and workers, used by HTTP ingest and the Kafka
//! source alike.
//!
//! - **Routing.** Every event of one agent goes to the one worker that owns
//!   it ([`route`]), so a profile has a single writer and scoring takes no
//!   lock. Worker queues are bounded: a full queue makes a source wait (or
//!   HTTP answer 429).
//! - **Barrier.** [`Router::barrier`] passes a marker down every worker
//!   queue. Queues are FIFO, so when every worker has acknowledged it (after
//!   its checkpoint), every event dispatched before is decided and saved: a
//!   source may then commit what it consumed. The workers stay parked until
//!   the source says whether the commit happened ([`Barrier`]), so that no
//!   later decision slips into that commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::ingest::decode::DecodedBody;

/// The worker that owns `agent_id`, of `n`.
pub fn route(agent_id: &str, n: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(agent_id.as_bytes()) % n.max(1) as u64) as usize
}

/// One Kafka message, routed by its key: decoded by its worker, once.
#[derive(Debug)]
pub struct KafkaMessage {
    pub payload: Bytes,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Box<[u8]>>,
}

/// What a worker is sent.
pub enum Msg {
    /// Events of one HTTP request that this worker's agents own, decoded
    /// once by ingest: indices into the shared batch.
    Events {
        batch: Arc<DecodedBody>,
        items: Vec<u32>,
    },
    /// A Kafka message for one of this worker's agents.
    Message(KafkaMessage),
    /// These partitions were revoked: save and drop the agents last seen on
    /// them, so their next owner continues from the store.
    Evict(Vec<i32>),
    /// Time to close idle sessions and checkpoint.
    Tick,
    /// Checkpoint now and say whether it worked (everything queued before
    /// this message is then decided and saved), then wait until `resume`
    /// fires or closes: the source commits in between, and no later
    /// decision may slip into that commit.
    Barrier {
        ack: std::sync::mpsc::Sender<bool>,
        /// `true` once the source committed.
        resume: std::sync::mpsc::Receiver<bool>,
    },
    /// A human released a quarantine as a false positive: learn its
    /// flagged events (raw JSON) in a session of their own.
    Learn {
        events: Vec<String>,
        session: String,
    },
    /// The admin API asks what the worker knows of an agent (profile,
    /// policy, last decisions); `None` when it has no profile.
    Explain {
        agent_id: String,
        decisions: usize,
        reply: tokio::sync::oneshot::Sender<Option<serde_json::Value>>,
    },
    /// Drain is complete: checkpoint, exit.
    Stop,
}

/// The worker queues, in worker order.
#[derive(Clone)]
pub struct Router {
    queues: Vec<mpsc::Sender<Msg>>,
    /// Set once a barrier is held until exit: the workers are parked for
    /// good, so no later barrier (a rebalance callback, the consumer's
    /// close) may wait for them.
    held: Arc<AtomicBool>,
}

// === impl Router ===

impl Router {
    /// `workers` bounded queues of `depth` messages, and their receiving
    /// ends, one per worker.
    pub fn new(workers: usize, depth: usize) -> (Self, Vec<mpsc::Receiver<Msg>>) {
        let (queues, receivers) = (0..workers.max(1)).map(|_| mpsc::channel(depth)).unzip();
        let held = Arc::new(AtomicBool::new(false));
        (Self { queues, held }, receivers)
    }

    /// Whether a failed commit parked the workers until the process ends.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    pub fn workers(&self) -> usize {
        self.queues.len()
    }

    /// The worker that owns `agent_id`.
    pub fn owner(&self, agent_id: &str) -> usize {
        route(agent_id, self.queues.len())
    }

    /// The queue of worker `w`, for a source that reserves slots first.
    pub fn queue(&self, w: usize) -> &mpsc::Sender<Msg> {
        &self.queues[w]
    }

    /// Queues `msg` for worker `w`, waiting while its queue is full; false
    /// once the worker is gone.
    pub async fn send(&self, w: usize, msg: Msg) -> bool {
        self.queues[w].send(msg).await.is_ok()
    }

    /// [`send`](Self::send) from synchronous code (a rebalance callback).
    pub fn send_blocking(&self, w: usize, mut msg: Msg) -> bool {
        loop {
            match self.queues[w].try_send(msg) {
                Ok(()) => return true,
                Err(TrySendError::Full(m)) => {
                    msg = m;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
    }

    /// Sends `msg()` to every worker, waiting while a queue is full.
    pub fn broadcast_blocking(&self, msg: impl Fn() -> Msg) -> bool {
        (0..self.queues.len()).all(|w| self.send_blocking(w, msg()))
    }

    /// Sends `msg()` to every worker whose queue has room now (periodic
    /// maintenance, which the next period repeats anyway).
    pub fn try_broadcast(&self, msg: impl Fn() -> Msg) {
        for q in &self.queues {
            let _ = q.try_send(msg());
        }
    }

    /// Sends `msg()` to every worker, waiting while a queue is full.
    pub async fn broadcast(&self, msg: impl Fn() -> Msg) {
        for q in &self.queues {
            let _ = q.send(msg()).await;
        }
    }

    /// Phase one of a commit: every worker decides what was queued before
    /// the barrier and checkpoints it. `None` when a worker could not (or
    /// is gone): commit nothing, the workers go on. Blocking.
    pub fn barrier(&self) -> Option<Barrier> {
        if self.is_held() {
            return None;
        }
        let mut acks = Vec::with_capacity(self.queues.len());
        let mut barrier = Barrier {
            resumes: Vec::with_capacity(self.queues.len()),
            held: self.held.clone(),
        };
        for w in 0..self.queues.len() {
            let (ack, ack_rx) = std::sync::mpsc::channel();
            let (resume_tx, resume) = std::sync::mpsc::channel::<bool>();
            if !self.send_blocking(w, Msg::Barrier { ack, resume }) {
                return None;
            }
            acks.push(ack_rx);
            barrier.resumes.push(resume_tx);
        }
        for (w, rx) in acks.into_iter().enumerate() {
            // A worker waits on its queue's earlier messages, the responder
            // and the dead-letter flush: never silently, however long.
            let waited = std::time::Instant::now();
            let ack = loop {
                match rx.recv_timeout(std::time::Duration::from_secs(10)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => tracing::warn!(
                        worker = w,
                        waited_s = waited.elapsed().as_secs(),
                        "Commit barrier still waits for a worker to checkpoint (queued events, responder sync or dead-letter flush); Kafka offsets are not committed meanwhile."
                    ),
                    other => break other.ok(),
                }
            };
            if ack != Some(true) {
                tracing::warn!(
                    worker = w,
                    "A worker could not checkpoint; nothing is committed until the next barrier."
                );
                return None;
            }
        }
        Some(barrier)
    }
}

/// Workers parked on a barrier, every one checkpointed, until the source
/// says whether it committed. Dropped without [`Barrier::committed`], the
/// workers drop what they staged and go on.
#[must_use = "the workers stay parked until the barrier is settled or dropped"]
pub struct Barrier {
    resumes: Vec<std::sync::mpsc::Sender<bool>>,
    held: Arc<AtomicBool>,
}

// === impl Barrier ===

impl Barrier {
    /// The commit happened: the staged state becomes current.
    pub fn committed(self) {
        for r in &self.resumes {
            let _ = r.send(true);
        }
    }

    /// The commit's outcome is unknown: keep the workers parked until the
    /// process ends (crash-only), so nothing more is decided or saved.
    pub fn hold_until_exit(self) {
        self.held.store(true, Ordering::Release);
        std::mem::forget(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker that acknowledges every barrier and waits for its outcome,
    /// as `Worker::run` does.
    fn parking_worker(mut rx: mpsc::Receiver<Msg>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            while let Some(msg) = rx.blocking_recv() {
                if let Msg::Barrier { ack, resume } = msg {
                    let _ = ack.send(true);
                    let _ = resume.recv();
                }
            }
        })
    }

    #[test]
    fn a_held_barrier_makes_later_barriers_return_at_once() {
        let (router, receivers) = Router::new(2, 4);
        let workers: Vec<_> = receivers.into_iter().map(parking_worker).collect();
        router.barrier().expect("both workers ack").committed();
        assert!(!router.is_held());
        router
            .barrier()
            .expect("both workers ack")
            .hold_until_exit();
        assert!(router.is_held());
        // The workers are parked for good: waiting for them would hang (the
        // consumer's close after a failed transaction did exactly that).
        let t0 = std::time::Instant::now();
        assert!(router.clone().barrier().is_none());
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        drop(router);
        drop(workers);
    }
}
