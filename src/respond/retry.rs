//! The one retry policy of every call out (revocations and alerts):
//! exponential backoff with jitter from `backon`, honouring `Retry-After`
//! (`httpdate` reads its date form), until the call succeeds, is refused,
//! or `response.give-up-after` has passed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::credential::scrub;
use crate::config::ResponseConfig;

/// The longest `Retry-After` honoured: a server cannot park a revocation
/// for a day.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Done,
    /// Worth trying again, after at least `after` when the server said so.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Refused: trying again would get the same answer.
    Refused(String),
}

impl Attempt {
    /// The same outcome with every secret in its error replaced: a server
    /// may quote what it was sent (a token, a key) in its error body.
    pub fn scrubbed(self, secrets: &[&str]) -> Self {
        match self {
            Self::Done => Self::Done,
            Self::Retry { error, after } => Self::Retry {
                error: scrub(&error, secrets),
                after,
            },
            Self::Refused(e) => Self::Refused(scrub(&e, secrets)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Done => "ok".to_owned(),
            Self::Retry { error, .. } => format!("retrying: {error}"),
            Self::Refused(e) => format!("refused: {e}"),
        }
    }
}

/// How retries are paced (`response.initial-backoff`, `max-backoff`,
/// `give-up-after`).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

impl RetryPolicy {
    pub fn of(cfg: &ResponseConfig) -> Self {
        Self {
            initial: cfg.initial_backoff,
            max: cfg.max_backoff,
            give_up_after: cfg.give_up_after,
        }
    }

    /// The delays between attempts: doubling from `initial` up to `max`,
    /// each with jitter so a fleet of retries spreads out. backon adds up
    /// to 100% of the delay, so it starts from half: every wait lies in
    /// [d/2, d) of the doubled delay d, never above `max`. The count is
    /// bounded too, though `give_up_after` ends a retry first.
    pub fn backoff(&self) -> impl Iterator<Item = Duration> {
        let floor = Duration::from_millis(1);
        let min = (self.initial / 2).max(floor);
        let attempts = self.give_up_after.as_millis() / min.as_millis().max(1) + 1;
        ExponentialBuilder::new()
            .with_jitter()
            .with_min_delay(min)
            .with_max_delay((self.max / 2).max(min))
            .with_max_times(usize::try_from(attempts).unwrap_or(usize::MAX))
            .build()
    }
}

/// The final result of a retried delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub attempts: u32,
    /// `None` on success, else the last error.
    pub error: Option<String>,
}

/// Why a retry ended without success.
enum Stop {
    Retry(String, Option<Duration>),
    Refused(String),
    Cancelled,
}

/// Runs `attempt` until it is done, refused, or `policy.give_up_after`
/// has passed; `observe` sees each attempt (for the audit log), `cancelled`
/// is checked before each one.
pub async fn retry<F, Fut>(
    policy: RetryPolicy,
    attempt: F,
    observe: impl FnMut(u32, &Attempt),
    cancelled: impl Fn() -> bool,
) -> Delivered
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    let start = Instant::now();
    // Shared by every attempt's future (backon makes one per attempt);
    // Mutex, not RefCell, so a spawned retry stays Send.
    let (n, attempt, observe) = (
        &AtomicU32::new(0),
        &Mutex::new(attempt),
        &Mutex::new(observe),
    );
    let cancelled = &cancelled;
    let once = move || async move {
        if cancelled() {
            return Err(Stop::Cancelled);
        }
        let seen = n.fetch_add(1, Ordering::Relaxed) + 1;
        let next = attempt
            .lock()
            .map(|mut f| f())
            .map_err(|_| Stop::Cancelled)?;
        let a = next.await;
        if let Ok(mut f) = observe.lock() {
            f(seen, &a);
        }
        match a {
            Attempt::Done => Ok(()),
            Attempt::Retry { error, after } => Err(Stop::Retry(error, after)),
            Attempt::Refused(e) => Err(Stop::Refused(e)),
        }
    };
    let result = once
        .retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .when(|s| matches!(s, Stop::Retry(..)))
        // A server's Retry-After wins when it asks for longer; a wait that
        // would end past the give-up time ends the retry now.
        .adjust(|s, wait| {
            let after = match s {
                Stop::Retry(_, after) => *after,
                _ => None,
            };
            let wait = wait?.max(after.unwrap_or_default());
            (start.elapsed() + wait <= policy.give_up_after).then_some(wait)
        })
        .await;
    let n = n.load(Ordering::Relaxed);
    let error = match result {
        Ok(()) => None,
        Err(Stop::Refused(e)) => Some(e),
        Err(Stop::Cancelled) => Some("cancelled".to_owned()),
        Err(Stop::Retry(e, _)) => Some(format!("gave up after {n} attempts: {e}")),
    };
    Delivered { attempts: n, error }
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3), at
/// most an hour; `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, SystemTime::now())
}

fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(v).ok()?;
            // A date already past means "now".
            at.duration_since(now).unwrap_or_default()
        }
    };
    Some(wait.min(RETRY_AFTER_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max() {
        let p = RetryPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
            give_up_after: Duration::from_secs(60),
        };
        for _ in 0..50 {
            let d: Vec<Duration> = p.backoff().take(20).collect();
            assert_eq!(d.len(), 20);
            let within = |d: Duration, lo: u64, hi: u64| {
                d >= Duration::from_millis(lo) && d <= Duration::from_millis(hi)
            };
            assert!(within(d[0], 100, 200), "{:?}", d[0]);
            assert!(within(d[2], 400, 800), "{:?}", d[2]);
            assert!(within(d[19], 1000, 2000), "{:?}", d[19]);
        }
        // Bounded in number as well as in time.
        let n = p.backoff().count();
        assert!((2..=601).contains(&n), "{n}");
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_rejects_garbage() {
        let now = SystemTime::now();
        let at = |s: &str| parse_retry_after(s, now);
        assert_eq!(at("3"), Some(Duration::from_secs(3)));
        assert_eq!(at(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(at("86400"), Some(RETRY_AFTER_MAX));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        let d = at(&later).unwrap();
        assert!(
            d >= Duration::from_secs(28) && d <= Duration::from_secs(31),
            "{later}: {d:?}"
        );
        // The fixed date of RFC 9110's example, long past: now.
        assert_eq!(at("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        for garbage in [
            "soon",
            "",
            "-1",
            "1.5",
            "Wed, 21 Oct 2015",
            "9999999999999999999999",
        ] {
            assert_eq!(at(garbage), None, "{garbage:?}");
        }
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(2),
            max: Duration::from_millis(8),
            give_up_after: Duration::from_millis(80),
        }
    }

    fn busy() -> Attempt {
        Attempt::Retry {
            error: "503".into(),
            after: None,
        }
    }

    #[tokio::test]
    async fn retry_stops_on_refusal_and_gives_up_in_time() {
        let mut seen = Vec::new();
        let mut n = 0;
        let d = retry(
            fast(),
            || {
                n += 1;
                let a = if n < 3 {
                    busy()
                } else {
                    Attempt::Refused("403".into())
                };
                async move { a }
            },
            |i, a| seen.push((i, a.clone())),
            || false,
        )
        .await;
        assert_eq!(d.attempts, 3);
        assert_eq!(d.error.as_deref(), Some("403"));
        assert_eq!(seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 2, 3]);

        let start = Instant::now();
        let d = retry(fast(), || async { busy() }, |_, _| {}, || false).await;
        let e = d.error.unwrap();
        assert!(
            e.starts_with(&format!("gave up after {} attempts: 503", d.attempts)),
            "{e}"
        );
        assert!(d.attempts >= 3, "{}", d.attempts);
        assert!(start.elapsed() < Duration::from_secs(1));

        let d = retry(fast(), || async { Attempt::Done }, |_, _| {}, || false).await;
        assert_eq!(
            d,
            Delivered {
                attempts: 1,
                error: None
            }
        );
    }

    #[tokio::test]
    async fn retry_after_is_honoured_but_never_past_the_give_up_time() {
        let start = Instant::now();
        let mut n = 0;
        let d = retry(
            fast(),
            || {
                n += 1;
                let a = if n == 1 {
                    Attempt::Retry {
                        error: "429".into(),
                        after: Some(Duration::from_millis(40)),
                    }
                } else {
                    Attempt::Done
                };
                async move { a }
            },
            |_, _| {},
            || false,
        )
        .await;
        assert_eq!(d.attempts, 2);
        assert!(start.elapsed() >= Duration::from_millis(40));

        // Asked to wait past the give-up time: gives up at once.
        let start = Instant::now();
        let d = retry(
            fast(),
            || async {
                Attempt::Retry {
                    error: "429".into(),
                    after: Some(Duration::from_secs(30)),
                }
            },
            |_, _| {},
            || false,
        )
        .await;
        assert_eq!(d.attempts, 1);
        assert!(d.error.unwrap().starts_with("gave up after 1 attempts"));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_cancelled_retry_stops_before_its_next_attempt() {
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let d = retry(
            fast(),
            || {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                async { busy() }
            },
            |_, _| {},
            || cancel.load(std::sync::atomic::Ordering::Relaxed),
        )
        .await;
        assert_eq!(d.attempts, 1);
        assert_eq!(d.error.as_deref(), Some("cancelled"));
    }
}
