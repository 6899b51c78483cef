//! A worker: one thread, one [`Engine`], the agents routed to it. It is the
//! single writer of their profiles, so the hot path takes no lock.
//!
//! Messages carry raw event bytes (already validated by ingest) and are
//! decoded again here, borrowing from the batch, which is cheaper than
//! shipping owned events across threads.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::BaseRecord;
use tokio::sync::mpsc;

use super::metrics::{FlaggedLabel, KindLabel, OutcomeLabel};
use super::Shared;
use crate::decide::Mode;
use crate::engine::{Engine, Evaluation, ExplainedReason, Phase};
use crate::event::{Event, ToolCall};
use crate::ingest::decode::{decode_bytes, DecodedBody};
use crate::pipeline::{KafkaMessage, Msg};
use crate::replay::DecisionRecord;
use crate::respond::context::{self, Timeline};
use crate::respond::incident::key_hash;
use crate::respond::responder::Rolls;
use crate::state::redis::RedisStore;
use crate::state::{self, Checkpoint};

/// How often a flag into a full incident carries the session timeline:
/// the incident shows the latest within this, and a storm does not build
/// one per flagged call.
const TIMELINE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A flagged call, summarised for the log after its batch.
type FlaggedCall = (String, String, f32, f32, Vec<String>);

/// The shared decisions file (every worker appends whole lines).
pub type DecisionSink = Arc<Mutex<Option<BufWriter<File>>>>;

/// Event ids seen recently (hashed), bounded: redeliveries get no second
/// decision.
struct Dedup {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    cap: usize,
}

impl Dedup {
    fn new(cap: usize) -> Self {
        Self {
            seen: HashSet::with_capacity(cap.min(1 << 20)),
            order: VecDeque::with_capacity(cap.min(1 << 20)),
            cap,
        }
    }

    /// True when `id` is new (and now remembered).
    fn first_time(&mut self, id: &str) -> bool {
        self.first_time_hash(xxhash_rust::xxh3::xxh3_64(id.as_bytes()))
    }

