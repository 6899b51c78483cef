//! Small, bounded tables the profile is built from.
//!
//! Counts are "decayed": each observation adds the profile's current weight
//! `w = 2^((t - epoch) / half_life)`, so older observations count for less
//! without touching every counter on every event. Readers divide by `w`
//! (`Decay::inv`) to get effective counts. When `w` grows large the profile
//! rebases: every counter is scaled down once and the epoch moves.

use serde::{Deserialize, Serialize};

/// Keyed 64-bit fingerprint of a value (0 is reserved for "none").
pub type Fp = u64;

/// Adds `fp` to a sorted set of fingerprints unless it holds it already or
/// holds `cap` of them.
pub fn insert_sorted(set: &mut Vec<Fp>, fp: Fp, cap: usize) {
    if set.len() < cap {
        if let Err(at) = set.binary_search(&fp) {
            set.insert(at, fp);
        }
    }
}

/// [`insert_sorted`] for a set sorted by fingerprint whose entries carry a
/// value: an entry already there keeps its value.
pub fn insert_keyed<T>(set: &mut Vec<(Fp, T)>, fp: Fp, value: T, cap: usize) {
    if set.len() < cap {
        if let Err(at) = set.binary_search_by_key(&fp, |(x, _)| *x) {
            set.insert(at, (fp, value));
        }
    }
}

/// An ordered set of fingerprints with a last-seen day, capped: when full,
/// the value seen longest ago is evicted (a forgotten value is "new" again,
/// which only makes it cost what a new value costs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FpSet {
    keys: Vec<Fp>,
    /// Day number (event time) the key was last seen, parallel to `keys`.
    seen: Vec<u16>,
    /// Times seen, saturating at 2: enough to know the singletons that
    /// Good–Turing estimates novelty from.
    hits: Vec<u8>,
}

/// What an insert found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time.
    New,
    /// Second time: it was a singleton, first seen on this day.
    Second(u16),
    /// Seen twice or more before.
    Known,
}

impl FpSet {
    pub fn contains(&self, fp: Fp) -> bool {
        self.keys.binary_search(&fp).is_ok()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Inserts or refreshes `fp`, saying how often it had been seen.
    pub fn insert(&mut self, fp: Fp, day: u16, cap: usize) -> Seen {
        match self.keys.binary_search(&fp) {
            Ok(i) => {
                let first = self.seen[i];
                self.seen[i] = day;
                if self.hits[i] == 1 {
                    self.hits[i] = 2;
                    Seen::Second(first)
                } else {
                    Seen::Known
                }
            }
            Err(mut i) => {
                if self.keys.len() >= cap.max(1) {
                    let oldest = self
                        .seen
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, d)| **d)
                        .map(|(j, _)| j)
                        .unwrap_or(0);
                    self.keys.remove(oldest);
                    self.seen.remove(oldest);
                    self.hits.remove(oldest);
                    if oldest < i {
                        i -= 1;
                    }
                }
                self.keys.insert(i, fp);
                self.seen.insert(i, day);
                self.hits.insert(i, 1);
                Seen::New
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 4 + self.seen.capacity() * 2 + self.hits.capacity()
    }
}

/// An ordered map from fingerprint to a decayed count.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FpCounts {
    keys: Vec<Fp>,
    counts: Vec<f32>,
}

impl FpCounts {
    pub fn get(&self, fp: Fp) -> f32 {
        match self.keys.binary_search(&fp) {
            Ok(i) => self.counts[i],
            Err(_) => 0.0,
        }
    }

