//! `warden run`: the service.
//!
//! ```text
//!  POST /v1/events ─► split + decode (bad → 202 with errors, rejects file)
//!        │ route by agent_id (bounded queue per worker; full → 429)
//!        ▼
//!  worker threads (one Engine each: score → decide → decision → learn)
//!        │ decisions.jsonl, flagged calls logged      checkpoints ─► data-dir
//! ```
//!
//! Two listeners: ingest (`server.listen`) and admin (`server.admin-listen`:
//! metrics and the quarantine API); see [`http`] for the routes and
//! [`auth`] for the token roles.
//!
//! Start-up restores every checkpoint under the data directory (routing
//! each agent to the worker that now owns it) before the listeners report
//! ready. SIGTERM or Ctrl-C stops the listeners, lets workers drain their
//! queues, checkpoints (open sessions too), and exits 0 within the grace
//! period. A Kafka transaction whose outcome is unknown stops the service
//! at once instead ([`ServiceError::KafkaTransaction`]).

pub mod admin;
pub mod auth;
pub mod http;
pub mod lookup;
pub mod metrics;
pub mod rejects;
pub mod startup;
pub mod worker;

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use tokio::sync::watch;

use crate::config::Config;
use crate::engine::{Engine, Phase};
use crate::event::Event;
use crate::ingest::decode::decode_bytes;
use crate::ingest::file::{JsonlReader, Line};
use crate::ingest::kafka::KafkaSourceError;
use crate::ingest::rejects::RejectSink;
use crate::pipeline::{route, Msg, Router};
use metrics::{KindLabel, Metrics};
use worker::{DecisionSink, Worker};

/// Failures of `warden run` that the binary maps to an exit code of their
/// own.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The outcome of a Kafka transaction is unknown: the process stops
    /// without another checkpoint or commit, and its restart replays the
    /// events from the last committed offsets (crash-only).
    #[error("Kafka transaction failed; stopping so events are replayed from the last commit: {0}")]
    KafkaTransaction(#[source] KafkaSourceError),
}

/// What the HTTP handlers and the workers share.
pub struct Shared {
    pub config: Config,
    /// Publishes decisions to `kafka.decisions-topic` when Kafka is on.
    pub decisions_producer: Option<Arc<ThreadedProducer<DefaultProducerContext>>>,
    pub metrics: Arc<Metrics>,
    /// The response path (quarantines, revocations, alerts).
    pub responder: Option<crate::respond::responder::Handle>,
    /// The worker queues.
    pub router: Router,
    pub ready: AtomicBool,
    /// With Kafka on: the consumer has been given its partitions (and ready
    /// waits for it).
    pub assigned: Arc<AtomicBool>,
    /// Where ingest hands rejected items to the rejects file's thread.
    pub rejects: rejects::RejectWriter,
    /// Bearer tokens of the three roles.
    pub tokens: auth::Tokens,
    /// With Redis on: the shared quarantine registry, read with deadlines.
    pub redis_lookup: Option<Arc<lookup::RedisLookup>>,
    /// With Kafka on: where workers send the messages they cannot decode.
    pub dead_letters: Option<crate::ingest::kafka::DeadLetters>,
    /// Live policy overrides, suppressions and feedback (admin API).
    pub admin: admin::Admin,
    agents: Vec<AtomicUsize>,
}

impl Shared {
    fn set_agents(&self, worker: usize, n: usize) {
        if let Some(a) = self.agents.get(worker) {
            a.store(n, Ordering::Relaxed);
        }
    }

    fn agent_count(&self) -> i64 {
        self.agents
            .iter()
            .map(|a| a.load(Ordering::Relaxed) as i64)
            .sum()
    }
}

/// Options of `warden run` that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Benign history to learn before serving, when no checkpoint exists.
    pub train: Vec<PathBuf>,
    /// Fleet model (peer groups, session models) every engine uses.
    pub fleet: Option<std::sync::Arc<crate::fleet::Fleet>>,
}

/// Engines restored from checkpoints (or trained from files), and the
/// recently decided event ids.
struct Restored {
    engines: Vec<Engine>,
    recent_events: Vec<u64>,
    /// Each worker's agents' habits in names (explain).
    habits: Vec<admin::habits::Habits>,
}

