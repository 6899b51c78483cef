//! JSON decoding of one event, per docs/events.md (the contract).
//!
//! One pass over the input: a `DeserializeSeed` visits the object's keys,
//! remembers which field it is reading so that a type error can name it, and
//! ignores unknown fields. Required fields are checked after the pass so the
//! error names the first missing one. Decoding never panics.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::event::{Action, ContextEvent, Event, EventKind, Millis, Origin, ToolCall};

/// Why an input was rejected; `as_str` is the metric / rejects-file label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeErrorKind {
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The line is longer than the configured limit.
    TooLarge,
    /// Not JSON, or JSON cut short.
    Syntax,
    /// Valid JSON, but not an object.
    NotObject,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// `ts` is not an RFC 3339 time.
    BadTimestamp,
    /// A field has a value outside its allowed set (`action`, `kind`).
    BadValue,
    /// The same field appears twice.
    DuplicateField,
}

impl DecodeErrorKind {
    pub const ALL: [DecodeErrorKind; 9] = [
        Self::NotUtf8,
        Self::TooLarge,
        Self::Syntax,
        Self::NotObject,
        Self::MissingField,
        Self::WrongType,
        Self::BadTimestamp,
        Self::BadValue,
        Self::DuplicateField,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotUtf8 => "not_utf8",
            Self::TooLarge => "too_large",
            Self::Syntax => "syntax",
            Self::NotObject => "not_object",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::BadTimestamp => "bad_timestamp",
            Self::BadValue => "bad_value",
            Self::DuplicateField => "duplicate_field",
        }
    }
}

/// A rejected event: what was wrong, in which field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field.map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    /// The field at fault, when one is.
    pub field: Option<&'static str>,
    pub message: String,
}

impl DecodeError {
    fn new(kind: DecodeErrorKind, field: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            kind,
            field,
            message: message.into(),
        }
    }
}

/// The events of one request body, each decoded once, borrowing from the
/// body they came in: `(range in the body, event or why it is bad)`.
#[derive(yoke::Yokeable)]
pub struct DecodedItems<'a>(pub Vec<(Range<usize>, Result<Event<'a>, DecodeError>)>);

/// A request body together with its decoded events, shared by every worker
/// that owns some of them, so that no worker decodes an event again.
pub type DecodedBody = yoke::Yoke<DecodedItems<'static>, Arc<Bytes>>;

/// Decodes every item (`items`: ranges of `body`) once.
pub fn decode_body(body: Bytes, items: Vec<Range<usize>>, max_bytes: usize) -> DecodedBody {
    yoke::Yoke::attach_to_cart(Arc::new(body), move |body: &Bytes| {
        DecodedItems(
            items
                .into_iter()
                .map(|r| {
                    let ev = decode_bytes(&body[r.clone()], max_bytes);
                    (r, ev)
                })
                .collect(),
        )
    })
}

/// Events this process decoded, counted only in integration-test builds:
/// a test checks through `/metrics` that the service decodes each event
/// once, not once to route and again to decide.
#[cfg(feature = "integration-tests")]
pub static DECODED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Decodes one event from raw bytes, checking size and UTF-8 first.
pub fn decode_bytes(input: &[u8], max_bytes: usize) -> Result<Event<'_>, DecodeError> {
    #[cfg(feature = "integration-tests")]
    DECODED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if input.len() > max_bytes {
        return Err(DecodeError::new(
            DecodeErrorKind::TooLarge,
            None,
            format!("event is {} bytes, the limit is {max_bytes}", input.len()),
        ));
    }
    let text = std::str::from_utf8(input).map_err(|e| {
        DecodeError::new(
            DecodeErrorKind::NotUtf8,
            None,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    decode_str(text)
}

/// Decodes one event from a JSON text.
pub fn decode_str(text: &str) -> Result<Event<'_>, DecodeError> {
    let current = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = RawSeed { current: &current }
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| classify(e, current.get()))?;
    raw.finish()
}

/// Turns a serde_json error into a typed one, naming the field being read.
fn classify(e: serde_json::Error, field: Option<&'static str>) -> DecodeError {
    use serde_json::error::Category;
    let message = e.to_string();
    // Our own `de::Error::custom` messages carry their kind as a prefix.
    for kind in [
        DecodeErrorKind::WrongType,
        DecodeErrorKind::NotObject,
        DecodeErrorKind::DuplicateField,
        DecodeErrorKind::BadValue,
    ] {
        if let Some(rest) = message.strip_prefix(kind.as_str()) {
            return DecodeError::new(kind, field, rest.trim_start_matches(": ").to_owned());
        }
    }
    let kind = match e.classify() {
        Category::Data if field.is_some() => DecodeErrorKind::WrongType,
        Category::Data => DecodeErrorKind::NotObject,
        Category::Eof => {
            return DecodeError::new(
                DecodeErrorKind::Syntax,
                None,
                format!("JSON ends early ({message})"),
            )
        }
        Category::Syntax | Category::Io => DecodeErrorKind::Syntax,
    };
    let field = if kind == DecodeErrorKind::Syntax {
        None
    } else {
        field
    };
    DecodeError::new(kind, field, message)
}

