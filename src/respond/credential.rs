//! The credential of a flagged call, as Warden shows it and as it keeps it.
//!
//! An event's `credential_id` may be the bearer token itself (Vault
//! `method = "token"`, RFC 7009). Unless `response.credential-id = "handle"`
//! says the deployment sends a non-secret handle, the raw value is a secret:
//! it travels only as a [`SecretString`] from the worker to the revocation
//! queue and the revokers, and everything a person or another system reads
//! (alerts, logs, the API, the audit log, stored quarantines) carries a
//! [`Credential`]: a keyed fingerprint, `cred:` and the first 16 hex digits
//! of HMAC-SHA256(key, credential), plus the handle when it may be shown.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::{Config, CredentialIdMode};

/// What a fingerprint starts with, so a reader knows it is not the value.
pub const FINGERPRINT_PREFIX: &str = "cred:";

/// A secret string whose `Debug` and `Display` print `<redacted>`, so it
/// cannot be logged or formatted into a message by accident. It has no
/// `Serialize` either: writing it anywhere takes [`expose`](Self::expose).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The raw value, for the revocation queue and the revokers only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Read (never written) so that records from before credentials were kept
/// apart can be migrated.
impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A credential as it may be shown: always its fingerprint, and the value
/// itself only when the deployment declared it a non-secret handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// `cred:` and 16 hex digits of the keyed HMAC of the value.
    pub fingerprint: String,
    /// The value, when `response.credential-id = "handle"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
}

impl Credential {
    /// What alerts print: the handle when there is one, else the
    /// fingerprint.
    pub fn shown(&self) -> &str {
        self.handle.as_deref().unwrap_or(&self.fingerprint)
    }
}

/// Computes credential fingerprints under a per-deployment key. `Debug`
/// does not print the key.
#[derive(Clone)]
pub struct Fingerprinter {
    key: [u8; 32],
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprinter(<redacted>)")
    }
}

impl Fingerprinter {
    /// A fingerprinter keyed by `deployment_key` (any length). The HMAC key
    /// is derived from it under its own label, so a fingerprint reveals
    /// nothing about keys the same secret serves elsewhere.
    pub fn new(deployment_key: &[u8]) -> Self {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(deployment_key).expect("HMAC takes any key");
        mac.update(b"warden credential fingerprint v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// `cred:` and the first 16 hex digits of HMAC-SHA256(key, credential).
    pub fn fingerprint(&self, credential: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(credential.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("{FINGERPRINT_PREFIX}{}", hex::encode(&digest[..8]))
    }
}

/// The one place the fingerprint key comes from: the deployment's
/// `detector.hash-key` (`WARDEN_HASH_KEY`), as bytes.
pub fn fingerprinter(cfg: &Config) -> Fingerprinter {
    Fingerprinter::new(cfg.detector.hash_key().as_bytes())
}

/// Turns raw credentials into what may be shown, per
/// `response.credential-id`.
#[derive(Debug, Clone)]
pub struct CredentialPolicy {
    fingerprints: Fingerprinter,
    mode: CredentialIdMode,
}

impl CredentialPolicy {
    pub fn new(fingerprints: Fingerprinter, mode: CredentialIdMode) -> Self {
        Self { fingerprints, mode }
    }

    pub fn of(cfg: &Config) -> Self {
        Self::new(fingerprinter(cfg), cfg.response.credential_id)
    }

    pub fn credential(&self, raw: &SecretString) -> Credential {
        Credential {
            fingerprint: self.fingerprints.fingerprint(raw.expose()),
            handle: match self.mode {
                CredentialIdMode::Secret => None,
                CredentialIdMode::Handle => Some(raw.expose().to_owned()),
            },
        }
    }
}

/// `raw` (one JSON event) with the string of every `credential_id` key
/// replaced by `shown` of it. Text that is not JSON (a malformed event, or
/// one cut short) has every `"credential_id": "…"` string scrubbed instead,
/// so it does not carry the value either.
pub fn redact_event(raw: &str, shown: impl Fn(&str) -> String) -> String {
    if !raw.contains("credential_id") {
        return raw.to_owned();
    }
    if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(raw) {
        redact_value(&mut v, &shown);
        if let Ok(s) = serde_json::to_string(&v) {
            return s;
        }
    }
    scrub_credential_strings(raw, &shown)
}

fn redact_value(v: &mut serde_json::Value, shown: &impl Fn(&str) -> String) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                match x {
                    serde_json::Value::String(s) if k == "credential_id" => *s = shown(s),
                    _ => redact_value(x, shown),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for x in items {
                redact_value(x, shown);
            }
        }
        _ => {}
    }
}

/// Replaces the string after every `"credential_id"` key, in text that need
/// not parse, by `shown` of its (escaped) content.
fn scrub_credential_strings(text: &str, shown: &impl Fn(&str) -> String) -> String {
    const KEY: &str = "\"credential_id\"";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let (head, tail) = rest.split_at(at + KEY.len());
        out.push_str(head);
        rest = tail;
        let Some(value) = tail.trim_start().strip_prefix(':').map(str::trim_start) else {
            continue;
        };
        let Some(body) = value.strip_prefix('"') else {
            continue;
        };
        // The end of the JSON string: the first quote not escaped. An
        // unterminated string runs to the end of the text.
        let mut end = body.len();
        let mut escaped = false;
        for (i, b) in body.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&tail[..tail.len() - value.len()]);
        out.push_str(&serde_json::Value::from(shown(&body[..end])).to_string());
        rest = body.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// `text` with every occurrence of each non-empty secret replaced by
/// `<redacted>`: for error messages that quote what a server answered.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(s) {
            out = out.replace(s, "<redacted>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_keyed_and_short() {
        let a = Fingerprinter::new(b"deployment-a");
        let fp = a.fingerprint("hvs.secret-token");
        assert!(fp.starts_with("cred:") && fp.len() == 5 + 16, "{fp}");
        assert!(fp[5..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            fp,
            Fingerprinter::new(b"deployment-a").fingerprint("hvs.secret-token")
        );
        assert_ne!(fp, a.fingerprint("hvs.other-token"));
        // Another key, another fingerprint: it cannot be computed without
        // the deployment's key.
        assert_ne!(
            fp,
            Fingerprinter::new(b"deployment-b").fingerprint("hvs.secret-token")
        );
        assert!(!fp.contains("secret"));
        assert!(!format!("{a:?}").contains("deployment"));
    }

    #[test]
    fn fingerprint_is_hmac_sha256_under_the_derived_key() {
        let key = b"k";
        let derived = {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
            m.update(b"warden credential fingerprint v1");
            m.finalize().into_bytes()
        };
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&derived).unwrap();
        m.update(b"tok");
        let want = format!("cred:{}", &hex::encode(m.finalize().into_bytes())[..16]);
        assert_eq!(Fingerprinter::new(key).fingerprint("tok"), want);
    }

