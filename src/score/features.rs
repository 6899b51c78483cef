//! Feature extraction: one tool call → an [`Observation`] of fingerprints,
//! numbers and time fields, borrowed from the event.
//!
//! Values are hashed with a keyed hash (SipHash-1-3 under the deployment's
//! secret key), so the profile never holds resource ids, addresses or
//! account numbers in clear, and fingerprints cannot be forged offline.
//! Extraction walks `args` once, with no heap allocation unless a string in
//! it carries JSON escapes.

use std::borrow::Cow;
use std::fmt;
use std::hash::Hasher;

use arrayvec::ArrayVec;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::baseline::tables::Fp;
use crate::event::{Action, Millis, ToolCall};
use crate::ingest::decode::Str;
use crate::state::hash_key::HashKey;

/// Most counterparty values kept per call (resource id first).
pub const MAX_VALUES: usize = 8;
/// Most numeric argument features kept per call.
pub const MAX_NUMBERS: usize = 6;
/// Most id-valued arguments kept per call (resource id first), for the
/// principal-binding channel.
pub const MAX_IDS: usize = 4;
/// Longest string read as an id; longer ones are text, not identifiers.
pub const MAX_ID_LEN: usize = 128;

const MS_PER_DAY: i64 = 86_400_000;

/// Salts that keep the kinds of fingerprint apart.
#[derive(Clone, Copy)]
#[repr(u64)]
enum Salt {
    Tool = 0x7001,
    Rtype = 0x7002,
    Value = 0x7003,
    Parent = 0x7004,
    Skeleton = 0x7005,
    ArgKey = 0x7006,
    Session = 0x7007,
    Principal = 0x7008,
    Word = 0x7009,
}

/// Keyed hashing of names and values into fingerprints: SipHash-1-3 (a
/// keyed PRF, as std's `HashMap` uses against hash flooding) under the
/// deployment's 128-bit secret, so nobody without the key can search
/// offline for a look-alike value that collides with a known one.
#[derive(Clone, Copy)]
pub struct Fingerprinter {
    key: HashKey,
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fingerprinter").finish_non_exhaustive()
    }
}

impl Fingerprinter {
    pub fn new(key: HashKey) -> Self {
        Self { key }
    }

    fn raw(&self, salt: Salt, bytes: &[u8]) -> u64 {
        let (k0, k1) = self.key.halves();
        let mut h = siphasher::sip::SipHasher13::new_with_keys(k0, k1);
        h.write_u64(salt as u64);
        h.write(bytes);
        h.finish()
    }

    /// 0 is reserved for "none".
    fn fold(h: u64) -> Fp {
        h.max(1)
    }

    /// Case-insensitive fingerprint: addresses and hosts differ only in case
    /// are the same counterparty.
    fn lower(&self, salt: Salt, s: &str) -> Fp {
        let b = s.as_bytes();
        if b.len() <= 256 {
            let mut buf = [0u8; 256];
            for (d, c) in buf.iter_mut().zip(b) {
                *d = c.to_ascii_lowercase();
            }
            Self::fold(self.raw(salt, &buf[..b.len()]))
        } else {
            Self::fold(self.raw(salt, b))
        }
    }

    /// [`lower`](Self::lower) of two pieces read as one string.
    fn lower2(&self, salt: Salt, a: &str, b: &str) -> Fp {
        if b.is_empty() {
            return self.lower(salt, a);
        }
        let mut buf = [0u8; 256];
        let n = (a.len() + b.len()).min(256);
        for (d, c) in buf.iter_mut().zip(a.bytes().chain(b.bytes())) {
            *d = c.to_ascii_lowercase();
        }
        Self::fold(self.raw(salt, &buf[..n]))
    }

    /// Fingerprint of a value, as calls' values are fingerprinted.
    pub fn value(&self, s: &str) -> Fp {
        self.lower(Salt::Value, s)
    }