/// Fields read as strings (any kind of event); `null` is absent.
const STRING_FIELDS: [&str; 19] = [
    "kind",
    "event_id",
    "ts",
    "agent_id",
    "agent_instance",
    "agent_class",
    "principal",
    "session_id",
    "tool",
    "resource_type",
    "resource_id",
    "resource_owner",
    "action",
    "credential_id",
    "trace_id",
    "call_event_id",
    "text",
    "result",
    "trust",
];

/// Fields read as JSON objects; `null` is absent.
const OBJECT_FIELDS: [&str; 3] = ["args", "arg_sources", "origin"];

/// Every top-level field the decoder reads: docs/events.md and the JSON
/// Schemas in docs/schema/ document exactly these (tests/schema.rs).
pub const FIELDS: [&str; 23] = {
    let mut out = [""; 23];
    let mut i = 0;
    while i < STRING_FIELDS.len() {
        out[i] = STRING_FIELDS[i];
        i += 1;
    }
    while i < STRING_FIELDS.len() + OBJECT_FIELDS.len() {
        out[i] = OBJECT_FIELDS[i - STRING_FIELDS.len()];
        i += 1;
    }
    out[i] = "entities";
    out
};

/// Every reason an input is rejected, one per invalid field, first the one
/// [`decode_bytes`] returns (the one the rejects file and the metric count).
/// Empty when it decodes. The fast path stops at the first problem; this
/// second, slower pass runs only for rejected input, so that an emitter
/// learns every invalid field from one answer.
pub fn problems(input: &[u8], max_bytes: usize) -> Vec<DecodeError> {
    match decode_bytes(input, max_bytes) {
        Ok(_) => Vec::new(),
        Err(first) => {
            let more = more_problems(input, &first);
            std::iter::once(first).chain(more).collect()
        }
    }
}

/// The problems of a rejected input besides `first` (what [`decode_bytes`]
/// returned for it), each naming another field; it does not decode again.
pub fn more_problems(input: &[u8], first: &DecodeError) -> Vec<DecodeError> {
    if matches!(
        first.kind,
        DecodeErrorKind::TooLarge | DecodeErrorKind::NotUtf8 | DecodeErrorKind::Syntax
    ) {
        return Vec::new();
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(input)
    else {
        return Vec::new();
    };
    let mut out: Vec<DecodeError> = Vec::new();
    for p in field_problems(&map) {
        if p.field != first.field && !out.iter().any(|e| e.field == p.field) {
            out.push(p);
        }
    }
    out
}

/// Checks every field of a parsed object the way the fast path does.
fn field_problems(map: &serde_json::Map<String, serde_json::Value>) -> Vec<DecodeError> {
    use serde_json::Value;
    let mut out = Vec::new();
    let wrong = |field: &'static str, expected: &str| {
        DecodeError::new(
            DecodeErrorKind::WrongType,
            Some(field),
            format!("expected {expected}"),
        )
    };
    let text = |field: &'static str| match map.get(field) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    for field in STRING_FIELDS {
        if !matches!(map.get(field), None | Some(Value::String(_) | Value::Null)) {
            out.push(wrong(field, "a string"));
        }
    }
    for field in OBJECT_FIELDS {
        match (field, map.get(field)) {
            (_, None | Some(Value::Null)) => {}
            ("origin", Some(Value::Object(o))) => {
                let bad = ["kind", "ref", "excerpt"]
                    .iter()
                    .any(|k| !matches!(o.get(*k), None | Some(Value::String(_) | Value::Null)));
                if bad {
                    out.push(wrong("origin", "kind, ref and excerpt to be strings"));
                }
            }
            (_, Some(Value::Object(_))) => {}
            (_, Some(_)) => out.push(wrong(field, "a JSON object")),
        }
    }
    match map.get("entities") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(_) => out.push(wrong("entities", "an array of strings")),
    }
    let kind = match text("kind") {
        None | Some("tool_call") => Some(EventKind::ToolCall),
        Some("prompt") => Some(EventKind::Prompt),
        Some("tool_result") => Some(EventKind::ToolResult),
        Some(other) => {
            out.push(DecodeError::new(
                DecodeErrorKind::BadValue,
                Some("kind"),
                format!("unknown kind {other:?} (expected tool_call, prompt or tool_result)"),
            ));
            None
        }
    };
    let mut required_fields = vec!["event_id", "ts", "agent_id"];
    match kind {
        Some(EventKind::ToolCall) => required_fields.push("tool"),
        Some(EventKind::ToolResult) => required_fields.push("call_event_id"),
        _ => {}
    }
    for field in required_fields {
        if matches!(map.get(field), None | Some(Value::Null)) || text(field) == Some("") {
            if let Err(e) = required(text(field).map(Cow::Borrowed), field) {
                out.push(e);
            }
        }
    }
    if let Some(Err(e)) = text("ts").filter(|s| !s.is_empty()).map(parse_ts) {
        out.push(e);
    }
    if kind == Some(EventKind::ToolCall) {
        if let Some(a) = text("action").filter(|a| Action::parse(a).is_none()) {
            out.push(DecodeError::new(
                DecodeErrorKind::BadValue,
                Some("action"),
                format!("unknown action {a:?} (expected read, write, delete, execute or admin)"),
            ));
        }
    }
    if kind == Some(EventKind::ToolResult) {
        if let Some(t) = text("trust").filter(|t| !matches!(*t, "trusted" | "untrusted")) {
            out.push(DecodeError::new(
                DecodeErrorKind::BadValue,
                Some("trust"),
                format!("unknown trust {t:?} (expected trusted or untrusted)"),
            ));
        }
    }
    out
}