    #[test]
    fn secret_string_never_formats_its_value() {
        let s = SecretString::new("hvs.very-secret");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(<redacted>)");
        assert_eq!(s.expose(), "hvs.very-secret");
    }

    #[test]
    fn policy_shows_a_handle_only_when_configured() {
        let raw = SecretString::new("acc-1");
        let fp = Fingerprinter::new(b"x");
        let secret = CredentialPolicy::new(fp.clone(), CredentialIdMode::Secret).credential(&raw);
        assert_eq!(secret.handle, None);
        assert_eq!(secret.shown(), fp.fingerprint("acc-1"));
        let handle = CredentialPolicy::new(fp, CredentialIdMode::Handle).credential(&raw);
        assert_eq!(handle.shown(), "acc-1");
        assert_eq!(handle.fingerprint, secret.fingerprint);
        let json = serde_json::to_string(&secret).unwrap();
        assert!(
            !json.contains("acc-1") && !json.contains("handle"),
            "{json}"
        );
    }

    #[test]
    fn events_lose_their_credential_parsed_or_not() {
        let shown = |c: &str| format!("fp({})", c.len());
        let ev = r#"{"event_id":"e1","credential_id":"tok-secret","args":{"a":1}}"#;
        let v: serde_json::Value = serde_json::from_str(&redact_event(ev, shown)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event_id":"e1","credential_id":"fp(10)","args":{"a":1}})
        );
        // Not JSON (cut short, or broken later in the line): still scrubbed.
        let broken = r#"{"event_id":"e1", "credential_id" : "tok-\"secret", "ts": nope"#;
        let out = redact_event(broken, shown);
        assert!(!out.contains("secret"), "{out}");
        assert!(out.contains(r#""credential_id" : "fp(12)""#), "{out}");
        let cut = r#"{"credential_id":"tok-secr"#;
        assert_eq!(redact_event(cut, shown), r#"{"credential_id":"fp(8)""#);
        // Nested ones too, and lines without one are untouched.
        let nested = r#"{"args":{"credential_id":"inner-secret"}}"#;
        assert!(!redact_event(nested, shown).contains("inner-secret"));
        assert_eq!(redact_event(r#"{"a":"b"}"#, shown), r#"{"a":"b"}"#);
        assert_eq!(
            redact_event(r#"{"credential_id":7}"#, shown),
            r#"{"credential_id":7}"#
        );
    }

    #[test]
    fn scrub_replaces_every_secret() {
        assert_eq!(
            scrub("HTTP 400 bad token abc, abc", &["abc", ""]),
            "HTTP 400 bad token <redacted>, <redacted>"
        );
    }
}
