//! The revokers, one module per outside system: Vault ([`vault`]), an
//! OAuth 2.0 server (RFC 7009, [`oauth`]), a signed webhook ([`webhook`])
//! and the local revocation log ([`log`]). Each builds its typed request
//! and reads the answer by its own rules; [`Revoker`] picks the one
//! configured and keeps every secret out of what an attempt reports.

pub mod log;
pub mod oauth;
pub mod vault;
pub mod webhook;

use std::sync::atomic::AtomicU64;

use super::credential::{Credential, SecretString};
use super::incident::Quarantine;
use super::retry::Attempt;
use crate::config::RevokerConfig;

/// A revoker that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RevokerError {
    #[error("revoker {revoker:?} needs its secret in the environment variable {var}")]
    MissingSecret { revoker: String, var: String },
}

/// A configured revoker with its secret read from the environment.
pub struct Revoker {
    pub cfg: RevokerConfig,
    secret: String,
    /// The webhook's last `X-Warden-Timestamp` (unix ms): each attempt
    /// takes a later one, so no two attempts share a signature.
    webhook_clock: AtomicU64,
}

impl Revoker {
    /// Reads the revoker's secret; a missing one is an error naming the
    /// variable, at start, not at the first quarantine.
    pub fn new(cfg: &RevokerConfig) -> Result<Self, RevokerError> {
        let var = match cfg {
            RevokerConfig::Vault(v) => Some(&v.token_env),
            RevokerConfig::Oauth(o) => Some(&o.client_secret_env),
            RevokerConfig::Webhook(w) => Some(&w.secret_env),
            RevokerConfig::Log(_) => None,
        };
        let secret = match var {
            None => String::new(),
            Some(var) => std::env::var(var)
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| RevokerError::MissingSecret {
                    revoker: cfg.name().to_owned(),
                    var: var.clone(),
                })?,
        };
        Ok(Self {
            cfg: cfg.clone(),
            secret,
            webhook_clock: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &str {
        self.cfg.name()
    }

    /// What this revoker revokes for `q`, as it may be shown: the event's
    /// `credential_id`, by fingerprint unless it is a handle.
    pub fn target(&self, credential: Option<&Credential>) -> Option<String> {
        credential.map(|c| c.shown().to_owned())
    }

    /// One revocation attempt of `credential` (the raw value, from the
    /// revocation queue; `shown` is what may be shown of it), for `q`. Its
    /// error never quotes the credential or this revoker's secret.
    pub async fn attempt(
        &self,
        http: &reqwest::Client,
        q: &Quarantine,
        credential: Option<&SecretString>,
        shown: Option<&Credential>,
    ) -> Attempt {
        let raw = credential.map(SecretString::expose);
        self.attempt_raw(http, q, raw, shown)
            .await
            .scrubbed(&[raw.unwrap_or_default(), &self.secret])
    }

    async fn attempt_raw(
        &self,
        http: &reqwest::Client,
        q: &Quarantine,
        credential: Option<&str>,
        shown: Option<&Credential>,
    ) -> Attempt {
        // Vault and OAuth revoke the credential itself: without it there
        // is nothing to send.
        let needed = || match credential {
            Some(t) => Ok(t),
            None => Err(Attempt::Refused(
                "no credential to revoke: the flagged event carried no credential_id, \
                 or it is no longer in the revocation queue"
                    .to_owned(),
            )),
        };
        match &self.cfg {
            RevokerConfig::Log(l) => log::append(l, q, credential, shown).await,
            RevokerConfig::Vault(v) => match needed() {
                Ok(t) => vault::revoke(http, v, &self.secret, t).await,
                Err(refused) => refused,
            },
            RevokerConfig::Oauth(o) => match needed() {
                Ok(t) => oauth::revoke(http, o, &self.secret, t).await,
                Err(refused) => refused,
            },
            RevokerConfig::Webhook(w) => {
                let ts = webhook::next_timestamp(&self.webhook_clock);
                webhook::revoke(http, w, &self.secret, self.name(), q, credential, ts).await
            }
        }
    }
}