    fn first_time_hash(&mut self, h: u64) -> bool {
        if self.cap == 0 {
            return true;
        }
        if !self.seen.insert(h) {
            return false;
        }
        self.order.push_back(h);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

pub struct Worker {
    pub index: usize,
    pub engine: Engine,
    pub shared: Arc<Shared>,
    pub decisions: DecisionSink,
    pub checkpoint_path: PathBuf,
    dedup: Dedup,
    /// Latest event time seen: sessions idle relative to it are closed on
    /// ticks.
    watermark: i64,
    dirty: bool,
    /// Kafka messages decided since the last committed barrier: state
    /// that holds them must not be saved, since their offsets and
    /// decisions were not committed and they are replayed.
    uncommitted: bool,
    line: Vec<u8>,
    /// The shared store when Redis is on (else files under the data dir).
    store: Option<RedisStore>,
    recent_key: String,
    /// The Kafka partition each agent was last seen on (with a store only).
    partition_of: HashMap<Box<str>, i32>,
    /// Dedup window staged at a barrier, saved once the commit is done.
    staged_recent: Option<Vec<u64>>,
    /// Each agent's last calls, for the session timeline of an alert.
    timelines: HashMap<Box<str>, Timeline>,
    /// Per incident key, when a flag into a full incident last carried
    /// its session timeline (see [`TIMELINE_EVERY`]).
    timeline_sent: HashMap<u64, Instant>,
    /// Flagged calls logged one by one per second; a storm is counted.
    flag_log: crate::telemetry::LogBudget,
    /// Cached metric handles (no registry lock per event).
    counters: WorkerCounters,
    /// The newest event time decided since the last batch ended.
    newest_ts: i64,
    /// Engine binding counters already exported (abstained, contradictions).
    binding_exported: (u64, u64),
    /// Live thresholds and modes set through the admin API.
    overrides: super::admin::policy::PolicyReader,
    /// Live suppression rules.
    suppressions: super::admin::suppress::SuppressionReader,
    /// The last flagged decisions of this worker's agents, with reasons,
    /// for the explain route (bounded): (agent, decision as JSON text). Text,
    /// not a `serde_json::Value`: in a storm thousands a second pass
    /// through, and a value tree costs dozens of allocations to build and
    /// to drop, for a route that reads a few.
    flagged_recent: VecDeque<(Box<str>, Box<str>)>,
    /// Flags for the responder, held back while its queue is full.
    outbox: Option<crate::respond::responder::Outbox>,
    /// Its agents' habits in names, for the explain route.
    habits: super::admin::habits::Habits,
}

/// Flagged decisions a worker keeps for the explain route.
const FLAGGED_RECENT: usize = 2000;

/// Metric handles a worker caches, keyed by class or agent, so that an
/// event costs atomic adds only.
#[derive(Default)]
struct WorkerCounters {
    /// Per class: (unflagged, flagged) decisions.
    by_class: HashMap<Box<str>, [prometheus_client::metrics::counter::Counter; 2]>,
    /// Per flagged agent.
    flagged_by_agent: HashMap<Box<str>, prometheus_client::metrics::counter::Counter>,
}

impl Worker {
    /// A worker over `engine`, remembering `recent` event ids (restored,
    /// oldest first) as already decided.
    pub fn new(
        index: usize,
        engine: Engine,
        recent: &[u64],
        habits: super::admin::habits::Habits,
        shared: Arc<Shared>,
        decisions: DecisionSink,
    ) -> Self {
        let checkpoint_path = state::worker_path(&shared.config.server.data_dir, index);
        let mut dedup = Dedup::new(shared.config.server.dedup_window);
        let r = &shared.config.redis;
        let mut store = if r.enabled {
            match RedisStore::open(r) {
                Ok(s) => Some(s),
                Err(e) => {
                    // The URL was validated at start; a failure here is not
                    // an outage, so say so loudly and fall back to files.
                    tracing::error!(error = %e, "Cannot use Redis; checkpointing to files.");
                    None
                }
            }
        } else {
            None
        };
        let recent_key = store
            .as_ref()
            .map(|s| s.recent_key(&shared.config.kafka.transactional_id(), index))
            .unwrap_or_default();
        let restored = store
            .as_mut()
            .map(|s| s.load_recent(&recent_key))
            .unwrap_or_default();
        for h in recent.iter().chain(&restored) {
            dedup.first_time_hash(*h);
        }
        let flag_log = crate::telemetry::LogBudget::new(
            shared.config.server.flagged_log_per_second,
            Instant::now(),
        );
        let outbox = shared
            .responder
            .clone()
            .map(|h| crate::respond::responder::Outbox::new(h, shared.metrics.clone()));
        Self {
            outbox,
            index,
            engine,
            decisions,
            checkpoint_path,
            dedup,
            watermark: i64::MIN,
            dirty: false,
            uncommitted: false,
            line: Vec::with_capacity(2048),
            store,
            recent_key,
            partition_of: HashMap::new(),
            staged_recent: None,
            timelines: HashMap::new(),
            timeline_sent: HashMap::new(),
            flag_log,
            counters: WorkerCounters::default(),
            newest_ts: i64::MIN,
            binding_exported: (0, 0),
            overrides: super::admin::policy::PolicyReader::new(shared.admin.policy.clone()),
            suppressions: super::admin::suppress::SuppressionReader::new(
                shared.admin.suppressions.clone(),
            ),
            flagged_recent: VecDeque::new(),
            habits,
            shared,
        }
    }

    /// Runs until told to stop (or every sender is gone), then closes all
    /// sessions and writes a final checkpoint.
    pub fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Msg::Events { batch, items } => self.process_decoded(&batch, &items),
                Msg::Message(m) => self.process_message(&m),
                Msg::Evict(partitions) => self.evict(&partitions),
                Msg::Tick => {
                    if let Some(o) = &mut self.outbox {
                        o.drain();
                    }
                    let now = Instant::now();
                    self.summarise_flag_logs(now);
                    self.timeline_sent
                        .retain(|_, t| now.duration_since(*t) < TIMELINE_EVERY);
                    self.measure_profiles();
                    self.save_habits();
                    if self.watermark > i64::MIN {
                        self.engine.sweep_all(self.watermark);
                    }
                    // With Kafka, state is saved only at barriers, in step
                    // with the commits.
                    if !self.shared.config.kafka.enabled {
                        let _ = self.checkpoint();
                    } else if !self.dirty {
                        // Nothing new since the last barrier: what is
                        // saved is current, so the checkpoint is not stale.
                        self.shared.metrics.checkpointed(self.index, None);
                    }
                }
                Msg::Barrier { ack, resume } => {
                    // Stage the state, and make its dedup window current only
                    // once the decisions it remembers are committed: a crash
                    // in between replays those events, and they must not be
                    // taken for duplicates of decisions that were aborted.
                    let _ = ack.send(self.stage());
                    let committed = resume.recv() == Ok(true);
                    self.settle(committed);
                }
                Msg::Learn { events, session } => self.learn(&events, &session),
                Msg::Explain {
                    agent_id,
                    decisions,
                    reply,
                } => {
                    let _ = reply.send(self.explain(&agent_id, decisions));
                }
                Msg::Stop => break,
            }
        }
        if let Some(o) = &mut self.outbox {
            o.flush_blocking();
        }
        self.save_habits();
        if self.uncommitted {
            // The source's last commit failed: the checkpoint of the last
            // committed barrier stands, and what followed is replayed.
            tracing::warn!(
                worker = self.index,
                "Worker drained; Kafka offsets after the last commit were not committed, so it keeps the checkpoint that matches them."
            );
        } else {
            // Open sessions are checkpointed, not closed: after a restart
            // they continue with their context and surprise, as after a
            // crash.
            self.dirty = true;
            let _ = self.checkpoint();
            tracing::info!(worker = self.index, "Worker drained and checkpointed.");
        }
    }

    fn learn(&mut self, events: &[String], session: &str) {
        let max = self.shared.config.ingest.max_event_bytes;
        let mut calls: Vec<_> = events
            .iter()
            .filter_map(|e| match decode_bytes(e.as_bytes(), max) {
                Ok(Event::ToolCall(c)) => Some(c),
                _ => None,
            })
            .collect();
        let n = calls.len();
        self.engine.learn_released(&mut calls, session);
        self.dirty = true;
        tracing::info!(
            worker = self.index,
            calls = n,
            session,
            "Learned the calls of a false positive."
        );
    }

    /// Closes, saves and drops the agents last seen on `partitions`.
    fn evict(&mut self, partitions: &[i32]) {
        let ids: Vec<String> = self
            .partition_of
            .iter()
            .filter(|(_, p)| partitions.contains(p))
            .map(|(id, _)| id.to_string())
            .collect();
        if ids.is_empty() {
            return;
        }
        let gone = self.engine.evict(&ids);
        if let Some(store) = self.store.as_mut() {
            store.save(&gone, self.engine.key_id());
        }
        for id in &ids {
            self.partition_of.remove(id.as_str());
            self.timelines.remove(id.as_str());
        }
        self.shared
            .set_agents(self.index, self.engine.agents().len());
        tracing::info!(
            worker = self.index,
            agents = gone.len(),
            "Handed agents of revoked partitions back to the store."
        );
    }

    /// Sends a Kafka message this worker cannot decide to the dead-letter
    /// topic, counted by kind.
    fn dead_letter(&self, m: &KafkaMessage, kind: &'static str, reason: &str) {
        self.shared
            .metrics
            .rejected
            .get_or_create(&KindLabel { kind })
            .inc();
        if let Some(dlq) = &self.shared.dead_letters {
            dlq.send(&crate::ingest::kafka::DeadLetter {
                payload: &m.payload,
                key: m.key.as_deref(),
                reason,
                kind,
                topic: dlq.source_topic(),
                partition: m.partition,
                offset: m.offset,
            });
        }
    }

    /// One Kafka message: decoded here, once; a bad one is dead-lettered.
    fn process_message(&mut self, m: &KafkaMessage) {
        let max = self.shared.config.ingest.max_event_bytes;
        let ev = match decode_bytes(&m.payload, max) {
            Ok(ev) => ev,
            Err(e) => {
                self.dead_letter(m, e.kind.as_str(), &e.to_string());
                return;
            }
        };
        if let Some(key) = &m.key {
            // Keyed by another id, the event may sit on another instance's
            // partition than its agent's other events: two writers of one
            // profile. EVENTS.md: the key is agent_id.
            if key.as_ref() != ev.agent_id().as_bytes() {
                let reason = format!(
                    "message key {:?} is not the event's agent_id {:?} (the key must be agent_id)",
                    String::from_utf8_lossy(key),
                    ev.agent_id()
                );
                self.dead_letter(m, "key_mismatch", &reason);
                return;
            }
        }
        count_event(&self.shared, &ev);
        self.uncommitted = true;
        let mut flagged = Vec::new();
        self.process_event(&ev, &m.payload, m.partition, &mut flagged);
        self.finish_batch(flagged);
    }

    /// Events HTTP ingest decoded (and counted) for this worker.
    fn process_decoded(&mut self, batch: &DecodedBody, items: &[u32]) {
        let body = batch.backing_cart();
        let mut flagged = Vec::new();
        for &i in items {
            if let Some((range, Ok(ev))) = batch.get().0.get(i as usize) {
                self.process_event(ev, &body[range.clone()], -1, &mut flagged);
            }
        }
        self.finish_batch(flagged);
    }

    /// Scores, decides, publishes and learns one event; `raw` is its JSON.
    fn process_event(
        &mut self,
        ev: &Event,
        raw: &[u8],
        partition: i32,
        flagged: &mut Vec<FlaggedCall>,
    ) {
        self.dirty = true;
        if partition >= 0 && self.store.is_some() {
            let id = ev.agent_id();
            match self.partition_of.get_mut(id) {
                Some(p) => *p = partition,
                None => {
                    self.partition_of.insert(id.into(), partition);
                }
            }
        }
        if let Some(store) = self.store.as_mut() {
            // First sight of an agent here: continue from its stored
            // profile (it may have moved from another instance).
            let id = ev.agent_id();
            if self.engine.agent(id).is_none() {
                match store.load(id, self.engine.key_id()) {
                    Ok(Some(snapshot)) => self.engine.restore(id, snapshot),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(agent_id = id, error = %e, "Stored profile unreadable; the agent starts anew.")
                    }
                }
            }
        }
        match ev {
            Event::Context(c) => {
                self.watermark = self.watermark.max(c.ts);
                self.engine.observe_context(c);
            }
            Event::ToolCall(call) => {
                if !self.dedup.first_time(&call.event_id) {
                    self.shared.metrics.duplicates.inc();
                    return;
                }
                self.watermark = self.watermark.max(call.ts);
                let t0 = Instant::now();
                let mut ev = self.engine.evaluate(call, Phase::Live);
                let overrides = self.overrides.get();
                if !overrides.is_empty() {
                    let class = self
                        .engine
                        .agent(&call.agent_id)
                        .and_then(|a| a.policy.class.as_deref());
                    overrides.apply(
                        &self.shared.config.policy,
                        &call.agent_id,
                        class,
                        &mut ev.decision,
                        ev.score.total,
                    );
                }
                self.shared
                    .metrics
                    .score_seconds
                    .observe(t0.elapsed().as_secs_f64());
                let rec = DecisionRecord {
                    event_id: &call.event_id,
                    agent_id: &call.agent_id,
                    score: (ev.score.total * 100.0).round() / 100.0,
                    threshold: (ev.decision.threshold * 100.0).round() / 100.0,
                    flagged: ev.decision.flagged,
                    reasons: self.engine.explain(&ev),
                };
                let label = if rec.flagged { "true" } else { "false" };
                self.shared
                    .metrics
                    .decisions
                    .get_or_create(&FlaggedLabel { flagged: label })
                    .inc();
                self.newest_ts = self.newest_ts.max(call.ts);
                self.count_decision(&call.agent_id, rec.score, rec.flagged);
                let start = self.line.len();
                let written = serde_json::to_writer(&mut self.line, &rec).is_ok();
                let end = self.line.len();
                if written {
                    self.publish(&call.agent_id, start);
                    self.line.push(b'\n');
                }
                let suppressed = if rec.flagged {
                    self.suppression(call, &rec.reasons)
                } else {
                    None
                };
                if rec.flagged && written {
                    if self.flagged_recent.len() >= FLAGGED_RECENT {
                        self.flagged_recent.pop_front();
                    }
                    let text = recent_flag(
                        &self.line[start..end],
                        call,
                        ev.decision.mode,
                        suppressed.map(|s| s.as_str()),
                    );
                    self.flagged_recent
                        .push_back((call.agent_id.as_ref().into(), text));
                }
                // The log budget is asked first: in a storm most flagged
                // calls are only counted, and their lines never formatted.
                if rec.flagged && suppressed.is_none() && self.flag_log.admit(Instant::now()) {
                    let top: Vec<String> = rec
                        .reasons
                        .iter()
                        .take(3)
                        .map(|r| format!("{} {:.1} bits: {}", r.signal, r.bits, r.detail))
                        .collect();
                    flagged.push((
                        call.agent_id.to_string(),
                        call.event_id.to_string(),
                        rec.score,
                        rec.threshold,
                        top,
                    ));
                }
                self.respond(call, raw, &ev, &rec.reasons, suppressed.is_some());
                if suppressed == Some(super::admin::suppress::Skip::Alert) {
                    // A known-benign pattern: learned as any unflagged call.
                    ev.decision.flagged = false;
                }
                if !ev.decision.flagged {
                    super::admin::habits::note_call(&mut self.habits, &self.engine, call, &ev);
                }
                self.engine.commit(ev);
                self.export_binding_counters();
            }
        }
    }

    /// Moves the engine's binding counters to their Prometheus counters.
    fn export_binding_counters(&mut self) {
        let c = self.engine.counters;
        let (abstained, contradictions) = self.binding_exported;
        let m = &self.shared.metrics;
        if c.binding_abstained > abstained {
            m.binding_abstained.inc_by(c.binding_abstained - abstained);
        }
        if c.owner_contradictions > contradictions {
            m.owner_contradictions
                .inc_by(c.owner_contradictions - contradictions);
        }
        self.binding_exported = (c.binding_abstained, c.owner_contradictions);
    }

    /// Counts a decision by class and, flagged, by agent; records its
    /// score. Handles are cached per class and agent.
    fn count_decision(&mut self, agent_id: &str, score: f32, flagged: bool) {
        let m = &self.shared.metrics;
        m.score_bits.observe(f64::from(score));
        let class = self
            .engine
            .agent(agent_id)
            .and_then(|a| a.policy.class.as_deref())
            .unwrap_or(super::metrics::NO_CLASS);
        let pair = match self.counters.by_class.get(class) {
            Some(p) => p,
            None => {
                let handle = |flagged| {
                    m.decisions_by_class
                        .get_or_create(&super::metrics::ClassFlaggedLabel {
                            class: class.to_owned(),
                            flagged,
                        })
                        .clone()
                };
                self.counters
                    .by_class
                    .entry(class.into())
                    .or_insert_with(|| [handle("false"), handle("true")])
            }
        };
        pair[usize::from(flagged)].inc();
        if flagged {
            match self.counters.flagged_by_agent.get(agent_id) {
                Some(c) => {
                    c.inc();
                }
                None => {
                    let c = m.flagged_agent_counter(agent_id);
                    c.inc();
                    self.counters.flagged_by_agent.insert(agent_id.into(), c);
                }
            };
        }
    }

    /// The suppression rule a flagged call matches, if any (counted).
    fn suppression(
        &mut self,
        call: &ToolCall,
        reasons: &[ExplainedReason],
    ) -> Option<super::admin::suppress::Skip> {
        let signals: Vec<&str> = reasons.iter().map(|r| r.signal).collect();
        let class = self
            .engine
            .agent(&call.agent_id)
            .and_then(|a| a.policy.class.as_deref());
        let skip = self
            .suppressions
            .check(&super::admin::suppress::Candidate {
                agent_id: &call.agent_id,
                class,
                tool: &call.tool,
                resource: call.resource_id.as_deref(),
                signals: &signals,
                now_ms: chrono::Utc::now().timestamp_millis(),
            })?;
        self.shared
            .metrics
            .suppressed
            .get_or_create(&KindLabel {
                kind: skip.as_str(),
            })
            .inc();
        Some(skip)
    }

    /// What this worker knows of an agent, for `GET /v1/agents/{id}/explain`.
    fn explain(&mut self, agent_id: &str, n: usize) -> Option<serde_json::Value> {
        let agent = self.engine.agent(agent_id)?;
        let timeline = self.timelines.get(agent_id);
        let recent = timeline.map(|t| t.recent_resources(8)).unwrap_or_default();
        let p = &agent.profile;
        let baseline = context::baseline(p, recent);
        let total_hours: f32 = p.hours.iter().sum();
        let usual_hours: Vec<usize> = (0..24)
            .filter(|h| total_hours > 0.0 && p.hours[*h] / total_hours >= 1.0 / 48.0)
            .collect();
        let (threshold, basis) = self.engine.threshold_of(agent);
        let mut d = crate::decide::decide(0.0, (threshold, basis), agent.policy.mode);
        let class = agent.policy.class.clone();
        let policy = self.overrides.get().apply(
            &self.shared.config.policy,
            agent_id,
            class.as_deref(),
            &mut d,
            0.0,
        );
        let calls = timeline.map(|t| t.last(n)).unwrap_or_default();
        // Resource types, top resources, argument sources, by name.
        let habits = self
            .habits
            .get(agent_id)
            .map_or(serde_json::Value::Null, |h| h.view());
        // Habits are tallied per instance (names, which profiles do not
        // keep): say where they come from, or why there are none here.
        let habits_source = if habits.is_null() {
            "none on this instance: habits are tallied by each instance from the clean calls it scores or trains on, and this agent's profile came from elsewhere (Redis or another instance's checkpoint) or has had no clean call here yet; they appear with its next clean call here. The rest of the profile (tools, transitions, origins, cadence, hours) is complete"
        } else {
            "tallied on this instance from the clean calls it scored or trained on (kept in its data dir, habits-<worker>.json)"
        };
        let flagged: Vec<serde_json::Value> = self
            .flagged_recent
            .iter()
            .rev()
            .filter(|(a, _)| a.as_ref() == agent_id)
            .take(n)
            .filter_map(|(_, text)| serde_json::from_str(text).ok())
            .map(|mut v| {
                round_floats(&mut v);
                v
            })
            .collect();
        Some(serde_json::json!({
            "agent_id": agent_id,
            "class": class,
            "profile": {
                "usual_tools": baseline.usual_tools.iter().map(|(t, s)| serde_json::json!({"tool": t, "share": (s * 1000.0).round() / 1000.0})).collect::<Vec<_>>(),
                "recent_resources": baseline.recent_resources,
                "median_gap_secs": baseline.median_gap_secs,
                "calls_per_day": baseline.calls_per_day,
                "usual_hours_utc": usual_hours,
                "events_learned": baseline.events_learned,
                "sessions_learned": baseline.sessions_learned,
                "transitions": super::admin::habits::transitions(p),
                "instruction_origins": super::admin::habits::instruction_origins(p),
                "habits": habits,
                "habits_source": habits_source,
            },
            "policy": policy,
            "last_calls": calls,
            "flagged_decisions": flagged,
        }))
    }

    /// Saves the habits the explain route names, when they changed (on
    /// ticks: they explain, they decide nothing, so no barrier waits on
    /// them).
    fn save_habits(&mut self) {
        let path =
            super::admin::habits::Habits::path(&self.shared.config.server.data_dir, self.index);
        if let Err(e) = self.habits.save(&path) {
            tracing::warn!(worker = self.index, error = %e, "Cannot save agent habits; explain keeps them in memory.");
        }
    }

    /// Sets this worker's profile memory gauge (on ticks, not per event).
    fn measure_profiles(&self) {
        let bytes: usize = self
            .engine
            .agents()
            .iter()
            .map(|a| a.profile.size_bytes())
            .sum();
        self.shared
            .metrics
            .profile_bytes
            .get_or_create(&super::metrics::WorkerLabel { worker: self.index })
            .set(bytes as i64);
    }

    /// After a batch: agent counts, decisions flushed, flags logged.
    fn finish_batch(&mut self, flagged: Vec<FlaggedCall>) {
        if self.newest_ts > i64::MIN {
            let now_ms = chrono::Utc::now().timestamp_millis();
            self.shared
                .metrics
                .event_time_lag
                .get_or_create(&super::metrics::WorkerLabel { worker: self.index })
                .set((now_ms - self.newest_ts) as f64 / 1000.0);
            self.newest_ts = i64::MIN;
        }
        self.shared
            .set_agents(self.index, self.engine.agents().len());
        self.shared.metrics.agents.set(self.shared.agent_count());
        self.flush_decisions();
        if let Some(o) = &mut self.outbox {
            o.drain();
        }
        let now = Instant::now();
        self.summarise_flag_logs(now);
        // Admitted by the log budget when they were decided.
        for (agent, event, score, threshold, top) in flagged {
            tracing::warn!(
                agent_id = %agent,
                event_id = %event,
                // f32: printed as is, 30.29 would read 30.290000915527344.
                score = %format_args!("{score:.1}"),
                threshold = %format_args!("{threshold:.1}"),
                reasons = ?top,
                "Agent flagged: call deviates from its baseline."
            );
        }
    }

    /// Logs how many flagged calls the log budget held back, once their
    /// second is over.
    fn summarise_flag_logs(&mut self, now: Instant) {
        if let Some(calls) = self.flag_log.summary(now) {
            tracing::warn!(
                worker = self.index,
                calls,
                "More agents flagged than the log shows one by one; every decision is in the decisions sink and warden_decisions_total."
            );
        }
    }

    /// Remembers the call for alert timelines and, when it was flagged
    /// outside learn mode, hands the flag to the responder.
    fn respond(
        &mut self,
        call: &ToolCall,
        raw: &[u8],
        ev: &Evaluation,
        reasons: &[ExplainedReason],
        suppressed: bool,
    ) {
        let cap = self.shared.config.response.timeline_calls;
        let id = call.agent_id.as_ref();
        let timeline = match self.timelines.get_mut(id) {
            Some(t) => t,
            None => self.timelines.entry(id.into()).or_default(),
        };
        let flagged = ev.decision.flagged;
        timeline.push(call, ev.score.total, flagged, cap);
        if !flagged || suppressed || ev.decision.mode == Mode::Learn {
            return;
        }
        let Some(outbox) = &mut self.outbox else {
            return;
        };
        let agent = self.engine.agent(id);
        // What a roll-up never reads is not gathered per flagged call of a
        // storm. Released in between, the incident the flag opens lacks
        // the baseline (the explain route has it) or, after a full one,
        // the raw event and arguments; its reasons are always there.
        let key = key_hash(id, call.agent_instance.as_deref());
        let gather = match outbox.rolls(key) {
            Rolls::Opens => context::Gather::All(agent.map(|a| &a.profile)),
            Rolls::RollsIn => context::Gather::NoBaseline,
            Rolls::RollsIntoFull => {
                let now = Instant::now();
                let due = self
                    .timeline_sent
                    .get(&key)
                    .is_none_or(|t| now.duration_since(*t) >= TIMELINE_EVERY);
                if due {
                    self.timeline_sent.insert(key, now);
                }
                context::Gather::Light { timeline: due }
            }
        };
        let flag = context::flag(
            call,
            raw,
            (ev.score.total * 100.0).round() / 100.0,
            &ev.decision,
            reasons,
            agent.and_then(|a| a.policy.class.as_deref()),
            timeline,
            gather,
        );
        outbox.send(flag);
    }

    /// Sends the decision serialised at `self.line[start..]` to the
    /// decisions topic, waiting while the producer's queue is full.
    fn publish(&self, agent_id: &str, start: usize) {
        let (Some(p), topic) = (
            &self.shared.decisions_producer,
            &self.shared.config.kafka.decisions_topic,
        ) else {
            return;
        };
        let payload = &self.line[start..];
        let mut record = BaseRecord::<str, [u8]>::to(topic)
            .key(agent_id)
            .payload(payload);
        loop {
            match p.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, "Cannot publish a decision.");
                    return;
                }
            }
        }
    }

    fn flush_decisions(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let mut sink = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = sink.as_mut() {
            if let Err(e) = w.write_all(&self.line).and_then(|()| w.flush()) {
                tracing::error!(error = %e, "Cannot write decisions; an operator must free the disk.");
            }
        }
        self.line.clear();
    }

    /// Phase one of a barrier: flags recorded by the responder, profiles
    /// saved, dedup window held back.
    fn stage(&mut self) -> bool {
        if let Some(o) = &mut self.outbox {
            o.sync_blocking();
        }
        // Offsets of dead-lettered messages commit only once the letters
        // are written.
        if let Some(dlq) = &self.shared.dead_letters {
            if !dlq.flush() {
                return false;
            }
        }
        let recent: Vec<u64> = self.dedup.order.iter().copied().collect();
        if let Some(store) = self.store.as_mut() {
            let changed = self.engine.take_dirty();
            store.save(&changed, self.engine.key_id());
            self.staged_recent = Some(recent);
            return true;
        }
        let t0 = Instant::now();
        let cp = Checkpoint::of(&self.engine, recent);
        match state::write_atomic(
            &self.checkpoint_path.with_extension("pending"),
            &state::encode(&cp),
        ) {
            Ok(()) => {
                // Its age counts from the commit (settle); its cost is here.
                self.shared
                    .metrics
                    .checkpoint_seconds
                    .observe(t0.elapsed().as_secs_f64());
                true
            }
            Err(e) => {
                tracing::error!(worker = self.index, error = %e, "Checkpoint failed; offsets stay uncommitted.");
                false
            }
        }
    }

    fn count_checkpoint(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.shared
            .metrics
            .checkpoints
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Phase two: after a commit the staged state becomes current; else it
    /// is dropped.
    fn settle(&mut self, committed: bool) {
        let pending = self.checkpoint_path.with_extension("pending");
        if !committed {
            let _ = std::fs::remove_file(&pending);
            self.staged_recent = None;
            return;
        }
        self.uncommitted = false;
        let ok = match (self.store.as_mut(), self.staged_recent.take()) {
            (Some(store), Some(recent)) => {
                store.save_recent(&self.recent_key, &recent);
                true
            }
            _ => std::fs::rename(&pending, &self.checkpoint_path).is_ok(),
        };
        self.count_checkpoint(ok);
        if ok {
            self.dirty = false;
            self.shared.metrics.checkpointed(self.index, None);
        }
    }

    /// Writes this worker's profiles if anything changed since the last one;
    /// true when what is on disk is current.
    fn checkpoint(&mut self) -> bool {
        if !self.dirty {
            // What is on disk is current: an idle service is not stale.
            self.shared.metrics.checkpointed(self.index, None);
            return true;
        }
        if let Some(store) = self.store.as_mut() {
            let changed = self.engine.take_dirty();
            store.save(&changed, self.engine.key_id());
            let recent: Vec<u64> = self.dedup.order.iter().copied().collect();
            store.save_recent(&self.recent_key, &recent);
            self.dirty = false;
            self.count_checkpoint(true);
            self.shared.metrics.checkpointed(self.index, None);
            return true;
        }
        let t0 = Instant::now();
        let cp = Checkpoint::of(&self.engine, self.dedup.order.iter().copied().collect());
        match state::write_atomic(&self.checkpoint_path, &state::encode(&cp)) {
            Ok(()) => {
                self.dirty = false;
                self.count_checkpoint(true);
                self.shared
                    .metrics
                    .checkpointed(self.index, Some(t0.elapsed().as_secs_f64()));
                true
            }
            Err(e) => {
                self.count_checkpoint(false);
                tracing::error!(worker = self.index, error = %e, "Checkpoint failed; will retry at the next tick.");
                false
            }
        }
    }
}

