//! The metrics `warden run` exports at `/metrics` (Prometheus text format).
//! Handles are registered once; workers increment atomics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
    pub score_seconds: Histogram,
    /// Agents with a profile.
    pub agents: Gauge,
    /// Checkpoints written, by outcome.
    pub checkpoints: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let events = Family::<KindLabel, Counter>::default();
        let rejected = Family::<KindLabel, Counter>::default();
        let decisions = Family::<FlaggedLabel, Counter>::default();
        let duplicates = Counter::default();
        let throttled = Counter::default();
        let score_seconds = Histogram::new(exponential_buckets(1e-7, 2.0, 20));
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
        Self {
            registry,
            events,
            rejected,
            decisions,
            duplicates,
            throttled,
            score_seconds,
            agents,
            checkpoints,
        }
    }
}

impl Metrics {
    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
