//! The plan of a session (what the agent does, in order) before it is laid
//! out in time as events.

use serde_json::Value;

use super::util::short;

/// How quickly a call follows the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Tool-dependent log-normal think time, 1–90 s.
    Normal,
    /// 1–4 s: a loop over a list the agent already holds.
    Quick,
    /// Sub-second: a scripted loop.
    Burst,
}

/// Provenance written into the call's `origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `{"kind":"user_prompt","ref":"msg-…"}`.
    User,
    /// `{"kind":"tool_output","ref":<injected result>,"excerpt":…}`.
    Injected,
    /// No `origin` field (runtime does not report it).
    Absent,
}

/// What a read-type call returned, emitted as a `tool_result` event.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub text: String,
    pub entities: Vec<String>,
    /// Set on the result that carried an injected instruction.
    pub injected: Option<String>,
}

/// One tool call of a session plan.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub tool: &'static str,
    pub resource_type: &'static str,
    pub resource_id: String,
    pub owner: Option<String>,
    pub action: &'static str,
    pub args: Value,
    pub output: Option<Output>,
    pub pace: Pace,
    pub origin: Origin,
    /// Scenario slug when this call is part of an attack.
    pub attack: Option<&'static str>,
}

impl Call {
    pub fn new(
        tool: &'static str,
        resource_type: &'static str,
        resource_id: impl Into<String>,
        action: &'static str,
        args: Value,
    ) -> Self {
        Call {
            tool,
            resource_type,
            resource_id: resource_id.into(),
            owner: None,
            action,
            args,
            output: None,
            pace: Pace::Normal,
            origin: Origin::User,
            attack: None,
        }
    }

    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    pub fn owned_by(mut self, owner: Option<&String>) -> Self {
        self.owner = owner.cloned();
        self
    }

    /// The call returns data: a `tool_result` event follows it.
    pub fn out(mut self, text: impl Into<String>, entities: Vec<String>) -> Self {
        self.output = Some(Output {
            text: short(text.into()),
            entities,
            injected: None,
        });
        self
    }

    pub fn pace(mut self, pace: Pace) -> Self {
        self.pace = pace;
        self
    }
}

/// A session's content: the user's request and the calls it led to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Built {
    pub prompt: String,
    pub entities: Vec<String>,
    pub calls: Vec<Call>,
}

impl Built {
    pub fn new(prompt: impl Into<String>, entities: Vec<String>) -> Self {
        Built {
            prompt: short(prompt.into()),
            entities,
            calls: Vec::new(),
        }
    }

    pub fn push(&mut self, call: Call) {
        self.calls.push(call);
    }

    /// Sorted distinct tool names: the "task type" replay reports judge by.
    pub fn tool_set(&self) -> Vec<&'static str> {
        let mut tools: Vec<&'static str> = self.calls.iter().map(|c| c.tool).collect();
        tools.sort_unstable();
        tools.dedup();
        tools
    }
}

/// A session ready to be laid out in time.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub agent: usize,
    pub start_ms: i64,
    pub instance: String,
    pub credential: String,
    pub principal: Option<String>,
    pub session_id: String,
    pub trace_id: String,
    pub built: Built,
}