    /// Fingerprint of a host, as an e-mail's or URL's parent is taken.
    pub fn host(&self, host: &str) -> Fp {
        self.lower(Salt::Parent, host)
    }

    pub fn tool(&self, name: &str) -> Fp {
        Self::fold(self.raw(Salt::Tool, name.as_bytes()))
    }

    pub fn rtype(&self, name: &str) -> Fp {
        Self::fold(self.raw(Salt::Rtype, name.as_bytes()))
    }

    pub fn session(&self, id: &str) -> u64 {
        self.raw(Salt::Session, id.as_bytes()) | 1
    }

    /// Fingerprint of a principal (or a resource owner: same space).
    pub fn principal(&self, name: &str) -> Fp {
        Self::fold(self.raw(Salt::Principal, name.trim().as_bytes()))
    }

    /// Fingerprint of a word of a tool's result text, case folded.
    pub fn word(&self, w: &str) -> Fp {
        self.lower(Salt::Word, w)
    }

    fn arg_key(&self, name: &str) -> Fp {
        Self::fold(self.raw(Salt::ArgKey, name.as_bytes()))
    }

    /// Fingerprint of a numeric argument: its key path and its kind.
    pub fn number_key(&self, name: &str, kind: u8) -> Fp {
        self.arg_key(name) ^ kind as u64
    }
}

/// Where the instruction behind a call came from, per the event's `origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum OriginKind {
    UserPrompt = 0,
    ToolOutput = 1,
    RetrievedContent = 2,
    System = 3,
    Other = 4,
    Absent = 5,
}

impl OriginKind {
    pub const COUNT: usize = 6;

    pub fn parse(kind: Option<&str>) -> Self {
        match kind {
            None => Self::Absent,
            Some("user_prompt") => Self::UserPrompt,
            Some("tool_output") => Self::ToolOutput,
            Some("retrieved_content") => Self::RetrievedContent,
            Some("system") => Self::System,
            Some(_) => Self::Other,
        }
    }

    /// Content an attacker may have written.
    pub const fn untrusted(self) -> bool {
        matches!(
            self,
            Self::ToolOutput | Self::RetrievedContent | Self::Other
        )
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UserPrompt => "user_prompt",
            Self::ToolOutput => "tool_output",
            Self::RetrievedContent => "retrieved_content",
            Self::System => "system",
            Self::Other => "other",
            Self::Absent => "none",
        }
    }
}

/// Where a value was found in the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueFrom<'a> {
    ResourceId,
    Arg(Cow<'a, str>),
}

/// A counterparty or resource the call touches.
#[derive(Debug, Clone)]
pub struct Value<'a> {
    pub text: Cow<'a, str>,
    pub from: ValueFrom<'a>,
    pub key: ValueKey,
}

/// Whether a number is an argument's magnitude or an array's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum NumKind {
    Magnitude = 0,
    Count = 1,
}

/// A numeric feature of the call's arguments.
#[derive(Debug, Clone)]
pub struct Number<'a> {
    pub key: Cow<'a, str>,
    pub key_fp: Fp,
    pub kind: NumKind,
    pub value: f64,
}

/// The hashed identity of a value: all that learning keeps of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueKey {
    pub fp: Fp,
    /// Parent (domain, host, bank, directory); 0 when it has none.
    pub parent: Fp,
    /// Confusable-folded skeletons of the host's labels (0 = none).
    pub skeletons: [Fp; 2],
    pub shape: Shape,
}

/// An id-valued argument (an order, a booking, a payment method, a user):
/// what principal binding judges.
#[derive(Debug, Clone)]
pub struct IdRef<'a> {
    /// Fingerprint of the argument key, or of the resource type for
    /// `resource_id`.
    pub key: Fp,
    pub key_name: Cow<'a, str>,
    /// Fingerprint of the value (as values and context entities are hashed).
    pub value: Fp,
    pub text: Cow<'a, str>,
    /// The value names the principal itself (`customer:u_81` and `u_81`).
    pub names_principal: bool,
}

