//! Small deterministic helpers: seeded sub-streams, distributions, ids, IBANs
//! and time formatting. Nothing here reads a clock or iterates a hash map.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xxhash_rust::xxh3::xxh3_64;

pub(crate) type Rand = ChaCha8Rng;

/// 2026-10-05T00:00:00Z, a Monday: day 0 of every data set.
pub(crate) const EPOCH_MS: i64 = 1_791_158_400_000;
pub(crate) const SECOND: i64 = 1_000;
pub(crate) const MINUTE: i64 = 60 * SECOND;
pub(crate) const HOUR: i64 = 60 * MINUTE;
pub(crate) const DAY: i64 = 24 * HOUR;

/// Longest text kept in prompts, results and excerpts (keeps files small).
pub(crate) const MAX_TEXT: usize = 120;

/// Stable 64-bit hash of a seed and a list of labels.
pub(crate) fn stable_hash(seed: u64, parts: &[&str]) -> u64 {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(&seed.to_le_bytes());
    for p in parts {
        buf.extend_from_slice(p.as_bytes());
        buf.push(0);
    }
    xxh3_64(&buf)
}

/// An independent random stream per purpose, so that changing how one part of
/// the data is made does not reshuffle every other part.
pub(crate) fn sub_rng(seed: u64, parts: &[&str]) -> Rand {
    ChaCha8Rng::seed_from_u64(stable_hash(seed, parts))
}

pub(crate) fn chance(rng: &mut Rand, p: f64) -> bool {
    rng.gen::<f64>() < p
}

/// Uniform integer in `lo..=hi` (returns `lo` when the range is empty).
pub(crate) fn between(rng: &mut Rand, lo: u32, hi: u32) -> u32 {
    if hi <= lo {
        lo
    } else {
        rng.gen_range(lo..=hi)
    }
}

/// Standard normal deviate (Box–Muller).
pub(crate) fn normal(rng: &mut Rand) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Log-normal deviate given its median and the sigma of its logarithm.
pub(crate) fn lognormal(rng: &mut Rand, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Poisson deviate (Knuth for small means, rounded normal above).
pub(crate) fn poisson(rng: &mut Rand, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 30.0 {
        return (mean + mean.sqrt() * normal(rng)).round().max(0.0) as u32;
    }
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p: f64 = rng.gen();
    while p > limit {
        k += 1;
        p *= rng.gen::<f64>();
    }
    k
}

/// Index drawn with the given non-negative weights (0 when all are zero).
pub(crate) fn weighted(rng: &mut Rand, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    if total <= 0.0 {
        return 0;
    }
    let mut x = rng.gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if *w > 0.0 {
            if x < *w {
                return i;
            }
            x -= w;
        }
    }
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

/// Index in `0..len` with a Zipf-like preference for the first entries: a few
/// counterparties make most of the traffic, as in real mailboxes and ledgers.
pub(crate) fn zipf(rng: &mut Rand, len: usize, exponent: f64) -> usize {
    if len <= 1 {
        return 0;
    }
    let weights: Vec<f64> = (0..len)
        .map(|i| 1.0 / ((i + 1) as f64).powf(exponent))
        .collect();
    weighted(rng, &weights)
}

/// A uniformly chosen element; the slice must not be empty (world pools are
/// built non-empty, see `world::tests`).
pub(crate) fn pick<'a, T>(rng: &mut Rand, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// `n` distinct indices of `0..len` (all of them, shuffled, if `n >= len`).
pub(crate) fn sample_indices(rng: &mut Rand, len: usize, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    let n = n.min(len);
    for i in 0..n {
        let j = rng.gen_range(i..len);
        idx.swap(i, j);
    }
    idx.truncate(n);
    idx
}

/// Between `lo` and `hi` distinct indices of `0..len`.
pub(crate) fn sample_between(rng: &mut Rand, len: usize, lo: u32, hi: u32) -> Vec<usize> {
    let n = between(rng, lo, hi) as usize;
    sample_indices(rng, len, n)
}

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

pub(crate) fn hex(rng: &mut Rand, n: usize) -> String {
    (0..n)
        .map(|_| HEX[rng.gen_range(0..HEX.len())] as char)
        .collect()
}

pub(crate) fn alnum(rng: &mut Rand, n: usize) -> String {
    (0..n)
        .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)
        .collect()
}

fn digits(rng: &mut Rand, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

fn letters(rng: &mut Rand, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'A' + rng.gen_range(0..26u8)))
        .collect()
}

/// A syntactically valid IBAN (correct mod-97 check digits) for a country.
pub(crate) fn iban(rng: &mut Rand, country: &str) -> String {
    let bban = match country {
        "DE" => digits(rng, 18),
        "FR" => digits(rng, 23),
        "NL" => format!("{}{}", letters(rng, 4), digits(rng, 10)),
        "GB" => format!("{}{}", letters(rng, 4), digits(rng, 14)),
        "ES" => digits(rng, 20),
        "IT" => format!("{}{}", letters(rng, 1), digits(rng, 22)),
        "BE" => digits(rng, 12),
        "AT" => digits(rng, 16),
        "LT" => digits(rng, 16),
        "PL" => digits(rng, 24),
        _ => digits(rng, 16),
    };
    let check = 98 - mod97(&format!("{bban}{country}00"));
    format!("{country}{check:02}{bban}")
}

/// Remainder mod 97 of an alphanumeric string read as ISO 13616 digits.
pub(super) fn mod97(s: &str) -> u32 {
    s.chars().fold(0u32, |acc, c| {
        let v = c.to_digit(36).unwrap_or(0);
        if v >= 10 {
            (acc * 100 + v) % 97
        } else {
            (acc * 10 + v) % 97
        }
    })
}

pub(crate) use crate::event::rfc3339;

/// Calendar date (`YYYY-MM-DD`) of an instant, UTC.
pub(crate) fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Cut a text to `MAX_TEXT` characters.
pub(crate) fn short(s: String) -> String {
    if s.chars().count() <= MAX_TEXT {
        s
    } else {
        s.chars().take(MAX_TEXT).collect()
    }
}

/// Round to cents.
pub(crate) fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