/// Two decimals for every non-integer number: f32 scores widened to f64
/// would otherwise read `28.84000015258789`.
fn round_floats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(r) = n
                .as_f64()
                .and_then(|x| serde_json::Number::from_f64((x * 100.0).round() / 100.0))
            {
                *n = r;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(round_floats),
        serde_json::Value::Object(o) => o.values_mut().for_each(round_floats),
        _ => {}
    }
}

/// A flagged decision as the explain route lists it: its decision record
/// (`decision`, the JSON object as written to the sink) with when, which
/// tool, in which mode and whether a suppression matched.
fn recent_flag(decision: &[u8], call: &ToolCall, mode: Mode, suppressed: Option<&str>) -> Box<str> {
    let body = std::str::from_utf8(decision).unwrap_or("{}");
    let body = body.strip_suffix('}').unwrap_or("{");
    let sep = if body.ends_with('{') { "" } else { "," };
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "null".to_owned());
    format!(
        "{body}{sep}\"ts\":\"{}\",\"tool\":{},\"mode\":\"{}\",\"suppressed\":{}}}",
        context::rfc3339(call.ts),
        quoted(&call.tool),
        mode.as_str(),
        suppressed.map_or_else(|| "null".to_owned(), quoted),
    )
    .into_boxed_str()
}

