//! The Kafka source of `warden run`.
//!
//! Messages are decoded once to validate them and find the worker that owns
//! their agent, then handed to it over a bounded queue: a full queue makes
//! the consumer wait, so a slow worker slows consumption and nothing is
//! dropped. An undecodable message goes to the dead-letter topic with its
//! bytes intact and the reason in headers.
//!
//! Offsets are committed only after the state their events produced is
//! checkpointed: every `commit-interval` the source sends a barrier down
//! every worker queue; queues are FIFO, so when a worker acknowledges the
//! barrier (after its checkpoint) every event dispatched before it is
//! decided and saved. Only then are the offsets noted before the barrier
//! committed.
//!
//! When the group takes partitions away, the same barrier runs inside the
//! rebalance callback, before they go: what this instance decided from
//! them is committed, and, with Redis as the store, their agents are saved
//! and dropped so that their next owner (or this instance, later) continues
//! from the stored profile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::watch;

use crate::ingest::decode::decode_bytes;
use crate::service::worker::{count_event, Msg};
use crate::service::{route, Shared};

/// A failure of the Kafka source that stops it.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("cannot create the Kafka {what}: {source}")]
    Client {
        what: &'static str,
        source: rdkafka::error::KafkaError,
    },
    /// A transaction's outcome is unknown; the service must stop without
    /// committing anything more, so a restart replays from the last commit.
    #[error("Kafka transaction failed: {0}")]
    Transaction(#[source] rdkafka::error::KafkaError),
}

/// Offsets: next to commit per partition, and what was last committed.
#[derive(Default)]
struct Positions {
    next: HashMap<i32, i64>,
    committed: HashMap<i32, i64>,
}

/// The consumer's context: commits and hands agents over before
/// partitions are revoked.
struct SourceContext {
    shared: Arc<Shared>,
    positions: Arc<Mutex<Positions>>,
    topic: String,
    /// A failure inside a rebalance callback, which cannot return it: the
    /// consume loop stops on it.
    fatal: Mutex<Option<KafkaSourceError>>,
    /// Wakes the consume loop when `fatal` is set.
    fatal_set: tokio::sync::Notify,
}

impl SourceContext {
    fn take_fatal(&self) -> Option<KafkaSourceError> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(partitions = ?partitions, "Partitions assigned.");
            self.shared
                .assigned
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        tracing::info!(partitions = ?revoked, "Partitions revoked; committing before they go.");
        let group = consumer.group_metadata();
        tokio::task::block_in_place(|| {
            if let Err(e) = barrier_commit(
                &self.shared,
                &self.topic,
                &self.positions,
                group.as_ref(),
                |tpl| consumer.commit(tpl, CommitMode::Sync),
            ) {
                // Hand nothing over: the service stops and replays.
                *self.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                self.fatal_set.notify_one();
                return;
            }
            let mut p = self.positions.lock().unwrap_or_else(|e| e.into_inner());
            for part in &revoked {
                p.next.remove(part);
                p.committed.remove(part);
            }
            drop(p);
            if self.shared.config.redis.enabled {
                for s in &self.shared.senders {
                    send_blocking(s, Msg::Evict(revoked.clone()));
                }
            }
        });
    }
}

/// Sends on a worker queue from synchronous code, waiting while it is full.
fn send_blocking(s: &tokio::sync::mpsc::Sender<Msg>, mut msg: Msg) -> bool {
    loop {
        match s.try_send(msg) {
            Ok(()) => return true,
            Err(TrySendError::Full(m)) => {
                msg = m;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TrySendError::Closed(_)) => return false,
        }
    }
}

fn client(cfg: &crate::config::KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    c
}

