//! Bearer tokens in three roles, and which routes need which.
//!
//! - `ingest` posts events. Once a token of any role is configured, ingest
//!   needs one: an operator who set tokens wants no anonymous writer.
//! - `read` reads quarantines and metrics (the broker's agent endpoint
//!   included). Reads are open while neither read nor admin tokens are
//!   configured; an admin token also reads.
//! - `admin` releases quarantines; with no admin token, releases are off.
//!
//! No token, or one that matches no role, is `401`; a valid token of
//! another role is `403`. Both answer JSON naming the role needed.
//! Tokens are compared in constant time against every configured one.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

use super::Shared;

/// The bearer tokens of each role, from the environment variables that
/// `[server]` names.
#[derive(Default)]
pub struct Tokens {
    pub ingest: Vec<String>,
    pub read: Vec<String>,
    pub admin: Vec<String>,
    /// The variable names, for error messages (never the values).
    vars: [String; 3],
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Ingest,
    Read,
    Admin,
}

impl Need {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

/// Which roles the presented token holds (a token may be listed in more
/// than one variable).
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    ingest: bool,
    read: bool,
    admin: bool,
}

impl Tokens {
    /// Reads the comma-separated lists of the three variables.
    pub fn from_env(cfg: &crate::config::ServerConfig) -> Self {
        Self {
            ingest: list(&cfg.ingest_tokens_env),
            read: list(&cfg.read_tokens_env),
            admin: list(&cfg.admin_tokens_env),
            vars: [
                cfg.ingest_tokens_env.clone(),
                cfg.read_tokens_env.clone(),
                cfg.admin_tokens_env.clone(),
            ],
        }
    }

    /// Whether a token of any role is configured.
    pub fn any(&self) -> bool {
        !(self.ingest.is_empty() && self.read.is_empty() && self.admin.is_empty())
    }

    fn var(&self, need: Need) -> &str {
        match need {
            Need::Ingest => &self.vars[0],
            Need::Read => &self.vars[1],
            Need::Admin => &self.vars[2],
        }
    }

    fn held(&self, headers: &HeaderMap) -> Held {
        // The scheme is case-insensitive (RFC 7235); the token is not.
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or("");
        if presented.is_empty() {
            return Held::default();
        }
        Held {
            ingest: matches(presented, &self.ingest),
            read: matches(presented, &self.read),
            admin: matches(presented, &self.admin),
        }
    }

    /// `Ok` when the request may use a route that needs `need`, else why
    /// not.
    pub fn check(&self, headers: &HeaderMap, need: Need) -> Result<(), Refusal> {
        let held = self.held(headers);
        let (open, granted, other) = match need {
            Need::Ingest => (!self.any(), held.ingest, held.read || held.admin),
            Need::Read => (
                self.read.is_empty() && self.admin.is_empty(),
                held.read || held.admin,
                held.ingest,
            ),
            Need::Admin => (false, held.admin, held.ingest || held.read),
        };
        if open || granted {
            return Ok(());
        }
        let needed = match need {
            Need::Ingest => format!("an ingest bearer token (from {})", self.var(need)),
            Need::Read => format!(
                "a read or admin bearer token (from {} or {})",
                self.var(Need::Read),
                self.var(Need::Admin)
            ),
            Need::Admin => format!("an admin bearer token (from {})", self.var(need)),
        };
        if need == Need::Admin && self.admin.is_empty() {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                need,
                format!(
                    "releases are disabled: set admin tokens in {} (server.admin-tokens-env)",
                    self.var(need)
                ),
            ));
        }
        if need == Need::Ingest && self.ingest.is_empty() && !other {
            return Err(refusal(
                StatusCode::UNAUTHORIZED,
                need,
                format!(
                    "{needed} is required; {} is empty while other roles have tokens, so HTTP ingest is closed",
                    self.var(need)
                ),
            ));
        }
        if other {
            Err(refusal(
                StatusCode::FORBIDDEN,
                need,
                format!("this route needs {needed}; the token presented has another role"),
            ))
        } else {
            Err(refusal(
                StatusCode::UNAUTHORIZED,
                need,
                format!("{needed} is required"),
            ))
        }
    }
}

