//! The metrics `warden run` exports at `/metrics`.
//!
//! Handles are registered once; workers increment atomics (no lock per
//! event: per-class and per-agent handles are cached by each worker, and
//! the score histograms are lock-free, see [`AtomicHistogram`]).
//!
//! Two expositions of the same registry, chosen by the `Accept` header:
//! OpenMetrics 1.0 (`application/openmetrics-text`, what Prometheus asks
//! for first) and the Prometheus text format 0.0.4 (everything else,
//! `promtool check metrics` included), where a counter's HELP and TYPE
//! carry the `_total` name of its samples. Every family is present from
//! start: label sets known in advance are created at zero.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text exposition.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Agents given their own `agent_id` label in
/// `warden_flagged_calls_by_agent_total`; flags of further agents count
/// under `agent_id="other"`, so a flag storm over many agents cannot grow
/// the exposition without bound.
pub const FLAGGED_AGENT_LABELS: usize = 500;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlaggedLabel {
    pub flagged: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    pub destination: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    pub worker: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassModeLabel {
    pub class: String,
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassFlaggedLabel {
    pub class: String,
    pub flagged: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabel {
    pub agent_id: String,
}

/// The class label of an agent without one.
pub const NO_CLASS: &str = "none";

pub use crate::respond::responder::NotifierLabel;

/// A histogram whose `observe` is a few relaxed atomic adds: no lock, so
/// workers may record every call into it.
#[derive(Clone, Debug)]
pub struct AtomicHistogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    /// Upper bounds, ascending; the last bucket (+Inf) is implicit.
    bounds: Box<[f64]>,
    /// One more than `bounds`: the +Inf bucket.
    counts: Box<[AtomicU64]>,
    /// The sum, as f64 bits, added by compare-and-swap.
    sum: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: impl Iterator<Item = f64>) -> Self {
        let bounds: Box<[f64]> = bounds.collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(HistogramCells {
            bounds,
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    pub fn observe(&self, v: f64) {
        let c = &self.0;
        let i = c.bounds.partition_point(|b| *b < v);
        if let Some(n) = c.counts.get(i) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        let _ = c
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        let buckets: Vec<(f64, u64)> = c
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(c.counts.iter().map(|n| n.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = f64::from_bits(c.sum.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Every metric the service exports.
pub struct Metrics {
    pub registry: Registry,
    /// Events accepted by ingest, by kind.
    pub events: Family<KindLabel, Counter>,
    /// Inputs rejected by decoding, by kind of fault.
    pub rejected: Family<KindLabel, Counter>,
    /// Decisions made, flagged or not.
    pub decisions: Family<FlaggedLabel, Counter>,
    /// Redelivered events skipped (same `event_id`).
    pub duplicates: Counter,
    /// Ingest requests answered 429 because a worker queue was full.
    pub throttled: Counter,
    /// Time to score and decide one call.
    pub score_seconds: AtomicHistogram,
    /// Scores of live calls, in bits.
    pub score_bits: AtomicHistogram,
    /// Decisions by agent class (`none` without one), flagged or not.
    pub decisions_by_class: Family<ClassFlaggedLabel, Counter>,
    /// Flagged calls per agent (the first [`FLAGGED_AGENT_LABELS`] agents
    /// flagged; the rest as `other`).
    pub flagged_by_agent: Family<AgentLabel, Counter>,
    /// Distinct agents with their own label in `flagged_by_agent`.
    pub flagged_agents_labelled: AtomicUsize,
    /// Messages behind the partition's high watermark (Kafka).
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// Kafka commit rounds (barrier, commit, lag) slower than
    /// `kafka.commit-interval`.
    pub kafka_slow_commits: Counter,
    /// Wall clock minus the event time of the newest event a worker
    /// decided, in seconds.
    pub event_time_lag: Family<WorkerLabel, Gauge<f64, AtomicU64>>,
    /// Seconds since the stalest worker last checkpointed (set at scrape).
    pub checkpoint_age: Gauge<f64, AtomicU64>,
    /// Time to write one worker's checkpoint.
    pub checkpoint_seconds: AtomicHistogram,
    /// Unix milliseconds of each worker's last checkpoint (start time
    /// before the first).
    last_checkpoint_ms: Vec<AtomicI64>,
    /// Approximate memory of the profiles, per worker, in bytes.
    pub profile_bytes: Family<WorkerLabel, Gauge>,
    /// Calls whose alert (or also learning) a suppression rule skipped.
    pub suppressed: Family<KindLabel, Counter>,
    /// Incidents opened, by agent class and mode.
    pub incidents_by_class: Family<ClassModeLabel, Counter>,
    /// Agents with a profile.
    pub agents: Gauge,
    /// Checkpoints written, by outcome.
    pub checkpoints: Family<OutcomeLabel, Counter>,
    /// Quarantines opened, by mode (enforce, shadow).
    pub quarantines_opened: Family<ModeLabel, Counter>,
    /// Open quarantines by state.
    pub quarantines_open: Family<StateLabel, Gauge>,
    /// Flags rolled into an already open quarantine.
    pub flags_rolled_up: Counter,
    /// Flags a worker held back (never waiting) because the responder's
    /// queue was full.
    pub response_queue_full: Counter,
    /// Revocation attempts by revoker and outcome (ok, retry, refused).
    pub revocation_attempts: Family<DestinationLabel, Counter>,
    /// From the flag leaving its worker to the broker confirming.
    pub revocation_seconds: Histogram,
    /// Alert attempts by notifier and outcome.
    pub alert_attempts: Family<DestinationLabel, Counter>,
    /// Alerts finished by notifier and outcome (delivered, failed).
    pub alerts: Family<DestinationLabel, Counter>,
    /// Alerts folded into a digest because a notifier's queue was full.
    pub alerts_rolled_up: Family<NotifierLabel, Counter>,
    /// Alerts waiting per notifier.
    pub alert_queue_depth: Family<NotifierLabel, Gauge>,
    /// Quarantines released by a human.
    pub releases: Counter,
    /// Tool calls the binding channel abstained on (no principal given).
    pub binding_abstained: Counter,
    /// Tool calls whose `resource_owner` contradicted a learned binding.
    pub owner_contradictions: Counter,
    /// Incident expiry, the memory cap and alert pacing (respond::limits).
    pub limits: crate::respond::limits::LimitMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let events = Family::<KindLabel, Counter>::default();
        let rejected = Family::<KindLabel, Counter>::default();
        let decisions = Family::<FlaggedLabel, Counter>::default();
        let duplicates = Counter::default();
        let throttled = Counter::default();
        let score_seconds = AtomicHistogram::new(exponential_buckets(1e-7, 2.0, 20));
        let agents = Gauge::default();
        let checkpoints = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "events",
            "Events accepted by ingest, by kind",
            events.clone(),
        );
        registry.register(
            "rejected",
            "Inputs rejected by decoding, by kind of fault",
            rejected.clone(),
        );
        registry.register(
            "decisions",
            "Decisions made on tool calls",
            decisions.clone(),
        );
        registry.register(
            "duplicates",
            "Redelivered events skipped by event_id",
            duplicates.clone(),
        );
        registry.register(
            "ingest_throttled",
            "Ingest requests answered 429",
            throttled.clone(),
        );
        registry.register(
            "score_seconds",
            "Time to score and decide one tool call",
            score_seconds.clone(),
        );
        registry.register("agents", "Agents with a profile", agents.clone());
        registry.register(
            "checkpoints",
            "Profile checkpoints written, by outcome",
            checkpoints.clone(),
        );
        let quarantines_opened = Family::<ModeLabel, Counter>::default();
        let quarantines_open = Family::<StateLabel, Gauge>::default();
        let flags_rolled_up = Counter::default();
        let response_queue_full = Counter::default();
        let revocation_attempts = Family::<DestinationLabel, Counter>::default();
        let revocation_seconds = Histogram::new(exponential_buckets(1e-4, 2.0, 20));
        let alert_attempts = Family::<DestinationLabel, Counter>::default();
        let alerts = Family::<DestinationLabel, Counter>::default();
        let alerts_rolled_up = Family::<NotifierLabel, Counter>::default();
        let alert_queue_depth = Family::<NotifierLabel, Gauge>::default();
        let releases = Counter::default();
        registry.register(
            "quarantines_opened",
            "Quarantines opened, by mode",
            quarantines_opened.clone(),
        );
        registry.register(
            "quarantines_open",
            "Open quarantines, by state",
            quarantines_open.clone(),
        );
        registry.register(
            "flags_rolled_up",
            "Flags rolled into an already open quarantine",
            flags_rolled_up.clone(),
        );
        registry.register(
            "response_queue_full",
            "Flags a worker held back, without waiting, because the responder queue was full",
            response_queue_full.clone(),
        );
        registry.register(
            "revocation_attempts",
            "Revocation requests, by revoker and outcome",
            revocation_attempts.clone(),
        );
        registry.register(
            "revocation_seconds",
            "From a flag leaving its worker to the broker confirming the revocation",
            revocation_seconds.clone(),
        );
        registry.register(
            "alert_attempts",
            "Alert requests, by notifier and outcome",
            alert_attempts.clone(),
        );
        registry.register(
            "alerts",
            "Alerts finished, by notifier and outcome",
            alerts.clone(),
        );
        registry.register(
            "alerts_rolled_up",
            "Alerts folded into a digest because the notifier's queue was full",
            alerts_rolled_up.clone(),
        );
        registry.register(
            "alert_queue_depth",
            "Alerts waiting, per notifier",
            alert_queue_depth.clone(),
        );
        registry.register(
            "releases",
            "Quarantines released by a human",
            releases.clone(),
        );
        let binding_abstained = Counter::default();
        let owner_contradictions = Counter::default();
        registry.register(
            "binding_abstained",
            "Tool calls the principal-binding channel abstained on because they named no principal",
            binding_abstained.clone(),
        );
        registry.register(
            "owner_contradictions",
            "Tool calls whose resource_owner contradicted a learned binding; the event's owner was used",
            owner_contradictions.clone(),
        );
        let score_bits = AtomicHistogram::new(
            [
                1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0,
            ]
            .into_iter(),
        );
        let decisions_by_class = Family::<ClassFlaggedLabel, Counter>::default();
        let flagged_by_agent = Family::<AgentLabel, Counter>::default();
        let consumer_lag = Family::<PartitionLabel, Gauge>::default();
        let kafka_slow_commits = Counter::default();
        let event_time_lag = Family::<WorkerLabel, Gauge<f64, AtomicU64>>::default();
        let checkpoint_age = Gauge::<f64, AtomicU64>::default();
        let checkpoint_seconds = AtomicHistogram::new(exponential_buckets(1e-4, 2.0, 18));
        let profile_bytes = Family::<WorkerLabel, Gauge>::default();
        let suppressed = Family::<KindLabel, Counter>::default();
        let incidents_by_class = Family::<ClassModeLabel, Counter>::default();
        registry.register(
            "decision_score",
            "Scores of live tool calls (unit: bits of surprise)",
            score_bits.clone(),
        );
        registry.register(
            "decisions_by_class",
            "Decisions by agent class (none without one), flagged or not",
            decisions_by_class.clone(),
        );
        registry.register(
            "flagged_calls_by_agent",
            "Flagged calls per agent (agents past the first 500 flagged count as other)",
            flagged_by_agent.clone(),
        );
        registry.register(
            "kafka_consumer_lag",
            "Messages behind the partition high watermark, from the consumer's statistics each second",
            consumer_lag.clone(),
        );
        registry.register(
            "kafka_slow_commits",
            "Kafka commit rounds (barrier, commit, lag) slower than kafka.commit-interval",
            kafka_slow_commits.clone(),
        );
        registry.register(
            "event_time_lag_seconds",
            "Wall clock minus the event time of the newest event a worker decided",
            event_time_lag.clone(),
        );
        registry.register(
            "checkpoint_age_seconds",
            "Seconds since the stalest worker last checkpointed its profiles",
            checkpoint_age.clone(),
        );
        registry.register(
            "checkpoint_seconds",
            "Time to write one worker checkpoint",
            checkpoint_seconds.clone(),
        );
        registry.register(
            "profile_bytes",
            "Approximate memory of the profiles, per worker",
            profile_bytes.clone(),
        );
        registry.register(
            "suppressed_calls",
            "Flagged calls a suppression rule matched, by what it skipped (alert, learning)",
            suppressed.clone(),
        );
        registry.register(
            "incidents_opened_by_class",
            "Incidents opened, by agent class and mode",
            incidents_by_class.clone(),
        );
        let limits = crate::respond::limits::LimitMetrics::register(&mut registry);
        let m = Self {
            limits,
            score_bits,
            decisions_by_class,
            flagged_by_agent,
            flagged_agents_labelled: AtomicUsize::new(0),
            consumer_lag,
            kafka_slow_commits,
            event_time_lag,
            checkpoint_age,
            checkpoint_seconds,
            last_checkpoint_ms: Vec::new(),
            profile_bytes,
            suppressed,
            incidents_by_class,
            registry,
            quarantines_opened,
            quarantines_open,
            flags_rolled_up,
            response_queue_full,
            revocation_attempts,
            revocation_seconds,
            alert_attempts,
            alerts,
            alerts_rolled_up,
            alert_queue_depth,
            releases,
            binding_abstained,
            owner_contradictions,
            events,
            rejected,
            decisions,
            duplicates,
            throttled,
            score_seconds,
            agents,
            checkpoints,
        };
        m.prime_fixed();
        m
    }
}

impl Metrics {
    /// Metrics for a service of `workers` workers under `cfg`: every label
    /// set known from the configuration exists at zero from start, so
    /// dashboards and alert rules see the series before the first event.
    pub fn for_service(cfg: &crate::config::Config, workers: usize) -> Self {
        let mut m = Self::default();
        let now = now_ms();
        m.last_checkpoint_ms = (0..workers).map(|_| AtomicI64::new(now)).collect();
        for worker in 0..workers {
            let _ = m.event_time_lag.get_or_create(&WorkerLabel { worker });
            let _ = m.profile_bytes.get_or_create(&WorkerLabel { worker });
        }
        let mut classes: Vec<String> = cfg.policy.classes.iter().map(|c| c.name.clone()).collect();
        classes.push(NO_CLASS.to_owned());
        for class in classes {
            for flagged in ["true", "false"] {
                let _ = m.decisions_by_class.get_or_create(&ClassFlaggedLabel {
                    class: class.clone(),
                    flagged,
                });
            }
            for mode in ["shadow", "enforce"] {
                let _ = m.incidents_by_class.get_or_create(&ClassModeLabel {
                    class: class.clone(),
                    mode,
                });
            }
        }
        let r = &cfg.response;
        let revokers: Vec<String> = if r.revokers.is_empty() {
            vec!["local-log".to_owned()]
        } else {
            r.revokers.iter().map(|v| v.name().to_owned()).collect()
        };
        for destination in revokers {
            for outcome in ["ok", "retry", "refused"] {
                let _ = m.revocation_attempts.get_or_create(&DestinationLabel {
                    destination: destination.clone(),
                    outcome,
                });
            }
        }
        let mut notifiers = Vec::new();
        if !r.slack.webhook_url.is_empty() {
            notifiers.push("slack");
        }
        if !r.pagerduty.routing_key.is_empty() {
            notifiers.push("pagerduty");
        }
        for notifier in notifiers {
            for outcome in ["delivered", "failed"] {
                let _ = m.alerts.get_or_create(&DestinationLabel {
                    destination: notifier.to_owned(),
                    outcome,
                });
            }
            for outcome in ["ok", "retry", "refused"] {
                let _ = m.alert_attempts.get_or_create(&DestinationLabel {
                    destination: notifier.to_owned(),
                    outcome,
                });
            }
            let n = NotifierLabel {
                notifier: notifier.to_owned(),
            };
            let _ = m.alerts_rolled_up.get_or_create(&n);
            let _ = m.alert_queue_depth.get_or_create(&n);
        }
        m
    }

    /// Label sets that do not depend on the configuration.
    fn prime_fixed(&self) {
        for kind in ["tool_call", "prompt", "tool_result"] {
            let _ = self.events.get_or_create(&KindLabel { kind });
        }
        for kind in [
            "not_utf8",
            "too_large",
            "syntax",
            "not_object",
            "missing_field",
            "wrong_type",
            "bad_timestamp",
            "bad_value",
            "duplicate_field",
        ] {
            let _ = self.rejected.get_or_create(&KindLabel { kind });
        }
        for flagged in ["true", "false"] {
            let _ = self.decisions.get_or_create(&FlaggedLabel { flagged });
        }
        for outcome in ["ok", "error"] {
            let _ = self.checkpoints.get_or_create(&OutcomeLabel { outcome });
        }
        for mode in ["shadow", "enforce"] {
            let _ = self.quarantines_opened.get_or_create(&ModeLabel { mode });
        }
        for state in ["pending", "revoked", "revoke_failed", "shadow"] {
            let _ = self.quarantines_open.get_or_create(&StateLabel { state });
        }
        for kind in ["alert", "learning"] {
            let _ = self.suppressed.get_or_create(&KindLabel { kind });
        }
    }

    /// Notes that worker `worker` checkpointed now, in `seconds` when the
    /// write was timed on its own.
    pub fn checkpointed(&self, worker: usize, seconds: Option<f64>) {
        if let Some(s) = seconds {
            self.checkpoint_seconds.observe(s);
        }
        if let Some(t) = self.last_checkpoint_ms.get(worker) {
            t.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// The counter of flagged calls for `agent_id`: its own label for the
    /// first [`FLAGGED_AGENT_LABELS`] agents, else `other`. Callers cache
    /// the handle per agent.
    pub fn flagged_agent_counter(&self, agent_id: &str) -> Counter {
        let labelled = self
            .flagged_agents_labelled
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < FLAGGED_AGENT_LABELS).then_some(n + 1)
            })
            .is_ok();
        let agent_id = if labelled { agent_id } else { "other" };
        self.flagged_by_agent
            .get_or_create(&AgentLabel {
                agent_id: agent_id.to_owned(),
            })
            .clone()
    }

    /// The exposition `accept` asks for, and its content type.
    pub fn negotiate(&self, accept: Option<&str>) -> (&'static str, String) {
        let wants_om = accept.is_some_and(|a| {
            a.split(',').any(|part| {
                let mut it = part.split(';').map(str::trim);
                let ty = it.next().unwrap_or("");
                // `q=0` means "not this one".
                ty.eq_ignore_ascii_case("application/openmetrics-text")
                    && !it.any(|p| p.replace(' ', "") == "q=0")
            })
        });
        if wants_om {
            (OPENMETRICS_CONTENT_TYPE, self.render_openmetrics())
        } else {
            (TEXT_CONTENT_TYPE, self.render())
        }
    }

    /// The Prometheus text format 0.0.4 exposition of every metric.
    pub fn render(&self) -> String {
        to_text_format(&self.render_openmetrics())
    }

    /// The OpenMetrics 1.0 exposition of every metric.
    pub fn render_openmetrics(&self) -> String {
        if !self.last_checkpoint_ms.is_empty() {
            let oldest = self
                .last_checkpoint_ms
                .iter()
                .map(|t| t.load(Ordering::Relaxed))
                .min()
                .unwrap_or(0);
            self.checkpoint_age
                .set((now_ms() - oldest).max(0) as f64 / 1000.0);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        #[cfg(feature = "integration-tests")]
        {
            let n = crate::ingest::decode::DECODED.load(std::sync::atomic::Ordering::Relaxed);
            let family = format!(
                "# HELP warden_test_decoded Events decoded (integration-test builds only).\n\
                 # TYPE warden_test_decoded counter\nwarden_test_decoded_total {n}\n"
            );
            let at = out.rfind("# EOF").unwrap_or(out.len());
            out.insert_str(at, &family);
        }
        out
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Rewrites an OpenMetrics exposition as Prometheus text format 0.0.4: a
/// counter's HELP and TYPE take the `_total` name its samples carry,
/// `_created` samples, `# UNIT` and `# EOF` go.
pub fn to_text_format(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    let mut counter: Option<String> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if ty == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            counter = (ty == "counter").then(|| name.clone());
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {ty}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if let Some(c) = &counter {
            let base = c.trim_end_matches("_total");
            if line.starts_with(&format!("{base}_created")) {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
