//! The model file: one JSON document holding the peer groups, their priors
//! and their session models, with what it takes to trust it: a format name
//! and version, the feature schema it was trained on, a digest and the
//! dates of its training data, and the linfa version that fitted it.
//!
//! Loading checks, in order, and fails with a [`ModelFileError`] naming the
//! mismatch: the file is complete JSON, it is a Warden fleet model, its
//! format version is this one, its feature schema is this one, and every
//! group's arrays have the shapes evaluation indexes. The linfa version is
//! recorded and shown, not enforced: evaluation is Warden's own code.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::features::{AGENT_DIM, AGENT_FEATURES, SESSION_FEATURES};
use super::prior::GroupPrior;
use super::session::SessionModel;

/// The `format` every fleet model file starts with.
pub const FORMAT: &str = "warden-fleet-model";
/// Bumped whenever a field changes meaning; older files must be retrained.
pub const FORMAT_VERSION: u32 = 1;
/// linfa release the models are fitted with (kept in step with Cargo.lock
/// by a test).
pub const LINFA_VERSION: &str = "0.8.1";
/// File name `warden train` writes under its output directory.
pub const FILE_NAME: &str = "fleet.json";

#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("cannot read model file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write model file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("model file {path} is truncated (it ends at byte {len}); retrain or copy it again")]
    Truncated { path: PathBuf, len: usize },
    #[error("{path} is not a Warden fleet model file: {why}")]
    Foreign { path: PathBuf, why: String },
    #[error("model file {path} has format version {found}, this Warden reads version {expected}; retrain it with `warden train`")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("model file {path} was trained on other {which} features: file has [{found}], this Warden uses [{expected}]; retrain it with `warden train`")]
    Schema {
        path: PathBuf,
        which: &'static str,
        found: String,
        expected: String,
    },
    #[error("model file {path} is inconsistent: {why}")]
    Corrupt { path: PathBuf, why: String },
}

/// The features a file was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub agent_features: Vec<String>,
    pub session_features: Vec<String>,
}

impl Schema {
    pub fn current() -> Self {
        Self {
            agent_features: AGENT_FEATURES.iter().map(|s| s.to_string()).collect(),
            session_features: SESSION_FEATURES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Where the models came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// `sha256:` of the training input, line by line as read (decompressed).
    pub digest: String,
    /// Input file names (without directories).
    pub inputs: Vec<String>,
    pub events: u64,
    pub tool_calls: u64,
    /// Lines that did not decode and were skipped.
    pub rejected: u64,
    pub agents: usize,
    pub sessions: u64,
    /// Event time of the first and last training call (RFC 3339).
    pub first_event: String,
    pub last_event: String,
    pub linfa_version: String,
    /// How the groups were formed, in words (algorithm, k, criterion).
    pub clustering: String,
}

/// One peer group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub id: u16,
    /// Centroid in standardised agent-feature space.
    pub centroid: Vec<f64>,
    /// Agent ids of its training members.
    pub members: Vec<String>,
    /// `agent_class` values its members declared.
    pub classes: Vec<String>,
    pub prior: GroupPrior,
    /// `None` when the group had too few sessions to fit one.
    pub session_model: Option<SessionModel>,
}

/// A fleet model file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFile {
    pub format: String,
    pub format_version: u32,
    pub schema: Schema,
    pub training: TrainingInfo,
    /// Standardisation of agent features: (x − center) / scale.
    pub agent_center: Vec<f64>,
    pub agent_scale: Vec<f64>,
    pub groups: Vec<Group>,
    /// How often a member's tools are another group's and not its own
    /// peers' (see [`CrossGroupTools`]); absent in files trained before,
    /// or from profiles alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_group: Option<CrossGroupTools>,
}

/// Of the tools members use (each taken up at some point), those that the
/// rest of the member's group never uses while another group's agents do:
/// how often an agent of the fleet legitimately takes up a tool of
/// another role. A mature agent's first call of such a tool costs
/// `bits((cross + 0.5) / (tools + 1))`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CrossGroupTools {
    pub cross: u32,
    pub tools: u32,
}

/// The first fields, read before the rest so that a foreign or older file
/// is named as such rather than as a parse error deep inside.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    format_version: Option<u32>,
    schema: Option<Schema>,
}

