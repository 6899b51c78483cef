//! A quarantine: one incident per agent instance (else per agent), with
//! the decision that opened it, every flag and every credential of that
//! agent rolled up into it, the outcome of each credential's revocation
//! and of each alert, and its release. This is what the registry
//! stores, the API returns and the notifiers render.

use serde::{Deserialize, Serialize};

use super::credential::{redact_event, Credential, CredentialPolicy, SecretString};
use crate::decide::Mode;

/// Flagged calls kept per quarantine (each with its raw event, so a release
/// as false positive can teach them); further flags are only counted.
pub const MAX_FLAGGED_CALLS: usize = 20;

/// Where a quarantine stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Enforce: recorded, revocation under way.
    Pending,
    /// Enforce: every revoker confirmed.
    Revoked,
    /// Enforce: a revoker refused for good, or kept failing past the
    /// give-up time. The credential may still work: a human must act.
    RevokeFailed,
    /// Shadow: alerted, nothing revoked.
    Shadow,
    /// A human released it.
    Released,
}

impl State {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Revoked => "revoked",
            Self::RevokeFailed => "revoke_failed",
            Self::Shadow => "shadow",
            Self::Released => "released",
        }
    }

    /// Whether the agent counts as quarantined: a broker must not mint it a
    /// new credential. Shadow incidents do not block.
    pub const fn blocks(self) -> bool {
        matches!(self, Self::Pending | Self::Revoked | Self::RevokeFailed)
    }

    pub const fn is_open(self) -> bool {
        !matches!(self, Self::Released)
    }

    /// The state machine, the one place a quarantine's state changes:
    ///
    /// - `Shadow` → `Released`.
    /// - `Pending` → `Revoked` (every revocation confirmed), `RevokeFailed`
    ///   (one refused for good or given up on), `Released`.
    /// - `Revoked` → `Pending` (a new credential of the agent, still to be
    ///   revoked), `RevokeFailed`, `Released`.
    /// - `RevokeFailed` → `Released` only: a credential that may still work
    ///   stays in front of a human until one releases it.
    /// - `Released` is final.
    ///
    /// Anything else is refused, and the state stays as it was.
    pub fn on(self, t: Transition) -> Result<Self, IllegalTransition> {
        let next = match (self, t) {
            (Self::Released, _) => None,
            (_, Transition::Release) => Some(Self::Released),
            (Self::Shadow, Transition::Revocations { .. }) => None,
            (Self::RevokeFailed, Transition::Revocations { .. }) => Some(Self::RevokeFailed),
            (_, Transition::Revocations { failed: true, .. }) => Some(Self::RevokeFailed),
            (_, Transition::Revocations { pending: true, .. }) => Some(Self::Pending),
            (_, Transition::Revocations { .. }) => Some(Self::Revoked),
        };
        next.ok_or(IllegalTransition { from: self, on: t })
    }
}

/// What moves a quarantine between [`State`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Its revocations now stand so: any refused for good, any still
    /// pending (a new credential adds pending ones).
    Revocations { failed: bool, pending: bool },
    /// A human released it.
    Release,
}

/// A transition the state machine refuses (see [`State::on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a quarantine in state {} cannot take {on:?}", from.as_str())]
pub struct IllegalTransition {
    pub from: State,
    pub on: Transition,
}

/// One reason of a decision, with its weight in bits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub signal: String,
    pub detail: String,
    pub bits: f64,
}

/// A tool call as an alert shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CallSummary {
    pub event_id: String,
    /// RFC 3339, UTC.
    pub ts: String,
    pub tool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// The call's arguments, compact JSON, shortened when long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    pub score: f64,
    pub flagged: bool,
}

/// The instruction's origin, as the event carried it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OriginInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
}

/// What the agent normally does, from its profile at the time of the flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Baseline {
    /// Most used tools with their share of calls (0..1), most used first.
    pub usual_tools: Vec<(String, f64)>,
    /// Resources of its recent unflagged calls.
    pub recent_resources: Vec<String>,
    /// Median time between calls of a session, in seconds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_gap_secs: Option<f64>,
    /// Calls per day over the agent's history (decayed), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_day: Option<f64>,
    pub events_learned: u64,
    pub sessions_learned: u64,
}

/// One flagged call handed from a worker to the responder.
#[derive(Debug, Clone)]
pub struct Flag {
    pub agent_id: String,
    pub agent_instance: Option<String>,
    pub principal: Option<String>,
    /// The event's `credential_id` as received: what the revokers revoke,
    /// and nothing else may show.
    pub credential_id: Option<SecretString>,
    /// What may be shown of it; set by [`seal`](Self::seal) before the
    /// flag is keyed or stored.
    pub credential: Option<Credential>,
    pub session_id: Option<String>,
    pub trace_id: Option<String>,
    pub class: Option<String>,
    pub mode: Mode,
    pub score: f64,
    pub threshold: f64,
    pub basis: &'static str,
    pub reasons: Vec<Reason>,
    pub call: CallSummary,
    /// The event as received, for learning on a false-positive release.
    pub raw: String,
    /// The session's last calls up to and including this one, oldest first.
    pub timeline: Vec<CallSummary>,
    pub origin: Option<OriginInfo>,
    pub baseline: Baseline,
    /// When the worker handed it over (monotonic), for latency metrics.
    pub flagged_at: std::time::Instant,
    /// Further flags of the same agent (instance) and credential that a
    /// worker folded into this one while the responder's queue was full:
    /// counted as rolled up, never dropped unseen.
    pub folded: u32,
}

