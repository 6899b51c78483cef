//! An agent's habits in names people read, for the explain route.
//!
//! The profile keeps fingerprints, not names, of what it learned (resource
//! types, values, sequences): what scoring needs. Explain needs words, so
//! each worker also tallies, per agent and per clean call, the resource
//! types and resources by name and where each argument's value came from
//! (the user, the output of which tool, or nothing the session read: a
//! constant or the model's own). Bounded per agent; saved next to the
//! worker's checkpoint (`<data-dir>/habits-<worker>.json`). Transitions and
//! instruction origins are read from the profile itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::baseline::tables::Fp;
use crate::baseline::{Profile, SeqContext, END, START};
use crate::engine::ValueSource;
use crate::score::features::OriginKind;

/// Resource types remembered per agent.
const RTYPES: usize = 32;
/// Resources remembered per agent (the most called, approximately).
const RESOURCES: usize = 16;
/// (tool, argument) pairs remembered per agent.
const ARGS: usize = 64;
/// Source tools remembered per argument.
const SOURCE_TOOLS: usize = 4;
/// Longest name kept (a resource id can be long).
const NAME_BYTES: usize = 128;

/// A name and how many calls had it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tally {
    name: Box<str>,
    n: u32,
}

/// Adds one to `name`; a new name past `cap` takes the place of the least
/// counted one, starting from its count (space-saving: the most frequent
/// names stay, their counts overestimated by at most the evicted count).
fn bump(list: &mut Vec<Tally>, name: &str, cap: usize) {
    if let Some(t) = list.iter_mut().find(|t| &*t.name == name) {
        t.n = t.n.saturating_add(1);
        return;
    }
    let name: Box<str> = truncate(name).into();
    if list.len() < cap {
        list.push(Tally { name, n: 1 });
    } else if let Some(min) = list.iter_mut().min_by_key(|t| t.n) {
        min.name = name;
        min.n = min.n.saturating_add(1);
    }
}

fn truncate(s: &str) -> &str {
    if s.len() <= NAME_BYTES {
        return s;
    }
    let mut end = NAME_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where one argument of one tool got its values.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ArgHabit {
    tool: Box<str>,
    arg: Box<str>,
    n: u32,
    user: u32,
    unseen: u32,
    /// Tool output, by the tool that returned it.
    outputs: Vec<Tally>,
    /// Tool output of a tool the profile cannot name.
    output_unknown: u32,
}

/// One agent's habits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentHabits {
    calls: u64,
    rtypes: Vec<Tally>,
    resources: Vec<Tally>,
    args: Vec<ArgHabit>,
}

/// One clean call, as habits learn it.
pub struct Noted<'a> {
    pub tool: &'a str,
    pub resource_type: Option<&'a str>,
    pub resource: Option<&'a str>,
    /// Each value's argument (`resource_id` for the resource) and source;
    /// a tool output's source tool already named when the profile knows it.
    pub values: &'a [(&'a str, ValueSource, Option<&'a str>)],
}

impl AgentHabits {
    fn note(&mut self, c: &Noted<'_>) {
        self.calls = self.calls.saturating_add(1);
        if let Some(t) = c.resource_type.filter(|t| !t.is_empty()) {
            bump(&mut self.rtypes, t, RTYPES);
        }
        if let Some(r) = c.resource.filter(|r| !r.is_empty()) {
            bump(&mut self.resources, r, RESOURCES);
        }
        for (arg, source, source_tool) in c.values {
            let at = match self
                .args
                .iter()
                .position(|a| &*a.tool == c.tool && &*a.arg == *arg)
            {
                Some(i) => i,
                None if self.args.len() < ARGS => {
                    self.args.push(ArgHabit {
                        tool: truncate(c.tool).into(),
                        arg: truncate(arg).into(),
                        n: 0,
                        user: 0,
                        unseen: 0,
                        outputs: Vec::new(),
                        output_unknown: 0,
                    });
                    self.args.len() - 1
                }
                None => continue,
            };
            let a = &mut self.args[at];
            a.n = a.n.saturating_add(1);
            match (source, source_tool) {
                (ValueSource::User, _) => a.user = a.user.saturating_add(1),
                (ValueSource::Unseen, _) => a.unseen = a.unseen.saturating_add(1),
                (ValueSource::ToolOutput(_), Some(t)) => bump(&mut a.outputs, t, SOURCE_TOOLS),
                (ValueSource::ToolOutput(_), None) => {
                    a.output_unknown = a.output_unknown.saturating_add(1)
                }
            }
        }
    }

