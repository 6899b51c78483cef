//! An OAuth 2.0 authorization server: token revocation (RFC 7009).

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::config::{ClientAuth, OAuthConfig};
use crate::respond::deliver::classify;
use crate::respond::retry::Attempt;

/// The form of a revocation request (RFC 7009 §2.1), with the client's
/// credentials in the body for `client_secret_post` (RFC 6749 §2.3.1).
#[derive(Debug, Serialize, PartialEq)]
pub struct Request<'a> {
    pub token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type_hint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<&'a str>,
}

/// The server's error answer (RFC 6749 §5.2, RFC 7009 §2.2.1).
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

fn describe(body: &str) -> Option<String> {
    let e: ErrorAnswer = serde_json::from_str(body).ok()?;
    Some(match e.error_description {
        Some(d) => format!("{}: {d}", e.error),
        None => e.error,
    })
}

/// One revocation: 200 is success (RFC 7009 §2.2: also for a token the
/// server does not know); 503 with `Retry-After` (§2.2.1), 429 and other
/// 5xx are retried.
pub async fn revoke(http: &reqwest::Client, o: &OAuthConfig, secret: &str, token: &str) -> Attempt {
    let post = o.client_auth == ClientAuth::ClientSecretPost;
    let form = Request {
        token,
        token_type_hint: Some(o.token_type_hint.as_str()).filter(|h| !h.is_empty()),
        client_id: post.then_some(o.client_id.as_str()),
        client_secret: post.then_some(secret),
    };
    let mut req = http.post(&o.endpoint).form(&form);
    if !post {
        // RFC 6749 §2.3.1: id and secret are form-encoded before they are
        // joined and base64-encoded.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        req = req.basic_auth(enc(&o.client_id), Some(enc(secret)));
    }
    classify(req.send().await, |s| s == StatusCode::OK, &[], describe).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(r: &Request) -> String {
        let req = reqwest::Client::new()
            .post("http://127.0.0.1:1/revoke")
            .form(r)
            .build()
            .unwrap();
        let body = req.body().and_then(|b| b.as_bytes()).unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[test]
    fn the_form_carries_what_the_client_authentication_needs() {
        let basic = Request {
            token: "a b&c",
            token_type_hint: Some("access_token"),
            client_id: None,
            client_secret: None,
        };
        assert_eq!(
            encoded(&basic),
            "token=a+b%26c&token_type_hint=access_token"
        );
        let post = Request {
            token: "t",
            token_type_hint: None,
            client_id: Some("warden"),
            client_secret: Some("s3"),
        };
        assert_eq!(encoded(&post), "token=t&client_id=warden&client_secret=s3");
    }

    #[test]
    fn oauth_errors_are_read() {
        assert_eq!(
            describe(r#"{"error":"unsupported_token_type","error_description":"no refresh"}"#)
                .as_deref(),
            Some("unsupported_token_type: no refresh")
        );
        assert_eq!(
            describe(r#"{"error":"invalid_client"}"#).as_deref(),
            Some("invalid_client")
        );
        assert_eq!(describe("oops"), None);
    }
}