impl Flag {
    /// Fills in what may be shown of the credential, and replaces it in the
    /// raw event kept for learning: from here on only `credential_id`
    /// holds the value.
    pub fn seal(&mut self, policy: &CredentialPolicy) {
        let Some(raw) = &self.credential_id else {
            return;
        };
        let cred = policy.credential(raw);
        self.raw = redact_event(&self.raw, |c| {
            policy.credential(&SecretString::new(c)).shown().to_owned()
        });
        self.credential = Some(cred);
    }

    /// As [`seal`](Self::seal), for a flag whose raw event will not be
    /// kept (its quarantine already holds [`MAX_FLAGGED_CALLS`]): the raw
    /// event is dropped rather than redacted, which would cost a parse per
    /// flag in a storm.
    pub fn seal_dropping_raw(&mut self, policy: &CredentialPolicy) {
        self.raw = String::new();
        if let Some(raw) = &self.credential_id {
            self.credential = Some(policy.credential(raw));
        }
    }

    /// One quarantine per agent instance, else per agent: runtimes that
    /// mint a credential per session must not get an incident (and a page)
    /// per session. Its credentials are listed, and revoked, inside it.
    pub fn key(&self) -> String {
        match &self.agent_instance {
            Some(i) => format!("{}/instance/{i}", self.agent_id),
            None => format!("{}/agent", self.agent_id),
        }
    }

    /// The quarantine id a new quarantine opened by this flag gets:
    /// derived from its key and first event, so the same event redelivered
    /// after a crash finds the same quarantine rather than opening another.
    pub fn quarantine_id(&self) -> String {
        let h = xxhash_rust::xxh3::xxh3_128(
            format!("{}\n{}", self.key(), self.call.event_id).as_bytes(),
        );
        format!("q-{:024x}", h >> 32)
    }
}

/// The hash of an incident key as [`Flag::key`] spells it, without
/// building the string (a worker asks per flagged call).
pub fn key_hash(agent_id: &str, instance: Option<&str>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(agent_id.as_bytes());
    match instance {
        Some(i) => {
            h.update(b"/instance/");
            h.update(i.as_bytes());
        }
        None => h.update(b"/agent"),
    }
    h.digest()
}

/// The outcome of one revoker for a quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not tried yet, or failing and still being retried.
    Pending,
    Succeeded,
    /// Refused for good (or given up on).
    Failed,
}

/// A revocation of one credential through one configured revoker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoker's name in the config.
    pub revoker: String,
    /// Which of the quarantine's `credentials` (its index) this revokes;
    /// `null` when the flag that opened it carried no credential (it is
    /// refused: nothing to revoke). Records from before incidents per
    /// agent have only the first.
    #[serde(default = "first_credential")]
    pub credential: Option<usize>,
    /// What is revoked (the credential, token accessor or lease), as it may
    /// be shown: its fingerprint unless it is a handle.
    pub target: Option<String>,
    pub outcome: Outcome,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<String>,
}

fn first_credential() -> Option<usize> {
    Some(0)
}

impl Revocation {
    /// Whether it revokes credential `n` of its quarantine.
    pub fn is_for(&self, n: usize) -> bool {
        self.credential == Some(n)
    }
}

/// A credential of a quarantined agent, as it may be shown, and where its
/// revocation stands: each is revoked on its own, exactly once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialEntry {
    #[serde(flatten)]
    pub credential: Credential,
    /// When its first flag was rolled in.
    pub first_seen: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Flagged calls made with it.
    pub flags: u32,
    /// `pending`, `revoked` or `revoke_failed` in enforce mode; `shadow`
    /// when only listed.
    pub state: State,
    /// Attempts of all its revokers so far.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Delivery of alerts to one notifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertStatus {
    pub notifier: String,
    /// Alerts delivered (opening, updates, release).
    pub delivered: u32,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Flags rolled up when the last alert was delivered: an update is due
    /// when more have come since.
    pub rolled_up_alerted: u32,
    /// The dedup key of the digest this quarantine's opening alert was
    /// rolled into (a backed-up queue), resolved once all its quarantines
    /// are released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Who released a quarantine, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub actor: String,
    pub reason: String,
    pub false_positive: bool,
    pub at: String,
}

/// A change to an open incident's credentials and revocations, journaled
/// on the revocation path instead of the whole incident (see
/// [`Quarantine::amend`]); the rest follows in its next full record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Amend {
    pub id: String,
    pub version: u64,
    pub updated_at: String,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    pub credentials: Vec<(usize, CredentialEntry)>,
    pub revocations: Vec<(usize, Revocation)>,
    /// Flags rolled in since the incident was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll: Option<RollUp>,
}

/// What rolled-up flags changed since `Written`: counters, the flagged
/// calls and redelivery hashes appended, the latest session view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollUp {
    pub rolled_up: u32,
    pub max_score: f64,
    /// (index, call, raw event) appended to `flagged_calls` and
    /// `flagged_events`.
    pub flagged: Vec<(usize, CallSummary, String)>,
    /// Where the appended redelivery hashes start.
    pub seen_at: usize,
    pub seen: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<CallSummary>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<OriginInfo>,
    /// Every credential's flag count, in order.
    pub credential_flags: Vec<u32>,
}