    /// The habits as the explain route shows them.
    pub fn view(&self) -> Value {
        let share = |n: u32, of: u64| (f64::from(n) / of.max(1) as f64 * 100.0).round() / 100.0;
        let mut rtypes = self.rtypes.clone();
        rtypes.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.name.cmp(&b.name)));
        let typed: u64 = rtypes.iter().map(|t| u64::from(t.n)).sum();
        let mut resources = self.resources.clone();
        resources.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.name.cmp(&b.name)));
        let mut args: Vec<&ArgHabit> = self.args.iter().collect();
        args.sort_by(|a, b| {
            b.n.cmp(&a.n)
                .then_with(|| a.tool.cmp(&b.tool))
                .then_with(|| a.arg.cmp(&b.arg))
        });
        json!({
            "calls_tallied": self.calls,
            "resource_types": rtypes.iter().take(10).map(|t| json!({
                "resource_type": t.name, "share": share(t.n, typed),
            })).collect::<Vec<_>>(),
            "top_resources": resources.iter().take(10).map(|t| json!({
                "resource": t.name, "calls": t.n,
            })).collect::<Vec<_>>(),
            "argument_sources": args.iter().take(24).map(|a| {
                let n = u64::from(a.n);
                let mut outputs = a.outputs.clone();
                outputs.sort_by_key(|o| std::cmp::Reverse(o.n));
                json!({
                    "tool": a.tool,
                    "argument": a.arg,
                    "values": a.n,
                    "user": share(a.user, n),
                    "tool_output": outputs.iter().map(|o| json!({"tool": o.name, "share": share(o.n, n)}))
                        .chain((a.output_unknown > 0).then(|| json!({"tool": null, "share": share(a.output_unknown, n)})))
                        .collect::<Vec<_>>(),
                    "not_from_input": share(a.unseen, n),
                    "summary": a.summary(),
                })
            }).collect::<Vec<_>>(),
        })
    }
}

impl ArgHabit {
    /// "usually from the output of read_invoice (80%); the user 20%".
    fn summary(&self) -> String {
        let n = f64::from(self.n.max(1));
        let pct = |k: u32| (f64::from(k) / n * 100.0).round();
        let mut parts: Vec<(u32, String)> = self
            .outputs
            .iter()
            .map(|o| (o.n, format!("the output of {}", o.name)))
            .collect();
        if self.output_unknown > 0 {
            parts.push((self.output_unknown, "tool output".into()));
        }
        if self.user > 0 {
            parts.push((self.user, "the user (prompt)".into()));
        }
        if self.unseen > 0 {
            parts.push((
                self.unseen,
                "nothing it read (a constant or the model)".into(),
            ));
        }
        parts.sort_by_key(|p| std::cmp::Reverse(p.0));
        let text: Vec<String> = parts
            .iter()
            .map(|(k, what)| format!("{what} {}%", pct(*k)))
            .collect();
        format!(
            "{}.{}: {}",
            self.tool,
            self.arg,
            if text.is_empty() {
                "no values yet".into()
            } else {
                text.join(", ")
            }
        )
    }
}

/// Why saved habits could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HabitsError {
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// A worker's agents' habits.
#[derive(Debug, Default)]
pub struct Habits {
    agents: HashMap<Box<str>, AgentHabits>,
    /// Changed since the last save.
    dirty: bool,
}

impl Habits {
    pub fn note(&mut self, agent_id: &str, c: &Noted<'_>) {
        self.dirty = true;
        match self.agents.get_mut(agent_id) {
            Some(h) => h.note(c),
            None => self.agents.entry(agent_id.into()).or_default().note(c),
        }
    }

    pub fn get(&self, agent_id: &str) -> Option<&AgentHabits> {
        self.agents.get(agent_id)
    }