/// Every field we read, optional at this stage; `finish` checks presence.
#[derive(Default)]
struct RawEvent<'a> {
    kind: Option<Cow<'a, str>>,
    event_id: Option<Cow<'a, str>>,
    ts: Option<Cow<'a, str>>,
    agent_id: Option<Cow<'a, str>>,
    agent_instance: Option<Cow<'a, str>>,
    agent_class: Option<Cow<'a, str>>,
    principal: Option<Cow<'a, str>>,
    session_id: Option<Cow<'a, str>>,
    tool: Option<Cow<'a, str>>,
    resource_type: Option<Cow<'a, str>>,
    resource_id: Option<Cow<'a, str>>,
    resource_owner: Option<Cow<'a, str>>,
    action: Option<Cow<'a, str>>,
    args: Option<&'a RawValue>,
    credential_id: Option<Cow<'a, str>>,
    origin: Option<Origin<'a>>,
    trace_id: Option<Cow<'a, str>>,
    arg_sources: Option<&'a RawValue>,
    call_event_id: Option<Cow<'a, str>>,
    entities: Option<Vec<Cow<'a, str>>>,
    text: Option<Cow<'a, str>>,
    result: Option<Cow<'a, str>>,
    trust: Option<Cow<'a, str>>,
}

fn required<'a>(v: Option<Cow<'a, str>>, field: &'static str) -> Result<Cow<'a, str>, DecodeError> {
    match v {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(DecodeError::new(
            DecodeErrorKind::MissingField,
            Some(field),
            "required field is empty",
        )),
        None => Err(DecodeError::new(
            DecodeErrorKind::MissingField,
            Some(field),
            "required field is missing",
        )),
    }
}

/// Parses an RFC 3339 time into Unix milliseconds.
pub fn parse_ts(s: &str) -> Result<Millis, DecodeError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            DecodeError::new(
                DecodeErrorKind::BadTimestamp,
                Some("ts"),
                format!("{s:?} is not an RFC 3339 time ({e})"),
            )
        })
}

impl<'a> RawEvent<'a> {
    fn finish(self) -> Result<Event<'a>, DecodeError> {
        let kind = match self.kind.as_deref() {
            None | Some("tool_call") => EventKind::ToolCall,
            Some("prompt") => EventKind::Prompt,
            Some("tool_result") => EventKind::ToolResult,
            Some(other) => {
                return Err(DecodeError::new(
                    DecodeErrorKind::BadValue,
                    Some("kind"),
                    format!("unknown kind {other:?} (expected tool_call, prompt or tool_result)"),
                ))
            }
        };
        let event_id = required(self.event_id, "event_id")?;
        let ts = parse_ts(&required(self.ts, "ts")?)?;
        let agent_id = required(self.agent_id, "agent_id")?;
        if kind != EventKind::ToolCall {
            let call_event_id = match kind {
                EventKind::ToolResult => Some(required(self.call_event_id, "call_event_id")?),
                _ => self.call_event_id,
            };
            let trusted = match (kind, self.trust.as_deref()) {
                (EventKind::Prompt, _) => true,
                (_, None | Some("untrusted")) => false,
                (_, Some("trusted")) => true,
                (_, Some(other)) => {
                    return Err(DecodeError::new(
                        DecodeErrorKind::BadValue,
                        Some("trust"),
                        format!("unknown trust {other:?} (expected trusted or untrusted)"),
                    ))
                }
            };
            return Ok(Event::Context(ContextEvent {
                kind,
                event_id,
                ts,
                agent_id,
                session_id: self.session_id,
                agent_instance: self.agent_instance,
                call_event_id,
                tool: self.tool,
                text: self.text.or(self.result),
                entities: self.entities.unwrap_or_default(),
                trusted,
            }));
        }
        let tool = required(self.tool, "tool")?;
        let action = match self.action.as_deref() {
            None => None,
            Some(a) => Some(Action::parse(a).ok_or_else(|| {
                DecodeError::new(
                    DecodeErrorKind::BadValue,
                    Some("action"),
                    format!(
                        "unknown action {a:?} (expected read, write, delete, execute or admin)"
                    ),
                )
            })?),
        };
        Ok(Event::ToolCall(ToolCall {
            event_id,
            ts,
            agent_id,
            agent_instance: self.agent_instance,
            agent_class: self.agent_class,
            principal: self.principal,
            session_id: self.session_id,
            tool,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            resource_owner: self.resource_owner,
            action,
            args: self.args,
            credential_id: self.credential_id,
            origin: self.origin,
            trace_id: self.trace_id,
            arg_sources: self.arg_sources,
        }))
    }
}