/// An id as learning keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdKey {
    pub key: Fp,
    pub value: Fp,
    pub names_principal: bool,
}

/// A numeric argument as learning keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NumKey {
    pub key_fp: Fp,
    pub value: f64,
}

/// What a profile learns from one call: the observation without its text,
/// owned, so that a session's calls can wait until the session is known to
/// be clean.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub ts: Millis,
    pub day: u16,
    pub hour: u8,
    pub weekday: u8,
    pub tool: Fp,
    pub rtype: Fp,
    pub action: Action,
    pub origin: OriginKind,
    pub values: ArrayVec<ValueKey, MAX_VALUES>,
    pub numbers: ArrayVec<NumKey, MAX_NUMBERS>,
    /// The agent's calls-per-minute rate at this call.
    pub rate: f32,
    /// Bit i: value i reached the session only through untrusted tool
    /// output (provenance).
    pub untrusted_only: u8,
    pub ids: ArrayVec<IdKey, MAX_IDS>,
    /// Tag of `resource_owner` when the event gave one (0 = none).
    pub owner: u32,
}

/// Everything the profile scores and learns from one tool call.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub ts: Millis,
    /// Days since the Unix epoch (last-seen stamps).
    pub day: u16,
    pub hour: u8,
    /// 0 = Monday.
    pub weekday: u8,
    pub tool: Fp,
    pub tool_name: &'a str,
    /// 0 when the event has no `resource_type`.
    pub rtype: Fp,
    pub rtype_name: Option<&'a str>,
    pub action: Action,
    pub origin: OriginKind,
    pub origin_excerpt: Option<&'a str>,
    pub values: ArrayVec<Value<'a>, MAX_VALUES>,
    pub numbers: ArrayVec<Number<'a>, MAX_NUMBERS>,
    pub ids: ArrayVec<IdRef<'a>, MAX_IDS>,
    /// Fingerprint of the principal (0 when absent or empty).
    pub principal: Fp,
    pub principal_name: Option<&'a str>,
    /// Fingerprint of `resource_owner` (0 when absent or empty).
    pub owner: Fp,
    pub owner_name: Option<&'a str>,
    /// `ids[0]` is the call's `resource_id`, the thing `resource_owner`
    /// speaks of. When the resource is no identifier (a city, a channel),
    /// the owner says nothing about the ids in the arguments.
    pub resource_is_id: bool,
}

impl<'a> Observation<'a> {
    /// The part of the observation that learning keeps.
    pub fn sample(&self, rate: f32, untrusted_only: u8) -> Sample {
        Sample {
            ts: self.ts,
            day: self.day,
            hour: self.hour,
            weekday: self.weekday,
            tool: self.tool,
            rtype: self.rtype,
            action: self.action,
            origin: self.origin,
            values: self.values.iter().map(|v| v.key).collect(),
            numbers: self
                .numbers
                .iter()
                .map(|n| NumKey {
                    key_fp: n.key_fp,
                    value: n.value,
                })
                .collect(),
            rate,
            untrusted_only,
            ids: self
                .ids
                .iter()
                .map(|i| IdKey {
                    key: i.key,
                    value: i.value,
                    names_principal: i.names_principal,
                })
                .collect(),
            owner: if self.owner == 0 || !self.resource_is_id {
                0
            } else {
                crate::baseline::binding::principal_tag(self.owner)
            },
        }
    }

