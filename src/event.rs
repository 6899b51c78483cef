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

/// `ms` as RFC 3339 UTC with milliseconds and `Z`
/// (`2026-11-24T09:00:01.250Z`), as alerts, records and the API show
/// times; empty outside years 0–9999. Formatted by hand (days to civil
/// date, Hinnant's algorithm): a flag storm formats a time per call shown,
/// and chrono's general formatter was a visible share of it.
pub fn rfc3339(ms: Millis) -> String {
    const MAX: Millis = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    const MIN: Millis = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
    if !(MIN..=MAX).contains(&ms) {
        return String::new();
    }
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + Millis::from(month <= 2);
    let (secs, milli) = (ms_of_day / 1000, ms_of_day % 1000);
    let mut out = [0u8; 24];
    let mut put = |at: usize, v: Millis, width: usize| {
        let mut v = v;
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, secs / 3600, 2);
    put(14, secs / 60 % 60, 2);
    put(17, secs % 60, 2);
    put(20, milli, 3);
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[i] = c;
    }
    out.iter().map(|&b| b as char).collect()
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_is_what_chrono_writes() {
        let chrono = |ms| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let mut ms: i64 = -62_167_219_200_000;
        // Leap days, century and era edges, negative times, every
        // millisecond digit; then a stride over the whole range.
        for fixed in [
            0,
            -1,
            1,
            951_782_400_000,
            951_868_799_999,
            4_107_542_399_999,
            1_764_580_000_123,
        ] {
            assert_eq!(super::rfc3339(fixed), chrono(fixed), "{fixed}");
        }
        while ms <= 253_402_300_799_999 {
            assert_eq!(super::rfc3339(ms), chrono(ms), "{ms}");
            ms += 7_777_777_777 + 13;
        }
        assert_eq!(super::rfc3339(253_402_300_800_000), "");
        assert_eq!(super::rfc3339(i64::MIN), "");
    }
}
