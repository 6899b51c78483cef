//! The session model of one peer group: a Gaussian mixture (linfa, full
//! covariance, number of components by BIC) over standardised session-shape
//! vectors ([`super::features::session_vector`]) of the group's training
//! sessions, every prefix of every session, because a live session is judged
//! call by call. Its output is a surprisal in bits: how rare a session at
//! least this unlikely was among the group's own training sessions, read
//! from a tail table fitted at training time, so the bits mean the same
//! thing in every group.
//!
//! Evaluation works on fixed-size arrays and the model's own vectors: no
//! allocation on the hot path.

use linfa::prelude::*;
use linfa_clustering::GaussianMixtureModel;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::features::SESSION_DIM;

/// Most mixture components tried.
const MAX_COMPONENTS: usize = 4;
/// Training vectors used per group (a deterministic stride beyond it).
const MAX_SAMPLES: usize = 6000;
/// Fewest training vectors a group needs for a session model.
pub const MIN_SAMPLES: usize = 50;
/// Least standard deviation of a raw feature (shares, logs of counts).
const MIN_SCALE: f64 = 0.25;
/// Added to each covariance's diagonal (standardised units): session
/// features are counts and shares, whose many ties would otherwise give
/// components spikes that make near neighbours of common sessions rare.
const REG_COVARIANCE: f64 = 0.05;
/// Surprisal reported beyond the training tail stops here.
const MAX_BITS: f64 = 30.0;

#[derive(Debug, thiserror::Error)]
pub enum SessionModelError {
    #[error("{found} session vectors, at least {MIN_SAMPLES} needed")]
    TooFewSamples { found: usize },
    #[error("the Gaussian mixture did not fit: {0}")]
    Fit(String),
    #[error("a fitted covariance is not positive definite")]
    Singular,
}

/// One mixture component, stored ready to evaluate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Component {
    /// ln(weight) + ln|P|/2 − d·ln(2π)/2: everything but the quadratic form.
    pub log_norm: f64,
    pub mean: Vec<f64>,
    /// Precision matrix, row-major d×d.
    pub precision: Vec<f64>,
}

/// A group's session model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionModel {
    /// Standardisation: x' = (x − center) / scale.
    pub center: Vec<f64>,
    pub scale: Vec<f64>,
    pub components: Vec<Component>,
    /// BIC of the chosen number of components (lower is better).
    pub bic: f64,
    /// Training vectors the model was fitted on.
    pub samples: usize,
    /// `tail[i]`: the negative log-likelihood (nats) exceeded by a share
    /// 2^-i of the training vectors.
    pub tail: Vec<f64>,
}

/// What the model says of one session shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Surprise {
    /// −log2 of the share of training sessions at least as unlikely.
    pub bits: f64,
}

impl Surprise {
    /// That share, as a probability.
    pub fn p(&self) -> f64 {
        (-self.bits).exp2()
    }
}