    /// Extracts the observation from a decoded call.
    pub fn extract(call: &'a ToolCall<'a>, fp: &Fingerprinter) -> Self {
        let days = call.ts.div_euclid(MS_PER_DAY);
        let mut obs = Observation {
            ts: call.ts,
            day: day_stamp(call.ts),
            hour: (call.ts.rem_euclid(MS_PER_DAY) / 3_600_000) as u8,
            weekday: (days + 3).rem_euclid(7) as u8,
            tool: fp.tool(&call.tool),
            tool_name: &call.tool,
            rtype: call.resource_type.as_deref().map_or(0, |r| fp.rtype(r)),
            rtype_name: call.resource_type.as_deref(),
            action: call.action.unwrap_or(Action::None),
            origin: OriginKind::parse(call.origin.as_ref().and_then(|o| o.kind.as_deref())),
            origin_excerpt: call.origin.as_ref().and_then(|o| o.excerpt.as_deref()),
            values: ArrayVec::new(),
            numbers: ArrayVec::new(),
            ids: ArrayVec::new(),
            principal_name: call.principal.as_deref().filter(|p| !p.trim().is_empty()),
            principal: 0,
            owner_name: call
                .resource_owner
                .as_deref()
                .filter(|p| !p.trim().is_empty()),
            owner: 0,
            resource_is_id: false,
        };
        obs.principal = obs.principal_name.map_or(0, |p| fp.principal(p));
        obs.owner = obs.owner_name.map_or(0, |p| fp.principal(p));
        if let Some(rid) = call.resource_id.as_deref().filter(|s| !s.is_empty()) {
            obs.push_value(fp, Cow::Borrowed(rid), ValueFrom::ResourceId);
            if is_id(rid) {
                let (key, name) = match call.resource_type.as_deref() {
                    Some(rt) => (obs.rtype, rt),
                    None => (fp.arg_key("resource_id"), "resource_id"),
                };
                obs.push_id(fp, key, Cow::Borrowed(name), Cow::Borrowed(rid));
                obs.resource_is_id = !obs.ids.is_empty();
            }
        }
        if let Some(args) = call.args {
            let mut de = serde_json::Deserializer::from_str(args.get());
            // Args were validated as a JSON object by the decoder; a failure
            // here only means fewer features, never a rejected event.
            let _ = ArgSeed {
                obs: &mut obs,
                fp,
                key: None,
                depth: 0,
            }
            .deserialize(&mut de);
        }
        obs
    }

    fn push_value(&mut self, fp: &Fingerprinter, text: Cow<'a, str>, from: ValueFrom<'a>) {
        if self.values.is_full() {
            return;
        }
        let vfp = fp.lower(Salt::Value, &text);
        if self.values.iter().any(|v| v.key.fp == vfp) {
            return;
        }
        let (parent, host) = parent_of(&text);
        let parent_fp = parent.map_or(0, |(a, b)| fp.lower2(Salt::Parent, a, b));
        let skeletons = host.map_or([0, 0], |h| skeletons(fp, h));
        self.values.push(Value {
            key: ValueKey {
                shape: Shape::of(&text),
                fp: vfp,
                parent: parent_fp,
                skeletons,
            },
            text,
            from,
        });
    }

    fn push_id(&mut self, fp: &Fingerprinter, key: Fp, key_name: Cow<'a, str>, text: Cow<'a, str>) {
        if self.ids.is_full() {
            return;
        }
        let value = fp.lower(Salt::Value, &text);
        if self.ids.iter().any(|i| i.value == value) {
            return;
        }
        let names_principal = self
            .principal_name
            .is_some_and(|p| p.len() > text.len() && p.ends_with(text.as_ref()));
        self.ids.push(IdRef {
            key,
            key_name,
            value,
            text,
            names_principal,
        });
    }

    fn push_number(&mut self, fp: &Fingerprinter, key: Cow<'a, str>, kind: NumKind, value: f64) {
        if self.numbers.is_full() || !value.is_finite() {
            return;
        }
        let key_fp = fp.number_key(&key, kind as u8);
        self.numbers.push(Number {
            key_fp,
            key,
            kind,
            value: value.abs(),
        });
    }
}

/// The entity-like tokens of a free text (a prompt, a tool result), with
/// surrounding punctuation trimmed.
pub fn entities_in(text: &str) -> impl Iterator<Item = &str> {
    tokens(text).filter(|t| is_entity(t))
}

