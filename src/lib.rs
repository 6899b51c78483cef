//! Warden watches the tool calls of AI agents, learns what each agent
//! normally does, and flags calls that deviate, with reasons in bits.
//!
//! ```text
//!  sources          decode               engine (per agent, single writer)
//!  kafka ──┐
//!  http  ──┼─► ToolCallEvent ─► route ─► extract ─► score ─► decide ─► learn
//!  replay ─┘   (bad → DLQ/rejects)       features   profile   threshold
//!                                              │ checkpoints (files | redis)
//! ```
//!
//! # Layout
//! Modules in data-flow order:
//! - [`event`]: the event contract (docs/events.md), borrowed from the input.
//! - [`ingest`]: decoding, bounded line reading, the rejects sink, the
//!   Kafka source.
//! - [`pipeline`]: the seam between sources and workers: routing by agent,
//!   bounded worker queues, the barrier a source commits behind.
//! - [`baseline`]: per-agent [`baseline::Profile`]s learned online.
//! - [`score`]: feature extraction and the explainable scorer.
//! - [`decide`]: thresholds, classes, modes.
//! - [`engine`]: profiles and sessions; the per-call path.
//! - [`fleet`]: peer groups, priors and session models trained by
//!   `warden train` (linfa), loaded from `models/`.
//! - [`state`]: checkpoints of profiles, to files or Redis.
//! - [`service`]: `warden run`: the ingest and admin listeners, token
//!   roles, workers, metrics, lifecycle.
//! - [`replay`]: `warden replay`, the offline harness and its report.
//! - [`generate`]: the labelled data generator behind `replay-data/`.
//! - [`check`]: `warden check`, a test alert and a dry run through the
//!   configured notifiers and revokers.
//! - [`config`], [`cli`], [`app`], [`telemetry`]: the binary's plumbing.

pub mod app;
pub mod baseline;
pub mod check;
pub mod cli;
pub mod config;
pub mod decide;
pub mod engine;
pub mod event;
pub mod fleet;
pub mod generate;
pub mod ingest;
pub mod pipeline;
pub mod replay;
pub mod respond;
pub mod score;
pub mod service;
pub mod state;
pub mod telemetry;
#[cfg(test)]
pub mod test_util;
pub mod tune;
