//! Principal binding: which of an agent's id-valued argument keys and
//! resource types name things that belong to one principal, and to whom
//! each such value belongs.
//!
//! Learned from counts only, never from names, and only from sessions that
//! ended unflagged. A key is judged by its *recurrences*: a value seen again
//! in a later session either recurs with a principal it is already bound to
//! (same owner) or with another one (cross). The rule, with a Wilson 95 %
//! interval on the cross share of at least [`MIN_RECUR`] recurrences over at
//! least two principals:
//!
//! - **owned**: the interval lies below [`SHARED_SHARE`] (values mostly
//!   come back with their own principal: orders, bookings, payment methods);
//! - **shared**: the interval lies above it (products, flights, queues);
//! - otherwise undecided, and the channel abstains on the key.
//!
//! A key whose values name the principal itself (the principal ends with
//! the value, e.g. `customer:u_81` and `user_id = u_81`) is *identity*.
//! An agent that only ever served one principal learns no class at all.
//!
//! Bindings are exact up to a cap (sorted `(value, principal)` entries,
//! least recently seen evicted), then spill into a fixed sketch that keeps
//! one principal tag per bucket: enough to say "bound to someone else",
//! never to say whom.

use serde::{Deserialize, Serialize};

use super::tables::{Fp, LogHist};

/// Recurrences a key needs before it is classed.
pub const MIN_RECUR: f32 = 5.0;
/// Cross share that separates owned from shared keys: a value that comes
/// back with another principal more often than with its own is nobody's
/// own; one that mostly comes back with its own is (shared family accounts
/// and delegates make the share of an owned key well above zero).
pub const SHARED_SHARE: f32 = 0.5;
/// Keys tracked per agent.
const KEYS_CAP: usize = 32;
/// Buckets of the overflow sketch.
const SKETCH_BUCKETS: usize = 1024;
/// Principal names kept to explain reasons (most recent first evicted last).
const NAMES_CAP: usize = 256;

/// How a key's values relate to principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyClass {
    Undecided,
    Owned,
    Identity,
    Shared,
}

impl KeyClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Undecided => "undecided",
            Self::Owned => "owned",
            Self::Identity => "identity",
            Self::Shared => "shared",
        }
    }
}

/// Counts of one id-valued key (an argument name or a resource type).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyStats {
    pub key: Fp,
    /// Values seen (decayed).
    pub obs: f32,
    /// Values that came back in a later session, and of those, with a
    /// principal they were not bound to.
    pub recur: f32,
    pub cross: f32,
    /// Values that name the principal itself.
    pub identity: f32,
    /// The first distinct principal tags seen on this key (two suffice).
    pub principals: [u32; 2],
    pub class: KeyClass,
}

impl KeyStats {
    fn classify(&mut self) {
        let two = self.principals[1] != 0;
        self.class = if !two || self.recur < MIN_RECUR {
            KeyClass::Undecided
        } else if self.identity >= 0.9 * self.obs {
            KeyClass::Identity
        } else {
            let (lo, hi) = wilson(self.cross, self.recur);
            if hi < SHARED_SHARE {
                KeyClass::Owned
            } else if lo > SHARED_SHARE {
                KeyClass::Shared
            } else {
                KeyClass::Undecided
            }
        };
    }
}

/// Wilson score interval (95 %) of `k` successes in `n` trials.
pub fn wilson(k: f32, n: f32) -> (f32, f32) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let z = 1.96f32;
    let p = (k / n).clamp(0.0, 1.0);
    let d = 1.0 + z * z / n;
    let c = p + z * z / (2.0 * n);
    let r = z * ((p * (1.0 - p) + z * z / (4.0 * n)) / n).sqrt();
    ((c - r) / d, (c + r) / d)
}

/// One exact binding: a value used for a principal.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Bound {
    pub value: Fp,
    pub principal: u32,
    /// Clean sessions that used it for this principal (saturating).
    pub sessions: u16,
    /// Day it was last used.
    pub day: u16,
    /// The principal's own record listed it: their word that it is theirs,
    /// not an inference from use.
    #[serde(default)]
    pub listed: bool,
}

/// What the bindings say of a value, for one principal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owners {
    /// Bound to this principal.
    pub mine: bool,
    /// Principals other than this one it is bound to, and their sessions.
    pub others: u8,
    pub other_sessions: u16,
    /// The other principal with the most sessions (0 when unknown).
    pub top: u32,
    /// Another principal's own record listed it.
    pub listed_elsewhere: bool,
}