/// Consumes until `stop` turns true, then commits what was checkpointed.
pub async fn run(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), KafkaSourceError> {
    let cfg = &shared.config.kafka;
    let positions = Arc::new(Mutex::new(Positions::default()));
    let context = SourceContext {
        shared: shared.clone(),
        positions: positions.clone(),
        topic: cfg.topic.clone(),
        fatal: Mutex::new(None),
        fatal_set: tokio::sync::Notify::new(),
    };
    let consumer: StreamConsumer<SourceContext> = client(cfg)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create_with_context(context)
        .map_err(|source| KafkaSourceError::Client {
            what: "consumer",
            source,
        })?;
    let producer: FutureProducer = client(cfg)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "300000")
        .create()
        .map_err(|source| KafkaSourceError::Client {
            what: "producer",
            source,
        })?;
    consumer
        .subscribe(&[&cfg.topic])
        .map_err(|source| KafkaSourceError::Client {
            what: "subscription",
            source,
        })?;
    let dlq = cfg.dlq();
    let max = shared.config.ingest.max_event_bytes;
    tracing::info!(topic = %cfg.topic, group = %cfg.group, dlq = %dlq, "Consuming from Kafka.");

    let mut tick = tokio::time::interval(cfg.commit_interval);
    tick.tick().await;
    let mut errors_logged = 0u32;
    loop {
        tokio::select! {
            biased;
            _ = consumer.context().fatal_set.notified() => {
                if let Some(e) = consumer.context().take_fatal() {
                    return Err(e);
                }
            }
            _ = stop.changed() => break,
            _ = tick.tick() => {
                let group = consumer.group_metadata();
                tokio::task::block_in_place(|| {
                    barrier_commit(&shared, &cfg.topic, &positions, group.as_ref(), |tpl| {
                        consumer.commit(tpl, CommitMode::Sync)
                    })
                })?;
            }
            msg = consumer.recv() => {
                if let Some(e) = consumer.context().take_fatal() {
                    return Err(e);
                }
                let m = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        // The client reconnects by itself; say so once in a while.
                        if errors_logged % 100 == 0 {
                            tracing::warn!(error = %e, "Kafka consumer error; retrying.");
                        }
                        errors_logged = errors_logged.wrapping_add(1);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let payload = m.payload().unwrap_or(&[]);
                match decode_bytes(payload, max) {
                    Ok(ev) => {
                        count_event(&shared, &ev);
                        let w = route(ev.agent_id(), shared.senders.len());
                        let msg = Msg::Batch {
                            body: Bytes::copy_from_slice(payload),
                            items: std::iter::once(0..payload.len()).collect(),
                            partition: m.partition(),
                        };
                        if shared.senders[w].send(msg).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        shared.metrics.rejected.get_or_create(&crate::service::metrics::KindLabel {
                            kind: e.kind.as_str(),
                        }).inc();
                        let reason = e.to_string();
                        let partition = m.partition().to_string();
                        let offset = m.offset().to_string();
                        let headers = OwnedHeaders::new()
                            .insert(Header { key: "warden-error", value: Some(reason.as_bytes()) })
                            .insert(Header { key: "warden-error-kind", value: Some(e.kind.as_str().as_bytes()) })
                            .insert(Header { key: "warden-source-topic", value: Some(m.topic().as_bytes()) })
                            .insert(Header { key: "warden-source-partition", value: Some(partition.as_bytes()) })
                            .insert(Header { key: "warden-source-offset", value: Some(offset.as_bytes()) });
                        let mut record = FutureRecord::to(&dlq).payload(payload).headers(headers);
                        if let Some(k) = m.key() {
                            record = record.key(k);
                        }
                        // A dead letter must not be lost either: wait for it.
                        if let Err((err, _)) = producer.send(record, Duration::from_secs(300)).await {
                            tracing::error!(error = %err, "Cannot write to the dead-letter topic; stopping so the message is redelivered.");
                            break;
                        }
                    }
                }
                positions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .next
                    .insert(m.partition(), m.offset() + 1);
            }
        }
    }
    let group = consumer.group_metadata();
    tokio::task::block_in_place(|| {
        barrier_commit(&shared, &cfg.topic, &positions, group.as_ref(), |tpl| {
            consumer.commit(tpl, CommitMode::Sync)
        })
    })?;
    tracing::info!("Kafka source stopped; offsets committed.");
    Ok(())
}

/// Checkpoints every worker, then commits the offsets noted before: with
/// the decisions in one transaction when there is a decisions producer,
/// else through `commit_offsets`. Blocking; call it where blocking is fine.
/// Only a failed transaction is an error (the caller must stop); anything
/// else is retried at the next barrier.
fn barrier_commit(
    shared: &Shared,
    topic: &str,
    positions: &Mutex<Positions>,
    group: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
    commit_offsets: impl FnOnce(&TopicPartitionList) -> rdkafka::error::KafkaResult<()>,
) -> Result<(), KafkaSourceError> {
    let pending: Vec<(i32, i64)> = {
        let p = positions.lock().unwrap_or_else(|e| e.into_inner());
        p.next
            .iter()
            .filter(|(part, o)| p.committed.get(part) != Some(o))
            .map(|(part, o)| (*part, *o))
            .collect()
    };
    if pending.is_empty() {
        return Ok(());
    }
    let mut acks = Vec::with_capacity(shared.senders.len());
    // Workers wait on these until the commit is done; dropping them (any
    // return below) lets them go on.
    let mut resumes = Vec::with_capacity(shared.senders.len());
    for s in &shared.senders {
        let (ack, ack_rx) = std::sync::mpsc::channel();
        let (resume_tx, resume) = std::sync::mpsc::channel::<bool>();
        if !send_blocking(s, Msg::Barrier { ack, resume }) {
            return Ok(());
        }
        acks.push(ack_rx);
        resumes.push(resume_tx);
    }
    for rx in acks {
        if rx.recv() != Ok(true) {
            tracing::warn!(
                "A worker could not checkpoint; offsets stay uncommitted until the next barrier."
            );
            return Ok(());
        }
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &pending {
        let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
    }
    let result = match (&shared.decisions_producer, group) {
        (Some(producer), Some(group)) => {
            // A broker restart makes these calls fail with retriable
            // errors: wait it out (bounded), as librdkafka reconnects.
            let timeout = Duration::from_secs(30);
            let mut backoff = Duration::from_millis(200);
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            let mut offsets_sent = false;
            loop {
                let step = if offsets_sent {
                    Ok(())
                } else {
                    producer.send_offsets_to_transaction(&tpl, group, timeout)
                }
                .map(|()| offsets_sent = true)
                .and_then(|()| producer.commit_transaction(timeout))
                .and_then(|()| producer.begin_transaction());
                match step {
                    Err(rdkafka::error::KafkaError::Transaction(e))
                        if e.is_retriable() && std::time::Instant::now() < deadline =>
                    {
                        tracing::warn!(error = %e, "Kafka transaction commit will be retried.");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    other => break other,
                }
            }
        }
        _ => commit_offsets(&tpl),
    };
    match result {
        Ok(()) => {
            positions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .committed
                .extend(pending);
            for r in &resumes {
                let _ = r.send(true);
            }
        }
        Err(e) if shared.decisions_producer.is_some() => {
            // The transaction's fate is unknown; restarting from the last
            // committed offsets is the one safe way on (crash-only). The
            // workers stay parked on their barrier until the process ends.
            std::mem::forget(resumes);
            return Err(KafkaSourceError::Transaction(e));
        }
        Err(e) => {
            tracing::warn!(error = %e, "Offset commit failed; will retry at the next barrier.")
        }
    }
    drop(resumes);
    Ok(())
}