/// How much of an incident its journal already holds, so the next write
/// carries only what is new (see [`Quarantine::roll_amend`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    flagged: usize,
    seen: usize,
    timeline_last: Option<String>,
    origin: bool,
    /// Amends since the last full record: past a bound the next write is
    /// full again, so a start-up never replays a long tail.
    pub amends: u32,
}

/// One incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantine {
    pub id: String,
    pub key: String,
    pub agent_id: String,
    pub agent_instance: Option<String>,
    pub principal: Option<String>,
    /// The first credential's fingerprint (and handle, when it is one);
    /// the raw value is only in the registry's revocation queue.
    #[serde(default)]
    pub credential: Option<Credential>,
    /// Every credential seen in its flags, first first, each with its own
    /// revocation state.
    #[serde(default)]
    pub credentials: Vec<CredentialEntry>,
    pub session_id: Option<String>,
    pub trace_id: Option<String>,
    pub class: Option<String>,
    pub mode: Mode,
    pub state: State,
    pub created_at: String,
    pub updated_at: String,
    /// Bumped on every change: stores keep the newest.
    pub version: u64,
    /// The decision that opened it.
    pub score: f64,
    pub threshold: f64,
    pub basis: String,
    pub reasons: Vec<Reason>,
    /// Highest score of any flag rolled into it.
    pub max_score: f64,
    /// The flagged calls, first first (at most [`MAX_FLAGGED_CALLS`]).
    pub flagged_calls: Vec<CallSummary>,
    /// Raw events of `flagged_calls`, same order, each with its
    /// `credential_id` replaced by what may be shown of it.
    pub flagged_events: Vec<String>,
    /// Flags after the first that were rolled into this quarantine.
    pub rolled_up: u32,
    /// Hashes of every flagged event id rolled in (bounded), so a
    /// redelivered event is not counted twice.
    #[serde(default)]
    pub seen_events: Vec<u64>,
    pub timeline: Vec<CallSummary>,
    pub origin: Option<OriginInfo>,
    pub baseline: Baseline,
    pub revocations: Vec<Revocation>,
    pub alerts: Vec<AlertStatus>,
    pub release: Option<Release>,
    /// The Warden instance that opened it and delivers for it.
    pub owner: String,
    /// Records written before credentials were kept apart carried the raw
    /// value here; it is only read, to migrate them
    /// ([`migrate_legacy_credential`](Self::migrate_legacy_credential)).
    #[serde(default, rename = "credential_id", skip_serializing)]
    pub legacy_credential_id: Option<SecretString>,
}

/// Event ids remembered per quarantine against redelivery.
const MAX_SEEN_EVENTS: usize = 4096;

fn event_hash(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(event_id.as_bytes())
}

pub fn now_rfc3339() -> String {
    crate::event::rfc3339(chrono::Utc::now().timestamp_millis())
}

impl CredentialEntry {
    fn new(credential: Credential, flag: &Flag, state: State) -> Self {
        Self {
            credential,
            first_seen: now_rfc3339(),
            session_id: flag.session_id.clone(),
            flags: 1,
            state,
            attempts: 0,
            last_error: None,
        }
    }
}

