//! A signed webhook: the receiver (a gateway, a broker, a script) revokes
//! the credential in the body. Signed with HMAC-SHA256 (`v2`), with a
//! delivery id that stays the same across retries and restarts.

use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::Sha256;

use crate::config::WebhookConfig;
use crate::respond::deliver::{classify, excerpt};
use crate::respond::incident::Quarantine;
use crate::respond::retry::Attempt;

/// The receiver's error answer, `{"error":"..."}`.
#[derive(Debug, Deserialize)]
struct Answer {
    error: String,
}

/// The `error` of a receiver's JSON answer.
fn answer_error(body: &str) -> Option<String> {
    serde_json::from_str::<Answer>(body).ok().map(|a| a.error)
}

/// One delivery: 2xx is revoked, and so is the receiver's "duplicate
/// delivery" 409 (it processed an earlier attempt whose answer was
/// lost); any other 4xx is a refusal; 429, 408 and 5xx are retried.
/// `ts` is this attempt's `X-Warden-Timestamp`: every attempt is signed
/// afresh, so a receiver that rejects replayed signatures accepts it.
pub async fn revoke(
    http: &reqwest::Client,
    w: &WebhookConfig,
    secret: &str,
    revoker: &str,
    q: &Quarantine,
    credential: Option<&str>,
    ts: u64,
) -> Attempt {
    let body = body(q, credential);
    // The raw credential (from the revocation queue, the same after a
    // restart) keeps the id stable across retries.
    let delivery = delivery_id(&q.id, revoker, credential);
    let ts = ts.to_string();
    let sig = sign(secret, &ts, &delivery, &body);
    let req = http
        .post(&w.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Warden-Timestamp", &ts)
        .header("X-Warden-Delivery", &delivery)
        .header("X-Warden-Signature", format!("v2={sig}"))
        .body(body);
    match req.send().await {
        Ok(resp) if resp.status() == StatusCode::CONFLICT => {
            let body = resp.text().await.unwrap_or_default();
            if is_duplicate_delivery(&body) {
                Attempt::Done
            } else {
                Attempt::Refused(format!("HTTP 409 {}", excerpt(&body)))
            }
        }
        sent => classify(sent, |s| s.is_success(), &[], answer_error).await,
    }
}

/// Unix milliseconds for the next attempt, later than any `clock` handed
/// out before, even for two attempts within one millisecond.
pub fn next_timestamp(clock: &AtomicU64) -> u64 {
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let prev = clock
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or_else(|last| last);
    now.max(prev.saturating_add(1))
}

/// Whether a 409 body is the receiver's "duplicate delivery" answer
/// (`{"error":"duplicate delivery"}`), not a refusal.
fn is_duplicate_delivery(body: &str) -> bool {
    answer_error(body).is_some_and(|e| e == "duplicate delivery")
}

/// The body: the quarantine, without the raw events (they stay in the
/// registry for learning), with the raw `credential_id` to revoke: the
/// receiver is a revoker.
pub fn body(q: &Quarantine, credential: Option<&str>) -> Vec<u8> {
    let mut v = serde_json::to_value(q).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("flagged_events");
        o.remove("seen_events");
        o.insert("type".to_owned(), "warden.quarantine".into());
        o.insert("credential_id".to_owned(), credential.into());
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// `X-Warden-Delivery`: one id per revocation (quarantine, revoker,
/// credential), the same on every attempt and after a restart that resumes
/// it, so a receiver can tell a retry from a new request. 32 hex digits of
/// SHA-256 over the length-prefixed parts.
pub fn delivery_id(quarantine: &str, revoker: &str, credential: Option<&str>) -> String {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(b"warden-delivery-v1");
    for part in [Some(quarantine), Some(revoker), credential] {
        match part {
            Some(p) => {
                h.update([1u8]);
                h.update((p.len() as u64).to_be_bytes());
                h.update(p.as_bytes());
            }
            None => h.update([0u8]),
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// `hex(HMAC-SHA256(secret, "<timestamp>.<delivery id>.<body>"))`, the
/// `v2=` signature: the receiver recomputes it, compares in constant time,
/// and rejects timestamps far from its clock and signatures it has seen.
pub fn sign(secret: &str, ts: &str, delivery: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(delivery.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_delivery_and_body() {
        let sig = sign("key", "The", "quick", b"brown fox jumps over the lazy dog");
        // Every part, and the key, is covered.
        for other in [
            sign("key", "The", "quick", b"brown fox jumps over the lazy cat"),
            sign("key", "The", "quack", b"brown fox jumps over the lazy dog"),
            sign("key", "Thy", "quick", b"brown fox jumps over the lazy dog"),
            sign("kez", "The", "quick", b"brown fox jumps over the lazy dog"),
        ] {
            assert_ne!(sig, other);
        }
        // HMAC over the dot-joined string, checked against an independently
        // computed value (RFC 4231-style).
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"The.quick.brown fox jumps over the lazy dog");
        assert_eq!(sig, hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            sig,
            "32563cdea4ac199d6db6a8bd99d7483cccd442459101c69fd8ea4cc021adbb6b"
        );
    }

    #[test]
    fn delivery_id_is_stable_and_differs_per_revocation() {
        let id = delivery_id("q-1", "gateway", Some("cred-42"));
        // Stable: a fixed function of its parts (so also after a restart).
        assert_eq!(id, "1f51653441d5b5f0072a3110687b55aa");
        assert_eq!(id, delivery_id("q-1", "gateway", Some("cred-42")));
        // Differs per credential, revoker and quarantine.
        let others = [
            delivery_id("q-1", "gateway", Some("cred-43")),
            delivery_id("q-1", "gateway", None),
            delivery_id("q-1", "gateway", Some("")),
            delivery_id("q-1", "gateway-2", Some("cred-42")),
            delivery_id("q-2", "gateway", Some("cred-42")),
            // The parts are framed: moving a boundary changes the id.
            delivery_id("q-1g", "ateway", Some("cred-42")),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(&id, o, "{i}");
            for p in &others[i + 1..] {
                assert_ne!(o, p);
            }
        }
    }

    #[test]
    fn webhook_timestamps_are_milliseconds_and_never_repeat() {
        let clock = AtomicU64::new(0);
        let now = chrono::Utc::now().timestamp_millis() as u64;
        let ts: Vec<u64> = (0..1000).map(|_| next_timestamp(&clock)).collect();
        assert!(ts[0] >= now && ts[0] < now + 5_000, "{} vs {now}", ts[0]);
        assert!(ts.windows(2).all(|w| w[1] > w[0]), "strictly increasing");
    }

    #[test]
    fn only_the_duplicate_delivery_answer_counts_as_delivered() {
        assert!(is_duplicate_delivery(r#"{"error":"duplicate delivery"}"#));
        assert!(is_duplicate_delivery(
            r#"{ "error": "duplicate delivery", "delivery": "ab" }"#
        ));
        for refusal in [
            r#"{"error":"replayed signature"}"#,
            r#"{"error":"duplicate"}"#,
            r#"{"error":["duplicate delivery"]}"#,
            "duplicate delivery",
            "",
        ] {
            assert!(!is_duplicate_delivery(refusal), "{refusal}");
        }
    }
}