    /// Adds `w` to `fp`'s count; returns true when `fp` was absent. When the
    /// table is at `cap`, the smallest count is dropped first.
    pub fn add(&mut self, fp: Fp, w: f32, cap: usize) -> bool {
        match self.keys.binary_search(&fp) {
            Ok(i) => {
                self.counts[i] += w;
                false
            }
            Err(mut i) => {
                if self.keys.len() >= cap.max(1) {
                    let smallest = self
                        .counts
                        .iter()
                        .enumerate()
                        .min_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(j, _)| j)
                        .unwrap_or(0);
                    self.keys.remove(smallest);
                    self.counts.remove(smallest);
                    if smallest < i {
                        i -= 1;
                    }
                }
                self.keys.insert(i, fp);
                self.counts.insert(i, w);
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn scale(&mut self, f: f32) {
        self.counts.iter_mut().for_each(|c| *c *= f);
    }

    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 4 + self.counts.capacity() * 4
    }
}

/// Number of buckets of a [`LogHist`]: values up to 2^(N-2) are resolved.
pub const LOG_BUCKETS: usize = 20;

/// A decayed histogram over log2 buckets: bucket 0 holds 0, bucket b ≥ 1
/// holds [2^(b-1), 2^b). Used for counts (calls per session, distinct
/// resources, rate) and durations (gaps).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogHist {
    buckets: [f32; LOG_BUCKETS],
    total: f32,
}

impl LogHist {
    pub fn bucket(x: f32) -> usize {
        if x < 1.0 {
            0
        } else {
            ((x.log2().floor() as usize) + 1).min(LOG_BUCKETS - 1)
        }
    }

    pub fn add(&mut self, x: f32, w: f32) {
        self.buckets[Self::bucket(x)] += w;
        self.total += w;
    }

    /// Raw (decayed) total weight.
    pub fn total(&self) -> f32 {
        self.total
    }

    /// P(X ≥ x): the empirical tail (with half a pseudo-observation) where
    /// history reaches, and beyond it only a Pareto tail anchored at the 90th
    /// percentile, `0.1 · (q90 / x)²`, so that "twice the usual" costs a few
    /// bits and "a hundred times" many, whatever the history's length.
    pub fn upper_tail(&self, x: f32, inv_w: f32) -> f32 {
        let b = Self::bucket(x);
        let n = self.total * inv_w;
        let above: f32 = self.buckets[b..].iter().sum::<f32>() * inv_w;
        let empirical = (above + 0.5) / (n + 1.0);
        let q90 = self.quantile_edge(0.9) * 2.0;
        let pareto = if x > q90 {
            0.1 * (q90.max(1.0) / x).powi(2)
        } else {
            1.0
        };
        if above > 0.0 {
            empirical.max(pareto).min(1.0)
        } else {
            pareto.min(1.0)
        }
    }

    /// P(X ≥ x), empirical only, with half a pseudo-observation.
    pub fn at_least(&self, x: f32, inv_w: f32) -> f32 {
        let above: f32 = self.buckets[Self::bucket(x)..].iter().sum::<f32>() * inv_w;
        ((above + 0.5) / (self.total * inv_w + 1.0)).min(1.0)
    }

    /// P(X ≤ x), mirrored: the empirical lower tail, and below the 10th
    /// percentile a tail `0.1 · (x / q10)`.
    pub fn lower_tail(&self, x: f32, inv_w: f32) -> f32 {
        let b = Self::bucket(x);
        let n = self.total * inv_w;
        let below: f32 = self.buckets[..=b].iter().sum::<f32>() * inv_w;
        let empirical = (below + 0.5) / (n + 1.0);
        let q10 = self.quantile_edge(0.1);
        let pareto = if x < q10 {
            0.1 * (x.max(0.5) / q10)
        } else {
            1.0
        };
        if below > 0.0 {
            empirical.max(pareto).min(1.0)
        } else {
            pareto.min(1.0)
        }
    }

    /// Smallest x (bucket lower edge) with P(X ≥ x) ≤ q; used for "usual"
    /// figures in explanations.
    pub fn quantile_edge(&self, q: f32) -> f32 {
        if self.total <= 0.0 {
            return 0.0;
        }
        let mut acc = 0.0;
        for (b, c) in self.buckets.iter().enumerate() {
            acc += c;
            if acc / self.total >= q {
                return if b == 0 {
                    0.0
                } else {
                    (1u64 << (b - 1)) as f32
                };
            }
        }
        (1u64 << (LOG_BUCKETS - 2)) as f32
    }

    pub fn scale(&mut self, f: f32) {
        self.buckets.iter_mut().for_each(|c| *c *= f);
        self.total *= f;
    }
}

