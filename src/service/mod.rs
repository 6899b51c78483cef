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
//! Start-up restores every checkpoint under the data directory (routing
//! each agent to the worker that now owns it) before the listener reports
//! ready. SIGTERM or Ctrl-C stops the listener, lets workers drain their
//! queues, closes sessions, checkpoints, and exits 0 within the grace
//! period.

pub mod http;
pub mod metrics;
pub mod worker;

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::engine::{Engine, Phase};
use crate::event::Event;
use crate::ingest::decode::decode_bytes;
use crate::ingest::file::{JsonlReader, Line};
use crate::ingest::rejects::RejectSink;
use metrics::Metrics;
use worker::{DecisionSink, Msg, Worker};

/// What the HTTP handlers and the workers share.
pub struct Shared {
    pub config: Config,
    /// Publishes decisions to `kafka.decisions-topic` when Kafka is on.
    pub decisions_producer: Option<ThreadedProducer<DefaultProducerContext>>,
    pub metrics: Arc<Metrics>,
    /// The response path (quarantines, revocations, alerts).
    pub responder: Option<crate::respond::responder::Handle>,
    pub senders: Vec<mpsc::Sender<Msg>>,
    pub ready: AtomicBool,
    /// With Kafka on: the consumer has been given its partitions (and ready
    /// waits for it).
    pub assigned: AtomicBool,
    pub rejects: Mutex<RejectSink>,
    /// Bearer tokens of the quarantine API.
    pub tokens: http::Tokens,
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

/// The worker that owns `agent_id` among `n`.
pub fn route(agent_id: &str, n: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(agent_id.as_bytes()) % n.max(1) as u64) as usize
}

/// Options of `warden run` that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Benign history to learn before serving, when no checkpoint exists.
    pub train: Vec<PathBuf>,
}

/// Engines restored from checkpoints (or trained from files), and the
/// recently decided event ids.
struct Restored {
    engines: Vec<Engine>,
    recent_events: Vec<u64>,
}

/// Builds the engines: restored from checkpoints, or trained from files.
fn build_engines(cfg: &Config, n: usize, opts: &RunOptions) -> anyhow::Result<Restored> {
    let mut engines: Vec<Engine> = (0..n).map(|_| Engine::new(cfg)).collect();
    if cfg.redis.enabled {
        // Profiles load lazily from Redis as agents show up; train only an
        // empty store.
        let mut store =
            crate::state::redis::RedisStore::open(&cfg.redis.url, &cfg.redis.key_prefix)?;
        if store.has_profiles() {
            if !opts.train.is_empty() {
                tracing::warn!("Redis already holds profiles; --train files are ignored so nothing is learned twice.");
            }
            return Ok(Restored {
                engines,
                recent_events: Vec::new(),
            });
        }
        let trained = train(cfg, n, opts, engines)?;
        for e in &trained.engines {
            store.save(&e.profiles());
        }
        return Ok(trained);
    }
    let checkpoints = crate::state::load_all(&cfg.server.data_dir)?;
    let mut restored = 0;
    let mut recent_events = Vec::new();
    for cp in checkpoints {
        for (id, profile) in cp.agents {
            engines[route(&id, n)].restore(&id, profile);
            restored += 1;
        }
        recent_events.extend(cp.recent_events);
    }
    if restored > 0 {
        tracing::info!(agents = restored, dir = %cfg.server.data_dir.display(), "Restored profiles.");
        if !opts.train.is_empty() {
            tracing::warn!(
                "Profiles were restored; --train files are ignored so nothing is learned twice."
            );
        }
        return Ok(Restored {
            engines,
            recent_events,
        });
    }
    let trained = train(cfg, n, opts, engines)?;
    if !opts.train.is_empty() {
        // What was learned is durable before the first event: a crash before
        // the first barrier must not lose the training.
        for (i, e) in trained.engines.iter().enumerate() {
            let cp = crate::state::Checkpoint::of(e, Vec::new());
            crate::state::write_atomic(
                &crate::state::worker_path(&cfg.server.data_dir, i),
                &crate::state::encode(&cp),
            )?;
        }
    }
    Ok(trained)
}

