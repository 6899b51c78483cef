//! Logging setup: structured logs to stderr, filtered by `--log`, as text
//! or JSON lines (`--log-format json`).
//!
//! Levels have strict meanings: ERROR means an operator must act (a
//! checkpoint or the audit log cannot be written, a revocation failed for
//! good); WARN is something an operator should know about that Warden
//! handles itself (an agent flagged, a retry, a deprecated route); INFO is
//! the service's life cycle (start, ready, restored, shut down); DEBUG is
//! for developers.

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).try_init(),
    };
}

/// One JSON object per event: `timestamp` (RFC 3339, UTC), `level`,
/// `message`, then the event's fields (numbers and booleans as such,
/// everything else as strings).
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let mut obj = serde_json::Map::new();
        obj.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        obj.insert("level".into(), event.metadata().level().as_str().into());
        obj.insert(
            "message".into(),
            fields.message.take().unwrap_or_default().into(),
        );
        for (k, v) in fields.fields {
            obj.entry(k).or_insert(v);
        }
        let line = serde_json::Value::Object(obj).to_string();
        writer.write_str(&line)?;
        writer.write_char('\n')
    }
}

#[derive(Default)]
struct JsonFields {
    message: Option<String>,
    fields: Vec<(String, serde_json::Value)>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, v: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.push((field.name().to_owned(), v));
        }
    }
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}

/// A budget of log lines per second for one producer (a worker), so that
/// a flag storm is summarised instead of printed a line per call: lines
/// past the budget are counted, and the count is logged once when the
/// second ends (or at the next [`LogBudget::summary`]).
#[derive(Debug)]
pub struct LogBudget {
    per_second: u32,
    window_start: std::time::Instant,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    pub fn new(per_second: u32, now: std::time::Instant) -> Self {
        Self {
            per_second,
            window_start: now,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether one more line may be written at `now`; if not, it is counted.
    pub fn admit(&mut self, now: std::time::Instant) -> bool {
        if now.duration_since(self.window_start) >= std::time::Duration::from_secs(1)
            && self.suppressed == 0
        {
            self.window_start = now;
            self.used = 0;
        }
        if self.used < self.per_second && self.suppressed == 0 {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Once the window of suppressed lines is over: how many were not
    /// written (then a new window starts). `None` while lines are still
    /// being admitted or the window is running.
    pub fn summary(&mut self, now: std::time::Instant) -> Option<u64> {
        if self.suppressed == 0
            || now.duration_since(self.window_start) < std::time::Duration::from_secs(1)
        {
            return None;
        }
        let n = std::mem::take(&mut self.suppressed);
        self.window_start = now;
        self.used = 0;
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::{JsonLines, LogBudget};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_level_message_and_typed_fields() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                agent_id = "a\"1",
                score = 31.5,
                calls = 3u64,
                ok = true,
                "Agent flagged."
            );
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "Agent flagged.");
        assert_eq!(v["agent_id"], "a\"1");
        assert_eq!(v["score"], 31.5);
        assert_eq!(v["calls"], 3);
        assert_eq!(v["ok"], true);
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn a_storm_is_summarised_once_a_second() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(3, t0);
        let admitted = (0..1000).filter(|_| b.admit(t0)).count();
        assert_eq!(admitted, 3);
        assert_eq!(
            b.summary(t0 + Duration::from_millis(500)),
            None,
            "window still running"
        );
        // Later lines in the same window are counted too, not written.
        assert!(!b.admit(t0 + Duration::from_millis(900)));
        assert_eq!(b.summary(t0 + Duration::from_secs(1)), Some(998));
        assert_eq!(b.summary(t0 + Duration::from_secs(3)), None, "said once");
        // A new window admits again.
        assert!(b.admit(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn a_zero_budget_only_counts() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(0, t0);
        assert!(!b.admit(t0));
        assert!(!b.admit(t0));
        assert_eq!(b.summary(t0 + Duration::from_secs(1)), Some(2));
    }
}
