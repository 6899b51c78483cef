//! Logging setup: structured logs to stderr, filtered by `--log`.

use tracing_subscriber::EnvFilter;

pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
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
    use std::time::{Duration, Instant};

    use super::LogBudget;

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