/// The identifiers a text names (`R168719`, `#W7731`): what a user's
/// request points at when the emitter lists no entities.
pub fn ids_in(text: &str) -> impl Iterator<Item = &str> {
    tokens(text).filter(|t| is_id(t))
}

/// The words of a free text: runs of letters between spaces, with the
/// punctuation around them trimmed. Tokens with digits or symbols inside
/// (ids, addresses, amounts) are values, not words, and are left out.
pub fn words_in(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .map(|t| t.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| {
            (2..=32).contains(&w.chars().count())
                && w.chars()
                    .all(|c| c.is_alphabetic() || c == '\'' || c == '-')
        })
}

/// A value written with spaces (`LT93 5866 6401`), joined: account, card
/// and phone numbers are printed in groups and passed to tools in one piece.
/// `None` when it has no inner whitespace.
pub fn compact(s: &str) -> Option<String> {
    let s = s.trim();
    s.contains(char::is_whitespace)
        .then(|| s.split_whitespace().collect::<String>())
}

/// Numbers a free text prints in groups (three or more short tokens of
/// letters and digits, with digits, adjacent): joined, as a call would
/// carry them. A text that lists no entities still gives the number up.
pub fn grouped_in(text: &str) -> impl Iterator<Item = String> + '_ {
    let group = |t: &str| {
        (1..=6).contains(&t.len())
            && t.bytes().any(|b| b.is_ascii_digit())
            && t.bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_alphanumeric() || (i == 0 && b == b'+'))
    };
    // A word of prose without the punctuation it may end with.
    fn bare(w: &str) -> &str {
        w.trim_end_matches([',', ';', '.', ':', '!', '?', ')'])
    }
    let mut words = text.split_whitespace().peekable();
    std::iter::from_fn(move || loop {
        let first = words.next()?;
        let first = bare(first);
        if !group(first) {
            continue;
        }
        let mut run = String::from(first);
        let mut n = 1;
        while let Some(next) = words.peek() {
            // A group that ends a sentence ends the number too.
            let t = bare(next);
            if !group(t) {
                break;
            }
            run.push_str(t);
            n += 1;
            let ended = t.len() != next.len();
            words.next();
            if ended {
                break;
            }
        }
        if n >= 3 && run.len() >= 8 {
            return Some(run);
        }
    })
}

fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                ',' | ';' | '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']'
            )
    })
    .map(|t| t.trim_end_matches(['.', ':', '!', '?']))
}

/// The form of a value: its runs of letters and of digits by length, other
/// characters as they are (`R168719` and `R295578` share one, `#W7731` and
/// `pax_25` have others). Two values of one form are two of a kind: a
/// request that names one booking says which booking it is about.
pub fn id_form(s: &str) -> u64 {
    // FNV-1a over (class, run length) pairs: forms are no secret, and
    // sessions compare them only with each other.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    let class = |x: u8| {
        if x.is_ascii_alphabetic() {
            b'A'
        } else if x.is_ascii_digit() {
            b'9'
        } else {
            x
        }
    };
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = class(bytes[i]);
        let mut j = i + 1;
        if c == b'A' || c == b'9' {
            while j < bytes.len() && class(bytes[j]) == c {
                j += 1;
            }
        }
        eat(c);
        eat((j - i).min(255) as u8);
        i = j;
    }
    h.max(1)
}

/// Is this argument string a counterparty worth tracking (an e-mail
/// address, a URL, an IBAN)? Free text is not: it would only be "new".
pub fn is_entity(s: &str) -> bool {
    if s.len() < 4 || s.len() > 512 || s.contains(char::is_whitespace) {
        return false;
    }
    if let Some(at) = s.rfind('@') {
        return at > 0 && s[at + 1..].contains('.');
    }
    if has_scheme(s, "https://") || has_scheme(s, "http://") {
        return true;
    }
    is_iban(s)
}

/// Days since the Unix epoch, as last-seen stamps keep them.
pub fn day_stamp(ts: Millis) -> u16 {
    ts.div_euclid(MS_PER_DAY).clamp(0, u16::MAX as i64) as u16
}