impl SessionModel {
    /// Fits the model on session vectors (rows).
    pub fn fit(vectors: &[[f64; SESSION_DIM]]) -> Result<Self, SessionModelError> {
        if vectors.len() < MIN_SAMPLES {
            return Err(SessionModelError::TooFewSamples {
                found: vectors.len(),
            });
        }
        let stride = vectors.len().div_ceil(MAX_SAMPLES);
        let rows: Vec<&[f64; SESSION_DIM]> = vectors.iter().step_by(stride).collect();
        let n = rows.len();
        let mut center = vec![0.0; SESSION_DIM];
        let mut scale = vec![0.0; SESSION_DIM];
        for r in &rows {
            for j in 0..SESSION_DIM {
                center[j] += r[j] / n as f64;
            }
        }
        for r in &rows {
            for j in 0..SESSION_DIM {
                scale[j] += (r[j] - center[j]).powi(2) / n as f64;
            }
        }
        // A feature nearly constant in the group (no deletes ever) keeps a
        // floor on its scale: its first non-zero value is a deviation, not
        // an infinitely unlikely one.
        scale.iter_mut().for_each(|s| *s = s.sqrt().max(MIN_SCALE));
        let data = Array2::from_shape_fn((n, SESSION_DIM), |(i, j)| {
            (rows[i][j] - center[j]) / scale[j]
        });
        let dataset = DatasetBase::from(data.clone());

        let mut best: Option<(f64, Vec<Component>)> = None;
        for k in 1..=MAX_COMPONENTS.min(n / 20).max(1) {
            let Ok(gmm) = GaussianMixtureModel::params(k)
                .n_runs(2)
                .reg_covariance(REG_COVARIANCE)
                .max_n_iterations(200)
                .fit(&dataset)
            else {
                continue;
            };
            let mut components = Vec::with_capacity(k);
            for c in 0..k {
                let precision: Vec<f64> = gmm
                    .precisions()
                    .index_axis(ndarray::Axis(0), c)
                    .iter()
                    .copied()
                    .collect();
                let Some(log_det) = log_det_spd(&precision) else {
                    return Err(SessionModelError::Singular);
                };
                let w = gmm.weights()[c].max(1e-12);
                components.push(Component {
                    log_norm: w.ln() + 0.5 * log_det
                        - 0.5 * SESSION_DIM as f64 * (2.0 * std::f64::consts::PI).ln(),
                    mean: gmm.means().row(c).to_vec(),
                    precision,
                });
            }
            let ll: f64 = data
                .rows()
                .into_iter()
                .map(|r| log_density(&components, r.as_slice().unwrap_or(&[])))
                .sum();
            let d = SESSION_DIM as f64;
            let params = k as f64 * (d + d * (d + 1.0) / 2.0) + (k as f64 - 1.0);
            let bic = -2.0 * ll + params * (n as f64).ln();
            if best.as_ref().is_none_or(|(b, _)| bic < *b) {
                best = Some((bic, components));
            }
        }
        let Some((bic, components)) = best else {
            return Err(SessionModelError::Fit(format!(
                "no mixture of 1 to {MAX_COMPONENTS} components converged on {n} vectors"
            )));
        };
        let mut model = Self {
            center,
            scale,
            components,
            bic,
            samples: n,
            tail: Vec::new(),
        };
        let mut nll: Vec<f64> = vectors.iter().map(|v| model.nll(v)).collect();
        nll.sort_unstable_by(|a, b| b.total_cmp(a));
        let total = nll.len() as f64;
        let mut i = 0;
        loop {
            let share = total * (-(i as f64)).exp2();
            if share < 1.0 {
                break;
            }
            let idx = (share.ceil() as usize).saturating_sub(1).min(nll.len() - 1);
            model.tail.push(nll[idx]);
            i += 1;
        }
        // tail[0] must be the smallest NLL (share 1): make it monotone.
        for j in 1..model.tail.len() {
            if model.tail[j] < model.tail[j - 1] {
                model.tail[j] = model.tail[j - 1];
            }
        }
        Ok(model)
    }

    /// Negative log-likelihood of a raw session vector, in nats.
    pub fn nll(&self, x: &[f64; SESSION_DIM]) -> f64 {
        let mut z = [0.0; SESSION_DIM];
        for j in 0..SESSION_DIM {
            z[j] = (x[j] - self.center[j]) / self.scale[j];
        }
        -log_density(&self.components, &z)
    }

    /// The surprise of a raw session vector: bits of rarity among the
    /// group's training sessions.
    pub fn surprise(&self, x: &[f64; SESSION_DIM]) -> Surprise {
        let nll = self.nll(x);
        let t = &self.tail;
        let Some(&last) = t.last() else {
            return Surprise { bits: 0.0 };
        };
        if nll <= t[0] || !nll.is_finite() {
            return Surprise {
                bits: if nll.is_finite() { 0.0 } else { MAX_BITS },
            };
        }
        let bits = match t.iter().rposition(|&v| nll >= v) {
            Some(i) if i + 1 < t.len() => {
                let span = (t[i + 1] - t[i]).max(1e-9);
                i as f64 + (nll - t[i]) / span
            }
            _ => {
                // Past the training tail: one more bit per doubling of the
                // excess over the tail's last step, so that a Gaussian's
                // quadratic growth does not turn "unusual" into "impossible".
                let i = t.len() - 1;
                let span = if i > 0 {
                    (t[i] - t[i - 1]).max(0.5)
                } else {
                    1.0
                };
                i as f64 + (1.0 + (nll - last) / span).log2()
            }
        };
        Surprise {
            bits: bits.clamp(0.0, MAX_BITS),
        }
    }

