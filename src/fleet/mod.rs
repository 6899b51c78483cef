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

pub mod blend;
pub mod command;
pub mod features;
pub mod file;
pub mod prior;
pub mod session;
pub mod source;
pub mod train;

use std::collections::HashMap;
use std::path::Path;

use crate::baseline::Profile;
use crate::config::fleet::AssignRule;
use crate::decide::glob_match;
use crate::event::Action;
use crate::score::features::Fingerprinter;
use crate::score::Detail;
use blend::{KeyedPrior, PriorProfile};
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
    /// Tool name → the group most of whose members use it (first-call
    /// assignment).
    tools: HashMap<String, u16>,
    fallback_threshold: Option<f32>,
    /// Whether each group's prior was learned from its members' calls
    /// (false for `warden train`'s leave-one-out calibration).
    priors_hold_members: bool,
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
        // A tool shared by the members of two groups goes to the group that
        // shares it more; an exact tie leaves it to neither.
        let mut best: HashMap<&str, (u16, f32, bool)> = HashMap::new();
        for g in &file.groups {
            for (tool, share) in &g.prior.shared_tools {
                match best.get_mut(tool.as_str()) {
                    Some(b) if *share > b.1 => *b = (g.id, *share, false),
                    Some(b) if *share == b.1 => b.2 = true,
                    Some(_) => {}
                    None => {
                        best.insert(tool, (g.id, *share, false));
                    }
                }
            }
        }
        let tools = best
            .into_iter()
            .filter(|(_, (_, _, tie))| !tie)
            .map(|(t, (g, _, _))| (t.to_owned(), g))
            .collect();
        Self {
            fallback_threshold: young.get(young.len() / 2).copied(),
            file,
            members,
            classes,
            tools,
            priors_hold_members: true,
        }
    }

    /// A model whose groups' priors each leave their member out
    /// (calibration of the blend threshold).
    pub fn leave_one_out(file: ModelFile) -> Self {
        Self {
            priors_hold_members: false,
            ..Self::new(file)
        }
    }

    /// Loads `DIR/fleet.json`.
    pub fn load_dir(dir: &Path) -> Result<Self, ModelFileError> {
        ModelFile::load(&dir.join(FILE_NAME)).map(Self::new)
    }

    /// Whether `agent_id`'s own calls are in its group's prior: it was in
    /// the training fleet.
    pub fn prior_holds(&self, agent_id: &str) -> bool {
        self.priors_hold_members && self.members.contains_key(agent_id)
    }

    /// The threshold a young agent starts from: its group's, or without a
    /// group yet, the median of the groups'.
    pub fn young_threshold(&self, group: Option<u16>) -> Option<f32> {
        match group {
            Some(g) => self.file.groups.get(g as usize)?.prior.young_threshold_bits,
            None => self.fallback_threshold,
        }
    }

    /// The threshold of a young agent scored against its group's blend.
    pub fn blend_threshold(&self, group: Option<u16>) -> Option<f32> {
        self.file
            .groups
            .get(group? as usize)?
            .prior
            .blend_threshold_bits
    }

    /// Each group's tools (by name, from its prior profile), and the
    /// share of members' tools that were another group's: what a first
    /// call of a tool of another role is priced by. `None` without
    /// prior profiles or the count (files trained from profiles alone).
    pub fn cross_group(&self) -> Option<(Vec<Vec<&str>>, f32)> {
        let c = self.file.cross_group?;
        let tools = self
            .file
            .groups
            .iter()
            .map(|g| {
                g.prior
                    .profile
                    .as_ref()
                    .map(|p| p.tool_names().collect())
                    .unwrap_or_default()
            })
            .collect();
        Some((tools, (c.cross as f32 + 0.5) / (c.tools as f32 + 1.0)))
    }

    /// A group's prior profile, if the file holds one.
    pub fn prior_profile(&self, group: u16) -> Option<&PriorProfile> {
        self.file.groups.get(group as usize)?.prior.profile.as_ref()
    }

    /// Groups' prior profiles, keyed for an engine's fingerprints.
    pub fn keyed_priors(&self, fp: &Fingerprinter) -> Vec<Option<KeyedPrior>> {
        self.file
            .groups
            .iter()
            .map(|g| g.prior.profile.as_ref().map(|p| p.rekey(fp)))
            .collect()
    }

    /// `[[fleet.assign]]` rules as (pattern, group). A peer that is not in
    /// the training fleet is named in a warning and its rule skipped: the
    /// model may have been retrained without it.
    pub fn assign_rules(&self, rules: &[AssignRule]) -> Vec<(Box<str>, u16)> {
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            match self.members.get(r.peer.as_str()) {
                Some(g) => out.extend(r.agents.iter().map(|a| (a.as_str().into(), *g))),
                None => tracing::warn!(
                    key = %format!("fleet.assign[{i}].peer"),
                    peer = %r.peer,
                    "A fleet.assign peer is not an agent of the model's training fleet; the rule is skipped."
                ),
            }
        }
        out
    }

    /// The group whose members share `tool`, for an agent with no group
    /// yet (assignment by its first calls).
    pub fn group_of_tool(&self, tool: &str) -> Option<u16> {
        self.tools.get(tool).copied()
    }

    pub fn file(&self) -> &ModelFile {
        &self.file
    }

    /// The group of an agent: its own when it was in the training fleet,
    /// else the group of its declared class, else that of the first
    /// `[[fleet.assign]]` rule matching its id (`rules`), else, once its
    /// profile holds a few sessions, the group whose centroid is nearest its
    /// profile features (re-assigned as evidence grows); before that, the
    /// group it has (`current`, e.g. from its first calls' tools).
    pub fn assign(
        &self,
        agent_id: &str,
        class: Option<&str>,
        profile: &Profile,
        current: Option<u16>,
        rules: &[(Box<str>, u16)],
    ) -> Option<u16> {
        if let Some(g) = self.fixed_group(agent_id, class, rules) {
            return Some(g);
        }
        if Self::too_young_to_assign(profile) {
            return current;
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

    /// The group an agent's identity settles: its own as a member of the
    /// training fleet, its declared class's, or a `[[fleet.assign]]` rule's.
    fn fixed_group(
        &self,
        agent_id: &str,
        class: Option<&str>,
        rules: &[(Box<str>, u16)],
    ) -> Option<u16> {
        if let Some(g) = self.members.get(agent_id) {
            return Some(*g);
        }
        if let Some(g) = class.and_then(|c| self.classes.get(c)) {
            return Some(*g);
        }
        rules
            .iter()
            .find(|(p, _)| glob_match(p, agent_id))
            .map(|(_, g)| *g)
    }

    /// Whether an agent is placed by the tools it calls: nothing about its
    /// identity settles its group.
    pub fn placed_by_calls(
        &self,
        agent_id: &str,
        class: Option<&str>,
        rules: &[(Box<str>, u16)],
    ) -> bool {
        self.fixed_group(agent_id, class, rules).is_none()
    }

    /// Whether a profile is too young for the centroid to place it.
    pub fn too_young_to_assign(profile: &Profile) -> bool {
        profile.sessions_learned < MIN_SESSIONS_TO_ASSIGN
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