/// Seed that records the field being decoded in `current`.
struct RawSeed<'c> {
    current: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for RawSeed<'_> {
    type Value = RawEvent<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

/// A JSON object, checked to be one, kept raw.
struct ObjectRaw<'a>(Option<&'a RawValue>);

impl<'de> serde::Deserialize<'de> for ObjectRaw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: Option<&'de RawValue> = serde::Deserialize::deserialize(d)?;
        match raw {
            Some(r) if r.get().starts_with('{') => Ok(Self(Some(r))),
            Some(r) if r.get() == "null" => Ok(Self(None)),
            Some(_) => Err(de::Error::custom("wrong_type: expected a JSON object")),
            None => Ok(Self(None)),
        }
    }
}

/// A string that borrows from the input when it has no escapes.
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

macro_rules! set_once {
    ($slot:expr, $map:ident, $name:literal, $current:expr, $ty:ty, $conv:expr) => {{
        $current.set(Some($name));
        if $slot.is_some() {
            return Err(de::Error::custom(concat!(
                "duplicate_field: ",
                $name,
                " appears twice"
            )));
        }
        $slot = $map.next_value::<Option<$ty>>()?.map($conv);
    }};
    ($slot:expr, $map:ident, $name:literal, $current:expr) => {
        set_once!($slot, $map, $name, $current, Str<'de>, |s: Str<'de>| s.0)
    };
}

impl<'de> Visitor<'de> for RawSeed<'_> {
    type Value = RawEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object (one event)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut ev = RawEvent::default();
        let cur = self.current;
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            match key.as_ref() {
                "kind" => set_once!(ev.kind, map, "kind", cur),
                "event_id" => set_once!(ev.event_id, map, "event_id", cur),
                "ts" => set_once!(ev.ts, map, "ts", cur),
                "agent_id" => set_once!(ev.agent_id, map, "agent_id", cur),
                "agent_instance" => set_once!(ev.agent_instance, map, "agent_instance", cur),
                "agent_class" => set_once!(ev.agent_class, map, "agent_class", cur),
                "principal" => set_once!(ev.principal, map, "principal", cur),
                "session_id" => set_once!(ev.session_id, map, "session_id", cur),
                "tool" => set_once!(ev.tool, map, "tool", cur),
                "resource_type" => set_once!(ev.resource_type, map, "resource_type", cur),
                "resource_id" => set_once!(ev.resource_id, map, "resource_id", cur),
                "resource_owner" => set_once!(ev.resource_owner, map, "resource_owner", cur),
                "action" => set_once!(ev.action, map, "action", cur),
                "credential_id" => set_once!(ev.credential_id, map, "credential_id", cur),
                "origin" => set_once!(ev.origin, map, "origin", cur, Origin<'de>, |o| o),
                "trace_id" => set_once!(ev.trace_id, map, "trace_id", cur),
                "call_event_id" => set_once!(ev.call_event_id, map, "call_event_id", cur),
                "text" => set_once!(ev.text, map, "text", cur),
                "result" => set_once!(ev.result, map, "result", cur),
                "trust" => set_once!(ev.trust, map, "trust", cur),
                "entities" => set_once!(
                    ev.entities,
                    map,
                    "entities",
                    cur,
                    Vec<Str<'de>>,
                    |v: Vec<Str<'de>>| v.into_iter().map(|s| s.0).collect()
                ),
                "args" => {
                    cur.set(Some("args"));
                    ev.args = map.next_value::<ObjectRaw<'de>>()?.0;
                }
                "arg_sources" => {
                    cur.set(Some("arg_sources"));
                    ev.arg_sources = map.next_value::<ObjectRaw<'de>>()?.0;
                }
                _ => {
                    cur.set(None);
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        cur.set(None);
        Ok(ev)
    }
}

#[cfg(test)]
mod tests;
