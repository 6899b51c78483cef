//! Test helpers: event builders and a fixed clock.

use serde_json::{json, Map, Value};

/// 2026-10-05T00:00:00Z, a Monday.
pub const T0: i64 = 1_791_158_400_000;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 86_400_000;

/// Builds one tool-call JSON line.
#[derive(Debug, Clone)]
pub struct Call {
    fields: Map<String, Value>,
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Call {
    pub fn new(agent: &str, session: &str, tool: &str, ts: i64) -> Self {
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut fields = Map::new();
        fields.insert("event_id".into(), json!(format!("e{id}")));
        fields.insert("ts".into(), json!(rfc3339(ts)));
        fields.insert("agent_id".into(), json!(agent));
        fields.insert("session_id".into(), json!(session));
        fields.insert("tool".into(), json!(tool));
        Self { fields }
    }

    pub fn set(mut self, key: &str, v: Value) -> Self {
        self.fields.insert(key.into(), v);
        self
    }

    pub fn resource(self, rtype: &str, id: &str) -> Self {
        self.set("resource_type", json!(rtype))
            .set("resource_id", json!(id))
    }

    pub fn action(self, a: &str) -> Self {
        self.set("action", json!(a))
    }

    pub fn line(&self) -> String {
        Value::Object(self.fields.clone()).to_string()
    }
}

pub use crate::event::rfc3339;

use crate::config::Config;
use crate::engine::{Engine, ExplainedReason, Phase};
use crate::event::Event;
use crate::ingest::decode::decode_str;
use crate::score::Score;

/// What one call did in the engine.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub score: Score,
    pub flagged: bool,
    pub threshold: f32,
    pub reasons: Vec<ExplainedReason>,
}

impl Outcome {
    /// Bits of one signal (0 when absent).
    pub fn bits(&self, signal: crate::score::Signal) -> f32 {
        self.score
            .reasons
            .iter()
            .filter(|r| r.signal == signal)
            .map(|r| r.bits)
            .sum()
    }

    /// The text of one signal's reason; panics, naming the reasons, when
    /// the signal gave none.
    pub fn why(&self, signal: crate::score::Signal) -> &str {
        self.reasons
            .iter()
            .find(|r| r.signal == signal.as_str())
            .map(|r| r.detail.as_str())
            .unwrap_or_else(|| panic!("no {} reason in {:?}", signal.as_str(), self.reasons))
    }
}

pub fn engine() -> Engine {
    Engine::new(&Config::default())
}

/// Runs one call through evaluate → commit.
pub fn feed(engine: &mut Engine, call: &Call, phase: Phase) -> Outcome {
    let line = call.line();
    let Event::ToolCall(c) = decode_str(&line).expect("valid test event") else {
        panic!("not a tool call")
    };
    let ev = engine.evaluate(&c, phase);
    let out = Outcome {
        score: ev.score.clone(),
        flagged: ev.decision.flagged,
        threshold: ev.decision.threshold,
        reasons: engine.explain(&ev),
    };
    engine.commit(ev);
    out
}

/// Trains `days` working days of an agent whose every session is
/// `session(day, n)`: a list of calls; sessions start at 09:00 + n hours.
pub fn train_days(
    engine: &mut Engine,
    days: i64,
    per_day: i64,
    session: impl Fn(i64, i64, i64) -> Vec<Call>,
) {
    for d in 0..days {
        for n in 0..per_day {
            let start = T0 + d * DAY + 9 * HOUR + n * (8 * HOUR / per_day.max(1));
            for c in session(d, n, start) {
                feed(engine, &c, Phase::Train);
            }
        }
    }
    engine.close_all();
}

/// Feeds a `prompt` or `tool_result` event (a JSON line).
pub fn feed_context(engine: &mut Engine, line: &str) {
    match decode_str(line).expect("valid context event") {
        Event::Context(c) => engine.observe_context(&c),
        Event::ToolCall(_) => panic!("not a context event"),
    }
}
