//! What keeps the response path bounded in a storm: the metrics of
//! incident expiry and of the memory cap, and the token bucket that paces
//! each notifier under its destination's published rate limit (see
//! docs/storm.md).

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::responder::NotifierLabel;

/// Counters of the response path's bounds.
#[derive(Clone, Default)]
pub struct LimitMetrics {
    /// Released incidents removed by `response.incident-retention`.
    pub incidents_expired: Counter,
    /// Released incidents dropped from memory by
    /// `response.max-incidents-in-memory` (still in the registry).
    pub incidents_dropped_from_memory: Counter,
    /// Incidents opened while the open ones alone filled
    /// `response.max-incidents-in-memory` (kept: never dropped).
    pub incidents_over_memory_cap: Counter,
    /// Alerts that waited for their notifier's pacing.
    pub alerts_paced: Family<NotifierLabel, Counter>,
    /// 429 answers from a notifier's destination.
    pub alerts_throttled: Family<NotifierLabel, Counter>,
}

impl LimitMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "incidents_expired",
            "Released incidents removed from the registry and memory by response.incident-retention",
            m.incidents_expired.clone(),
        );
        registry.register(
            "incidents_dropped_from_memory",
            "Released incidents dropped from memory by response.max-incidents-in-memory (still in the registry)",
            m.incidents_dropped_from_memory.clone(),
        );
        registry.register(
            "incidents_over_memory_cap",
            "Incidents opened while open ones alone filled response.max-incidents-in-memory (kept)",
            m.incidents_over_memory_cap.clone(),
        );
        registry.register(
            "alerts_paced",
            "Alerts that waited for their notifier's pacing (response.pacing)",
            m.alerts_paced.clone(),
        );
        registry.register(
            "alerts_throttled",
            "429 answers from a notifier's destination",
            m.alerts_throttled.clone(),
        );
        m
    }
}

/// A token bucket: `burst` sends back to back, then one every `1 / rate`
/// seconds. A destination's `Retry-After` empties it until then.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
    /// No send before this (a 429's `Retry-After`).
    hold_until: Option<Instant>,
}

impl TokenBucket {
    /// `rate` tokens a second (> 0), at most `burst` (≥ 1) saved up.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate.max(1e-6),
            burst,
            tokens: burst,
            at: Instant::now(),
            hold_until: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.at = now;
    }

    /// Takes a token if one is there; otherwise how long until one is.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(until) = self.hold_until {
            if now < until {
                return Err(until - now);
            }
            self.hold_until = None;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }

    /// The destination said 429: nothing more until `after` (or one token's
    /// time when it did not say), and no burst right after.
    pub fn throttled(&mut self, now: Instant, after: Option<Duration>) {
        let wait = after.unwrap_or_else(|| Duration::from_secs_f64(1.0 / self.rate));
        self.hold_until = Some(now + wait);
        self.tokens = 0.0;
        self.at = now + wait;
    }

    /// Gives back a token taken for a send that did not happen (its job
    /// was gone or had nothing to say), so pacing counts only real sends.
    pub fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refunded_token_is_there_for_the_next_send() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.001, 1);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_err());
        b.refund();
        assert!(b.take(t0).is_ok(), "the unused token came back");
        b.refund();
        b.refund();
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_err(), "never above the burst");
    }

    #[test]
    fn bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3);
        for _ in 0..3 {
            assert_eq!(b.take(t0), Ok(()));
        }
        let wait = b.take(t0).unwrap_err();
        assert!(
            (wait.as_secs_f64() - 0.5).abs() < 1e-6,
            "one token a half second: {wait:?}"
        );
        assert_eq!(b.take(t0 + Duration::from_millis(500)), Ok(()));
        assert!(b.take(t0 + Duration::from_millis(500)).is_err());
        // A long quiet spell saves up only the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(later), Ok(()));
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn a_429_holds_the_bucket_for_its_retry_after() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 10);
        b.throttled(t0, Some(Duration::from_secs(2)));
        let wait = b.take(t0 + Duration::from_secs(1)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // After it, one at a time again: no burst into a throttled API.
        let after = t0 + Duration::from_secs(2);
        assert_eq!(b.take(after), Err(Duration::from_millis(10)));
        assert_eq!(b.take(after + Duration::from_millis(10)), Ok(()));
    }
}