/// What one agent knows of its principals' things.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bindings {
    pub keys: Vec<KeyStats>,
    /// Sorted by `(value, principal)`.
    bound: Vec<Bound>,
    /// Overflow: principal tag per bucket of the value hash (0 = empty).
    sketch: Vec<u32>,
    /// Acts on owned values in clean sessions, and of those, acts on a
    /// value bound only to other principals, and acts on a value that
    /// reached the session only through output other than the principal's
    /// own records: how often this agent legitimately does either.
    pub owned_ops: f32,
    pub foreign_ops: f32,
    pub tainted_ops: f32,
    /// Changes to owned values while the user's request named a value of
    /// the same form, and of those, changes to a value it did not name:
    /// how often this agent acts beyond what it was asked about.
    #[serde(default)]
    pub scoped_ops: f32,
    #[serde(default)]
    pub unrequested_ops: f32,
    /// Acts on an owned value that nothing the session read carried (not
    /// the request, no tool's output), in sessions that had content
    /// events: a model carrying ids across sessions, or making them up.
    #[serde(default)]
    pub unsourced_ops: f32,
    /// Distinct other principals whose things one clean session touched.
    pub session_principals: LogHist,
    /// Recent principal names, to explain a binding ("user:jane").
    names: Vec<(u32, Box<str>)>,
}

/// The 32-bit tag a principal is bound under (0 = none).
pub fn principal_tag(fp: Fp) -> u32 {
    ((fp >> 32) as u32 ^ fp as u32).max(1)
}

impl Bindings {
    pub fn key(&self, key: Fp) -> Option<&KeyStats> {
        self.keys.iter().find(|k| k.key == key)
    }

    pub fn class(&self, key: Fp) -> KeyClass {
        self.key(key).map_or(KeyClass::Undecided, |k| k.class)
    }

    /// Bound values held exactly.
    pub fn len(&self) -> usize {
        self.bound.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bound.is_empty()
    }

    /// Who `value` is bound to, seen from `principal`.
    pub fn owners(&self, value: Fp, principal: u32) -> Owners {
        let mut o = Owners::default();
        let start = self.bound.partition_point(|b| b.value < value);
        let mut best = 0u16;
        for b in self.bound[start..].iter().take_while(|b| b.value == value) {
            if b.principal == principal {
                o.mine = true;
            } else {
                o.others = o.others.saturating_add(1);
                o.other_sessions = o.other_sessions.saturating_add(b.sessions);
                o.listed_elsewhere |= b.listed;
                if b.sessions >= best {
                    best = b.sessions;
                    o.top = b.principal;
                }
            }
        }
        if start < self.bound.len() && self.bound[start].value == value {
            return o;
        }
        if let Some(&tag) = self.sketch.get(bucket(value)) {
            if tag == principal {
                o.mine = true;
            } else if tag != 0 {
                o.others = 1;
                o.other_sessions = 1;
            }
        }
        o
    }

