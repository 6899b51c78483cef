//! Orders events, assigns their public ids in stream order and writes the
//! three files. Gzip headers carry no name and mtime 0, so output depends on
//! the seed alone.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use serde::Serialize;
use serde_json::Value;

use super::layout::{Body, Event, OriginRef};
use super::model::Session;
use super::util::rfc3339;
use super::world::World;
use super::GenerateError;

pub const TRAIN_FILE: &str = "train.jsonl.gz";
pub const TEST_FILE: &str = "test.jsonl.gz";
pub const LABELS_FILE: &str = "labels.jsonl";

/// What was written.
pub(crate) struct Written {
    pub train_events: usize,
    pub test_events: usize,
    pub attack_calls: usize,
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    event_id: &'a str,
    ts: String,
    agent_id: &'a str,
    agent_instance: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a str>,
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<OriginLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entities: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust: Option<&'static str>,
    trace_id: &'a str,
}

#[derive(Serialize)]
struct OriginLine<'a> {
    kind: &'static str,
    #[serde(rename = "ref")]
    reference: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    excerpt: Option<&'a str>,
}

#[derive(Serialize)]
struct LabelLine<'a> {
    event_id: &'a str,
    attack: bool,
    scenario: &'a str,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + '_ {
    move |source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Sort, number and write everything to `dir`.
pub(crate) fn write(
    dir: &Path,
    seed: u64,
    world: &World,
    sessions: &[Session],
    events: &[Event],
) -> Result<Written, GenerateError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // Train before test; within a file by time, ties by creation order.
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| (events[i].test, events[i].ts, events[i].seq));
    let ids: Vec<String> = {
        let mut ids = vec![String::new(); events.len()];
        for (n, &i) in order.iter().enumerate() {
            ids[i] = format!("e-{seed}-{n}");
        }
        ids
    };
    let split = order.partition_point(|&i| !events[i].test);
    let (train, test) = order.split_at(split);

    let ctx = Render {
        world,
        sessions,
        events,
        ids: &ids,
    };
    ctx.write_events(&dir.join(TRAIN_FILE), train)?;
    ctx.write_events(&dir.join(TEST_FILE), test)?;

    let labels_path: PathBuf = dir.join(LABELS_FILE);
    let file = File::create(&labels_path).map_err(io_err(&labels_path))?;
    let mut out = BufWriter::new(file);
    let mut attack_calls = 0;
    for &i in test {
        if let Body::Call { call, .. } = &events[i].body {
            if let Some(scenario) = call.attack {
                let line = LabelLine {
                    event_id: &ids[i],
                    attack: true,
                    scenario,
                };
                serde_json::to_writer(&mut out, &line)
                    .map_err(|e| io_err(&labels_path)(e.into()))?;
                out.write_all(b"\n").map_err(io_err(&labels_path))?;
                attack_calls += 1;
            }
        }
    }
    out.flush().map_err(io_err(&labels_path))?;
    Ok(Written {
        train_events: train.len(),
        test_events: test.len(),
        attack_calls,
    })
}

struct Render<'a> {
    world: &'a World,
    sessions: &'a [Session],
    events: &'a [Event],
    ids: &'a [String],
}

impl Render<'_> {
    fn write_events(&self, path: &Path, order: &[usize]) -> Result<(), GenerateError> {
        let file = File::create(path).map_err(io_err(path))?;
        let gz = GzBuilder::new()
            .mtime(0)
            .write(BufWriter::new(file), Compression::default());
        // Serde writes many tiny fragments; feed the compressor big chunks.
        let mut out = BufWriter::with_capacity(1 << 18, gz);
        for &i in order {
            serde_json::to_writer(&mut out, &self.line(i)).map_err(|e| io_err(path)(e.into()))?;
            out.write_all(b"\n").map_err(io_err(path))?;
        }
        let gz = out.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
        let mut inner = gz.finish().map_err(io_err(path))?;
        inner.flush().map_err(io_err(path))
    }

    fn line(&self, i: usize) -> Line<'_> {
        let ev = &self.events[i];
        let s = &self.sessions[ev.session];
        let agent_id = self
            .world
            .agents
            .get(s.agent)
            .map(|a| a.id)
            .unwrap_or_default();
        let mut line = Line {
            kind: None,
            event_id: &self.ids[i],
            ts: rfc3339(ev.ts),
            agent_id,
            agent_instance: &s.instance,
            principal: s.principal.as_deref(),
            session_id: &s.session_id,
            call_event_id: None,
            tool: None,
            resource_type: None,
            resource_id: None,
            resource_owner: None,
            action: None,
            args: None,
            credential_id: None,
            origin: None,
            text: None,
            result: None,
            entities: None,
            trust: None,
            trace_id: &s.trace_id,
        };
        match &ev.body {
            Body::Prompt { text, entities } => {
                line.kind = Some("prompt");
                line.text = Some(text);
                line.entities = (!entities.is_empty()).then_some(entities.as_slice());
            }
            Body::Call { call, origin } => {
                line.tool = Some(call.tool);
                line.resource_type = Some(call.resource_type);
                line.resource_id = Some(&call.resource_id);
                line.resource_owner = call.owner.as_deref();
                line.action = Some(call.action);
                line.args = Some(&call.args);
                line.credential_id = Some(&s.credential);
                line.origin = origin.as_ref().map(|o| match o {
                    OriginRef::User(msg) => OriginLine {
                        kind: "user_prompt",
                        reference: msg,
                        excerpt: None,
                    },
                    OriginRef::Tool { result, excerpt } => OriginLine {
                        kind: "tool_output",
                        reference: &self.ids[*result],
                        excerpt: Some(excerpt),
                    },
                });
            }
            Body::Result {
                call,
                tool,
                text,
                entities,
            } => {
                line.kind = Some("tool_result");
                line.principal = None;
                line.call_event_id = Some(&self.ids[*call]);
                line.tool = Some(tool);
                line.result = Some(text);
                line.entities = (!entities.is_empty()).then_some(entities.as_slice());
                line.trust = Some("untrusted");
            }
        }
        line
    }
}