/// Builds the engines: restored from checkpoints, or trained from files.
fn build_engines(cfg: &Config, n: usize, opts: &RunOptions) -> anyhow::Result<Restored> {
    let mut engines: Vec<Engine> = (0..n)
        .map(|_| {
            let mut e = Engine::new(cfg);
            e.set_fleet(opts.fleet.clone());
            e
        })
        .collect();
    if cfg.redis.enabled {
        // Profiles load lazily from Redis as agents show up; train only an
        // empty store.
        let mut store = crate::state::redis::RedisStore::open(&cfg.redis)?;
        let key_id = engines[0].key_id();
        if store.has_profiles() {
            if !opts.train.is_empty() {
                tracing::warn!("Redis already holds profiles; --train files are ignored so nothing is learned twice.");
            }
            return Ok(Restored {
                engines,
                recent_events: Vec::new(),
                habits: admin::habits::Habits::load_all(&cfg.server.data_dir, n),
            });
        }
        let trained = train(cfg, n, opts, engines)?;
        for e in &trained.engines {
            store.save(&e.snapshots(), key_id);
        }
        return Ok(trained);
    }
    let checkpoints = crate::state::load_all(&cfg.server.data_dir, engines[0].key_id())?;
    let mut restored = 0;
    let mut sessions = 0;
    let mut recent_events = Vec::new();
    let mut stale = false;
    for (path, cp) in checkpoints {
        stale |= crate::state::worker_of(&path).is_some_and(|i| i >= n);
        for (id, snapshot) in cp.agents {
            sessions += snapshot.open_sessions();
            engines[route(&id, n)].restore(&id, snapshot);
            restored += 1;
        }
        recent_events.extend(cp.recent_events);
    }
    if stale {
        // The worker count shrank: the agents of the extra files now live
        // in the engines below n. Write those before removing the extra
        // files, so that no restart can read an old copy of an agent again.
        write_checkpoints(cfg, &engines, &recent_events)?;
        crate::state::remove_stale(&cfg.server.data_dir, n);
    }
    if restored > 0 {
        tracing::info!(agents = restored, open_sessions = sessions, dir = %cfg.server.data_dir.display(), "Restored profiles.");
        if !opts.train.is_empty() {
            tracing::warn!(
                "Profiles were restored; --train files are ignored so nothing is learned twice."
            );
        }
        return Ok(Restored {
            engines,
            recent_events,
            habits: admin::habits::Habits::load_all(&cfg.server.data_dir, n),
        });
    }
    let trained = train(cfg, n, opts, engines)?;
    if !opts.train.is_empty() {
        // What was learned is durable before the first event: a crash before
        // the first barrier must not lose the training.
        write_checkpoints(cfg, &trained.engines, &[])?;
    }
    Ok(trained)
}

/// Writes one checkpoint per engine (every worker's file), with the dedup
/// window `recent` kept by the first.
fn write_checkpoints(cfg: &Config, engines: &[Engine], recent: &[u64]) -> anyhow::Result<()> {
    for (i, e) in engines.iter().enumerate() {
        let recent = if i == 0 { recent.to_vec() } else { Vec::new() };
        let cp = crate::state::Checkpoint::of(e, recent);
        crate::state::write_atomic(
            &crate::state::worker_path(&cfg.server.data_dir, i),
            &crate::state::encode(&cp),
        )?;
    }
    Ok(())
}

/// The configuration with the deployment's fingerprint key filled in:
/// configured, else shared through Redis, else generated into the data
/// directory. Never the offline key.
pub fn with_deployment_key(mut cfg: Config) -> anyhow::Result<Config> {
    let configured = cfg.detector.configured_hash_key();
    let key = if cfg.redis.enabled {
        crate::state::redis::RedisStore::open(&cfg.redis)?.shared_hash_key(configured)?
    } else {
        crate::state::hash_key::HashKey::for_data_dir(configured, &cfg.server.data_dir)?
    };
    tracing::info!(key_id = %format!("{:016x}", key.id()), "Fingerprint key loaded.");
    cfg.detector.hash_key = key.to_hex();
    Ok(cfg)
}