fn list(var: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Compares `presented` with every allowed token in constant time (no
/// early exit on the first match or the first differing byte).
fn matches(presented: &str, allowed: &[String]) -> bool {
    use subtle::ConstantTimeEq;
    let mut ok = subtle::Choice::from(0);
    for t in allowed {
        ok |= t.as_bytes().ct_eq(presented.as_bytes());
    }
    ok.into()
}

/// A request refused for its token: `401` (none, or unknown) or `403` (a
/// token of another role, or the route is off), with a JSON body naming
/// the role needed.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    need: Need,
    error: String,
}

fn refusal(status: StatusCode, need: Need, error: String) -> Refusal {
    Refusal {
        status,
        need,
        error,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({
            "error": self.error,
            "required_role": self.need.as_str(),
        }));
        if self.status == StatusCode::UNAUTHORIZED {
            (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"warden\"")],
                body,
            )
                .into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// Route layers: each refuses before the handler reads the body.
pub async fn require_ingest(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    require(&shared, Need::Ingest, req, next).await
}

pub async fn require_read(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    require(&shared, Need::Read, req, next).await
}

pub async fn require_admin(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    require(&shared, Need::Admin, req, next).await
}

async fn require(shared: &Shared, need: Need, req: Request, next: Next) -> Response {
    match shared.tokens.check(req.headers(), need) {
        Ok(()) => next.run(req).await,
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn tokens(ingest: &[&str], read: &[&str], admin: &[&str]) -> Tokens {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Tokens {
            ingest: v(ingest),
            read: v(read),
            admin: v(admin),
            vars: ["I".into(), "R".into(), "A".into()],
        }
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        h
    }

    fn status(r: Result<(), Refusal>) -> u16 {
        match r {
            Ok(()) => 200,
            Err(r) => r.status.as_u16(),
        }
    }

    #[test]
    fn every_role_gets_only_its_routes() {
        let t = tokens(&["i1", "i2"], &["r"], &["a"]);
        let none = HeaderMap::new();
        for need in [Need::Ingest, Need::Read, Need::Admin] {
            assert_eq!(status(t.check(&none, need)), 401, "{need:?}");
            assert_eq!(status(t.check(&bearer("nope"), need)), 401, "{need:?}");
        }
        assert_eq!(status(t.check(&bearer("i2"), Need::Ingest)), 200);
        let mut lower = HeaderMap::new();
        lower.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer i1"));
        assert_eq!(status(t.check(&lower, Need::Ingest)), 200);
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic i1"));
        assert_eq!(status(t.check(&basic, Need::Ingest)), 401);
        assert_eq!(status(t.check(&bearer("r"), Need::Ingest)), 403);
        assert_eq!(status(t.check(&bearer("a"), Need::Ingest)), 403);
        assert_eq!(status(t.check(&bearer("r"), Need::Read)), 200);
        assert_eq!(status(t.check(&bearer("a"), Need::Read)), 200);
        assert_eq!(status(t.check(&bearer("i1"), Need::Read)), 403);
        assert_eq!(status(t.check(&bearer("a"), Need::Admin)), 200);
        assert_eq!(status(t.check(&bearer("r"), Need::Admin)), 403);
        assert_eq!(status(t.check(&bearer("i1"), Need::Admin)), 403);
    }

    #[test]
    fn open_until_tokens_are_set() {
        let t = tokens(&[], &[], &[]);
        let none = HeaderMap::new();
        assert_eq!(status(t.check(&none, Need::Ingest)), 200);
        assert_eq!(status(t.check(&none, Need::Read)), 200);
        // Releases are never anonymous.
        assert_eq!(status(t.check(&none, Need::Admin)), 403);
        // An admin token alone closes ingest and reads, not just releases.
        let t = tokens(&[], &[], &["a"]);
        assert_eq!(status(t.check(&none, Need::Ingest)), 401);
        assert_eq!(status(t.check(&none, Need::Read)), 401);
        assert_eq!(status(t.check(&bearer("a"), Need::Read)), 200);
        // Ingest tokens alone leave reads open.
        let t = tokens(&["i"], &[], &[]);
        assert_eq!(status(t.check(&none, Need::Read)), 200);
        assert_eq!(status(t.check(&none, Need::Ingest)), 401);
    }
}