impl Quarantine {
    /// A new quarantine from its first flag, with a pending revocation per
    /// revoker (enforce only) and an alert status per notifier.
    pub fn open(
        flag: &Flag,
        revokers: &[(String, Option<String>)],
        notifiers: &[String],
        owner: &str,
    ) -> Self {
        let now = now_rfc3339();
        let enforce = flag.mode == Mode::Enforce;
        let state = if enforce {
            State::Pending
        } else {
            State::Shadow
        };
        Self {
            id: flag.quarantine_id(),
            key: flag.key(),
            agent_id: flag.agent_id.clone(),
            agent_instance: flag.agent_instance.clone(),
            principal: flag.principal.clone(),
            credential: flag.credential.clone(),
            credentials: flag
                .credential
                .iter()
                .map(|c| CredentialEntry::new(c.clone(), flag, state))
                .collect(),
            session_id: flag.session_id.clone(),
            trace_id: flag.trace_id.clone(),
            class: flag.class.clone(),
            mode: flag.mode,
            state,
            created_at: now.clone(),
            updated_at: now,
            version: 1,
            score: flag.score,
            threshold: flag.threshold,
            basis: flag.basis.to_owned(),
            reasons: flag.reasons.clone(),
            max_score: flag.score,
            flagged_calls: vec![flag.call.clone()],
            flagged_events: vec![flag.raw.clone()],
            rolled_up: flag.folded,
            seen_events: vec![event_hash(&flag.call.event_id)],
            timeline: flag.timeline.clone(),
            origin: flag.origin.clone(),
            baseline: flag.baseline.clone(),
            revocations: if enforce {
                revokers
                    .iter()
                    .map(|(name, target)| Revocation {
                        revoker: name.clone(),
                        credential: flag.credential.as_ref().map(|_| 0),
                        target: target.clone(),
                        outcome: Outcome::Pending,
                        attempts: 0,
                        last_error: None,
                        done_at: None,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            alerts: notifiers
                .iter()
                .map(|n| AlertStatus {
                    notifier: n.clone(),
                    delivered: 0,
                    attempts: 0,
                    last_error: None,
                    rolled_up_alerted: 0,
                    digest: None,
                })
                .collect(),
            release: None,
            owner: owner.to_owned(),
            legacy_credential_id: None,
        }
    }

    /// Moves a record from before credentials were kept apart to the
    /// current form: the raw `credential_id` it carried (returned, for the
    /// revocation queue) is replaced by what may be shown in the credential,
    /// the key, the revocation targets and the raw flagged events.
    pub fn migrate_legacy_credential(&mut self, policy: &CredentialPolicy) -> Option<SecretString> {
        let raw = self.legacy_credential_id.take()?;
        let cred = policy.credential(&raw);
        self.key = format!("{}/credential/{}", self.agent_id, cred.fingerprint);
        if let Some(e) = self.credentials.first_mut() {
            e.credential = cred.clone();
        }
        for r in &mut self.revocations {
            if r.target.as_deref() == Some(raw.expose()) {
                r.target = Some(cred.shown().to_owned());
            }
        }
        for e in &mut self.flagged_events {
            *e = redact_event(e, |c| {
                policy.credential(&SecretString::new(c)).shown().to_owned()
            });
        }
        self.credential = Some(cred);
        self.touch();
        Some(raw)
    }

    /// Rolls a further flag into this quarantine; false when that very
    /// event is already in it (a redelivery).
    pub fn attach(&mut self, flag: &Flag) -> bool {
        self.roll_in(&mut flag.clone())
    }

    /// As [`attach`](Self::attach), taking the flag's raw event, timeline
    /// and origin rather than copying them (the responder, once per
    /// flagged call in a storm).
    pub fn roll_in(&mut self, flag: &mut Flag) -> bool {
        let h = event_hash(&flag.call.event_id);
        if self.seen_events.contains(&h) {
            return false;
        }
        if self.seen_events.len() < MAX_SEEN_EVENTS {
            self.seen_events.push(h);
        }
        self.rolled_up += 1 + flag.folded;
        self.max_score = self.max_score.max(flag.score);
        if self.flagged_calls.len() < MAX_FLAGGED_CALLS {
            self.flagged_calls.push(flag.call.clone());
            self.flagged_events.push(std::mem::take(&mut flag.raw));
        }
        if self.origin.is_none() {
            self.origin = flag.origin.take();
        }
        // The latest session view is the most useful to whoever reads it
        // (a flag into a full incident carries one at most once a second).
        if !flag.timeline.is_empty() {
            self.timeline = std::mem::take(&mut flag.timeline);
        }
        self.touch();
        true
    }

    /// Lists the credential of a flag rolled into this quarantine. A new
    /// one of an enforced quarantine gets a pending revocation per revoker
    /// (`revokers` as in [`open`](Self::open)); its index is returned then,
    /// for the revocation queue. Call after [`attach`](Self::attach)
    /// accepted the flag.
    pub fn add_credential(
        &mut self,
        flag: &Flag,
        revokers: &[(String, Option<String>)],
    ) -> Option<usize> {
        let cred = flag.credential.as_ref()?;
        if let Some(e) = self
            .credentials
            .iter_mut()
            .find(|e| e.credential.fingerprint == cred.fingerprint)
        {
            e.flags += 1;
            return None;
        }
        let n = self.credentials.len();
        let enforce = self.state.blocks();
        let state = if enforce {
            State::Pending
        } else {
            State::Shadow
        };
        self.credentials
            .push(CredentialEntry::new(cred.clone(), flag, state));
        if self.credential.is_none() {
            self.credential = Some(cred.clone());
        }
        if !enforce {
            return None;
        }
        self.revocations
            .extend(revokers.iter().map(|(name, target)| Revocation {
                revoker: name.clone(),
                credential: Some(n),
                target: target.clone(),
                outcome: Outcome::Pending,
                attempts: 0,
                last_error: None,
                done_at: None,
            }));
        self.settle_state();
        Some(n)
    }

    /// What a new credential or a revocation outcome changed, as an
    /// [`Amend`] of credentials `creds` and revocations `revs` (indices):
    /// a few hundred bytes where the whole incident, with its events and
    /// redelivery hashes, is tens of kilobytes.
    pub fn amend(&self, creds: &[usize], revs: &[usize]) -> Amend {
        Amend {
            id: self.id.clone(),
            version: self.version,
            updated_at: self.updated_at.clone(),
            state: self.state,
            credential: self.credential.clone(),
            credentials: creds
                .iter()
                .filter_map(|&i| Some((i, self.credentials.get(i)?.clone())))
                .collect(),
            revocations: revs
                .iter()
                .filter_map(|&i| Some((i, self.revocations.get(i)?.clone())))
                .collect(),
            roll: None,
        }
    }

    /// What the journal holds of this incident once it is written as is.
    pub fn written(&self) -> Written {
        Written {
            flagged: self.flagged_calls.len(),
            seen: self.seen_events.len(),
            timeline_last: self.timeline.last().map(|c| c.event_id.clone()),
            origin: self.origin.is_some(),
            amends: 0,
        }
    }

    /// An amend carrying everything rolled-up flags changed since `w`
    /// (advanced to now), with no credential or revocation entries.
    pub fn roll_amend(&self, w: &mut Written) -> Amend {
        let flagged = (w.flagged..self.flagged_calls.len())
            .map(|i| {
                let raw = self.flagged_events.get(i).cloned().unwrap_or_default();
                (i, self.flagged_calls[i].clone(), raw)
            })
            .collect();
        let timeline_last = self.timeline.last().map(|c| c.event_id.clone());
        let roll = RollUp {
            rolled_up: self.rolled_up,
            max_score: self.max_score,
            flagged,
            seen_at: w.seen.min(self.seen_events.len()),
            seen: self.seen_events[w.seen.min(self.seen_events.len())..].to_vec(),
            timeline: (timeline_last != w.timeline_last).then(|| self.timeline.clone()),
            origin: self.origin.clone().filter(|_| !w.origin),
            credential_flags: self.credentials.iter().map(|e| e.flags).collect(),
        };
        *w = Written {
            amends: w.amends + 1,
            ..self.written()
        };
        Amend {
            roll: Some(roll),
            ..self.amend(&[], &[])
        }
    }

    /// Applies an amend written after this record: entries are set at
    /// their index or appended right after the last. One that skips an
    /// index (a record and its amend out of step) is refused, naming it.
    pub fn apply(&mut self, a: Amend) -> Result<(), String> {
        // Written before this record: already in it. (One of the same
        // version is applied: every part of an amend applies idempotently.)
        if a.version < self.version {
            return Ok(());
        }
        fn put<T>(v: &mut Vec<T>, i: usize, x: T, what: &str) -> Result<(), String> {
            match i.cmp(&v.len()) {
                std::cmp::Ordering::Less => v[i] = x,
                std::cmp::Ordering::Equal => v.push(x),
                std::cmp::Ordering::Greater => {
                    return Err(format!(
                        "{what} {i} amended, but the record has {}",
                        v.len()
                    ))
                }
            }
            Ok(())
        }
        for (i, e) in a.credentials {
            put(&mut self.credentials, i, e, "credential")?;
        }
        for (i, r) in a.revocations {
            put(&mut self.revocations, i, r, "revocation")?;
        }
        if let Some(r) = a.roll {
            self.rolled_up = r.rolled_up;
            self.max_score = r.max_score;
            for (i, call, raw) in r.flagged {
                put(&mut self.flagged_calls, i, call, "flagged call")?;
                put(&mut self.flagged_events, i, raw, "flagged event")?;
            }
            if r.seen_at > self.seen_events.len() {
                return Err(format!(
                    "redelivery hashes from {} amended, but the record has {}",
                    r.seen_at,
                    self.seen_events.len()
                ));
            }
            self.seen_events.truncate(r.seen_at);
            self.seen_events.extend(r.seen);
            if let Some(t) = r.timeline {
                self.timeline = t;
            }
            if self.origin.is_none() {
                self.origin = r.origin;
            }
            for (e, flags) in self.credentials.iter_mut().zip(r.credential_flags) {
                e.flags = flags;
            }
        }
        if self.credential.is_none() {
            self.credential = a.credential;
        }
        self.settle_state();
        self.state = a.state;
        self.version = a.version;
        self.updated_at = a.updated_at;
        Ok(())
    }

    /// Records from before incidents per agent list their one credential
    /// only in `credential`.
    pub fn adopt_first_credential(&mut self) {
        if !self.credentials.is_empty() {
            return;
        }
        let Some(c) = self.credential.clone() else {
            return;
        };
        let state = if self.mode == Mode::Enforce {
            State::Pending
        } else {
            State::Shadow
        };
        self.credentials.push(CredentialEntry {
            credential: c,
            first_seen: self.created_at.clone(),
            session_id: self.session_id.clone(),
            flags: self.flags(),
            state,
            attempts: 0,
            last_error: None,
        });
        self.settle_state();
    }

    /// Whether every revoker of credential `n` has an outcome.
    pub fn credential_settled(&self, n: usize) -> bool {
        self.revocations
            .iter()
            .filter(|r| r.is_for(n))
            .all(|r| r.outcome != Outcome::Pending)
    }

    pub fn touch(&mut self) {
        self.version += 1;
        self.updated_at = now_rfc3339();
    }

    /// Sets each credential's state from its revocations, and the
    /// quarantine's: `revoke_failed` once any failed for good, `revoked`
    /// only when every credential is, else `pending` (a new credential
    /// takes a revoked quarantine back to pending).
    pub fn settle_state(&mut self) {
        if !self.state.blocks() {
            return;
        }
        let of = |rs: &mut dyn Iterator<Item = &Revocation>| {
            let (mut failed, mut pending) = (false, false);
            for r in rs {
                failed |= r.outcome == Outcome::Failed;
                pending |= r.outcome == Outcome::Pending;
            }
            Transition::Revocations { failed, pending }
        };
        // One pass over the revocations, grouped by credential: an agent
        // with thousands of credentials settles in linear time.
        let mut by_credential: Vec<Vec<&Revocation>> = vec![Vec::new(); self.credentials.len()];
        for r in &self.revocations {
            if let Some(list) = r.credential.and_then(|n| by_credential.get_mut(n)) {
                list.push(r);
            }
        }
        for (e, mine) in self.credentials.iter_mut().zip(&by_credential) {
            // A credential's own state: from pending, as if new, so one
            // revoked after another failed reads as revoked.
            e.state = State::Pending
                .on(of(&mut mine.iter().copied()))
                .unwrap_or(e.state);
            e.attempts = mine.iter().map(|r| r.attempts).sum();
            e.last_error = mine.iter().find_map(|r| r.last_error.clone());
        }
        let t = of(&mut self.revocations.iter());
        self.state = self.state.on(t).unwrap_or(self.state);
    }

    /// Releases it (see [`State::on`]): refused once released.
    pub fn release(&mut self, release: Release) -> Result<State, IllegalTransition> {
        let was = self.state;
        self.state = was.on(Transition::Release)?;
        self.release = Some(release);
        self.touch();
        Ok(was)
    }

    /// Flagged calls in total (the first, plus those rolled up).
    pub fn flags(&self) -> u32 {
        self.rolled_up + 1
    }

    /// One line for logs, pages and the header of an alert.
    pub fn headline(&self) -> String {
        let what = match self.state {
            State::Shadow => "flagged (shadow mode, not revoked)",
            State::Pending => "quarantined, revocation pending",
            State::Revoked if self.revocations.iter().all(|r| r.revoker == "local-log") => {
                "quarantined, revocation recorded locally (no broker configured)"
            }
            State::Revoked => "quarantined, credential revoked",
            State::RevokeFailed => "quarantined, REVOCATION FAILED",
            State::Released => "released",
        };
        let call = self.flagged_calls.first();
        let tool = call.map_or("?", |c| c.tool.as_str());
        format!(
            "Warden: {} {what}: {tool} scored {:.1} bits (threshold {:.1})",
            self.agent_id, self.score, self.threshold
        )
    }
}

/// One flagged call and its context, as large as a real one, for the
/// tests of this module and of those that render or store quarantines.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// The fixture credential's fingerprint, as alerts show it.
    pub const FP: &str = "cred:00f1e2d3c4b5a697";

    /// A flag like `flag(event)` (enforce) from another session with
    /// another credential of the same agent instance.
    pub fn other_session(event: &str, n: u32) -> Flag {
        let mut f = flag(event, Mode::Enforce, 30.0);
        f.session_id = Some(format!("s{n}"));
        f.credential_id = Some(SecretString::new(format!("tok-{n}")));
        f.credential = Some(Credential {
            fingerprint: format!("cred:{n:016x}"),
            handle: None,
        });
        f
    }

    pub fn call(event: &str, ts: &str, tool: &str, flagged: bool, score: f64) -> CallSummary {
        CallSummary {
            event_id: event.into(),
            ts: ts.into(),
            tool: tool.into(),
            action: Some("send".into()),
            resource_type: Some("iban".into()),
            resource_id: Some("DE89370400440532013000".into()),
            args: Some(r#"{"amount":9000,"currency":"EUR"}"#.into()),
            score,
            flagged,
        }
    }

    pub fn flag(event: &str, mode: Mode, score: f64) -> Flag {
        let flagged = call(
            event,
            "2026-03-01T12:03:04.500Z",
            "transfer_funds",
            true,
            score,
        );
        let mut before = call(
            "e-before",
            "2026-03-01T12:02:58Z",
            "get_balance",
            false,
            1.2,
        );
        before.resource_id = Some("acct-1".into());
        Flag {
            agent_id: "pay-eu".into(),
            agent_instance: Some("pay-eu-7f".into()),
            principal: Some("user:jane".into()),
            credential_id: Some(SecretString::new("tok-1")),
            credential: Some(Credential {
                fingerprint: FP.into(),
                handle: None,
            }),
            session_id: Some("s1".into()),
            trace_id: None,
            class: Some("payments".into()),
            mode,
            score,
            threshold: 16.0,
            basis: "calibrated",
            reasons: vec![
                Reason {
                    signal: "tool".into(),
                    detail: "rare tool transfer_funds".into(),
                    bits: 6.5,
                },
                Reason {
                    signal: "resource".into(),
                    detail: "new IBAN".into(),
                    bits: 20.0,
                },
            ],
            call: flagged.clone(),
            raw: "{}".into(),
            timeline: vec![before, flagged],
            origin: Some(OriginInfo {
                kind: Some("email".into()),
                reference: Some("msg-42".into()),
                excerpt: Some("Please wire the funds today".into()),
            }),
            baseline: Baseline {
                usual_tools: vec![("get_balance".into(), 0.62), ("list_payees".into(), 0.3)],
                recent_resources: vec!["acct-1".into()],
                median_gap_secs: Some(4.2),
                calls_per_day: Some(120.0),
                events_learned: 1234,
                sessions_learned: 56,
            },
            flagged_at: std::time::Instant::now(),
            folded: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine_allows_exactly_its_documented_transitions() {
        use State::*;
        let rev = |failed, pending| Transition::Revocations { failed, pending };
        let all = [Pending, Revoked, RevokeFailed, Shadow, Released];
        let ts = [
            rev(false, false),
            rev(false, true),
            rev(true, false),
            rev(true, true),
            Transition::Release,
        ];
        let mut allowed = Vec::new();
        for from in all {
            for t in ts {
                if let Ok(to) = from.on(t) {
                    allowed.push((from, t, to));
                } else {
                    assert_eq!(from.on(t).unwrap_err().from, from);
                }
            }
        }
        let expect = [
            (Pending, rev(false, false), Revoked),
            (Pending, rev(false, true), Pending),
            (Pending, rev(true, false), RevokeFailed),
            (Pending, rev(true, true), RevokeFailed),
            (Pending, Transition::Release, Released),
            (Revoked, rev(false, false), Revoked),
            (Revoked, rev(false, true), Pending),
            (Revoked, rev(true, false), RevokeFailed),
            (Revoked, rev(true, true), RevokeFailed),
            (Revoked, Transition::Release, Released),
            (RevokeFailed, rev(false, false), RevokeFailed),
            (RevokeFailed, rev(false, true), RevokeFailed),
            (RevokeFailed, rev(true, false), RevokeFailed),
            (RevokeFailed, rev(true, true), RevokeFailed),
            (RevokeFailed, Transition::Release, Released),
            (Shadow, Transition::Release, Released),
        ];
        assert_eq!(allowed, expect);
        // Released is final: a second release is refused, and says why.
        let e = Released.on(Transition::Release).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a quarantine in state released cannot take Release"
        );
    }

    #[test]
    fn a_flag_without_a_timeline_keeps_the_last_one_shown() {
        let mut q = Quarantine::open(&flag("e1", Mode::Shadow), &[], &[], "me");
        let shown = q.timeline.clone();
        assert!(!shown.is_empty());
        let mut f = flag("e2", Mode::Shadow);
        f.timeline.clear();
        assert!(q.roll_in(&mut f));
        assert_eq!(q.timeline, shown);
        assert_eq!(q.rolled_up, 1);
    }

    #[test]
    fn the_key_hash_is_the_hash_of_the_key() {
        let mut f = flag("e1", Mode::Shadow);
        for instance in [None, Some("i-7".to_owned())] {
            f.agent_instance = instance;
            assert_eq!(
                key_hash(&f.agent_id, f.agent_instance.as_deref()),
                xxhash_rust::xxh3::xxh3_64(f.key().as_bytes())
            );
        }
    }

    #[test]
    fn a_release_goes_through_the_state_machine_once() {
        let mut q = Quarantine::open(&flag("e1", Mode::Shadow), &[], &[], "me");
        let r = Release {
            actor: "ann".into(),
            reason: "fp".into(),
            false_positive: true,
            at: now_rfc3339(),
        };
        let v = q.version;
        assert_eq!(q.release(r.clone()), Ok(State::Shadow));
        assert_eq!((q.state, q.version), (State::Released, v + 1));
        assert!(q.release(r).is_err());
        assert_eq!(q.version, v + 1, "a refused release changes nothing");
    }

    fn flag(event: &str, mode: Mode) -> Flag {
        fixtures::flag(event, mode, 30.0)
    }

    #[test]
    fn id_is_stable_and_redeliveries_do_not_roll_up() {
        let f = flag("e1", Mode::Enforce);
        assert_eq!(f.quarantine_id(), flag("e1", Mode::Enforce).quarantine_id());
        assert_ne!(f.quarantine_id(), flag("e2", Mode::Enforce).quarantine_id());
        assert_eq!(f.key(), "pay-eu/instance/pay-eu-7f");
        let mut q = Quarantine::open(
            &f,
            &[("vault".into(), Some(fixtures::FP.into()))],
            &["slack".into()],
            "w1",
        );
        assert_eq!(q.state, State::Pending);
        assert!(!q.attach(&f));
        assert!(q.roll_in(&mut flag("e2", Mode::Enforce)));
        assert_eq!((q.rolled_up, q.flags(), q.version), (1, 2, 2));
    }

    #[test]
    fn sealing_keys_by_fingerprint_and_strips_the_raw_event() {
        use crate::config::CredentialIdMode;
        use crate::respond::credential::Fingerprinter;
        let mut f = flag("e1", Mode::Enforce);
        f.credential = None;
        f.raw = r#"{"event_id":"e1","agent_id":"pay-eu","credential_id":"tok-1"}"#.into();
        let fp = Fingerprinter::new(b"test key");
        f.seal(&CredentialPolicy::new(fp.clone(), CredentialIdMode::Secret));
        let want = fp.fingerprint("tok-1");
        assert_eq!(
            f.credential.as_ref().map(|c| c.fingerprint.as_str()),
            Some(want.as_str())
        );
        assert!(!f.key().contains("tok-1"));
        assert!(
            !f.raw.contains("tok-1") && f.raw.contains(&want),
            "{}",
            f.raw
        );
        let q = Quarantine::open(&f, &[], &[], "w1");
        let stored = serde_json::to_string(&q).unwrap();
        assert!(!stored.contains("tok-1"), "{stored}");
        assert!(stored.contains(&want));
        // A declared handle is shown as it is; the key stays the same.
        let mut h = flag("e1", Mode::Enforce);
        h.seal(&CredentialPolicy::new(fp, CredentialIdMode::Handle));
        assert_eq!(h.credential.as_ref().map(|c| c.shown()), Some("tok-1"));
        assert_eq!(h.key(), f.key());
    }

    #[test]
    fn a_record_with_the_raw_credential_is_migrated() {
        use crate::config::CredentialIdMode;
        use crate::respond::credential::Fingerprinter;
        let mut f = flag("e1", Mode::Enforce);
        f.raw = r#"{"event_id":"e1","credential_id":"tok-1"}"#.into();
        let q = Quarantine::open(&f, &[("vault".into(), Some("tok-1".into()))], &[], "w1");
        // As an earlier release wrote it.
        let mut old = serde_json::to_value(&q).unwrap();
        old["credential_id"] = "tok-1".into();
        old["key"] = "pay-eu/credential/tok-1".into();
        old.as_object_mut().unwrap().remove("credential");
        let mut q: Quarantine = serde_json::from_value(old).unwrap();
        let fp = Fingerprinter::new(b"k");
        let policy = CredentialPolicy::new(fp.clone(), CredentialIdMode::Secret);
        let raw = q.migrate_legacy_credential(&policy).unwrap();
        assert_eq!(raw.expose(), "tok-1");
        let stored = serde_json::to_string(&q).unwrap();
        assert!(!stored.contains("tok-1"), "{stored}");
        let want = fp.fingerprint("tok-1");
        assert_eq!(q.key, format!("pay-eu/credential/{want}"));
        assert_eq!(q.revocations[0].target.as_deref(), Some(want.as_str()));
        assert!(q.flagged_events[0].contains(&want));
        assert_eq!(q.migrate_legacy_credential(&policy), None);
    }

    use fixtures::other_session;

    #[test]
    fn credentials_of_one_agent_roll_into_one_quarantine_each_revoked() {
        let revokers = [("vault".to_owned(), None), ("hook".to_owned(), None)];
        let first = other_session("e1", 1);
        let mut q = Quarantine::open(&first, &revokers, &[], "w1");
        assert_eq!(q.credentials.len(), 1);
        for r in &mut q.revocations {
            r.outcome = Outcome::Succeeded;
        }
        q.settle_state();
        assert_eq!(q.state, State::Revoked);
        // A later session with a new credential: same key, same quarantine,
        // a pending revocation per revoker for the new credential only.
        let second = other_session("e2", 2);
        assert_eq!(second.key(), first.key());
        assert!(q.attach(&second));
        assert_eq!(q.add_credential(&second, &revokers), Some(1));
        assert_eq!(q.state, State::Pending, "not every credential is revoked");
        assert_eq!(q.credentials[0].state, State::Revoked);
        assert_eq!(q.credentials[1].state, State::Pending);
        assert_eq!(q.revocations.iter().filter(|r| r.is_for(1)).count(), 2);
        // The same credential again adds no revocation, only a count.
        let again = other_session("e3", 2);
        assert!(q.attach(&again));
        assert_eq!(q.add_credential(&again, &revokers), None);
        assert_eq!((q.credentials[1].flags, q.revocations.len()), (2, 4));
        assert!(!q.credential_settled(1));
        for r in q.revocations.iter_mut().filter(|r| r.is_for(1)) {
            r.outcome = Outcome::Failed;
            r.attempts = 3;
            r.last_error = Some("refused".into());
        }
        q.settle_state();
        assert!(q.credential_settled(1));
        assert_eq!(q.state, State::RevokeFailed);
        assert_eq!(q.credentials[1].state, State::RevokeFailed);
        assert_eq!(q.credentials[1].attempts, 6);
        assert_eq!(q.credentials[1].last_error.as_deref(), Some("refused"));
        // Only fingerprints are stored.
        let stored = serde_json::to_string(&q).unwrap();
        assert!(!stored.contains("tok-2"), "{stored}");
        // Shadow: listed, never revoked.
        let mut s = Quarantine::open(&flag("e1", Mode::Shadow), &revokers, &[], "w1");
        let mut f = other_session("e9", 9);
        f.mode = Mode::Shadow;
        assert!(s.attach(&f));
        assert_eq!(s.add_credential(&f, &revokers), None);
        assert_eq!(s.credentials.len(), 2);
        assert!(s.revocations.is_empty());
        assert_eq!(s.credentials[1].state, State::Shadow);
    }

    #[test]
    fn a_credential_after_a_flag_without_one_gets_its_own_revocations() {
        let revokers = [("vault".to_owned(), None)];
        let mut bare = flag("e1", Mode::Enforce);
        bare.credential_id = None;
        bare.credential = None;
        let mut q = Quarantine::open(&bare, &revokers, &[], "w1");
        assert_eq!(q.revocations[0].credential, None, "nothing to revoke");
        q.revocations[0].outcome = Outcome::Failed;
        let later = other_session("e2", 2);
        assert!(q.attach(&later));
        assert_eq!(q.add_credential(&later, &revokers), Some(0));
        assert!(q.revocations[1].is_for(0) && !q.revocations[0].is_for(0));
        assert!(!q.credential_settled(0));
        // Records of an earlier release revoke their first credential.
        let mut v = serde_json::to_value(&q.revocations[1]).unwrap();
        v.as_object_mut().unwrap().remove("credential");
        let old: Revocation = serde_json::from_value(v).unwrap();
        assert!(old.is_for(0));
    }

    #[test]
    fn state_settles_on_every_outcome() {
        let f = flag("e1", Mode::Enforce);
        let revokers = [("a".to_owned(), None), ("b".to_owned(), None)];
        let mut q = Quarantine::open(&f, &revokers, &[], "w1");
        q.revocations[0].outcome = Outcome::Succeeded;
        q.settle_state();
        assert_eq!(q.state, State::Pending);
        q.revocations[1].outcome = Outcome::Succeeded;
        q.settle_state();
        assert_eq!(q.state, State::Revoked);
        let mut q = Quarantine::open(&f, &revokers, &[], "w1");
        q.revocations[1].outcome = Outcome::Failed;
        q.settle_state();
        assert_eq!(q.state, State::RevokeFailed);
        let s = Quarantine::open(&flag("e1", Mode::Shadow), &revokers, &[], "w1");
        assert_eq!(s.state, State::Shadow);
        assert!(s.revocations.is_empty() && !s.state.blocks());
    }
}