impl ModelFile {
    /// Writes the file (pretty JSON) to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelFileError> {
        let write = |source| ModelFileError::Write {
            path: path.to_owned(),
            source,
        };
        let text = serde_json::to_string_pretty(self)
            .map_err(io::Error::other)
            .map_err(write)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(write)?;
        std::fs::rename(&tmp, path).map_err(write)
    }

    /// Reads and checks a model file.
    pub fn load(path: &Path) -> Result<Self, ModelFileError> {
        let bytes = std::fs::read(path).map_err(|source| ModelFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_slice(path, &bytes)
    }

    /// Checks and decodes a model file's bytes (`path` names it in errors).
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self, ModelFileError> {
        let path = path.to_owned();
        let classify = |e: serde_json::Error, path: &PathBuf| {
            if e.is_eof() {
                ModelFileError::Truncated {
                    path: path.clone(),
                    len: bytes.len(),
                }
            } else {
                ModelFileError::Foreign {
                    path: path.clone(),
                    why: format!("not JSON ({e})"),
                }
            }
        };
        let header: Header = serde_json::from_slice(bytes).map_err(|e| classify(e, &path))?;
        match header.format.as_deref() {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(ModelFileError::Foreign {
                    path,
                    why: format!("its format is {other:?}, not {FORMAT:?}"),
                })
            }
            None => {
                return Err(ModelFileError::Foreign {
                    path,
                    why: format!("it has no \"format\": {FORMAT:?} field"),
                })
            }
        }
        let found = header.format_version.unwrap_or(0);
        if found != FORMAT_VERSION {
            return Err(ModelFileError::Version {
                path,
                found,
                expected: FORMAT_VERSION,
            });
        }
        let current = Schema::current();
        let schema = header.schema.ok_or_else(|| ModelFileError::Corrupt {
            path: path.clone(),
            why: "no feature schema".into(),
        })?;
        for (which, found, expected) in [
            ("agent", &schema.agent_features, &current.agent_features),
            (
                "session",
                &schema.session_features,
                &current.session_features,
            ),
        ] {
            if found != expected {
                return Err(ModelFileError::Schema {
                    path,
                    which,
                    found: found.join(", "),
                    expected: expected.join(", "),
                });
            }
        }
        let file: ModelFile =
            serde_json::from_slice(bytes).map_err(|e| ModelFileError::Corrupt {
                path: path.clone(),
                why: e.to_string(),
            })?;
        file.check()
            .map_err(|why| ModelFileError::Corrupt { path, why })?;
        Ok(file)
    }

    fn check(&self) -> Result<(), String> {
        if self.agent_center.len() != AGENT_DIM || self.agent_scale.len() != AGENT_DIM {
            return Err(format!(
                "agent standardisation has not {AGENT_DIM} features"
            ));
        }
        if self
            .agent_scale
            .iter()
            .any(|s| s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
        {
            return Err("an agent feature scale is not positive".into());
        }
        if self.groups.is_empty() {
            return Err("no group".into());
        }
        if self.groups.len() > u16::MAX as usize {
            return Err("too many groups".into());
        }
        for (i, g) in self.groups.iter().enumerate() {
            if g.id as usize != i {
                return Err(format!("group {i} has id {}", g.id));
            }
            if g.centroid.len() != AGENT_DIM {
                return Err(format!("group {i}: centroid has not {AGENT_DIM} features"));
            }
            if let Some(m) = &g.session_model {
                m.check()
                    .map_err(|why| format!("group {i}: session model: {why}"))?;
            }
            if let Some(p) = &g.prior.profile {
                p.check()
                    .map_err(|why| format!("group {i}: prior profile: {why}"))?;
            }
        }
        Ok(())
    }

    /// What `warden models inspect` prints.
    pub fn describe(&self) -> String {
        let t = &self.training;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "format:        {} version {}",
            self.format, self.format_version
        );
        let _ = writeln!(s, "linfa:         {}", t.linfa_version);
        let _ = writeln!(s, "trained on:    {} ({})", t.inputs.join(", "), t.digest);
        let _ = writeln!(s, "data dates:    {} .. {}", t.first_event, t.last_event);
        let _ = writeln!(
            s,
            "data:          {} events, {} tool calls, {} sessions, {} agents, {} lines rejected",
            t.events, t.tool_calls, t.sessions, t.agents, t.rejected
        );
        let _ = writeln!(s, "clustering:    {}", t.clustering);
        let _ = writeln!(
            s,
            "agent schema:  {}",
            self.schema.agent_features.join(", ")
        );
        let _ = writeln!(
            s,
            "session schema: {}",
            self.schema.session_features.join(", ")
        );
        if let Some(c) = self.cross_group {
            let _ = writeln!(
                s,
                "cross-group:   {} of {} member tools are another group's and not their own group's",
                c.cross, c.tools
            );
        }
        for g in &self.groups {
            let p = &g.prior;
            let _ = writeln!(
                s,
                "\ngroup {} ({} members): {}",
                g.id,
                g.members.len(),
                g.members.join(", ")
            );
            if !g.classes.is_empty() {
                let _ = writeln!(s, "  classes:            {}", g.classes.join(", "));
            }
            let tools: Vec<String> = p
                .shared_tools
                .iter()
                .map(|(t, share)| format!("{t} ({:.0}%)", share * 100.0))
                .collect();
            let _ = writeln!(
                s,
                "  shared tools:       {}",
                if tools.is_empty() {
                    "none".to_owned()
                } else {
                    tools.join(", ")
                }
            );
            let by_action: Vec<String> = p
                .new_value_rate_by_action
                .iter()
                .map(|(a, r)| format!("{a} {:.1}%", r * 100.0))
                .collect();
            let _ = writeln!(
                s,
                "  new values:         {:.1}% of values (by action: {})",
                p.new_value_rate * 100.0,
                by_action.join(", ")
            );
            let _ = writeln!(
                s,
                "  new tools:          {:.2}% of calls",
                p.new_tool_rate * 100.0
            );
            let _ = writeln!(
                s,
                "  sessions:           median {:.0} calls (p90 {:.0}), {:.0} distinct values, {:.1} s between calls",
                p.session_calls_median, p.session_calls_p90, p.session_fanout_median, p.median_gap_s
            );
            match p.threshold_bits {
                Some(t) => {
                    let _ = writeln!(
                        s,
                        "  threshold:          {t:.1} bits (median of {} calibrated members)",
                        p.calibrated_members
                    );
                }
                None => {
                    let _ = writeln!(s, "  threshold:          none calibrated");
                }
            }
            if let Some(t) = p.young_threshold_bits {
                let _ = writeln!(
                    s,
                    "  young threshold:    {t:.1} bits (from {} sessions of members before their own calibration)",
                    p.young_sessions
                );
            }
            if let Some(q) = &p.profile {
                let _ = writeln!(
                    s,
                    "  prior profile:      {:.0} pseudo-calls, {} tools, {} transitions, {} resource types",
                    q.calls,
                    q.tools.len(),
                    q.transitions.len(),
                    q.rtype_names.len()
                );
                let ranges: Vec<String> = q
                    .tools
                    .iter()
                    .flat_map(|t| {
                        t.numbers
                            .iter()
                            .map(move |n| format!("{}.{} ≤ {}", t.name, n.key, n.max))
                    })
                    .collect();
                if !ranges.is_empty() {
                    let _ = writeln!(s, "  argument ranges:    {}", ranges.join(", "));
                }
            }
            if let Some(t) = p.blend_threshold_bits {
                let from = if p.blend_pooled {
                    "of the larger groups' members (too few members to leave one out)"
                } else {
                    "of members"
                };
                let _ = writeln!(
                    s,
                    "  blend threshold:    {t:.1} bits (from {} young sessions {from} scored against the others' prior)",
                    p.blend_sessions
                );
            }
            match &g.session_model {
                Some(m) => {
                    let _ = writeln!(
                        s,
                        "  session model:      Gaussian mixture, {} components (BIC {:.0}), {} session vectors, tail to p = 2^-{}",
                        m.components.len(),
                        m.bic,
                        m.samples,
                        m.tail.len().saturating_sub(1)
                    );
                }
                None => {
                    let why = if self.training.events == 0 {
                        "trained from profiles, which hold no sessions"
                    } else {
                        "too few sessions"
                    };
                    let _ = writeln!(s, "  session model:      none ({why})");
                }
            }
        }
        s
    }
}
