//! Vault: revokes a token, a token by its accessor, or a lease.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::config::{VaultConfig, VaultMethod};
use crate::respond::deliver::classify;
use crate::respond::retry::Attempt;

/// The body of a revocation request, per method.
#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Request<'a> {
    /// `POST /v1/auth/token/revoke`
    Token { token: &'a str },
    /// `POST /v1/auth/token/revoke-accessor`
    Accessor { accessor: &'a str },
    /// `PUT /v1/sys/leases/revoke`
    Lease { lease_id: &'a str },
}

impl<'a> Request<'a> {
    pub fn new(method: VaultMethod, target: &'a str) -> Self {
        match method {
            VaultMethod::Token => Self::Token { token: target },
            VaultMethod::Accessor => Self::Accessor { accessor: target },
            VaultMethod::Lease => Self::Lease { lease_id: target },
        }
    }

    /// The HTTP method and path under the Vault address.
    pub fn route(&self) -> (Method, &'static str) {
        match self {
            Self::Token { .. } => (Method::POST, "/v1/auth/token/revoke"),
            Self::Accessor { .. } => (Method::POST, "/v1/auth/token/revoke-accessor"),
            Self::Lease { .. } => (Method::PUT, "/v1/sys/leases/revoke"),
        }
    }
}

/// Vault's error answer: `{"errors":["..."]}`.
#[derive(Debug, Deserialize)]
struct Errors {
    errors: Vec<String>,
}

/// What Vault's error body says, when it is Vault's error shape.
fn describe(body: &str) -> Option<String> {
    let e: Errors = serde_json::from_str(body).ok()?;
    (!e.errors.is_empty()).then(|| e.errors.join("; "))
}

/// One revocation: 204 (any 2xx) is success; 412 (a performance standby
/// not yet consistent) and 472/473 (standby redirection) clear up by
/// themselves and are retried, as are 429 and 5xx.
pub async fn revoke(http: &reqwest::Client, v: &VaultConfig, token: &str, target: &str) -> Attempt {
    let body = Request::new(v.method, target);
    let (method, path) = body.route();
    let mut req = http
        .request(method, format!("{}{path}", v.addr.trim_end_matches('/')))
        .header("X-Vault-Token", token)
        .json(&body);
    if !v.namespace.is_empty() {
        req = req.header("X-Vault-Namespace", &v.namespace);
    }
    classify(
        req.send().await,
        |s| s.is_success(),
        &[412, 472, 473],
        describe,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_has_its_body_and_route() {
        let cases = [
            (
                VaultMethod::Token,
                r#"{"token":"t"}"#,
                "/v1/auth/token/revoke",
                Method::POST,
            ),
            (
                VaultMethod::Accessor,
                r#"{"accessor":"t"}"#,
                "/v1/auth/token/revoke-accessor",
                Method::POST,
            ),
            (
                VaultMethod::Lease,
                r#"{"lease_id":"t"}"#,
                "/v1/sys/leases/revoke",
                Method::PUT,
            ),
        ];
        for (method, body, path, verb) in cases {
            let r = Request::new(method, "t");
            assert_eq!(serde_json::to_string(&r).unwrap(), body);
            assert_eq!(r.route(), (verb, path));
        }
    }

    #[test]
    fn vault_errors_are_read() {
        assert_eq!(
            describe(r#"{"errors":["permission denied"]}"#).as_deref(),
            Some("permission denied")
        );
        assert_eq!(describe(r#"{"errors":[]}"#), None);
        assert_eq!(describe("<html>"), None);
    }
}