    /// A principal's name, if it was seen recently.
    pub fn name(&self, tag: u32) -> Option<&str> {
        self.names
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, n)| n.as_ref())
    }

    /// Remembers a principal's name for explanations.
    pub fn note_name(&mut self, tag: u32, name: &str) {
        if tag == 0 || self.names.iter().any(|(t, _)| *t == tag) {
            return;
        }
        if self.names.len() >= NAMES_CAP {
            self.names.remove(0);
        }
        self.names.push((tag, name.chars().take(128).collect()));
    }

    /// Learns one value of a clean session: it was used for `principal` on
    /// `key`; `listed` when the session's own records list it (a household
    /// sharing a booking: it recurs with another principal, yet it is this
    /// one's too, so it is no cross recurrence). Returns what it was bound
    /// to before.
    #[allow(clippy::too_many_arguments)]
    pub fn learn(
        &mut self,
        key: Fp,
        value: Fp,
        principal: u32,
        names_principal: bool,
        listed: bool,
        w: f32,
        day: u16,
        cap: usize,
    ) -> Owners {
        let before = self.owners(value, principal);
        let ki = match self.keys.iter().position(|k| k.key == key) {
            Some(i) => i,
            None if self.keys.len() < KEYS_CAP => {
                self.keys.push(KeyStats {
                    key,
                    obs: 0.0,
                    recur: 0.0,
                    cross: 0.0,
                    identity: 0.0,
                    principals: [0; 2],
                    class: KeyClass::Undecided,
                });
                self.keys.len() - 1
            }
            None => return before,
        };
        let k = &mut self.keys[ki];
        k.obs += w;
        if names_principal {
            k.identity += w;
        }
        if k.principals[0] == 0 {
            k.principals[0] = principal;
        } else if k.principals[1] == 0 && k.principals[0] != principal {
            k.principals[1] = principal;
        }
        if before.mine || before.others > 0 {
            k.recur += w;
            if !before.mine && !listed {
                k.cross += w;
            }
        }
        k.classify();
        self.bind(value, principal, day, cap, false);
        before
    }

    /// Binds what a clean session's own records listed (the principal's
    /// profile naming their orders, bookings and payment methods) to that
    /// principal, used or not. Key statistics are untouched: a listing is
    /// no recurrence, but a later use of a listed value recurs with its
    /// owner, and a listed value another principal reaches for is foreign.
    pub fn bind_listed(&mut self, values: &[Fp], principal: u32, day: u16, cap: usize) {
        if principal == 0 {
            return;
        }
        for &v in values {
            self.bind(v, principal, day, cap, true);
        }
    }

    fn bind(&mut self, value: Fp, principal: u32, day: u16, cap: usize, listed: bool) {
        let at = self
            .bound
            .binary_search_by(|b| (b.value, b.principal).cmp(&(value, principal)));
        match at {
            Ok(i) => {
                let b = &mut self.bound[i];
                b.sessions = b.sessions.saturating_add(1);
                b.day = day;
                b.listed |= listed;
            }
            Err(mut i) => {
                if self.bound.len() >= cap.max(1) {
                    // Spill the least recently used binding into the sketch.
                    let oldest = self
                        .bound
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, b)| b.day)
                        .map_or(0, |(j, _)| j);
                    let old = self.bound.remove(oldest);
                    if self.sketch.is_empty() {
                        self.sketch = vec![0; SKETCH_BUCKETS];
                    }
                    self.sketch[bucket(old.value)] = old.principal;
                    if oldest < i {
                        i -= 1;
                    }
                }
                self.bound.insert(
                    i,
                    Bound {
                        value,
                        principal,
                        sessions: 1,
                        day,
                        listed,
                    },
                );
            }
        }
    }

    pub fn scale(&mut self, f: f32) {
        for k in &mut self.keys {
            k.obs *= f;
            k.recur *= f;
            k.cross *= f;
            k.identity *= f;
        }
        self.owned_ops *= f;
        self.scoped_ops *= f;
        self.unrequested_ops *= f;
        self.foreign_ops *= f;
        self.tainted_ops *= f;
        self.unsourced_ops *= f;
        self.session_principals.scale(f);
    }

    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * std::mem::size_of::<KeyStats>()
            + self.bound.capacity() * std::mem::size_of::<Bound>()
            + self.sketch.capacity() * 4
            + self.names.iter().map(|(_, n)| 24 + n.len()).sum::<usize>()
    }
}

fn bucket(value: Fp) -> usize {
    (value.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % SKETCH_BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_shared_and_single_principal() {
        let mut b = Bindings::default();
        let (order, product) = (1, 2);
        // Orders come back with their own principal, products with anyone.
        for p in 1..=20u32 {
            for _ in 0..2 {
                b.learn(order, 1000 + p as u64, p, false, false, 1.0, 1, 4096);
            }
            b.learn(product, 7, p, false, false, 1.0, 1, 4096);
        }
        assert_eq!(b.class(order), KeyClass::Owned);
        assert_eq!(b.class(product), KeyClass::Shared);
        let o = b.owners(1003, 4);
        assert!(!o.mine && o.others == 1 && o.other_sessions == 2 && o.top == 3);
        // One principal only: nothing is learned about ownership.
        let mut one = Bindings::default();
        for v in 0..50 {
            one.learn(order, v % 5, 9, false, false, 1.0, 1, 4096);
        }
        assert_eq!(one.class(order), KeyClass::Undecided);
    }

    #[test]
    fn exact_up_to_cap_then_sketch() {
        let mut b = Bindings::default();
        for v in 0..100u64 {
            b.learn(1, v, (v % 7 + 1) as u32, false, false, 1.0, v as u16, 10);
        }
        assert_eq!(b.len(), 10);
        // An early value spilled into the sketch still reads as someone's.
        let o = b.owners(3, 99);
        assert!(o.others > 0 || o.mine);
    }

    #[test]
    fn wilson_bounds() {
        let (lo, hi) = wilson(0.0, 30.0);
        assert!(lo == 0.0 && hi < 0.12);
        let (lo, _) = wilson(20.0, 30.0);
        assert!(lo > 0.45);
    }
}
