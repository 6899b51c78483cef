//! The response path: what Warden does about a flagged agent. This release
//! has the tamper-evident audit log; quarantine, revokers and notifiers
//! build on it.

pub mod audit;
