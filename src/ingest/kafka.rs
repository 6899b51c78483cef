//! The Kafka source of `warden run`.
//!
//! A message goes to the worker that owns its key (`agent_id`, per
//! docs/events.md) over a bounded queue: a full queue makes the consumer wait,
//! so a slow worker slows consumption and nothing is dropped. The worker
//! decodes it, once; only a message without a key is decoded here to find
//! its agent. An undecodable message, or one whose key is not its
//! `agent_id`, goes to the dead-letter topic with its bytes intact and the
//! reason in headers ([`DeadLetters`]).
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
//!
//! Every Kafka client of `warden run` (this consumer, the dead-letter
//! producer, the transactional decisions producer) starts from
//! [`client_config`], so brokers, TLS, SASL and the `[kafka.librdkafka]`
//! properties are the same for all. [`check_brokers`] runs once before
//! them, so a wrong password or certificate stops start-up with a message
//! that says which, instead of clients retrying forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer,
    ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::config::{EndpointIdentification, KafkaConfig};
use crate::ingest::decode::decode_bytes;
use crate::pipeline::{KafkaMessage, Msg, Router};

/// A failure of the Kafka source that stops it, or of the connection
/// settings every Kafka client shares. Never carries a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("cannot create the Kafka {what}: {source}")]
    Client {
        what: &'static str,
        source: rdkafka::error::KafkaError,
    },
    #[error("config key `{key}`: environment variable {var} is not set")]
    MissingSecret { key: &'static str, var: String },
    #[error("Kafka brokers {brokers} refused {what}: {reason}")]
    Authentication {
        brokers: String,
        /// Mechanism and user, e.g. "SASL SCRAM-SHA-512 as `warden`".
        what: String,
        reason: String,
    },
    #[error("TLS with the Kafka brokers {brokers} failed (check kafka.ssl-ca-location, kafka.ssl-certificate-location, kafka.ssl-key-location): {reason}")]
    Tls { brokers: String, reason: String },
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

/// What the Kafka source needs of the service, and nothing more.
pub struct SourceLinks {
    pub config: crate::config::Config,
    /// The worker queues, and the barrier commits wait behind.
    pub router: Router,
    /// The transactional producer the workers write decisions with; its
    /// transaction commits with the offsets at each barrier.
    pub decisions: Option<Arc<ThreadedProducer<DefaultProducerContext>>>,
    /// Raised once partitions are assigned (`/ready` waits for it).
    pub assigned: Arc<std::sync::atomic::AtomicBool>,
    /// Counts a message rejected here, by kind of fault.
    pub count_rejected: Box<dyn Fn(&'static str) + Send + Sync>,
    /// `warden_kafka_consumer_lag{partition}`, set at each barrier.
    pub consumer_lag: prometheus_client::metrics::family::Family<
        crate::service::metrics::PartitionLabel,
        prometheus_client::metrics::gauge::Gauge,
    >,
    /// `warden_kafka_slow_commits_total`: commit rounds slower than
    /// `kafka.commit-interval`.
    pub slow_commits: prometheus_client::metrics::counter::Counter,
}

/// The consumer's context: commits and hands agents over before
/// partitions are revoked.
struct SourceContext {
    links: Arc<SourceLinks>,
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

impl ClientContext for SourceContext {
    /// Sets the consumer lag of each partition consumed so far: the high
    /// watermark of the client's last fetch minus the next offset to read.
    /// Asking the broker instead would queue behind a long-polling fetch on
    /// the same connection, time out, and make the client drop it.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        for (partition, stats) in &topic.partitions {
            if let (Some(next), 0..) = (positions.next.get(partition), stats.hi_offset) {
                self.links
                    .consumer_lag
                    .get_or_create(&crate::service::metrics::PartitionLabel {
                        partition: *partition,
                    })
                    .set((stats.hi_offset - next).max(0));
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(partitions = ?partitions, "Partitions assigned.");
            self.links
                .assigned
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        if self.links.router.is_held() {
            // A failed transaction parked the workers for good and the
            // service is exiting (this is the consumer's close): commit
            // nothing, wait for nobody; the events are replayed.
            tracing::info!(partitions = ?revoked, "Partitions revoked after a failed transaction; nothing committed.");
            return;
        }
        tracing::info!(partitions = ?revoked, "Partitions revoked; committing before they go.");
        let group = consumer.group_metadata();
        tokio::task::block_in_place(|| {
            if let Err(e) = barrier_commit(
                &self.links,
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
            if self.links.config.redis.enabled {
                self.links
                    .router
                    .broadcast_blocking(|| Msg::Evict(revoked.clone()));
            }
        });
    }
}

/// The settings every Kafka client starts from: brokers, security
/// protocol, TLS files, SASL credentials (secrets read from their
/// variables now) and the `[kafka.librdkafka]` pass-through.
pub fn client_config(cfg: &KafkaConfig) -> Result<ClientConfig, KafkaSourceError> {
    let mut c = ClientConfig::new();
    // Validation refused pass-through keys that collide with those below,
    // so the order only matters for defaults librdkafka already has.
    for (k, v) in &cfg.librdkafka {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &cfg.brokers);
    let protocol = cfg.security_protocol;
    c.set("security.protocol", protocol.as_str());
    if protocol.uses_sasl() {
        c.set("sasl.mechanisms", cfg.sasl_mechanism.as_str());
        c.set("sasl.username", &cfg.sasl_username);
        c.set(
            "sasl.password",
            secret("kafka.sasl-password-env", &cfg.sasl_password_env)?,
        );
    }
    if protocol.uses_tls() {
        let files = [
            ("ssl.ca.location", &cfg.ssl_ca_location),
            ("ssl.certificate.location", &cfg.ssl_certificate_location),
            ("ssl.key.location", &cfg.ssl_key_location),
        ];
        for (k, path) in files {
            if !path.as_os_str().is_empty() {
                c.set(k, path.to_string_lossy());
            }
        }
        if !cfg.ssl_key_password_env.is_empty() {
            c.set(
                "ssl.key.password",
                secret("kafka.ssl-key-password-env", &cfg.ssl_key_password_env)?,
            );
        }
        c.set(
            "ssl.endpoint.identification.algorithm",
            match cfg.ssl_endpoint_identification {
                EndpointIdentification::Https => "https",
                EndpointIdentification::None => "none",
            },
        );
    }
    Ok(c)
}

fn secret(key: &'static str, var: &str) -> Result<String, KafkaSourceError> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| KafkaSourceError::MissingSecret {
            key,
            var: var.to_owned(),
        })
}

/// Remembers the first authentication or TLS failure librdkafka reports.
#[derive(Default)]
struct ProbeContext {
    failure: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ClientContext for ProbeContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let code = match error.rdkafka_error_code() {
            Some(c @ (RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)) => c,
            // A broker that rejects our client certificate (or sends none
            // we accept) ends the handshake with a TLS alert, which
            // librdkafka reports as a transport failure quoting OpenSSL.
            Some(RDKafkaErrorCode::BrokerTransportFailure) if reason.contains("SSL routines") => {
                RDKafkaErrorCode::SSL
            }
            _ => return,
        };
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert((code, reason.to_owned()));
    }
}

impl ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// Asks the brokers for `kafka.topic`'s metadata with the shared client
/// settings. A refused login or a failed TLS handshake is an error that
/// names its cause (and never the password); brokers that do not answer
/// within `wait` are only logged, as the clients retry by themselves.
pub fn check_brokers(cfg: &KafkaConfig, wait: Duration) -> Result<(), KafkaSourceError> {
    // A producer, because it hands librdkafka's error events (with their
    // reason text) to the context when polled.
    let probe: BaseProducer<ProbeContext> = client_config(cfg)?
        // Asking must not create the topic on a broker that auto-creates.
        .set("allow.auto.create.topics", "false")
        .create_with_context(ProbeContext::default())
        .map_err(|source| KafkaSourceError::Client {
            what: "connection check",
            source,
        })?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        let answer = probe
            .client()
            .fetch_metadata(Some(&cfg.topic), Duration::from_millis(500));
        probe.poll(Duration::from_millis(100));
        let failure = probe
            .context()
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match failure {
            Some((RDKafkaErrorCode::Authentication, reason)) => {
                return Err(KafkaSourceError::Authentication {
                    brokers: cfg.brokers.clone(),
                    what: format!(
                        "SASL {} as `{}` (password from {})",
                        cfg.sasl_mechanism.as_str(),
                        cfg.sasl_username,
                        cfg.sasl_password_env
                    ),
                    reason,
                })
            }
            Some((_, reason)) => {
                return Err(KafkaSourceError::Tls {
                    brokers: cfg.brokers.clone(),
                    reason,
                })
            }
            None => {}
        }
        match answer {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => {
                tracing::warn!(brokers = %cfg.brokers, error = %e, "No Kafka broker answered yet; the clients keep trying.");
                return Ok(());
            }
            Err(_) => {}
        }
    }
}