/// Is this argument string an identifier worth binding to principals (an
/// order, booking or account id)? Short, no spaces, at least one digit, and
/// not already a counterparty (entities are values of their own).
pub fn is_id(s: &str) -> bool {
    (3..=MAX_ID_LEN).contains(&s.len())
        && s.bytes().any(|b| b.is_ascii_digit())
        && !s.contains(char::is_whitespace)
        && !is_entity(s)
}

/// Case-insensitive prefix test on bytes (never slices inside a character).
fn has_scheme(s: &str, scheme: &str) -> bool {
    s.len() > scheme.len() && s.as_bytes()[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
}

fn is_iban(s: &str) -> bool {
    let b = s.as_bytes();
    (15..=34).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_uppercase()
        && b[2].is_ascii_digit()
        && b[3].is_ascii_digit()
        && b[4..].iter().all(u8::is_ascii_alphanumeric)
}

/// The parent of a value (in one or two pieces, read as concatenated), and
/// the host name when the value has one.
pub fn parent_of(s: &str) -> (Option<(&str, &str)>, Option<&str>) {
    let (parent, host) = parent_parts(s);
    (parent.map(|p| (p, "")).or_else(|| iban_parent(s)), host)
}

fn iban_parent(s: &str) -> Option<(&str, &str)> {
    // Country and bank code: the check digits between them vary per account
    // and would make every IBAN its own parent.
    is_iban(s).then(|| (&s[..2], &s[4..8]))
}

fn parent_parts(s: &str) -> (Option<&str>, Option<&str>) {
    if let Some(at) = s.rfind('@') {
        let host = &s[at + 1..];
        if at > 0 && host.contains('.') {
            return (Some(host), Some(host));
        }
    }
    if let Some(at) = s.find("://") {
        let rest = &s[at + 3..];
        let end = rest.find(['/', ':', '?', '#']).unwrap_or(rest.len());
        let host = &rest[..end];
        let host = host.strip_prefix("www.").unwrap_or(host);
        return (Some(host).filter(|h| !h.is_empty()), Some(host));
    }
    // A path's directory. Other ids (`cust-4411`, `T-17`) have no parent:
    // their prefixes say nothing about who is on the other side.
    match s.rfind('/') {
        Some(slash) if slash > 0 => (Some(&s[..slash]), None),
        _ => (None, None),
    }
}

/// The form of a value: a tool that always names channels and suddenly
/// names an e-mail address or a URL is doing something else.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Shape {
    Email = 0,
    Url = 1,
    Iban = 2,
    Path = 3,
    Other = 4,
}

impl Shape {
    pub const COUNT: usize = 5;

    pub fn of(s: &str) -> Self {
        if s.find('@')
            .is_some_and(|at| at > 0 && s[at + 1..].contains('.'))
        {
            Self::Email
        } else if s.contains("://") {
            Self::Url
        } else if is_iban(s) {
            Self::Iban
        } else if s.starts_with('/') || s.matches('/').count() >= 2 {
            Self::Path
        } else {
            Self::Other
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Email => "an e-mail address",
            Self::Url => "a URL",
            Self::Iban => "a bank account",
            Self::Path => "a path",
            Self::Other => "an identifier",
        }
    }
}