    /// Checks the shapes a loaded file claims, so evaluation cannot index
    /// out of bounds.
    pub fn check(&self) -> Result<(), String> {
        let d = SESSION_DIM;
        if self.center.len() != d || self.scale.len() != d {
            return Err(format!("standardisation has not {d} features"));
        }
        if self
            .scale
            .iter()
            .any(|s| s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
        {
            return Err("a feature scale is not positive".into());
        }
        if self.components.is_empty() {
            return Err("no mixture component".into());
        }
        for c in &self.components {
            if c.mean.len() != d || c.precision.len() != d * d {
                return Err(format!("a component is not {d}-dimensional"));
            }
        }
        if self.tail.is_empty() {
            return Err("empty tail table".into());
        }
        Ok(())
    }
}

/// ln p(z) of a standardised vector under the mixture (log-sum-exp).
fn log_density(components: &[Component], z: &[f64]) -> f64 {
    let mut best = f64::NEG_INFINITY;
    let mut terms = [0.0f64; MAX_COMPONENTS * 4];
    for (k, c) in components.iter().enumerate().take(terms.len()) {
        let mut d = [0.0; SESSION_DIM];
        for j in 0..SESSION_DIM.min(z.len()) {
            d[j] = z[j] - c.mean[j];
        }
        let mut q = 0.0;
        for i in 0..SESSION_DIM {
            let row = &c.precision[i * SESSION_DIM..(i + 1) * SESSION_DIM];
            let mut acc = 0.0;
            for j in 0..SESSION_DIM {
                acc += row[j] * d[j];
            }
            q += d[i] * acc;
        }
        terms[k] = c.log_norm - 0.5 * q;
        best = best.max(terms[k]);
    }
    if !best.is_finite() {
        return best;
    }
    let n = components.len().min(terms.len());
    best + terms[..n]
        .iter()
        .map(|t| (t - best).exp())
        .sum::<f64>()
        .ln()
}

/// ln|A| of a symmetric positive definite d×d matrix (Cholesky), or `None`.
fn log_det_spd(a: &[f64]) -> Option<f64> {
    let d = SESSION_DIM;
    let mut l = [[0.0f64; SESSION_DIM]; SESSION_DIM];
    let mut log_det = 0.0;
    for i in 0..d {
        for j in 0..=i {
            let s = a[i * d + j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i][j] = s.sqrt();
                log_det += 2.0 * l[i][j].ln();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    Some(log_det)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(n: usize, seed: u64) -> Vec<[f64; SESSION_DIM]> {
        let mut x = seed;
        let mut next = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| std::array::from_fn(|j| 1.0 + j as f64 * 0.1 + 0.3 * next()))
            .collect()
    }

    #[test]
    fn usual_sessions_cost_little_and_outliers_many_bits() {
        let train = vectors(2000, 7);
        let m = SessionModel::fit(&train).expect("fits");
        m.check().expect("consistent");
        let usual: f64 = vectors(200, 9)
            .iter()
            .map(|v| m.surprise(v).bits)
            .sum::<f64>()
            / 200.0;
        assert!(usual < 2.5, "mean bits of usual sessions {usual}");
        let mut odd = train[0];
        odd[5] = 5.0;
        let s = m.surprise(&odd);
        assert!(s.bits > 11.0, "outlier {s:?}");
        assert!(s.p() < 1.0 / 2000.0);
    }

    #[test]
    fn too_few_sessions_is_an_error() {
        let err = SessionModel::fit(&vectors(10, 1)).unwrap_err();
        assert!(matches!(
            err,
            SessionModelError::TooFewSamples { found: 10 }
        ));
    }

    #[test]
    fn log_det_of_a_diagonal_matrix() {
        let mut a = vec![0.0; SESSION_DIM * SESSION_DIM];
        for i in 0..SESSION_DIM {
            a[i * SESSION_DIM + i] = 2.0;
        }
        let ld = log_det_spd(&a).expect("spd");
        assert!((ld - SESSION_DIM as f64 * 2f64.ln()).abs() < 1e-9);
        a[0] = -1.0;
        assert!(log_det_spd(&a).is_none());
    }
}