/// Consumes until `stop` turns true, then commits what was checkpointed.
pub async fn run(
    links: SourceLinks,
    mut stop: watch::Receiver<bool>,
) -> Result<(), KafkaSourceError> {
    let links = Arc::new(links);
    let cfg = &links.config.kafka;
    let positions = Arc::new(Mutex::new(Positions::default()));
    let context = SourceContext {
        links: links.clone(),
        positions: positions.clone(),
        topic: cfg.topic.clone(),
        fatal: Mutex::new(None),
        fatal_set: tokio::sync::Notify::new(),
    };
    let consumer: StreamConsumer<SourceContext> = client_config(cfg)?
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Feeds `warden_kafka_consumer_lag` (SourceContext::stats).
        .set("statistics.interval.ms", "1000")
        .create_with_context(context)
        .map_err(|source| KafkaSourceError::Client {
            what: "consumer",
            source,
        })?;
    let producer: FutureProducer = client_config(cfg)?
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
    let max = links.config.ingest.max_event_bytes;
    tracing::info!(topic = %cfg.topic, group = %cfg.group, dlq = %dlq, "Consuming from Kafka.");

    let mut tick = tokio::time::interval(cfg.commit_interval);
    tick.tick().await;
    let mut errors_logged = 0u32;
    // One commit round: every worker checkpointed, then the offsets (with
    // the decisions' transaction). Blocking. True when nothing is left.
    let commit_round = || {
        let group = consumer.group_metadata();
        barrier_commit(&links, &cfg.topic, &positions, group.as_ref(), |tpl| {
            consumer.commit(tpl, CommitMode::Sync)
        })
    };
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
                let t0 = std::time::Instant::now();
                tokio::task::block_in_place(commit_round)?;
                let round = t0.elapsed();
                // The tick arm wins the biased select over `recv`: a round
                // slower than the interval (a dead-letter flush, a slow
                // checkpoint) would leave the next tick already due, round
                // after round, and no message would be read again. A full
                // interval of consuming follows every round.
                tick.reset();
                if round > cfg.commit_interval {
                    // Consuming waits while a round runs.
                    links.slow_commits.inc();
                    tracing::warn!(
                        barrier_and_commit_ms = round.as_millis() as u64,
                        commit_interval_ms = cfg.commit_interval.as_millis() as u64,
                        "Kafka commit round slower than kafka.commit-interval; consuming waited for it."
                    );
                }
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
                // The key is the agent: route without decoding; the worker
                // decodes once and checks that the key was the agent_id.
                let keyed = m
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .filter(|k| !k.is_empty());
                let w = match keyed {
                    Some(agent_id) => Some(links.router.owner(agent_id)),
                    None => match decode_bytes(payload, max) {
                        Ok(ev) => Some(links.router.owner(ev.agent_id())),
                        Err(e) => {
                            (links.count_rejected)(e.kind.as_str());
                            let letter = DeadLetter {
                                payload,
                                key: None,
                                reason: &e.to_string(),
                                kind: e.kind.as_str(),
                                topic: m.topic(),
                                partition: m.partition(),
                                offset: m.offset(),
                            };
                            // A dead letter must not be lost either: wait for it.
                            if let Err((err, _)) = producer.send(letter.record(&dlq), Duration::from_secs(300)).await {
                                tracing::error!(error = %err, "Cannot write to the dead-letter topic; stopping so the message is redelivered.");
                                break;
                            }
                            None
                        }
                    },
                };
                if let Some(w) = w {
                    let msg = Msg::Message(KafkaMessage {
                        payload: Bytes::copy_from_slice(payload),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(Box::from),
                    });
                    if !links.router.send(w, msg).await {
                        break;
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
    // What was decided is committed before the workers stop: a round that
    // cannot commit (a worker failed to checkpoint, no group metadata) is
    // retried within the shutdown grace, never reported as done.
    let deadline = std::time::Instant::now() + links.config.server.shutdown_grace;
    let committed = tokio::task::block_in_place(|| loop {
        let done = commit_round()?;
        if done || std::time::Instant::now() >= deadline {
            break Ok::<_, KafkaSourceError>(done);
        }
        std::thread::sleep(Duration::from_millis(200));
    })?;
    if committed {
        tracing::info!("Kafka source stopped; offsets committed.");
    } else {
        // The workers keep their last committed state (see
        // `Worker::run`); the uncommitted events are replayed at the next
        // start. Aborting now spares read_committed consumers of the
        // decisions topic a wait of kafka.transaction-timeout.
        if let Some(p) = &links.decisions {
            if let Err(e) =
                tokio::task::block_in_place(|| p.abort_transaction(Duration::from_secs(30)))
            {
                tracing::warn!(error = %e, "Cannot abort the open decisions transaction; the broker aborts it after kafka.transaction-timeout.");
            }
        }
        tracing::error!(
            grace_s = links.config.server.shutdown_grace.as_secs(),
            "Kafka source stopped without committing its last offsets; those events are decided again at the next start."
        );
    }
    Ok(())
}

/// Checkpoints every worker, then commits the offsets noted before: with
/// the decisions in one transaction when there is a decisions producer,
/// else through `commit_offsets`. Blocking; call it where blocking is fine.
/// Only a failed transaction is an error (the caller must stop); anything
/// else is retried at the next barrier. True when nothing is left
/// uncommitted.
fn barrier_commit(
    links: &SourceLinks,
    topic: &str,
    positions: &Mutex<Positions>,
    group: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
    commit_offsets: impl FnOnce(&TopicPartitionList) -> rdkafka::error::KafkaResult<()>,
) -> Result<bool, KafkaSourceError> {
    let pending: Vec<(i32, i64)> = {
        let p = positions.lock().unwrap_or_else(|e| e.into_inner());
        p.next
            .iter()
            .filter(|(part, o)| p.committed.get(part) != Some(o))
            .map(|(part, o)| (*part, *o))
            .collect()
    };
    if pending.is_empty() {
        return Ok(true);
    }
    // Every worker decides what it was sent before and checkpoints; they
    // stay parked until the barrier is settled (or dropped, by any return
    // below: then they go on without committing what they staged).
    let Some(barrier) = links.router.barrier() else {
        return Ok(false);
    };
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &pending {
        let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
    }
    let result = match (&links.decisions, group) {
        (Some(_), None) => {
            // Offsets committed outside the transaction would leave its
            // decisions open, then aborted: committed events without them.
            tracing::warn!("No consumer group metadata for the transaction; the commit waits for the next barrier.");
            return Ok(false);
        }
        (Some(producer), Some(group)) => {
            // A broker restart makes these calls fail with retriable
            // errors: wait it out (bounded), as librdkafka reconnects.
            // librdkafka retries a coordinator that moved or is loading
            // within the call's own timeout and then makes the transaction
            // abortable (the service stops): give it all the time left.
            let mut backoff = Duration::from_millis(200);
            let deadline = std::time::Instant::now() + links.config.kafka.transaction_timeout;
            let timeout = || {
                deadline
                    .saturating_duration_since(std::time::Instant::now())
                    .max(Duration::from_secs(1))
            };
            let mut offsets_sent = false;
            loop {
                let step = if offsets_sent {
                    Ok(())
                } else {
                    producer.send_offsets_to_transaction(&tpl, group, timeout())
                }
                .map(|()| offsets_sent = true)
                .and_then(|()| producer.commit_transaction(timeout()))
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
            barrier.committed();
            return Ok(true);
        }
        Err(e) if links.decisions.is_some() => {
            // The transaction's fate is unknown; restarting from the last
            // committed offsets is the one safe way on (crash-only). The
            // workers stay parked on their barrier until the process ends.
            barrier.hold_until_exit();
            return Err(KafkaSourceError::Transaction(e));
        }
        Err(e) => {
            tracing::warn!(error = %e, "Offset commit failed; will retry at the next barrier.")
        }
    }
    Ok(false)
}

/// A message that cannot be decided, on its way to the dead-letter topic:
/// its bytes intact, the reason and its origin in headers.
pub struct DeadLetter<'a> {
    pub payload: &'a [u8],
    pub key: Option<&'a [u8]>,
    pub reason: &'a str,
    pub kind: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl<'a> DeadLetter<'a> {
    fn headers(&self) -> OwnedHeaders {
        let partition = self.partition.to_string();
        let offset = self.offset.to_string();
        OwnedHeaders::new()
            .insert(Header {
                key: "warden-error",
                value: Some(self.reason.as_bytes()),
            })
            .insert(Header {
                key: "warden-error-kind",
                value: Some(self.kind.as_bytes()),
            })
            .insert(Header {
                key: "warden-source-topic",
                value: Some(self.topic.as_bytes()),
            })
            .insert(Header {
                key: "warden-source-partition",
                value: Some(partition.as_bytes()),
            })
            .insert(Header {
                key: "warden-source-offset",
                value: Some(offset.as_bytes()),
            })
    }

    fn record(&self, dlq: &'a str) -> FutureRecord<'a, [u8], [u8]> {
        let mut record = FutureRecord::to(dlq)
            .payload(self.payload)
            .headers(self.headers());
        if let Some(k) = self.key {
            record = record.key(k);
        }
        record
    }
}

/// The workers' way to the dead-letter topic, for the messages they find
/// bad when they decode them. Sends are asynchronous; each barrier flushes
/// them before offsets are committed, so no dead letter is lost.
pub struct DeadLetters {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    source_topic: String,
}

impl DeadLetters {
    pub fn new(cfg: &crate::config::KafkaConfig) -> Result<Self, KafkaSourceError> {
        let producer = client_config(cfg)?
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "300000")
            .create()
            .map_err(|source| KafkaSourceError::Client {
                what: "dead-letter producer",
                source,
            })?;
        Ok(Self {
            producer,
            topic: cfg.dlq(),
            source_topic: cfg.topic.clone(),
        })
    }

    /// The topic the letters come from.
    pub fn source_topic(&self) -> &str {
        &self.source_topic
    }

    /// Queues a letter, waiting while the producer's queue is full.
    pub fn send(&self, letter: &DeadLetter) {
        let mut record = BaseRecord::to(&self.topic)
            .payload(letter.payload)
            .headers(letter.headers());
        if let Some(k) = letter.key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    // Caught at the next barrier: the flush fails, nothing
                    // is committed, and the message is redelivered.
                    tracing::error!(error = %e, "Cannot queue a dead letter.");
                    return;
                }
            }
        }
    }

    /// Waits until every queued letter is written; false if some is not.
    pub fn flush(&self) -> bool {
        match self.producer.flush(Duration::from_secs(60)) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "Dead letters not confirmed; offsets stay uncommitted.");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_gets_the_transport_settings_and_the_secret_from_its_variable() {
        std::env::set_var("WARDEN_KAFKA_TEST_CLIENT_PASSWORD", "pw-from-env");
        let mut cfg = KafkaConfig {
            security_protocol: crate::config::SecurityProtocol::SaslSsl,
            sasl_username: "warden".to_owned(),
            sasl_password_env: "WARDEN_KAFKA_TEST_CLIENT_PASSWORD".to_owned(),
            ssl_ca_location: "/etc/ca.pem".into(),
            ..KafkaConfig::default()
        };
        cfg.librdkafka
            .insert("socket.keepalive.enable".to_owned(), "true".to_owned());
        let c = client_config(&cfg).unwrap();
        for (k, v) in [
            ("bootstrap.servers", "127.0.0.1:9092"),
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "warden"),
            ("sasl.password", "pw-from-env"),
            ("ssl.ca.location", "/etc/ca.pem"),
            ("ssl.endpoint.identification.algorithm", "https"),
            ("socket.keepalive.enable", "true"),
        ] {
            assert_eq!(c.get(k), Some(v), "{k}");
        }
        assert_eq!(c.get("ssl.certificate.location"), None);

        cfg.sasl_password_env = "WARDEN_KAFKA_TEST_CLIENT_UNSET".to_owned();
        let e = client_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("WARDEN_KAFKA_TEST_CLIENT_UNSET"), "{e}");

        // Plaintext sets no TLS or SASL property at all.
        let c = client_config(&KafkaConfig::default()).unwrap();
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("sasl.password"), None);
        assert_eq!(c.get("ssl.endpoint.identification.algorithm"), None);
    }
}
