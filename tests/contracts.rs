//! The contract servers in `common::contracts` hold to the contracts they
//! stand in for: valid requests succeed and are recorded, violations get
//! the service's own error, and the fault plan and lifecycle work.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::contracts::*;

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request over a fresh connection; `Err` on a connection
/// failure or when no answer comes within `timeout`.
fn try_http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Resp> {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(timeout))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Resp {
        status,
        headers,
        body: body.to_owned(),
    })
}

fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    try_http(
        method,
        url,
        headers,
        body.as_bytes(),
        Duration::from_secs(5),
    )
    .unwrap()
}

const JSON: (&str, &str) = ("Content-Type", "application/json");
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

fn post_json(url: &str, body: &Value) -> Resp {
    http("POST", url, &[JSON], &body.to_string())
}

#[test]
fn slack_accepts_messages_and_rejects_what_slack_rejects() {
    let slack = ContractServer::slack();
    let url = slack.url();
    assert!(url.ends_with("/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"));

    let r = post_json(&url, &json!({ "text": "Agent quarantined" }));
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let blocks = json!({
        "text": "fallback",
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": "Quarantined" } },
            { "type": "section", "text": { "type": "mrkdwn", "text": "*agent* a-1" },
              "fields": [{ "type": "mrkdwn", "text": "score" }, { "type": "plain_text", "text": "0.97" }] },
            { "type": "divider" },
            { "type": "context", "elements": [{ "type": "mrkdwn", "text": "warden" }] }
        ]
    });
    let r = http(
        "POST",
        &url,
        &[("Content-Type", "application/json; charset=utf-8")],
        &blocks.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let bad = |body: &str, ct: &str, path: &str| {
        let r = http(
            "POST",
            &format!("{}{path}", slack.base_url()),
            &[("Content-Type", ct)],
            body,
        );
        (r.status, r.body)
    };
    let ct = "application/json";
    let p = SLACK_PATH;
    let no_text = (400, "no_text".to_owned());
    let invalid_blocks = (400, "invalid_blocks".to_owned());
    assert_eq!(bad("{not json", ct, p), (400, "invalid_payload".to_owned()));
    assert_eq!(
        bad(r#"{"text":"x"}"#, "text/plain", p),
        (400, "invalid_payload".to_owned())
    );
    assert_eq!(bad("{}", ct, p), no_text);
    assert_eq!(bad(r#"{"text":""}"#, ct, p), no_text);
    assert_eq!(
        bad(r#"{"text":"x"}"#, ct, "/services/T00000000/B00000000/wrong"),
        (404, "no_service".to_owned())
    );
    let section = json!({ "type": "section", "text": { "type": "mrkdwn", "text": "x" } });
    let many = json!({ "blocks": vec![section.clone(); 51] });
    assert_eq!(bad(&many.to_string(), ct, p), invalid_blocks);
    let cases = [
        json!({ "type": "header", "text": { "type": "mrkdwn", "text": "h" } }),
        json!({ "type": "header", "text": { "type": "plain_text", "text": "h".repeat(151) } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": "s".repeat(3001) } }),
        json!({ "type": "section", "fields": vec![json!({ "type": "mrkdwn", "text": "f" }); 11] }),
        json!({ "type": "section", "fields": [{ "type": "mrkdwn", "text": "f".repeat(2001) }] }),
        json!({ "type": "context", "elements": vec![json!({ "type": "mrkdwn", "text": "c" }); 11] }),
        json!({ "type": "section", "text": { "text": "no type" } }),
        json!({ "type": "section", "text": { "type": "mrkdwn" } }),
        json!({ "type": "banner", "text": { "type": "mrkdwn", "text": "x" } }),
    ];
    for block in cases {
        let body = json!({ "text": "fallback", "blocks": [block] }).to_string();
        assert_eq!(bad(&body, ct, p), invalid_blocks, "{body}");
    }
    // The recorded rejection says which rule it broke.
    let last = slack.requests().pop().unwrap();
    assert!(
        last.reason.as_deref().unwrap().contains("unknown type"),
        "{last}"
    );
    let r = http("GET", &url, &[], "");
    assert_eq!(r.status, 405);

    assert_eq!(slack.successes().len(), 2);
    let first = &slack.successes()[0];
    assert_eq!(first.json()["text"], "Agent quarantined");
    assert_eq!(first.header("Content-Type"), Some("application/json"));
    assert!(slack.requests().iter().filter(|r| !r.ok()).count() >= 15);

    // Optional per-webhook rate limit: about one message a second.
    slack.enforce_rate_limit(true);
    let a = post_json(&url, &json!({ "text": "one" }));
    let b = post_json(&url, &json!({ "text": "two" }));
    assert_eq!(a.status, 200);
    assert_eq!((b.status, b.body.as_str()), (429, "rate_limited"));
    assert_eq!(b.header("retry-after"), Some("1"));
}

#[test]
fn pagerduty_validates_events_and_tracks_incidents() {
    let pd = ContractServer::pagerduty();
    let url = pd.url();
    assert!(url.ends_with("/v2/enqueue"));
    let trigger = |dedup: &str| {
        json!({
            "routing_key": PAGERDUTY_ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": dedup,
            "payload": {
                "summary": "Agent a-1 quarantined",
                "source": "warden",
                "severity": "critical",
                "timestamp": "2015-07-17T08:42:58.315+0000",
                "component": "agent",
                "group": "agents",
                "class": "deviation",
                "custom_details": { "score": 0.97 }
            },
            "links": [{ "href": "https://warden.example/q/1", "text": "quarantine" }],
            "images": [{ "src": "https://warden.example/chart.png" }]
        })
    };
    let r = post_json(&url, &trigger("q-1"));
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({ "status": "success", "message": "Event processed", "dedup_key": "q-1" })
    );
    assert_eq!(post_json(&url, &trigger("q-1")).status, 202);
    assert_eq!(
        pd.incidents(),
        vec![("q-1".to_owned(), "triggered".to_owned(), 2)]
    );
    let resolve = json!({ "routing_key": PAGERDUTY_ROUTING_KEY, "event_action": "resolve", "dedup_key": "q-1" });
    assert_eq!(post_json(&url, &resolve).status, 202);
    assert_eq!(pd.incidents()[0].1, "resolved");
    // A trigger after a resolve opens a new alert.
    assert_eq!(post_json(&url, &trigger("q-1")).status, 202);
    assert_eq!(pd.incidents().len(), 2);
    // An event's resolve is no human's: a trigger after it re-opens
    // nothing a human closed.
    assert!(pd.reopened().is_empty());
    // A human resolves it; a later trigger re-opens it, and that is
    // recorded.
    assert!(pd.resolve_by_human("q-1"));
    assert!(!pd.resolve_by_human("q-1"), "nothing open any more");
    assert_eq!(pd.incidents()[1].1, "resolved");
    assert!(pd.reopened().is_empty());
    assert_eq!(post_json(&url, &trigger("q-1")).status, 202);
    assert_eq!(pd.reopened(), ["q-1"]);
    assert_eq!(pd.incidents().len(), 3);

    let mut no_key = trigger("x");
    no_key.as_object_mut().unwrap().remove("dedup_key");
    let r = post_json(&url, &no_key);
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["dedup_key"].as_str().unwrap().len(), 32);

    let invalid = |ev: Value, needle: &str| {
        let r = post_json(&url, &ev);
        assert_eq!(r.status, 400, "{ev}");
        let v = r.json();
        assert_eq!(v["status"], "invalid event");
        assert_eq!(v["message"], "Event object is invalid");
        let errors = v["errors"].to_string();
        assert!(errors.contains(needle), "{errors} lacks {needle}");
    };
    let with = |path: &[&str], v: Value| {
        let mut ev = trigger("q-2");
        let mut at = &mut ev;
        for k in &path[..path.len() - 1] {
            at = &mut at[*k];
        }
        at[path[path.len() - 1]] = v;
        ev
    };
    invalid(
        with(&["routing_key"], json!("short")),
        "Length of 'routing_key' is incorrect",
    );
    invalid(
        with(&["event_action"], json!("escalate")),
        "'event_action' is invalid",
    );
    invalid(
        with(&["dedup_key"], json!("k".repeat(256))),
        "'dedup_key' is too long",
    );
    invalid(
        with(&["payload", "summary"], json!("s".repeat(1025))),
        "'summary' is too long",
    );
    invalid(
        with(&["payload", "summary"], json!("")),
        "'payload.summary' is missing",
    );
    invalid(
        with(&["payload", "source"], json!("")),
        "'payload.source' is missing",
    );
    invalid(
        with(&["payload", "severity"], json!("high")),
        "'payload.severity' is invalid",
    );
    invalid(
        with(&["payload", "timestamp"], json!("yesterday")),
        "'payload.timestamp' is invalid",
    );
    invalid(
        with(&["payload", "custom_details"], json!([1])),
        "custom_details",
    );
    invalid(
        with(&["links"], json!([{ "text": "no href" }])),
        "'links[0]'",
    );
    invalid(
        json!({ "routing_key": PAGERDUTY_ROUTING_KEY, "event_action": "resolve" }),
        "'dedup_key' is missing",
    );
    invalid(
        json!({ "routing_key": PAGERDUTY_ROUTING_KEY, "event_action": "trigger" }),
        "'payload' is missing",
    );
    let big = with(
        &["payload", "custom_details"],
        json!({ "blob": "x".repeat(520 * 1024) }),
    );
    invalid(big, "512 KB");
    let r = http("POST", &url, &[JSON], "{nope");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (400, Some("Unrecognized object"))
    );
    let ok_ts = with(&["payload", "timestamp"], json!("2026-01-02T03:04:05Z"));
    assert_eq!(post_json(&url, &ok_ts).status, 202);

    // Throttling from the fault plan.
    pd.fail_next(1, 429, Some(30));
    let r = post_json(&url, &trigger("q-3"));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(r.json()["status"], "throttle exceeded");
    assert_eq!(
        r.json()["message"],
        "Requests for this service are arriving too quickly.  Please retry later."
    );
    assert_eq!(post_json(&url, &trigger("q-3")).status, 202);
    // Throttled events open nothing.
    let q3: Vec<_> = pd
        .incidents()
        .into_iter()
        .filter(|i| i.0 == "q-3")
        .collect();
    assert_eq!(q3, vec![("q-3".to_owned(), "triggered".to_owned(), 1)]);
}

#[test]
fn vault_revokes_with_the_right_token_only() {
    let vault = ContractServer::vault("root-token");
    let base = vault.url();
    assert_eq!(base, vault.base_url());
    let tok = ("X-Vault-Token", "root-token");
    let call = |method: &str, path: &str, headers: &[(&str, &str)], body: &str| {
        let r = http(method, &format!("{base}{path}"), headers, body);
        (r.status, r.body)
    };
    assert_eq!(
        call(
            "POST",
            "/v1/auth/token/revoke",
            &[tok, JSON],
            r#"{"token":"hvs.agent"}"#
        ),
        (204, String::new())
    );
    assert_eq!(
        call(
            "POST",
            "/v1/auth/token/revoke-accessor",
            &[tok],
            r#"{"accessor":"acc-1"}"#
        )
        .0,
        204
    );
    assert_eq!(
        call(
            "PUT",
            "/v1/sys/leases/revoke",
            &[tok],
            r#"{"lease_id":"aws/creds/agent/abc"}"#
        )
        .0,
        204
    );
    assert_eq!(
        call("PUT", "/v1/sys/revoke/db/creds/agent/xyz", &[tok], "").0,
        204
    );

    let denied = (403, r#"{"errors":["permission denied"]}"#.to_owned());
    assert_eq!(
        call("POST", "/v1/auth/token/revoke", &[], r#"{"token":"t"}"#),
        denied
    );
    assert_eq!(
        call(
            "POST",
            "/v1/auth/token/revoke",
            &[("X-Vault-Token", "root-tokenX")],
            r#"{"token":"t"}"#
        ),
        denied
    );
    assert_eq!(
        call("POST", "/v1/auth/token/revoke", &[tok], r#"{"tok":"t"}"#),
        (400, r#"{"errors":["missing token ID"]}"#.to_owned())
    );
    assert_eq!(
        call("POST", "/v1/auth/token/revoke-accessor", &[tok], "{}"),
        (400, r#"{"errors":["missing accessor"]}"#.to_owned())
    );
    assert_eq!(
        call("PUT", "/v1/sys/leases/revoke", &[tok], r#"{"lease_id":""}"#),
        (
            400,
            r#"{"errors":["lease_id must be specified"]}"#.to_owned()
        )
    );
    assert_eq!(call("POST", "/v1/auth/token/revoke", &[tok], "{bad").0, 400);
    assert_eq!(
        call("POST", "/v1/auth/token/revoke", &[tok], r#"{"token":7}"#).0,
        400
    );
    assert_eq!(call("GET", "/v1/auth/token/revoke", &[tok], "").0, 405);
    assert_eq!(call("POST", "/v1/auth/token/nope", &[tok], "{}").0, 404);

    assert_eq!(
        vault.revoked(),
        [
            "hvs.agent",
            "acc-1",
            "aws/creds/agent/abc",
            "db/creds/agent/xyz"
        ]
    );
    assert_eq!(vault.successes().len(), 4);
    assert_eq!(
        vault.successes()[0].header("x-vault-token"),
        Some("root-token")
    );

    // A sealed Vault for a while, then back.
    vault.fail_for(503, Duration::from_millis(300), None);
    let (s, b) = call(
        "POST",
        "/v1/auth/token/revoke",
        &[tok],
        r#"{"token":"later"}"#,
    );
    assert_eq!((s, b.as_str()), (503, r#"{"errors":["Vault is sealed"]}"#));
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(
        call(
            "POST",
            "/v1/auth/token/revoke",
            &[tok],
            r#"{"token":"later"}"#
        )
        .0,
        204
    );
    assert_eq!(vault.revoked().iter().filter(|t| *t == "later").count(), 1);
}

#[test]
fn oauth_revocation_follows_rfc_7009() {
    // A secret with characters that form-urlencoding changes.
    let (id, secret) = ("warden client", "s3cr/t+x:y");
    let oauth = ContractServer::oauth(id, secret);
    let url = oauth.url();
    assert!(url.ends_with("/oauth2/revoke"));
    let basic = oauth_basic(id, secret);
    assert_eq!(basic, "Basic d2FyZGVuK2NsaWVudDpzM2NyJTJGdCUyQnglM0F5");

    let r = http(
        "POST",
        &url,
        &[FORM, ("Authorization", &basic)],
        "token=at-1&token_type_hint=access_token",
    );
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    let post_body = format!(
        "token=rt-1&token_type_hint=refresh_token&client_id={}&client_secret={}",
        form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>()
    );
    assert_eq!(http("POST", &url, &[FORM], &post_body).status, 200);
    // An unknown token is still a success.
    assert_eq!(
        http(
            "POST",
            &url,
            &[FORM, ("Authorization", &basic)],
            "token=never-issued"
        )
        .status,
        200
    );
    assert_eq!(oauth.revoked(), ["at-1", "rt-1", "never-issued"]);
    assert_eq!(
        oauth.successes()[0].form()[0],
        ("token".to_owned(), "at-1".to_owned())
    );

    let invalid_client = |headers: &[(&str, &str)], body: &str| {
        let r = http("POST", &url, headers, body);
        assert_eq!(r.status, 401, "{body}");
        assert_eq!(r.json(), json!({ "error": "invalid_client" }));
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm="));
    };
    invalid_client(&[FORM], "token=t");
    // Basic without the form-urlencoding step RFC 6749 §2.3.1 requires.
    let naive = "Basic d2FyZGVuIGNsaWVudDpzM2NyL3QreDp5"; // "warden client:s3cr/t+x:y"
    invalid_client(&[FORM, ("Authorization", naive)], "token=t");
    invalid_client(
        &[FORM, ("Authorization", &oauth_basic(id, "wrong"))],
        "token=t",
    );
    invalid_client(
        &[FORM],
        "token=t&client_id=warden+client&client_secret=wrong",
    );

    let err = |headers: &[(&str, &str)], body: &str| {
        let r = http("POST", &url, headers, body);
        (
            r.status,
            r.json()["error"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let auth = ("Authorization", basic.as_str());
    let invalid_request = (400, "invalid_request".to_owned());
    assert_eq!(
        err(&[FORM, auth], "token_type_hint=access_token"),
        invalid_request
    );
    assert_eq!(err(&[FORM, auth], "token="), invalid_request);
    assert_eq!(err(&[JSON, auth], r#"{"token":"t"}"#), invalid_request);
    assert_eq!(err(&[FORM, auth], "token=a&token=b"), invalid_request);
    assert_eq!(
        err(&[FORM, auth], "token=t&client_secret=x"),
        invalid_request
    );
    assert_eq!(
        err(&[FORM, auth], "token=t&token_type_hint=id_token"),
        (400, "unsupported_token_type".to_owned())
    );
    assert_eq!(oauth.revoked().len(), 3);

    // 503 always says when to retry.
    oauth.fail_next(2, 503, None);
    let r = http("POST", &url, &[FORM, auth], "token=t2");
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    oauth.fail_next(1, 503, Some(7));
    let r = http("POST", &url, &[FORM, auth], "token=t2");
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(http("POST", &url, &[FORM, auth], "token=t2").status, 200);
}

#[test]
fn webhook_verifies_signature_freshness_and_replays() {
    let secret = "whsec-test";
    let hook = ContractServer::webhook(secret);
    hook.reject_replays(true);
    let url = hook.url();
    assert!(url.ends_with("/revoke"));
    let body = json!({ "quarantine_id": "q-1", "agent_id": "a-1", "credential_id": "cred-42" })
        .to_string();
    let send = |ts: u64, delivery: &str, sig: &str, body: &str| {
        let ts = ts.to_string();
        let r = http(
            "POST",
            &url,
            &[
                JSON,
                ("X-Warden-Timestamp", &ts),
                ("X-Warden-Delivery", delivery),
                ("X-Warden-Signature", sig),
            ],
            body,
        );
        (
            r.status,
            r.json()["error"].as_str().unwrap_or("").to_owned(),
        )
    };
    let (d1, d2) = ("delivery-1", "delivery-2");
    let now = unix_now_ms();
    let sig = sign_webhook(secret, now, d1, body.as_bytes());
    assert!(sig.starts_with("v2=") && sig.len() == 67);
    assert_eq!(send(now, d1, &sig, &body).0, 200);
    assert_eq!(hook.revoked(), ["cred-42"]);
    assert_eq!(hook.successes()[0].json()["quarantine_id"], "q-1");

    // The signature covers the timestamp, the delivery id and the body.
    let bad = (401, "bad signature".to_owned());
    assert_eq!(
        send(
            now,
            d1,
            &sign_webhook("other", now, d1, body.as_bytes()),
            &body
        ),
        bad
    );
    assert_eq!(send(now + 1, d1, &sig, &body), bad);
    assert_eq!(send(now, d2, &sig, &body), bad);
    assert_eq!(
        send(now, d1, &sig, &body.replace("cred-42", "cred-43")),
        bad
    );
    assert_eq!(
        send(now, d1, &sig.to_uppercase().replace("V2=", "v2="), &body),
        bad
    );
    assert_eq!(send(now, d1, &sig.replace("v2=", "v1="), &body), bad);
    assert_eq!(send(now, d1, sig.trim_start_matches("v2="), &body), bad);
    assert_eq!(
        send(
            now,
            "",
            &sign_webhook(secret, now, "", body.as_bytes()),
            &body
        ),
        bad
    );
    let r = http("POST", &url, &[JSON], &body);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (401, Some("bad signature"))
    );

    // More than 5 minutes off either way: 400.
    let stale = now - WEBHOOK_TOLERANCE_SECS * 1000 - 5_000;
    let stale_sig = sign_webhook(secret, stale, d2, body.as_bytes());
    assert_eq!(
        send(stale, d2, &stale_sig, &body),
        (400, "stale timestamp".to_owned())
    );
    let future = now + WEBHOOK_TOLERANCE_SECS * 1000 + 5_000;
    let future_sig = sign_webhook(secret, future, d2, body.as_bytes());
    assert_eq!(
        send(future, d2, &future_sig, &body),
        (400, "stale timestamp".to_owned())
    );

    // The same signed request again is a replayed signature.
    assert_eq!(
        send(now, d1, &sig, &body),
        (409, "replayed signature".to_owned())
    );
    // Signed afresh, the delivery is recognised as already processed.
    let again = now + 1;
    let again_sig = sign_webhook(secret, again, d1, body.as_bytes());
    assert_eq!(
        send(again, d1, &again_sig, &body),
        (409, "duplicate delivery".to_owned())
    );
    // A signature noted on a request the server then failed is a replay too.
    hook.fail_next(1, 503, None);
    let t3 = now + 3;
    let sig3 = sign_webhook(secret, t3, d2, body.as_bytes());
    assert_eq!(send(t3, d2, &sig3, &body).0, 503);
    assert_eq!(
        send(t3, d2, &sig3, &body),
        (409, "replayed signature".to_owned())
    );
    // A new delivery goes through; each was processed once.
    let t4 = now + 4;
    assert_eq!(
        send(
            t4,
            d2,
            &sign_webhook(secret, t4, d2, body.as_bytes()),
            &body
        )
        .0,
        200
    );
    assert_eq!(hook.revoked(), ["cred-42", "cred-42"]);
    assert!(hook.requests().iter().filter(|r| !r.ok()).count() >= 15);

    // Without replay protection every valid request is answered 200, and
    // a delivery is acted on once (a retry of it revokes nothing again).
    let lax = ContractServer::webhook(secret);
    let lax_send = |ts: u64, sig: &str| {
        http(
            "POST",
            &lax.url(),
            &[
                JSON,
                ("X-Warden-Timestamp", &ts.to_string()),
                ("X-Warden-Delivery", d1),
                ("X-Warden-Signature", sig),
            ],
            &body,
        )
        .status
    };
    assert_eq!(lax_send(now, &sig), 200);
    assert_eq!(lax_send(now, &sig), 200);
    assert_eq!(lax.revoked(), ["cred-42"]);
}

#[test]
fn webhook_processes_then_loses_the_answer() {
    let secret = "whsec-test";
    let hook = ContractServer::webhook(secret);
    hook.reject_replays(true);
    let body = json!({ "quarantine_id": "q-1", "credential_id": "cred-7" }).to_string();
    let send = |ts: u64| {
        let r = http(
            "POST",
            &hook.url(),
            &[
                JSON,
                ("X-Warden-Timestamp", &ts.to_string()),
                ("X-Warden-Delivery", "d-7"),
                (
                    "X-Warden-Signature",
                    &sign_webhook(secret, ts, "d-7", body.as_bytes()),
                ),
            ],
            &body,
        );
        (
            r.status,
            r.json()["error"].as_str().unwrap_or("").to_owned(),
        )
    };
    hook.fail_next_after_work(1, 503);
    let now = unix_now_ms();
    // Revoked, but the client sees 503 ...
    assert_eq!(send(now), (503, "unavailable".to_owned()));
    assert_eq!(hook.revoked(), ["cred-7"]);
    assert_eq!(
        hook.requests()[0].reason.as_deref(),
        Some("processed, answer lost")
    );
    // ... and its retry, signed afresh, is a duplicate delivery.
    assert_eq!(send(now + 1), (409, "duplicate delivery".to_owned()));
    assert_eq!(hook.revoked(), ["cred-7"]);
}

#[test]
fn fault_plan_delay_and_restart_on_the_same_port() {
    // fail_for on Slack: 429 with Retry-After, then normal service.
    let slack = ContractServer::slack();
    slack.fail_for(429, Duration::from_millis(200), Some(2));
    let r = post_json(&slack.url(), &json!({ "text": "x" }));
    assert_eq!((r.status, r.body.as_str()), (429, "rate_limited"));
    assert_eq!(r.header("retry-after"), Some("2"));
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(post_json(&slack.url(), &json!({ "text": "x" })).status, 200);
    let recs = slack.wait_until(Duration::from_secs(2), |reqs| reqs.iter().any(Recorded::ok));
    assert_eq!(recs[0].status, 429);
    assert!(recs.iter().any(|r| r.status == 200));

    // fail_next counts down, then normal service.
    slack.fail_next(2, 500, None);
    let statuses: Vec<u16> = (0..3)
        .map(|_| post_json(&slack.url(), &json!({ "text": "x" })).status)
        .collect();
    assert_eq!(statuses, [500, 500, 200]);

    // A held response times the client out but is recorded.
    slack.clear_requests();
    slack.delay(Duration::from_millis(400));
    let t = Instant::now();
    let r = try_http(
        "POST",
        &slack.url(),
        &[JSON],
        br#"{"text":"slow"}"#,
        Duration::from_millis(100),
    );
    assert!(r.is_err());
    assert!(t.elapsed() < Duration::from_millis(350));
    slack.wait_until(Duration::from_secs(1), |reqs| reqs.len() == 1);
    slack.delay(Duration::ZERO);
    assert_eq!(
        post_json(&slack.url(), &json!({ "text": "fast" })).status,
        200
    );

    // wait_until panics with the recorded requests.
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        slack.wait_until(Duration::from_millis(50), |reqs| reqs.len() > 100)
    }))
    .unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains(r#"-> 200 {"text":"fast"}"#), "{msg}");

    // A broker that is down, then comes up on the port it was configured with.
    let port = ContractServer::free_port();
    let url = format!("http://127.0.0.1:{port}/v1/auth/token/revoke");
    let body = br#"{"token":"t"}"#;
    let tok = [("X-Vault-Token", "tk")];
    assert!(try_http("POST", &url, &tok, body, Duration::from_secs(1)).is_err());
    let vault = ContractServer::start(Kind::vault("tk"), port);
    assert_eq!(vault.port(), port);
    assert_eq!(
        try_http("POST", &url, &tok, body, Duration::from_secs(1))
            .unwrap()
            .status,
        204
    );
    // Down again (port freed), and back with a fresh record.
    let kind = vault.kind();
    vault.stop();
    assert!(try_http("POST", &url, &tok, body, Duration::from_secs(1)).is_err());
    let vault = ContractServer::start(kind, port);
    assert_eq!(
        try_http("POST", &url, &tok, body, Duration::from_secs(1))
            .unwrap()
            .status,
        204
    );
    assert_eq!(vault.revoked(), ["t"]);
}
