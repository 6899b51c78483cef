//! Fleet models: what the fleet teaches each agent.
//!
//! Trained offline by `warden train` from benign history (replay files), and
//! evaluated, never fitted, on the hot path.
//!
//! # Layout
//! - [`features`]: profile and session-shape features that hold across tool
//!   catalogues; their names are the model file's schema.
//! - [`train`]: peer groups (linfa k-means, k by silhouette), priors and
//!   session models, from replay files.
//! - [`session`]: a group's session model (linfa Gaussian mixture, BIC)
//!   giving a surprisal in bits, evaluated without allocation.
//! - [`prior`]: a group's prior: shared tools, novelty rates, cadence,
//!   session shapes, calibrated thresholds.
//! - [`file`]: the model file, its version, schema, digest and checks.
//!
//! The engine touches this module through one hook ([`Fleet::assign`] when
//! an agent's group may change, [`Fleet::session_reason`] per call), which
//! adds a `session_shape` reason with bits like every other signal.

pub mod command;
pub mod features;
pub mod file;
pub mod prior;
pub mod session;
pub mod train;

use std::collections::HashMap;
use std::path::Path;

use crate::baseline::Profile;
use crate::event::Action;
use crate::score::Detail;
use features::{agent_features, session_vector, SessionShape, AGENT_DIM};
use file::{ModelFile, ModelFileError, FILE_NAME};

/// Sessions an agent outside the training fleet must have learned before
/// its profile picks its group (fewer: no group, no session reason).
const MIN_SESSIONS_TO_ASSIGN: u64 = 4;

/// A loaded fleet model, shared read-only by every worker.
#[derive(Debug)]
pub struct Fleet {
    file: ModelFile,
    members: HashMap<String, u16>,
    classes: HashMap<String, u16>,
    fallback_threshold: Option<f32>,
}

impl Fleet {
    pub fn new(file: ModelFile) -> Self {
        let mut members = HashMap::new();
        let mut class_votes: HashMap<String, HashMap<u16, usize>> = HashMap::new();
        for g in &file.groups {
            for m in &g.members {
                members.insert(m.clone(), g.id);
            }
            for c in &g.classes {
                *class_votes
                    .entry(c.clone())
                    .or_default()
                    .entry(g.id)
                    .or_default() += g.members.len();
            }
        }
        let classes = class_votes
            .into_iter()
            .filter_map(|(c, votes)| {
                votes
                    .into_iter()
                    .max_by_key(|(g, n)| (*n, std::cmp::Reverse(*g)))
                    .map(|(g, _)| (c, g))
            })
            .collect();
        let mut young: Vec<f32> = file
            .groups
            .iter()
            .filter_map(|g| g.prior.young_threshold_bits)
            .collect();
        young.sort_unstable_by(f32::total_cmp);
        Self {
            fallback_threshold: young.get(young.len() / 2).copied(),
            file,
            members,
            classes,
        }
    }

    /// Loads `DIR/fleet.json`.
    pub fn load_dir(dir: &Path) -> Result<Self, ModelFileError> {
        ModelFile::load(&dir.join(FILE_NAME)).map(Self::new)
    }

    /// The threshold a young agent starts from: its group's, or without a
    /// group yet, the median of the groups'.
    pub fn young_threshold(&self, group: Option<u16>) -> Option<f32> {
        match group {
            Some(g) => self.file.groups.get(g as usize)?.prior.young_threshold_bits,
            None => self.fallback_threshold,
        }
    }

    pub fn file(&self) -> &ModelFile {
        &self.file
    }

    /// The group of an agent: its own when it was in the training fleet,
    /// else the group of its declared class, else, once its profile holds a
    /// few sessions, the group whose centroid is nearest its profile
    /// features (re-assigned as evidence grows).
    pub fn assign(&self, agent_id: &str, class: Option<&str>, profile: &Profile) -> Option<u16> {
        if let Some(g) = self.members.get(agent_id) {
            return Some(*g);
        }
        if let Some(g) = class.and_then(|c| self.classes.get(c)) {
            return Some(*g);
        }
        if profile.sessions_learned < MIN_SESSIONS_TO_ASSIGN {
            return None;
        }
        let raw = agent_features(profile);
        let mut z = [0.0; AGENT_DIM];
        for j in 0..AGENT_DIM {
            z[j] = (raw[j] - self.file.agent_center[j]) / self.file.agent_scale[j];
        }
        self.file
            .groups
            .iter()
            .map(|g| {
                let d: f64 = g
                    .centroid
                    .iter()
                    .zip(&z)
                    .map(|(c, x)| (c - x).powi(2))
                    .sum();
                (g.id, d)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(g, _)| g)
    }

    /// The session-shape reason of a session in group `group`: the bits
    /// beyond `floor_bits` (`fleet.session-floor-bits`), and its detail. No
    /// allocation.
    pub fn session_reason(
        &self,
        group: u16,
        shape: &SessionShape,
        floor_bits: f32,
    ) -> Option<(f32, Detail)> {
        let model = self
            .file
            .groups
            .get(group as usize)?
            .session_model
            .as_ref()?;
        let s = model.surprise(&session_vector(shape));
        let bits = s.bits - floor_bits as f64;
        (bits > 0.0).then(|| {
            (
                bits as f32,
                Detail::SessionShape {
                    calls: shape.calls,
                    deletes: shape.count(Action::Delete),
                    writes: shape.count(Action::Write),
                    secs: shape.duration_s() as f32,
                    p: s.p() as f32,
                },
            )
        })
    }
}

#[cfg(test)]
mod tests;
