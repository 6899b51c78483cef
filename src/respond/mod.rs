//! The response path: what Warden does about a flagged agent, off the hot
//! path. Workers hand flags to the responder through a bounded queue; it
//! records a quarantine in the registry before any outbound call, revokes
//! the credential through the configured brokers, alerts on-call, and
//! writes every step to the tamper-evident audit log.

pub mod alert;
pub mod audit;
pub mod context;
pub mod credential;
pub mod deliver;
pub mod incident;
pub mod journal;
pub mod limits;
pub mod registry;
pub mod responder;
pub mod retry;
pub mod revoke;

// The name the responder renders through.
pub use alert as render;