    /// Agents that left this worker (a rebalance) take their habits along.
    pub fn remove(&mut self, agent_id: &str) -> Option<AgentHabits> {
        self.agents.remove(agent_id)
    }

    pub fn path(data_dir: &Path, worker: usize) -> PathBuf {
        data_dir.join(format!("habits-{worker}.json"))
    }

    /// Writes the habits if they changed since the last save.
    pub fn save(&mut self, path: &Path) -> Result<(), HabitsError> {
        if !self.dirty {
            return Ok(());
        }
        let body = serde_json::to_vec(&self.agents).unwrap_or_default();
        crate::state::write_atomic(path, &body).map_err(|e| HabitsError::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.dirty = false;
        Ok(())
    }

    /// Every worker's saved habits, routed to `n` workers; files of workers
    /// beyond `n` are merged in and removed. An unreadable file is skipped
    /// with a warning: habits only explain, they decide nothing.
    pub fn load_all(data_dir: &Path, n: usize) -> Vec<Self> {
        let mut out: Vec<Self> = (0..n).map(|_| Self::default()).collect();
        let Ok(dir) = std::fs::read_dir(data_dir) else {
            return out;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(i) = name
                .to_str()
                .and_then(|s| s.strip_prefix("habits-")?.strip_suffix(".json"))
                .and_then(|s| s.parse::<usize>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<HashMap<Box<str>, AgentHabits>>(&b).ok());
            let Some(agents) = parsed else {
                tracing::warn!(path = %path.display(), "Saved habits unreadable; explain re-learns them from new calls.");
                continue;
            };
            for (id, h) in agents {
                let w = crate::pipeline::route(&id, n);
                out[w].agents.entry(id).or_insert(h);
                out[w].dirty = true;
            }
            if i >= n {
                let _ = std::fs::remove_file(&path);
            }
        }
        out
    }
}

/// Tallies a call the engine evaluated and judged clean (before `commit`,
/// while its session still holds the call's sources).
pub fn note_call(
    habits: &mut Habits,
    engine: &crate::engine::Engine,
    call: &crate::event::ToolCall,
    ev: &crate::engine::Evaluation,
) {
    use crate::score::features::ValueFrom;
    let sources = engine.value_sources(ev);
    let profile = engine.agent(&call.agent_id).map(|a| &a.profile);
    // No allocation per call: at most MAX_VALUES values.
    let values: arrayvec::ArrayVec<
        (&str, ValueSource, Option<&str>),
        { crate::score::features::MAX_VALUES },
    > = ev
        .obs
        .values
        .iter()
        .zip(sources)
        .map(|(v, s)| {
            let arg = match &v.from {
                ValueFrom::ResourceId => "resource_id",
                ValueFrom::Arg(k) => k.as_ref(),
            };
            let tool = match s {
                ValueSource::ToolOutput(fp) if fp != 0 => {
                    profile.and_then(|p| p.tool(fp)).map(|t| &*t.name)
                }
                _ => None,
            };
            (arg, s, tool)
        })
        .collect();
    habits.note(
        &call.agent_id,
        &Noted {
            tool: &call.tool,
            resource_type: call.resource_type.as_deref(),
            resource: call.resource_id.as_deref(),
            values: &values,
        },
    );
}

/// The profile's usual transitions: from the session's start and from each
/// of its most used tools, the next tools (or the session's end) and their
/// shares.
pub fn transitions(p: &Profile) -> Value {
    let mut tools: Vec<(Fp, &str, f32)> = p
        .tools
        .iter()
        .filter(|t| t.calls > 0.0)
        .map(|t| (t.tool, &*t.name, t.calls))
        .collect();
    tools.sort_by(|a, b| b.2.total_cmp(&a.2));
    let name = |fp: Fp| match fp {
        START => "(session start)".to_owned(),
        END => "(session end)".to_owned(),
        _ => tools
            .iter()
            .find(|t| t.0 == fp)
            .map_or_else(|| "(another tool)".to_owned(), |t| t.1.to_owned()),
    };
    let froms = std::iter::once(START).chain(tools.iter().take(8).map(|t| t.0));
    let nexts: Vec<Fp> = tools.iter().map(|t| t.0).chain([END]).collect();
    froms
        .filter_map(|from| {
            let ctx = SeqContext {
                prev1: from,
                prev2: START,
                gap_ms: None,
            };
            let total = p.seq_ctx.get(Profile::ctx_key(1, &ctx));
            if total <= 0.0 {
                return None;
            }
            let mut next: Vec<(Fp, f32)> = nexts
                .iter()
                .map(|&to| (to, p.seq_pairs.get(Profile::pair_key(1, &ctx, to)) / total))
                .filter(|(_, s)| *s >= 0.05)
                .collect();
            next.sort_by(|a, b| b.1.total_cmp(&a.1));
            next.truncate(4);
            Some(json!({
                "from": name(from),
                "next": next.iter().map(|(to, s)| json!({
                    "tool": name(*to), "share": (f64::from(*s) * 100.0).round() / 100.0,
                })).collect::<Vec<_>>(),
            }))
        })
        .collect()
}

/// Where the agent's instructions come from (the events' `origin.kind`).
pub fn instruction_origins(p: &Profile) -> Value {
    const KINDS: [(OriginKind, &str); OriginKind::COUNT] = [
        (OriginKind::UserPrompt, "user_prompt"),
        (OriginKind::ToolOutput, "tool_output"),
        (OriginKind::RetrievedContent, "retrieved_content"),
        (OriginKind::System, "system"),
        (OriginKind::Other, "other"),
        (OriginKind::Absent, "not_given"),
    ];
    let total: f32 = p.origins.iter().sum();
    let mut out = serde_json::Map::new();
    for (kind, name) in KINDS {
        let s = p.origins[kind as usize] / total.max(f32::MIN_POSITIVE);
        if s >= 0.005 {
            out.insert(name.into(), ((f64::from(s) * 100.0).round() / 100.0).into());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_name_sources_and_stay_bounded() {
        let mut h = Habits::default();
        for i in 0..100 {
            let iban = (ValueSource::ToolOutput(7), Some("read_invoice"));
            let values = [
                ("iban", iban.0, iban.1),
                ("amount", ValueSource::User, None),
                ("memo", ValueSource::Unseen, None),
            ];
            let r = format!("inv-{}", i % 40);
            h.note(
                "pay",
                &Noted {
                    tool: "pay_invoice",
                    resource_type: Some(if i % 4 == 0 { "refund" } else { "invoice" }),
                    resource: Some(if i % 2 == 0 { "inv-hot" } else { &r }),
                    values: &values,
                },
            );
        }
        let v = h.get("pay").unwrap().view();
        assert_eq!(v["resource_types"][0]["resource_type"], "invoice", "{v}");
        assert_eq!(v["resource_types"][0]["share"], 0.75, "{v}");
        assert_eq!(v["top_resources"][0]["resource"], "inv-hot", "{v}");
        assert!(v["top_resources"].as_array().unwrap().len() <= 10);
        let iban = v["argument_sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["argument"] == "iban")
            .unwrap();
        assert_eq!(iban["tool_output"][0]["tool"], "read_invoice", "{v}");
        assert_eq!(iban["tool_output"][0]["share"], 1.0, "{v}");
        assert!(iban["summary"]
            .as_str()
            .unwrap()
            .contains("the output of read_invoice 100%"));
        let memo = v["argument_sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["argument"] == "memo")
            .unwrap();
        assert_eq!(memo["not_from_input"], 1.0, "{v}");
        assert!(h.get("pay").unwrap().resources.len() <= RESOURCES);
    }

    #[test]
    fn saved_habits_load_routed_and_long_names_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Habits::default();
        let long = "é".repeat(200);
        h.note(
            "a-1",
            &Noted {
                tool: "t",
                resource_type: Some(&long),
                resource: None,
                values: &[],
            },
        );
        h.save(&Habits::path(dir.path(), 5)).unwrap();
        let loaded = Habits::load_all(dir.path(), 2);
        let w = crate::pipeline::route("a-1", 2);
        let got = loaded[w].get("a-1").unwrap();
        assert!(got.rtypes[0].name.len() <= NAME_BYTES);
        assert!(
            !Habits::path(dir.path(), 5).exists(),
            "a file of a worker beyond n is merged and removed"
        );
    }
}