/// Learns the `--train` files into fresh engines.
fn train(
    cfg: &Config,
    n: usize,
    opts: &RunOptions,
    mut engines: Vec<Engine>,
) -> anyhow::Result<Restored> {
    let mut habits: Vec<admin::habits::Habits> =
        (0..n).map(|_| admin::habits::Habits::default()).collect();
    for path in &opts.train {
        let mut reader = JsonlReader::open(path, cfg.ingest.max_event_bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut buf = Vec::new();
        let mut calls = 0u64;
        while let Some(line) = reader.next_line(&mut buf)? {
            if line != Line::Data {
                continue;
            }
            match decode_bytes(&buf, cfg.ingest.max_event_bytes) {
                Ok(Event::ToolCall(call)) => {
                    let w = route(&call.agent_id, n);
                    let e = &mut engines[w];
                    let ev = e.evaluate(&call, Phase::Train);
                    admin::habits::note_call(&mut habits[w], e, &call, &ev);
                    e.commit(ev);
                    calls += 1;
                }
                Ok(Event::Context(c)) => engines[route(&c.agent_id, n)].observe_context(&c),
                Err(_) => {}
            }
        }
        tracing::info!(file = %path.display(), calls, "Learned training history.");
    }
    engines.iter_mut().for_each(Engine::close_all);
    Ok(Restored {
        engines,
        recent_events: Vec::new(),
        habits,
    })
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<()> {
    let n = match cfg.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    std::fs::create_dir_all(&cfg.server.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.server.data_dir.display()))?;
    let cfg = tokio::task::spawn_blocking(move || with_deployment_key(cfg)).await??;
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (server.listen)", cfg.server.listen))?;
    let addr = listener.local_addr()?;
    let admin_listener = tokio::net::TcpListener::bind(&cfg.server.admin_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (server.admin-listen)",
                cfg.server.admin_listen
            )
        })?;
    let admin_addr = admin_listener.local_addr()?;

    let decisions: DecisionSink = Arc::new(Mutex::new(None));
    if !cfg.server.decisions_file.as_os_str().is_empty() {
        let path = &cfg.server.decisions_file;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open decisions file {}", path.display()))?;
        *decisions.lock().unwrap_or_else(|p| p.into_inner()) = Some(BufWriter::new(f));
    }
    let (rejects, _rejects_thread) = rejects::RejectWriter::start(
        RejectSink::append(
            Some(&cfg.server.data_dir.join("rejects.jsonl")),
            cfg.ingest.reject_sample_bytes,
        )?
        .with_fingerprints(crate::respond::credential::fingerprinter(&cfg)),
    )?;

    let (router, receivers) = Router::new(n, cfg.server.queue_depth);
    if cfg.kafka.enabled {
        // A refused login or TLS handshake stops start-up, naming the cause.
        let k = cfg.kafka.clone();
        let wait = std::time::Duration::from_secs(10);
        tokio::task::spawn_blocking(move || crate::ingest::kafka::check_brokers(&k, wait))
            .await??;
    }
    let decisions_producer = if cfg.kafka.enabled && !cfg.kafka.decisions_topic.is_empty() {
        // Decisions and consumed offsets commit together (one transaction
        // per barrier): a crash replays the uncommitted events, and the
        // decisions they had produced are aborted, never seen twice.
        let p: ThreadedProducer<DefaultProducerContext> =
            crate::ingest::kafka::client_config(&cfg.kafka)?
                .set("transactional.id", cfg.kafka.transactional_id())
                // A broker away for less than this (a restart) is waited
                // out; its in-flight decisions keep the same bound.
                .set(
                    "transaction.timeout.ms",
                    cfg.kafka.transaction_timeout.as_millis().to_string(),
                )
                .set("linger.ms", "5")
                .create()
                .context("cannot create the Kafka decisions producer")?;
        let timeout = std::time::Duration::from_secs(60);
        let p = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            p.init_transactions(timeout)
                .context("cannot initialise Kafka transactions (is the broker up?)")?;
            p.begin_transaction()
                .context("cannot begin a Kafka transaction")?;
            Ok(p)
        })
        .await??;
        Some(Arc::new(p))
    } else {
        None
    };
    let metrics = Arc::new(Metrics::for_service(&cfg, n));
    let responder = {
        let cfg = cfg.clone();
        let metrics = metrics.clone();
        let learn = learner(router.clone());
        tokio::task::spawn_blocking(move || crate::respond::responder::start(&cfg, metrics, learn))
            .await??
    };
    // The quarantine reads of the API use the responder's client (its TLS
    // settings), with deadlines: they fail closed, never wait Redis out.
    let redis_lookup = responder
        .handle
        .shared_registry
        .clone()
        .map(|(client, prefix)| {
            lookup::RedisLookup::new(client, &prefix, cfg.server.redis_read_timeout)
        });
    let dead_letters = if cfg.kafka.enabled {
        Some(crate::ingest::kafka::DeadLetters::new(&cfg.kafka)?)
    } else {
        None
    };
    let admin = {
        let cfg = cfg.clone();
        let redis = responder.handle.shared_registry.clone();
        tokio::task::spawn_blocking(move || admin::Admin::open(&cfg, redis)).await??
    };
    let shared = Arc::new(Shared {
        admin,
        config: cfg.clone(),
        decisions_producer,
        dead_letters,
        metrics,
        responder: Some(responder.handle.clone()),
        router,
        ready: AtomicBool::new(false),
        assigned: Arc::new(AtomicBool::new(!cfg.kafka.enabled)),
        rejects,
        tokens: auth::Tokens::from_env(&cfg.server),
        redis_lookup,
        agents: (0..n).map(|_| AtomicUsize::new(0)).collect(),
    });
    if shared.tokens.any() && shared.tokens.ingest.is_empty() {
        tracing::warn!(
            var = %cfg.server.ingest_tokens_env,
            "Tokens of other roles are set but no ingest token: HTTP ingest refuses every request."
        );
    }
    if !admin_addr.ip().is_loopback()
        && shared.tokens.read.is_empty()
        && shared.tokens.admin.is_empty()
    {
        tracing::warn!(
            %admin_addr,
            "The admin listener is not on loopback and no read or admin token is set: quarantines and metrics are open to whoever reaches it."
        );
    }
    startup::log_summary(&cfg, addr, admin_addr, &shared.tokens);
    tracing::info!(%addr, %admin_addr, workers = n, "Listening; restoring profiles before ready.");

    // One signal stops both listeners.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = shutdown_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let ingest_server = axum::serve(
        listener,
        http::ingest_router(shared.clone(), admin_addr.to_string()),
    )
    .with_graceful_shutdown(stopped(shutdown_rx.clone()));
    let admin_server = axum::serve(admin_listener, http::admin_router(shared.clone()))
        .with_graceful_shutdown(stopped(shutdown_rx));
    let server = tokio::spawn(async move {
        let (ingest, admin) = tokio::join!(ingest_server, admin_server);
        ingest.and(admin)
    });

    let restored = {
        let cfg = cfg.clone();
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || build_engines(&cfg, n, &opts)).await??
    };
    let recent = restored.recent_events;
    let mut handles = Vec::with_capacity(n);
    let engines = restored.engines.into_iter().zip(restored.habits);
    for (i, ((engine, habits), rx)) in engines.zip(receivers).enumerate() {
        shared.set_agents(i, engine.agents().len());
        let w = Worker::new(
            i,
            engine,
            &recent,
            habits,
            shared.clone(),
            decisions.clone(),
        );
        handles.push(
            std::thread::Builder::new()
                .name(format!("warden-worker-{i}"))
                .spawn(move || w.run(rx))?,
        );
    }
    shared.metrics.agents.set(shared.agent_count());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (fatal_tx, mut fatal_rx) = tokio::sync::oneshot::channel::<KafkaSourceError>();
    let source = cfg.kafka.enabled.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            match crate::ingest::kafka::run(kafka_links(&shared), stop_rx).await {
                Err(e @ KafkaSourceError::Transaction(_)) => {
                    let _ = fatal_tx.send(e);
                    Ok(())
                }
                other => other,
            }
        })
    });
    shared.ready.store(true, Ordering::Release);
    tracing::info!(%addr, %admin_addr, "Ready.");

    // With Redis on, overrides and suppressions another instance set arrive
    // within seconds; suppression hit counts are saved (shared) as often.
    let admin_refresh = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(std::time::Duration::from_secs(3));
            let mut log = admin::SyncLog::default();
            loop {
                t.tick().await;
                let s = shared.clone();
                let errors = tokio::task::spawn_blocking(move || {
                    let policy = s.admin.policy.refresh().err().map(|e| e.to_string());
                    let rules = s.admin.suppressions.sync().err().map(|e| e.to_string());
                    policy.into_iter().chain(rules).collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                log.record(&errors, std::time::Instant::now());
            }
        })
    };

    // Periodic maintenance: close idle sessions, checkpoint.
    let ticker = {
        let shared = shared.clone();
        let every = cfg.server.checkpoint_interval;
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.tick().await;
            loop {
                t.tick().await;
                shared.router.try_broadcast(|| Msg::Tick);
            }
        })
    };

    let mut server = server;
    tokio::select! {
        served = &mut server => served??,
        Ok(e) = &mut fatal_rx => {
            // No drain, no checkpoint: what was not committed is replayed.
            tracing::error!(error = %e, "Kafka transaction failed; exiting so events are replayed from the last commit.");
            return Err(ServiceError::KafkaTransaction(e).into());
        }
    }
    tracing::info!("Listeners stopped; draining workers.");
    ticker.abort();
    admin_refresh.abort();
    if let Err(e) = shared.admin.suppressions.sync() {
        tracing::warn!(error = %e, "Cannot save suppression hit counts at shutdown.");
    }
    shared.ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    if let Some(source) = source {
        match source.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "Kafka source failed."),
            Err(e) => tracing::error!(error = %e, "Kafka source panicked."),
        }
        // The last commit, after the stop, may have failed the same way.
        if let Ok(e) = fatal_rx.try_recv() {
            tracing::error!(error = %e, "Kafka transaction failed; exiting so events are replayed from the last commit.");
            return Err(ServiceError::KafkaTransaction(e).into());
        }
    }
    // Queues are FIFO: a worker stops after everything accepted before.
    shared.router.broadcast(|| Msg::Stop).await;
    let grace = cfg.server.shutdown_grace;
    let joined = tokio::task::spawn_blocking(move || {
        for h in handles {
            let _ = h.join();
        }
    });
    if tokio::time::timeout(grace, joined).await.is_err() {
        anyhow::bail!("workers did not drain within {:?}", grace);
    }
    // Every flag the workers made is recorded before exit; revocations
    // still in flight resume from the registry at the next start.
    let handle = responder.handle.clone();
    let _ = tokio::time::timeout(
        grace,
        tokio::task::spawn_blocking(move || handle.sync_blocking()),
    )
    .await;
    if let Some(p) = &shared.decisions_producer {
        if let Err(e) = p.flush(grace) {
            tracing::error!(error = %e, "Decisions still unpublished at shutdown.");
        }
    }
    tracing::info!("Shut down cleanly.");
    Ok(())
}

/// What the Kafka source needs of the service.
fn kafka_links(shared: &Arc<Shared>) -> crate::ingest::kafka::SourceLinks {
    let metrics = shared.metrics.clone();
    crate::ingest::kafka::SourceLinks {
        config: shared.config.clone(),
        router: shared.router.clone(),
        decisions: shared.decisions_producer.clone(),
        assigned: shared.assigned.clone(),
        count_rejected: Box::new(move |kind| {
            metrics.rejected.get_or_create(&KindLabel { kind }).inc();
        }),
        consumer_lag: shared.metrics.consumer_lag.clone(),
        slow_commits: shared.metrics.kafka_slow_commits.clone(),
    }
}

/// How the responder hands a released false positive to the worker that
/// owns the agent (never blocking the responder on a full worker queue).
fn learner(router: Router) -> crate::respond::responder::Learner {
    let rt = tokio::runtime::Handle::current();
    Box::new(
        move |agent_id: &str, events: Vec<String>, session: String| {
            let (router, w) = (router.clone(), router.owner(agent_id));
            rt.spawn(async move {
                router.send(w, Msg::Learn { events, session }).await;
            });
        },
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("Shutdown requested.");
}
