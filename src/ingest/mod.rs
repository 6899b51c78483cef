//! Sources of events and their decoding. Every source funnels raw bytes
//! through [`decode::decode_bytes`]; a rejected input goes to a
//! [`rejects::RejectSink`] with its reason and is counted per kind.

pub mod decode;
pub mod file;
pub mod kafka;
pub mod rejects;