/// A decayed histogram of scores in bits (0.5-bit buckets up to 64 bits),
/// from which per-agent thresholds are calibrated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreHist {
    buckets: Vec<f32>,
    total: f32,
}

const SCORE_BUCKETS: usize = 128;
const SCORE_STEP: f32 = 0.5;

impl Default for ScoreHist {
    fn default() -> Self {
        Self {
            buckets: vec![0.0; SCORE_BUCKETS],
            total: 0.0,
        }
    }
}

impl ScoreHist {
    pub fn add(&mut self, bits: f32, w: f32) {
        let b = ((bits.max(0.0) / SCORE_STEP) as usize).min(SCORE_BUCKETS - 1);
        self.buckets[b] += w;
        self.total += w;
    }

    pub fn total(&self) -> f32 {
        self.total
    }

    /// Upper edge of the bucket holding the `q` quantile.
    pub fn quantile(&self, q: f32) -> f32 {
        if self.total <= 0.0 {
            return 0.0;
        }
        let target = q.clamp(0.0, 1.0) * self.total;
        let mut acc = 0.0;
        for (b, c) in self.buckets.iter().enumerate() {
            acc += c;
            if acc >= target {
                return (b + 1) as f32 * SCORE_STEP;
            }
        }
        SCORE_BUCKETS as f32 * SCORE_STEP
    }

    pub fn scale(&mut self, f: f32) {
        self.buckets.iter_mut().for_each(|c| *c *= f);
        self.total *= f;
    }

    /// Weight of the sessions that scored `bits` or more (to the bucket).
    pub fn weight_from(&self, bits: f32) -> f32 {
        let b = ((bits.max(0.0) / SCORE_STEP) as usize).min(SCORE_BUCKETS - 1);
        self.buckets[b..].iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fpset_caps_and_evicts_oldest() {
        let mut s = FpSet::default();
        for (i, fp) in [5u64, 3, 9].into_iter().enumerate() {
            assert_eq!(s.insert(fp, i as u16, 3), Seen::New);
        }
        assert_eq!(
            s.insert(3, 10, 3),
            Seen::Second(1),
            "second sighting reports the first day"
        );
        assert_eq!(s.insert(3, 12, 3), Seen::Known);
        assert_eq!(
            s.insert(7, 11, 3),
            Seen::New,
            "a fourth value evicts the oldest (5)"
        );
        assert_eq!(s.len(), 3);
        assert!(!s.contains(5));
        assert!(s.contains(3) && s.contains(7) && s.contains(9));
    }

    #[test]
    fn fpcounts_drops_smallest_at_cap() {
        let mut c = FpCounts::default();
        c.add(1, 5.0, 2);
        c.add(2, 1.0, 2);
        c.add(1, 1.0, 2);
        assert!(c.add(3, 1.0, 2));
        assert_eq!(c.get(1), 6.0);
        assert_eq!(c.get(2), 0.0);
        assert_eq!(c.get(3), 1.0);
    }

    #[test]
    fn loghist_tails_grow_with_distance() {
        let mut h = LogHist::default();
        for i in 0..200 {
            h.add([3.0, 4.0, 5.0, 6.0][i % 4], 1.0);
        }
        let inside = h.upper_tail(4.0, 1.0);
        let just = h.upper_tail(9.0, 1.0);
        let far = h.upper_tail(100.0, 1.0);
        assert!(inside > 0.5);
        assert!(just < inside && far < just, "{inside} {just} {far}");
        assert!(
            just > 0.01,
            "just beyond the history is not extreme: {just}"
        );
        assert!(far < 0.001, "{far}");
        assert!(h.lower_tail(0.0, 1.0) < h.lower_tail(3.0, 1.0));
    }

    #[test]
    fn score_quantile() {
        let mut h = ScoreHist::default();
        for i in 0..100 {
            h.add(i as f32 * 0.1, 1.0);
        }
        let q = h.quantile(0.99);
        assert!((9.5..=10.5).contains(&q), "{q}");
    }
}