/// Folds characters that look alike (0/o, 1/l/i, rn/m, Cyrillic a/e/o…)
/// and drops separators, so `acme-c0rp` and `acmecorp` share a skeleton.
fn fold_confusables(label: &str, out: &mut ArrayVec<u8, 64>) {
    let mut tmp: ArrayVec<u8, 64> = ArrayVec::new();
    for c in label.chars() {
        let m = match c.to_ascii_lowercase() {
            '0' | 'о' | 'ο' => 'o',
            '1' | 'i' | 'l' | '!' | '|' | 'і' | 'ı' => 'l',
            '3' | 'е' | 'ε' => 'e',
            '4' | '@' | 'а' | 'α' => 'a',
            '5' | '$' | 'ѕ' => 's',
            '7' => 't',
            '8' => 'b',
            'р' | 'ρ' => 'p',
            'с' => 'c',
            'х' | 'χ' => 'x',
            'у' => 'y',
            '-' | '_' => continue,
            c if c.is_ascii_alphanumeric() => c,
            _ => continue,
        };
        if tmp.try_push(m as u8).is_err() {
            break;
        }
    }
    let mut i = 0;
    while i < tmp.len() {
        let pair = (tmp[i], tmp.get(i + 1).copied());
        let (c, skip) = match pair {
            (b'r', Some(b'n')) => (b'm', 2),
            (b'v', Some(b'v')) => (b'w', 2),
            (b'c', Some(b'l')) => (b'd', 2),
            (c, _) => (c, 1),
        };
        let _ = out.try_push(c);
        i += skip;
    }
}

/// Skeletons of the first two significant labels of a host (TLD excluded,
/// labels shorter than 5 folded characters skipped).
fn skeletons(fp: &Fingerprinter, host: &str) -> [Fp; 2] {
    let mut out = [0; 2];
    let labels: ArrayVec<&str, 8> = host.split('.').take(8).collect();
    let n = labels.len().saturating_sub(1);
    let mut k = 0;
    for label in &labels[..n] {
        let mut folded = ArrayVec::<u8, 64>::new();
        fold_confusables(label, &mut folded);
        if folded.len() >= 5 {
            out[k] = Fingerprinter::fold(fp.raw(Salt::Skeleton, &folded));
            k += 1;
            if k == out.len() {
                break;
            }
        }
    }
    out
}

/// Walks `args`: strings that are entities become values, numbers and array
/// lengths become numeric features. Depth is bounded.
struct ArgSeed<'o, 'a, 'f> {
    obs: &'o mut Observation<'a>,
    fp: &'f Fingerprinter,
    key: Option<Cow<'a, str>>,
    depth: u8,
}

const MAX_DEPTH: u8 = 3;