/// Counts an accepted event by kind.
pub fn count_event(shared: &Shared, ev: &Event) {
    shared
        .metrics
        .events
        .get_or_create(&KindLabel {
            kind: ev.kind().as_str(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recent_flag_reads_back_as_its_decision_and_context() {
        let line = r#"{"event_id":"e1","ts":"2026-11-24T09:00:00.250Z","agent_id":"a","tool":"send \"mail\"","session_id":"s"}"#;
        let Event::ToolCall(call) = decode_bytes(line.as_bytes(), 4096).unwrap() else {
            panic!("a tool call")
        };
        let decision = br#"{"event_id":"e1","score":30.25,"reasons":[{"bits":3.3}]}"#;
        let text = recent_flag(decision, &call, Mode::Shadow, Some("alert"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event_id"], "e1");
        assert_eq!(v["reasons"][0]["bits"], 3.3);
        assert_eq!(v["ts"], "2026-11-24T09:00:00.250Z");
        assert_eq!(v["tool"], "send \"mail\"");
        assert_eq!(v["mode"], "shadow");
        assert_eq!(v["suppressed"], "alert");
        let text = recent_flag(b"{}", &call, Mode::Enforce, None);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["suppressed"], serde_json::Value::Null);
        assert_eq!(v["mode"], "enforce");
    }
}