/// Learns the `--train` files into fresh engines.
fn train(
    cfg: &Config,
    n: usize,
    opts: &RunOptions,
    mut engines: Vec<Engine>,
) -> anyhow::Result<Restored> {
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
                    let e = &mut engines[route(&call.agent_id, n)];
                    let ev = e.evaluate(&call, Phase::Train);
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
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    let addr = listener.local_addr()?;

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
    let rejects = RejectSink::append(
        Some(&cfg.server.data_dir.join("rejects.jsonl")),
        cfg.ingest.reject_sample_bytes,
    )?
    .with_fingerprints(crate::respond::credential::fingerprinter(&cfg));

    let mut senders = Vec::with_capacity(n);
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel(cfg.server.queue_depth);
        senders.push(tx);
        receivers.push(rx);
    }
    let decisions_producer = if cfg.kafka.enabled && !cfg.kafka.decisions_topic.is_empty() {
        // Decisions and consumed offsets commit together (one transaction
        // per barrier): a crash replays the uncommitted events, and the
        // decisions they had produced are aborted, never seen twice.
        let p: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &cfg.kafka.brokers)
            .set("transactional.id", cfg.kafka.transactional_id())
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
        Some(p)
    } else {
        None
    };
    let metrics = Arc::new(Metrics::default());
    let responder = {
        let cfg = cfg.clone();
        let metrics = metrics.clone();
        let learn = learner(senders.clone());
        tokio::task::spawn_blocking(move || crate::respond::responder::start(&cfg, metrics, learn))
            .await??
    };
    let shared = Arc::new(Shared {
        config: cfg.clone(),
        decisions_producer,
        metrics,
        responder: Some(responder.handle.clone()),
        senders,
        ready: AtomicBool::new(false),
        assigned: AtomicBool::new(!cfg.kafka.enabled),
        rejects: Mutex::new(rejects),
        tokens: http::Tokens::from_env(
            &cfg.response.admin_tokens_env,
            &cfg.response.read_tokens_env,
        ),
        agents: (0..n).map(|_| AtomicUsize::new(0)).collect(),
    });
    tracing::info!(%addr, workers = n, "Listening; restoring profiles before ready.");

    let server = axum::serve(listener, http::router(shared.clone()))
        .with_graceful_shutdown(shutdown_signal());
    let server = tokio::spawn(async move { server.await });

    let restored = {
        let cfg = cfg.clone();
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || build_engines(&cfg, n, &opts)).await??
    };
    let recent = restored.recent_events;
    let mut handles = Vec::with_capacity(n);
    for (i, (engine, rx)) in restored.engines.into_iter().zip(receivers).enumerate() {
        shared.set_agents(i, engine.agents().len());
        let w = Worker::new(i, engine, &recent, shared.clone(), decisions.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("warden-worker-{i}"))
                .spawn(move || w.run(rx))?,
        );
    }
    shared.metrics.agents.set(shared.agent_count());
    let (stop_tx, stop_rx) = watch::channel(false);
    let source = cfg.kafka.enabled.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move { crate::ingest::kafka::run(shared, stop_rx).await })
    });
    shared.ready.store(true, Ordering::Release);
    tracing::info!(%addr, "Ready.");

    // Periodic maintenance: close idle sessions, checkpoint.
    let ticker = {
        let shared = shared.clone();
        let every = cfg.server.checkpoint_interval;
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.tick().await;
            loop {
                t.tick().await;
                for s in &shared.senders {
                    let _ = s.try_send(Msg::Tick);
                }
            }
        })
    };

    server.await??;
    tracing::info!("Listener stopped; draining workers.");
    ticker.abort();
    shared.ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    if let Some(source) = source {
        match source.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "Kafka source failed."),
            Err(e) => tracing::error!(error = %e, "Kafka source panicked."),
        }
    }
    // Queues are FIFO: a worker stops after everything accepted before.
    for s in &shared.senders {
        let _ = s.send(Msg::Stop).await;
    }
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

/// How the responder hands a released false positive to the worker that
/// owns the agent (never blocking the responder on a full worker queue).
fn learner(senders: Vec<mpsc::Sender<Msg>>) -> crate::respond::responder::Learner {
    let rt = tokio::runtime::Handle::current();
    Box::new(
        move |agent_id: &str, events: Vec<String>, session: String| {
            let tx = senders[route(agent_id, senders.len())].clone();
            rt.spawn(async move {
                let _ = tx.send(Msg::Learn { events, session }).await;
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
