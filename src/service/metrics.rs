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

pub use crate::respond::responder::NotifierLabel;

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
        Self {
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
