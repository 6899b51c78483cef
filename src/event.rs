//! The events of docs/events.md (version 1; schemas in docs/schema/), decoded once and borrowed.
//!
//! Strings borrow from the input line whenever JSON needs no unescaping
//! (`Cow::Borrowed`), so decoding a typical event allocates only for the few
//! fields that carry escapes. `args` stays raw JSON until feature extraction
//! walks it once.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Unix time in milliseconds (event time, UTC).
pub type Millis = i64;

/// The kinds of event on the stream; only tool calls get decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    ToolCall,
    Prompt,
    ToolResult,
}

impl EventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ToolCall => "tool_call",
            Self::Prompt => "prompt",
            Self::ToolResult => "tool_result",
        }
    }
}

/// What a call does to its resource, per docs/events.md; `None` is "not given".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum Action {
    Read = 0,
    Write = 1,
    Delete = 2,
    Execute = 3,
    Admin = 4,
    None = 5,
}

impl Action {
    pub const COUNT: usize = 6;
    pub const ALL: [Action; Self::COUNT] = [
        Self::Read,
        Self::Write,
        Self::Delete,
        Self::Execute,
        Self::Admin,
        Self::None,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "read" => Self::Read,
            "write" => Self::Write,
            "delete" => Self::Delete,
            "execute" => Self::Execute,
            "admin" => Self::Admin,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
            Self::Execute => "execute",
            Self::Admin => "admin",
            Self::None => "unspecified",
        }
    }
}

/// Provenance of the instruction as the runtime knows it.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Origin<'a> {
    #[serde(borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "ref")]
    pub reference: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub excerpt: Option<Cow<'a, str>>,
}

/// A decoded tool call. Required fields are plain values; optional ones are
/// `Option`s. Lifetimes tie it to the input buffer.
#[derive(Debug, Clone)]
pub struct ToolCall<'a> {
    pub event_id: Cow<'a, str>,
    pub ts: Millis,
    pub agent_id: Cow<'a, str>,
    pub agent_instance: Option<Cow<'a, str>>,
    /// The kind of agent as its operators name it: picks its policy class
    /// (config patterns on `agent_id` apply when it is absent).
    pub agent_class: Option<Cow<'a, str>>,
    pub principal: Option<Cow<'a, str>>,
    pub session_id: Option<Cow<'a, str>>,
    pub tool: Cow<'a, str>,
    pub resource_type: Option<Cow<'a, str>>,
    pub resource_id: Option<Cow<'a, str>>,
    pub resource_owner: Option<Cow<'a, str>>,
    pub action: Option<Action>,
    pub args: Option<&'a RawValue>,
    pub credential_id: Option<Cow<'a, str>>,
    pub origin: Option<Origin<'a>>,
    pub trace_id: Option<Cow<'a, str>>,
    pub arg_sources: Option<&'a RawValue>,
}

/// A `prompt` or `tool_result` event: accepted and counted; provenance
/// (a later stage) indexes its entities.
#[derive(Debug, Clone)]
pub struct ContextEvent<'a> {
    pub kind: EventKind,
    pub event_id: Cow<'a, str>,
    pub ts: Millis,
    pub agent_id: Cow<'a, str>,
    pub session_id: Option<Cow<'a, str>>,
    pub agent_instance: Option<Cow<'a, str>>,
    pub call_event_id: Option<Cow<'a, str>>,
    /// The tool whose result this is (`tool_result`).
    pub tool: Option<Cow<'a, str>>,
    /// The prompt's `text` or the result's `result`: read once for the
    /// values in it, never kept.
    pub text: Option<Cow<'a, str>>,
    pub entities: Vec<Cow<'a, str>>,
    /// A `tool_result` the emitter marked `"trusted"`; results are untrusted
    /// by default, prompts are trusted.
    pub trusted: bool,
}

/// One decoded line of the stream. Tool calls are the common case and live
/// on the stack; boxing them would allocate once per event.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Event<'a> {
    ToolCall(ToolCall<'a>),
    Context(ContextEvent<'a>),
}

impl<'a> Event<'a> {
    pub fn agent_id(&self) -> &str {
        match self {
            Self::ToolCall(c) => &c.agent_id,
            Self::Context(c) => &c.agent_id,
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            Self::ToolCall(_) => EventKind::ToolCall,
            Self::Context(c) => c.kind,
        }
    }
}