impl<'a> ArgSeed<'_, 'a, '_> {
    fn child(&mut self, key: Option<Cow<'a, str>>) -> ArgSeed<'_, 'a, '_> {
        ArgSeed {
            obs: self.obs,
            fp: self.fp,
            key,
            depth: self.depth + 1,
        }
    }

    fn string(self, s: Cow<'a, str>) {
        if is_entity(&s) {
            let from = ValueFrom::Arg(self.key.unwrap_or(Cow::Borrowed("?")));
            self.obs.push_value(self.fp, s, from);
        } else if is_id(&s) {
            if let Some(key) = self.key {
                let key_fp = self.fp.arg_key(&key);
                self.obs.push_id(self.fp, key_fp, key, s);
            }
        }
    }

    fn number(self, x: f64) {
        if let Some(key) = self.key {
            self.obs.push_number(self.fp, key, NumKind::Magnitude, x);
        }
    }
}

impl<'de> DeserializeSeed<'de> for ArgSeed<'_, 'de, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ArgSeed<'_, 'de, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(v as f64);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(v as f64);
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(v);
        Ok(())
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.string(Cow::Borrowed(v));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if is_entity(v) || is_id(v) {
            self.string(Cow::Owned(v.to_owned()));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut len = 0u64;
        if self.depth >= MAX_DEPTH {
            while seq.next_element::<IgnoredAny>()?.is_some() {
                len += 1;
            }
        } else {
            loop {
                let key = self.key.clone();
                if seq.next_element_seed(self.child(key))?.is_none() {
                    break;
                }
                len += 1;
            }
        }
        if let Some(key) = self.key {
            self.obs
                .push_number(self.fp, key, NumKind::Count, len as f64);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            if self.depth >= MAX_DEPTH {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(self.child(Some(key)))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::ingest::decode::decode_str;

    fn obs_of(line: &str, f: impl FnOnce(&Observation)) {
        let ev = decode_str(line).unwrap();
        let Event::ToolCall(call) = ev else { panic!() };
        let fp = Fingerprinter::new(HashKey::OFFLINE);
        let obs = Observation::extract(&call, &fp);
        f(&obs);
    }

    #[test]
    fn grouped_numbers_are_joined_as_calls_carry_them() {
        let got: Vec<String> =
            grouped_in("IMPORTANT: pay LT93 5866 6401 8520 1098. Call +44 20 7946 0958 today")
                .collect();
        assert_eq!(got, ["LT935866640185201098", "+442079460958"]);
        // Short runs, plain words and years in prose are no numbers.
        assert_eq!(grouped_in("meet at 10 am in room 4").count(), 0);
        assert_eq!(grouped_in("from 2024 to 2025 and 2026").count(), 0);
        assert_eq!(compact(" GB02 LJSA 6722 ").as_deref(), Some("GB02LJSA6722"));
        assert_eq!(compact("GB02LJSA6722"), None);
    }

    #[test]
    fn extracts_values_numbers_and_time() {
        obs_of(
            r#"{"event_id":"1","ts":"2026-11-24T09:15:02Z","agent_id":"a","tool":"send_email",
               "resource_id":"bob@example.com","action":"write",
               "args":{"recipients":["bob@example.com","eve@evil.io"],"subject":"hi","amount":1200.5}}"#,
            |o| {
                assert_eq!(o.hour, 9);
                assert_eq!(o.weekday, 1, "2026-11-24 is a Tuesday");
                assert_eq!(o.values.len(), 2, "duplicate recipient folded");
                assert_eq!(o.values[1].text, "eve@evil.io");
                assert_eq!(o.values[1].from, ValueFrom::Arg("recipients".into()));
                let count = o.numbers.iter().find(|n| n.kind == NumKind::Count).unwrap();
                assert_eq!((count.key.as_ref(), count.value), ("recipients", 2.0));
                let amount = o
                    .numbers
                    .iter()
                    .find(|n| n.kind == NumKind::Magnitude)
                    .unwrap();
                assert_eq!(amount.value, 1200.5);
            },
        );
    }

    #[test]
    fn parents_and_lookalike_skeletons() {
        assert_eq!(parent_of("bob@acme.com").0, Some(("acme.com", "")));
        assert_eq!(parent_of("https://www.x.io/a?b").0, Some(("x.io", "")));
        assert_eq!(parent_of("DE89370400440532013000").0, Some(("DE", "3704")));
        assert_eq!(parent_of("/srv/data/file.csv").0, Some(("/srv/data", "")));
        assert_eq!(
            parent_of("s3://bucket-x/exports/a.csv").0,
            Some(("bucket-x", ""))
        );
        assert_eq!(parent_of("cust-4411").0, None);
        assert_eq!(Shape::of("a@b.io"), Shape::Email);
        assert_eq!(Shape::of("s3://b/k"), Shape::Url);
        assert_eq!(Shape::of("#general"), Shape::Other);
        assert_eq!(parent_of("plain").0, None);
        let fp = Fingerprinter::new(HashKey::OFFLINE);
        let known = skeletons(&fp, "acme-corp.com");
        for spoof in [
            "acme-c0rp.com",
            "acmecorp.co",
            "acme-corp.com.evil.io",
            "acrne-corp.net",
        ] {
            let s = skeletons(&fp, spoof);
            assert!(s.iter().any(|k| *k != 0 && known.contains(k)), "{spoof}");
        }
        let other = skeletons(&fp, "globex.com");
        assert!(!other.iter().any(|k| *k != 0 && known.contains(k)));
    }

    #[test]
    fn entity_detection() {
        assert!(is_entity("a@b.co"));
        assert!(is_entity("https://x.io"));
        assert!(is_entity("GB29NWBK60161331926819"));
        assert!(!is_entity("hello world"));
        assert!(!is_entity("Re: ticket"));
        assert!(!is_entity("12345"));
    }
}
