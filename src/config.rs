//! Configuration: one TOML file, every key with a default, validated before
//! anything starts. Errors name the key.
//!
//! ```toml
//! [detector]
//! half-life = "30d"
//! [policy]
//! mode = "shadow"
//! target-false-alarm-rate = 0.01
//! [[policy.classes]]
//! name = "payments"
//! agents = ["pay-*"]
//! mode = "enforce"
//! ```

pub mod fleet;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod binding;
pub use binding::BindingConfig;

use crate::baseline::ProfileLimits;
use crate::decide::Mode;
use crate::score::ScoreParams;
use crate::state::hash_key::HashKey;

mod preflight;
mod response_limits;
pub use response_limits::PacingConfig;

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub detector: DetectorConfig,
    pub policy: PolicyConfig,
    pub ingest: IngestConfig,
    pub server: ServerConfig,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub response: ResponseConfig,
    /// Fleet models: peer groups and session models (src/config/fleet.rs).
    pub fleet: fleet::FleetConfig,
}

/// The response path: quarantine registry, revokers, notifiers, audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ResponseConfig {
    /// Base URL people reach this Warden at: alerts link to it.
    pub public_url: String,
    /// Append-only, hash-chained record of everything Warden did; empty
    /// means `audit.jsonl` in the data directory. One writer per file.
    pub audit_file: PathBuf,
    /// Flags queued from the workers to the responder. A full queue makes
    /// a worker wait (a flag is never dropped); it holds only local work.
    pub queue_depth: usize,
    /// Alerts queued per notifier; beyond it, alerts are rolled up into one
    /// digest naming how many quarantines it stands for.
    pub alert_queue_depth: usize,
    /// How long the first alert waits for the revocation outcome, so it can
    /// say whether the credential is revoked.
    #[serde(with = "humantime_serde")]
    pub alert_delay: Duration,
    /// Least time between two updates of one incident's alert (more flags
    /// rolled up); outcome changes and releases are sent at once.
    #[serde(with = "humantime_serde")]
    pub update_interval: Duration,
    /// Timeout of each outbound request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// First retry delay; doubled per attempt, with jitter.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest retry delay (a `Retry-After` may ask for longer).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// A revocation still failing after this long is marked revoke_failed
    /// and alerted as such; alerts are given up after it too.
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Deprecated: `server.admin-tokens-env`. Still read for one release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_tokens_env: Option<String>,
    /// Deprecated: `server.read-tokens-env`. Still read for one release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_tokens_env: Option<String>,
    /// Calls of each agent remembered for an alert's session timeline.
    pub timeline_calls: usize,
    /// What an event's `credential_id` is. `"secret"` (the default): it may
    /// be the bearer token itself, so it is sent only to the revokers, and
    /// alerts, logs, the API, the audit log and stored quarantines show a
    /// keyed fingerprint (`cred:` and 16 hex digits) instead. `"handle"`: the
    /// deployment's events carry a non-secret handle (a Vault accessor or
    /// lease id, a token's `jti`), which may then be shown as it is.
    pub credential_id: CredentialIdMode,
    /// Released incidents expire from the registry and memory this long
    /// after their release (src/config/response_limits.rs).
    #[serde(with = "humantime_serde")]
    pub incident_retention: Duration,
    /// A shadow incident with no new flag for this long is released by
    /// Warden itself (its page resolved), so the agent's next flag opens a
    /// new incident and pages again. `0s`: never (a human releases it).
    #[serde(with = "humantime_serde")]
    pub shadow_release_after: Duration,
    /// Incidents held in memory for the API; past it the oldest released
    /// ones are dropped from memory (open ones never are).
    pub max_incidents_in_memory: usize,
    /// Alert pacing per Slack webhook and PagerDuty routing key.
    pub pacing: PacingConfig,
    pub revokers: Vec<RevokerConfig>,
    pub slack: SlackConfig,
    pub pagerduty: PagerDutyConfig,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:9090".to_owned(),
            audit_file: PathBuf::new(),
            queue_depth: 4096,
            alert_queue_depth: 256,
            alert_delay: Duration::from_secs(2),
            update_interval: Duration::from_secs(300),
            request_timeout: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            give_up_after: Duration::from_secs(900),
            admin_tokens_env: None,
            read_tokens_env: None,
            timeline_calls: 8,
            credential_id: CredentialIdMode::Secret,
            incident_retention: response_limits::default_incident_retention(),
            shadow_release_after: response_limits::default_shadow_release_after(),
            max_incidents_in_memory: response_limits::default_max_incidents_in_memory(),
            pacing: PacingConfig::default(),
            revokers: Vec::new(),
            slack: SlackConfig::default(),
            pagerduty: PagerDutyConfig::default(),
        }
    }
}

/// What an event's `credential_id` carries (`response.credential-id`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialIdMode {
    /// Possibly the bearer token: shown only as a keyed fingerprint.
    #[default]
    Secret,
    /// A non-secret handle (accessor, lease id, `jti`): shown as it is.
    Handle,
}

/// One credential revoker; `kind` picks the broker's contract.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RevokerConfig {
    Vault(VaultConfig),
    Oauth(OAuthConfig),
    Webhook(WebhookConfig),
    /// A local revocation log (JSON Lines): the embedded default when no
    /// broker is configured, so enforce mode still records what to revoke.
    Log(LogRevokerConfig),
}

/// The local revocation log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogRevokerConfig {
    #[serde(default = "default_log_name")]
    pub name: String,
    pub path: PathBuf,
}

fn default_log_name() -> String {
    "local-log".to_owned()
}

impl RevokerConfig {
    pub fn name(&self) -> &str {
        match self {
            Self::Vault(c) => &c.name,
            Self::Oauth(c) => &c.name,
            Self::Webhook(c) => &c.name,
            Self::Log(c) => &c.name,
        }
    }
}

/// What a Vault revoker revokes: the event's `credential_id` is a token,
/// a token accessor, or a lease id.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum VaultMethod {
    #[default]
    Token,
    Accessor,
    Lease,
}

/// HashiCorp Vault.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VaultConfig {
    #[serde(default = "default_vault_name")]
    pub name: String,
    /// e.g. `https://vault.internal:8200`.
    pub addr: String,
    #[serde(default)]
    pub method: VaultMethod,
    /// Environment variable holding Warden's own Vault token.
    #[serde(default = "default_vault_token_env")]
    pub token_env: String,
    /// Vault Enterprise namespace (`X-Vault-Namespace`), if any.
    #[serde(default)]
    pub namespace: String,
}

fn default_vault_name() -> String {
    "vault".to_owned()
}

fn default_vault_token_env() -> String {
    "WARDEN_VAULT_TOKEN".to_owned()
}

/// How an OAuth client authenticates to the revocation endpoint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// An OAuth 2.0 token revocation endpoint (RFC 7009).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OAuthConfig {
    #[serde(default = "default_oauth_name")]
    pub name: String,
    /// The revocation endpoint URL.
    pub endpoint: String,
    pub client_id: String,
    /// Environment variable holding the client secret.
    #[serde(default = "default_oauth_secret_env")]
    pub client_secret_env: String,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// `token_type_hint` sent with each revocation (empty for none).
    #[serde(default = "default_token_type_hint")]
    pub token_type_hint: String,
}

fn default_oauth_name() -> String {
    "oauth".to_owned()
}

fn default_oauth_secret_env() -> String {
    "WARDEN_OAUTH_CLIENT_SECRET".to_owned()
}

fn default_token_type_hint() -> String {
    "access_token".to_owned()
}

/// A generic signed webhook (in-house brokers, MCP gateways).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebhookConfig {
    #[serde(default = "default_webhook_name")]
    pub name: String,
    pub url: String,
    /// Environment variable holding the HMAC-SHA256 signing secret.
    #[serde(default = "default_webhook_secret_env")]
    pub secret_env: String,
}

fn default_webhook_name() -> String {
    "webhook".to_owned()
}

fn default_webhook_secret_env() -> String {
    "WARDEN_WEBHOOK_SECRET".to_owned()
}

/// Slack incoming webhook (on when a URL is set, here or in
/// `WARDEN_SLACK_WEBHOOK_URL`; the URL is a secret, prefer the variable).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SlackConfig {
    pub webhook_url: String,
}

/// PagerDuty Events API v2 (on when a routing key is set, here or in
/// `WARDEN_PAGERDUTY_ROUTING_KEY`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PagerDutyConfig {
    pub routing_key: String,
    /// `WARDEN_PAGERDUTY_EVENTS_URL` overrides it.
    pub events_url: String,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        Self {
            routing_key: String::new(),
            events_url: "https://events.pagerduty.com/v2/enqueue".to_owned(),
        }
    }
}

/// Redis as the profile store shared by a group of instances (off by
/// default: the embedded default checkpoints to files).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RedisConfig {
    /// Keep profiles in Redis instead of files under the data directory.
    pub enabled: bool,
    /// Connection URL, `redis://` or `rediss://` (TLS, certificate and host
    /// name always checked); a password belongs in `password-env` or
    /// `WARDEN_REDIS_URL`, not here.
    pub url: String,
    /// Prefix of every key Warden writes.
    pub key_prefix: String,
    /// PEM file of the CA(s) the server's certificate must chain to
    /// (`rediss://` only); empty means the built-in public roots, as for
    /// HTTPS.
    pub ca_file: PathBuf,
    /// PEM client certificate (chain) for mutual TLS, with `client-key-file`.
    pub client_cert_file: PathBuf,
    /// PEM (PKCS#8, PKCS#1 or SEC1) key of `client-cert-file`.
    pub client_key_file: PathBuf,
    /// Environment variable holding the password (`AUTH`, as the URL's user
    /// if it names one); empty means none beyond the URL's.
    pub password_env: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: "warden".to_owned(),
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
            password_env: String::new(),
        }
    }
}

impl RedisConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let info = redis::IntoConnectionInfo::into_connection_info(self.url.as_str())
            .map_err(|_| invalid("redis.url", "is not a redis:// or rediss:// URL"))?;
        let tls = match info.addr {
            redis::ConnectionAddr::TcpTls { insecure: true, .. } => {
                return Err(invalid(
                    "redis.url",
                    "#insecure would skip the certificate check; set redis.ca-file instead",
                ))
            }
            redis::ConnectionAddr::TcpTls { .. } => true,
            _ => false,
        };
        let files = [
            ("redis.ca-file", &self.ca_file),
            ("redis.client-cert-file", &self.client_cert_file),
            ("redis.client-key-file", &self.client_key_file),
        ];
        for (key, path) in files {
            if path.as_os_str().is_empty() {
                continue;
            }
            if !tls {
                return Err(invalid(key, "needs a rediss:// redis.url"));
            }
            if !path.is_file() {
                return Err(invalid(key, format!("{} is not a file", path.display())));
            }
        }
        if self.client_cert_file.as_os_str().is_empty()
            != self.client_key_file.as_os_str().is_empty()
        {
            return Err(invalid(
                "redis.client-key-file",
                "client-cert-file and client-key-file go together",
            ));
        }
        check_secret_env("redis.password-env", &self.password_env)
    }
}

/// How Kafka clients talk to the brokers (librdkafka `security.protocol`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// SASL mechanism (librdkafka `sasl.mechanisms`); none needs Kerberos.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum SaslMechanism {
    #[default]
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "PLAIN")]
    Plain,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::Plain => "PLAIN",
        }
    }
}

/// Whether a broker's certificate must name the host connected to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EndpointIdentification {
    /// The host name (or IP) must match the certificate, as for HTTPS.
    #[default]
    Https,
    /// Only the chain is checked (brokers behind names their certificates
    /// do not carry).
    None,
}

/// librdkafka properties that carry a secret, and the key to use instead.
const KAFKA_SECRET_PROPERTIES: &[(&str, &str)] = &[
    ("sasl.password", "kafka.sasl-password-env"),
    ("ssl.key.password", "kafka.ssl-key-password-env"),
    ("ssl.key.pem", "kafka.ssl-key-location"),
    ("ssl_key", "kafka.ssl-key-location"),
    ("ssl.keystore.password", "kafka.ssl-key-password-env"),
    (
        "sasl.oauthbearer.client.secret",
        "a secret file or variable",
    ),
    ("sasl.oauthbearer.config", "a secret file or variable"),
    ("sasl.kerberos.keytab", "a secret file or variable"),
];

/// librdkafka properties Warden sets itself, and why (or which key sets
/// them).
const KAFKA_OWN_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use kafka.brokers"),
    ("metadata.broker.list", "use kafka.brokers"),
    ("security.protocol", "use kafka.security-protocol"),
    ("sasl.mechanisms", "use kafka.sasl-mechanism"),
    ("sasl.mechanism", "use kafka.sasl-mechanism"),
    ("sasl.username", "use kafka.sasl-username"),
    ("ssl.ca.location", "use kafka.ssl-ca-location"),
    (
        "ssl.certificate.location",
        "use kafka.ssl-certificate-location",
    ),
    ("ssl.key.location", "use kafka.ssl-key-location"),
    (
        "ssl.endpoint.identification.algorithm",
        "use kafka.ssl-endpoint-identification",
    ),
    (
        "enable.ssl.certificate.verification",
        "certificates are always checked (kafka.ssl-ca-location)",
    ),
    ("group.id", "use kafka.group"),
    ("transactional.id", "use kafka.instance-id"),
    ("transaction.timeout.ms", "use kafka.transaction-timeout"),
    (
        "enable.auto.commit",
        "offsets commit after checkpoints (kafka.commit-interval)",
    ),
    (
        "enable.auto.offset.store",
        "offsets commit after checkpoints (kafka.commit-interval)",
    ),
    ("enable.idempotence", "exactly-once decisions depend on it"),
    ("isolation.level", "exactly-once decisions depend on it"),
];

/// The Kafka source and sinks of `warden run` (off by default).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaConfig {
    /// Consume tool-call events from Kafka.
    pub enabled: bool,
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic of tool-call events (message key = `agent_id`).
    pub topic: String,
    /// Consumer group: instances of one group share the partitions.
    pub group: String,
    /// Where undecodable messages go, bytes intact, reason in a header;
    /// empty means `<topic>.dlq`.
    pub dlq_topic: String,
    /// Topic that receives every decision (key `agent_id`); empty for none.
    pub decisions_topic: String,
    /// How often processed offsets are committed, each time after every
    /// worker has checkpointed the state those events produced.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long an open transaction of decisions may wait for a broker
    /// that is away (a restart, a failover) before the broker aborts it and
    /// the service must exit to replay from the last commit. A restarted
    /// instance aborts its predecessor's open transaction at once, so this
    /// only bounds how long consumers of the decisions topic wait for an
    /// instance that never comes back. At most 15 minutes (the broker's
    /// default `transaction.max.timeout.ms`).
    #[serde(with = "humantime_serde")]
    pub transaction_timeout: Duration,
    /// Stable name of this instance in its group: decisions and offsets are
    /// committed in one Kafka transaction under `warden-<group>-<id>`, and a
    /// restarted instance fences its dead predecessor. Empty means the host
    /// name.
    pub instance_id: String,
    /// plaintext | ssl | sasl_plaintext | sasl_ssl, for every Kafka client
    /// (consumer, producers).
    pub security_protocol: SecurityProtocol,
    /// SCRAM-SHA-512 | SCRAM-SHA-256 | PLAIN (sasl_* protocols).
    pub sasl_mechanism: SaslMechanism,
    /// SASL user name (sasl_* protocols).
    pub sasl_username: String,
    /// Environment variable holding the SASL password; the password is
    /// never read from this file.
    pub sasl_password_env: String,
    /// PEM file of the CA(s) that sign the brokers' certificates; empty
    /// means the system's trust store.
    pub ssl_ca_location: PathBuf,
    /// PEM client certificate for mutual TLS, with `ssl-key-location`.
    pub ssl_certificate_location: PathBuf,
    /// PEM key of `ssl-certificate-location`.
    pub ssl_key_location: PathBuf,
    /// Environment variable holding the password of an encrypted
    /// `ssl-key-location`; empty for an unencrypted key.
    pub ssl_key_password_env: String,
    /// https: a broker's certificate must name the host connected to;
    /// none: only its chain is checked.
    pub ssl_endpoint_identification: EndpointIdentification,
    /// Further librdkafka properties for every client (e.g.
    /// `"socket.keepalive.enable" = "true"`); secrets and the properties
    /// above are refused.
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: "127.0.0.1:9092".to_owned(),
            topic: "tool-calls".to_owned(),
            group: "warden".to_owned(),
            dlq_topic: String::new(),
            decisions_topic: "warden.decisions".to_owned(),
            commit_interval: Duration::from_secs(5),
            transaction_timeout: Duration::from_secs(300),
            instance_id: String::new(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: SaslMechanism::ScramSha512,
            sasl_username: String::new(),
            sasl_password_env: "WARDEN_KAFKA_SASL_PASSWORD".to_owned(),
            ssl_ca_location: PathBuf::new(),
            ssl_certificate_location: PathBuf::new(),
            ssl_key_location: PathBuf::new(),
            ssl_key_password_env: String::new(),
            ssl_endpoint_identification: EndpointIdentification::Https,
            librdkafka: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The transactional id of this instance. Kept as it was (it also keys
    /// the Redis dedup window, which a change would drop once), so without
    /// `instance-id` and `HOSTNAME` it is `warden-<group>-warden`.
    pub fn transactional_id(&self) -> String {
        let id = if self.instance_id.is_empty() {
            std::env::var("HOSTNAME").unwrap_or_else(|_| "warden".to_owned())
        } else {
            self.instance_id.clone()
        };
        format!("warden-{}-{id}", self.group)
    }

    /// This instance's name, the `owner` of the quarantines it opens:
    /// `instance-id`, else the host name. (`HOSTNAME` alone is a shell
    /// variable that services do not inherit, which made every owner
    /// "warden-warden-warden".)
    pub fn instance(&self) -> String {
        if !self.instance_id.is_empty() {
            return self.instance_id.clone();
        }
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "warden".to_owned())
    }

    /// Whether a quarantine's `owner` is this instance: its name, or the
    /// transactional id that releases before this one recorded.
    pub fn owns(&self, owner: &str) -> bool {
        owner == self.instance() || owner == self.transactional_id()
    }

    pub fn dlq(&self) -> String {
        if self.dlq_topic.is_empty() {
            format!("{}.dlq", self.topic)
        } else {
            self.dlq_topic.clone()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        // A secret written into the file is refused even when Kafka is off:
        // the file is where it must not be.
        for key in self.librdkafka.keys() {
            let at = format!("kafka.librdkafka.{key:?}");
            if let Some((_, instead)) = KAFKA_SECRET_PROPERTIES.iter().find(|(k, _)| k == key) {
                return Err(invalid(
                    &at,
                    format!("carries a secret; use {instead} instead of the config file"),
                ));
            }
            if let Some((_, instead)) = KAFKA_OWN_PROPERTIES.iter().find(|(k, _)| k == key) {
                return Err(invalid(&at, format!("is set by Warden: {instead}")));
            }
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
            {
                return Err(invalid(&at, "is not a librdkafka property name"));
            }
        }
        if !self.enabled {
            return Ok(());
        }
        for (key, v) in [
            ("kafka.brokers", &self.brokers),
            ("kafka.topic", &self.topic),
            ("kafka.group", &self.group),
        ] {
            if v.trim().is_empty() {
                return Err(invalid(key, "must not be empty when kafka.enabled"));
            }
        }
        if self.commit_interval < Duration::from_millis(100) {
            return Err(invalid("kafka.commit-interval", "must be at least 100ms"));
        }
        if self.transaction_timeout < (self.commit_interval * 2).max(Duration::from_secs(10))
            || self.transaction_timeout > Duration::from_secs(900)
        {
            return Err(invalid(
                "kafka.transaction-timeout",
                "must be between 10s (and twice kafka.commit-interval) and 15m",
            ));
        }
        let protocol = self.security_protocol;
        if protocol.uses_sasl() {
            if self.sasl_username.trim().is_empty() {
                return Err(invalid(
                    "kafka.sasl-username",
                    format!(
                        "must not be empty with security-protocol {}",
                        protocol.as_str()
                    ),
                ));
            }
            if self.sasl_password_env.is_empty() {
                return Err(invalid("kafka.sasl-password-env", "must name a variable"));
            }
            check_secret_env("kafka.sasl-password-env", &self.sasl_password_env)?;
        } else if !self.sasl_username.is_empty() {
            return Err(invalid(
                "kafka.sasl-username",
                "needs security-protocol sasl_ssl or sasl_plaintext",
            ));
        }
        let files = [
            ("kafka.ssl-ca-location", &self.ssl_ca_location),
            (
                "kafka.ssl-certificate-location",
                &self.ssl_certificate_location,
            ),
            ("kafka.ssl-key-location", &self.ssl_key_location),
        ];
        for (key, path) in files {
            if path.as_os_str().is_empty() {
                continue;
            }
            // A CA or client certificate under plaintext is a TLS set-up that
            // would silently not happen.
            if !protocol.uses_tls() {
                return Err(invalid(key, "needs security-protocol ssl or sasl_ssl"));
            }
            if !path.is_file() {
                return Err(invalid(key, format!("{} is not a file", path.display())));
            }
        }
        if self.ssl_certificate_location.as_os_str().is_empty()
            != self.ssl_key_location.as_os_str().is_empty()
        {
            return Err(invalid(
                "kafka.ssl-key-location",
                "ssl-certificate-location and ssl-key-location go together",
            ));
        }
        if !self.ssl_key_password_env.is_empty() && self.ssl_key_location.as_os_str().is_empty() {
            return Err(invalid(
                "kafka.ssl-key-password-env",
                "needs kafka.ssl-key-location",
            ));
        }
        check_secret_env("kafka.ssl-key-password-env", &self.ssl_key_password_env)
    }
}

/// A `*-env` key names a variable that must be set (its value is never
/// shown); an empty name means the secret is not used.
fn check_secret_env(key: &str, var: &str) -> Result<(), ConfigError> {
    if var.is_empty() || std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
        return Ok(());
    }
    Err(invalid(
        key,
        format!("environment variable {var} is not set"),
    ))
}

/// `warden run`: the HTTP listener, workers, state and decisions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Address of the ingest listener (`POST /v1/events`, `/live`,
    /// `/ready`). Loopback by default: expose it deliberately, with ingest
    /// tokens.
    pub listen: String,
    /// Address of the admin listener: `/metrics`, `/live`, `/ready` and the
    /// quarantine API. Keep it off the network agents can reach.
    pub admin_listen: String,
    /// Environment variable holding the bearer tokens (comma-separated)
    /// that may post events. Once a token of any role is set, ingest needs
    /// one of these.
    pub ingest_tokens_env: String,
    /// Environment variable holding the bearer tokens (comma-separated)
    /// that may read quarantines and metrics. Reads are open only while
    /// neither read nor admin tokens are set.
    pub read_tokens_env: String,
    /// Environment variable holding the bearer tokens (comma-separated)
    /// that may release quarantines (and read); without any, releases are
    /// off.
    pub admin_tokens_env: String,
    /// Longest an HTTP handler waits on Redis (connecting and answering)
    /// before it answers 503; the broker's agent endpoint fails closed.
    #[serde(with = "humantime_serde")]
    pub redis_read_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Single-writer workers (agents are routed to one by `agent_id`);
    /// 0 means one per core.
    pub workers: usize,
    /// Batches queued per worker before ingest answers 429.
    pub queue_depth: usize,
    /// Seconds a client is told to wait after a 429.
    pub retry_after_secs: u64,
    /// Where checkpoints (and, by default, decisions) are written.
    pub data_dir: PathBuf,
    /// How often each worker checkpoints its profiles.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// JSON Lines file that receives every decision; empty for none.
    pub decisions_file: PathBuf,
    /// Event ids remembered per worker so that a redelivered event gets no
    /// second decision.
    pub dedup_window: usize,
    /// Time allowed, after SIGTERM, to drain queues and checkpoint.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Flagged calls each worker logs one by one per second; past it, a
    /// flag storm is logged as one count a second (every decision still
    /// goes to the decisions sink and the metrics).
    pub flagged_log_per_second: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            admin_listen: "127.0.0.1:9090".to_owned(),
            ingest_tokens_env: "WARDEN_INGEST_TOKEN".to_owned(),
            read_tokens_env: "WARDEN_READ_TOKEN".to_owned(),
            admin_tokens_env: "WARDEN_ADMIN_TOKEN".to_owned(),
            redis_read_timeout: Duration::from_millis(500),
            max_body_bytes: 16 * 1024 * 1024,
            workers: 0,
            queue_depth: 256,
            retry_after_secs: 1,
            data_dir: PathBuf::from("warden-data"),
            checkpoint_interval: Duration::from_secs(30),
            decisions_file: PathBuf::from("warden-data/decisions.jsonl"),
            dedup_window: 100_000,
            shutdown_grace: Duration::from_secs(20),
            flagged_log_per_second: 10,
        }
    }
}

/// How profiles are learned and calls scored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DetectorConfig {
    /// Half-life of everything a profile counts: older behaviour fades so
    /// legitimate change is followed.
    #[serde(with = "humantime_serde")]
    pub half_life: Duration,
    /// A session with no call for this long is closed and its shape learned.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Open sessions tracked per agent; the oldest is closed beyond this.
    pub max_sessions_per_agent: usize,
    /// Secret key of the hash that turns values into fingerprints: 32 hex
    /// digits (128 bits), best from `WARDEN_HASH_KEY`. Empty (the default):
    /// `warden run` generates one on first start and keeps it in the data
    /// directory (`hash.key`) or, with Redis on, shares it through Redis.
    /// Checkpoints refuse to load under another key.
    pub hash_key: String,
    /// Effective observations a histogram needs before its signal counts.
    pub min_history: f32,
    /// How strongly a tool with little history is pulled to its agent's
    /// novelty rate (pseudo-observations).
    pub backoff_strength: f32,
    /// Most bits a never-used tool costs by itself (see README, Tuning).
    pub max_tool_bits: f32,
    /// Most bits a call's place in the tool sequence costs by itself.
    pub max_sequence_bits: f32,
    /// Distinct values remembered per tool of an agent.
    pub values_per_tool: usize,
    /// Distinct parents (domains, banks, directories) remembered per tool.
    pub parents_per_tool: usize,
    /// Distinct values remembered per agent.
    pub values_per_agent: usize,
    /// Distinct parents remembered per agent.
    pub parents_per_agent: usize,
    /// Distinct tools learned per agent.
    pub tools_per_agent: usize,
    /// Entries of each tool-sequence table of an agent.
    pub sequence_entries: usize,
    /// Principal binding (`[detector.binding]`).
    pub binding: BindingConfig,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        let l = ProfileLimits::default();
        let s = ScoreParams::default();
        Self {
            half_life: Duration::from_secs(30 * 86_400),
            session_timeout: Duration::from_secs(30 * 60),
            max_sessions_per_agent: 32,
            hash_key: String::new(),
            min_history: s.min_history,
            backoff_strength: s.backoff_strength,
            max_tool_bits: s.max_tool_bits,
            max_sequence_bits: s.max_sequence_bits,
            values_per_tool: l.values_per_tool,
            parents_per_tool: l.parents_per_tool,
            values_per_agent: l.values_per_agent,
            parents_per_agent: l.parents_per_agent,
            tools_per_agent: l.tools_per_agent,
            sequence_entries: l.sequence_entries,
            binding: BindingConfig::default(),
        }
    }
}

impl DetectorConfig {
    pub fn limits(&self) -> ProfileLimits {
        ProfileLimits {
            half_life_ms: self.half_life.as_millis() as f64,
            values_per_tool: self.values_per_tool,
            parents_per_tool: self.parents_per_tool,
            values_per_agent: self.values_per_agent,
            parents_per_agent: self.parents_per_agent,
            tools_per_agent: self.tools_per_agent,
            sequence_entries: self.sequence_entries,
        }
    }

    pub fn score_params(&self) -> ScoreParams {
        ScoreParams {
            min_history: self.min_history,
            backoff_strength: self.backoff_strength,
            max_tool_bits: self.max_tool_bits,
            max_sequence_bits: self.max_sequence_bits,
        }
    }

    /// The fingerprint key. `warden run` resolves an empty one to the
    /// deployment's generated key before building engines; offline tools
    /// (replay, benches) use [`HashKey::OFFLINE`].
    pub fn hash_key(&self) -> HashKey {
        HashKey::parse(&self.hash_key, "detector.hash-key").unwrap_or(HashKey::OFFLINE)
    }

    /// The configured key, if any (validated to be 32 hex digits).
    pub fn configured_hash_key(&self) -> Option<&str> {
        (!self.hash_key.is_empty()).then_some(self.hash_key.as_str())
    }
}

/// Thresholds and modes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyConfig {
    /// Mode of agents not otherwise configured.
    pub mode: Mode,
    /// Threshold, in bits, of agents not yet calibrated (and of all agents
    /// when `calibrate` is off).
    pub threshold_bits: f32,
    /// Calibrate each agent's threshold from its own past sessions.
    pub calibrate: bool,
    /// Share of an agent's benign sessions allowed to be flagged; the
    /// calibrated threshold is that quantile of its session scores.
    pub target_false_alarm_rate: f32,
    /// Bits added to the calibrated quantile: benign work the agent has not
    /// done before scores above its history.
    pub margin_bits: f32,
    /// A live session that came within `margin-bits` of its threshold
    /// teaches calibration at most the threshold minus the margin: near
    /// misses hold an agent's threshold, so attacks that slip under it do
    /// not lift it for the next one. Off: every unflagged session counts
    /// at its score.
    pub calibration_hold: bool,
    /// Whether a clean session that came within `margin-bits` of its
    /// threshold (a near miss) teaches the profile. On: new work that came
    /// near is learned, and its next run scores lower. Off: the profile
    /// learns only sessions that stayed clear, so an attack that slipped
    /// under the threshold does not make the next one cheaper (profile
    /// poisoning), at the price of new work that keeps coming near.
    pub learn_near_misses: bool,
    /// Calibrated thresholds never go below this…
    pub min_threshold_bits: f32,
    /// …nor above this.
    pub max_threshold_bits: f32,
    /// Effective sessions an agent needs before its calibration is used.
    pub calibration_min_sessions: f32,
    /// Calls an agent must have made before its sessions count towards
    /// calibration: the first sessions of any agent are all new, and would
    /// set its threshold far above what its settled behaviour needs.
    pub calibration_warmup_events: u64,
    /// Calls an agent must have made before it can be flagged.
    pub warmup_events: u64,
    /// Reported as the threshold during warm-up (nothing is flagged).
    pub warmup_threshold_bits: f32,
    /// Per-call bits a session may carry without building up surprise (the
    /// CUSUM allowance); the agent's own 90th percentile is used when higher.
    pub carry_allowance_bits: f32,
    /// Share of the carried surprise kept from one call to the next: below
    /// 1, a long benign session's small excesses fade instead of adding up,
    /// while a run of surprising calls still builds up.
    pub carry_decay: f32,
    /// Most bits a session carries. A flagged session keeps its surprise
    /// undecayed; bounded at the highest calibrated threshold, it still
    /// keeps the session's later calls flagged, but a long session cannot
    /// reach hundreds of bits, so a restart that resumes the session from
    /// its checkpoint decides as an uninterrupted run would.
    pub max_carry_bits: f32,
    /// Agent classes, matched by glob on `agent_id` in order.
    pub classes: Vec<ClassConfig>,
    /// Per-agent overrides, by `agent_id`.
    pub agents: BTreeMap<String, AgentConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Shadow,
            threshold_bits: 16.0,
            calibrate: true,
            target_false_alarm_rate: 0.01,
            margin_bits: 3.0,
            calibration_hold: true,
            learn_near_misses: true,
            min_threshold_bits: 14.0,
            max_threshold_bits: 48.0,
            calibration_min_sessions: 20.0,
            calibration_warmup_events: 200,
            warmup_events: 50,
            warmup_threshold_bits: 1000.0,
            carry_allowance_bits: 4.0,
            carry_decay: 0.7,
            max_carry_bits: 48.0,
            classes: Vec::new(),
            agents: BTreeMap::new(),
        }
    }
}

/// A class of agents sharing a policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClassConfig {
    pub name: String,
    /// Glob patterns (`*` wildcard) on `agent_id`.
    #[serde(default)]
    pub agents: Vec<String>,
    pub threshold_bits: Option<f32>,
    pub mode: Option<Mode>,
}

/// One agent's overrides.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentConfig {
    pub class: Option<String>,
    pub threshold_bits: Option<f32>,
    pub mode: Option<Mode>,
}

/// Decoding limits and the rejects (dead-letter) sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct IngestConfig {
    /// Longest accepted event; longer lines are rejected unread.
    pub max_event_bytes: usize,
    /// Bytes of a rejected input kept in the rejects file.
    pub reject_sample_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_event_bytes: 64 * 1024,
            reject_sample_bytes: 1024,
        }
    }
}

/// A URL with its password (if any) replaced, for logs and printing.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn is_http_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

impl ResponseConfig {
    pub fn audit_path(&self, data_dir: &Path) -> PathBuf {
        if self.audit_file.as_os_str().is_empty() {
            data_dir.join("audit.jsonl")
        } else {
            self.audit_file.clone()
        }
    }

    /// The quick-start variables: each switches its integration on.
    fn apply_env(&mut self) {
        if let Some(url) = env_nonempty("WARDEN_SLACK_WEBHOOK_URL") {
            self.slack.webhook_url = url;
        }
        if let Some(key) = env_nonempty("WARDEN_PAGERDUTY_ROUTING_KEY") {
            self.pagerduty.routing_key = key;
        }
        if let Some(url) = env_nonempty("WARDEN_PAGERDUTY_EVENTS_URL") {
            self.pagerduty.events_url = url;
        }
        if let Some(addr) = env_nonempty("WARDEN_VAULT_ADDR") {
            match self.revokers.iter_mut().find_map(|r| match r {
                RevokerConfig::Vault(v) => Some(v),
                _ => None,
            }) {
                Some(v) => v.addr = addr,
                None => self.revokers.push(RevokerConfig::Vault(VaultConfig {
                    name: default_vault_name(),
                    addr,
                    method: VaultMethod::Token,
                    token_env: default_vault_token_env(),
                    namespace: String::new(),
                })),
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !is_http_url(&self.public_url) {
            return Err(invalid("response.public-url", "must be an http(s) URL"));
        }
        for (key, v) in [
            ("response.queue-depth", self.queue_depth),
            ("response.alert-queue-depth", self.alert_queue_depth),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        response_limits::validate_retention(self.incident_retention, self.max_incidents_in_memory)?;
        response_limits::validate_shadow_release(self.shadow_release_after)?;
        self.pacing.validate()?;
        if self.request_timeout < Duration::from_millis(10) {
            return Err(invalid("response.request-timeout", "must be at least 10ms"));
        }
        if self.initial_backoff.is_zero() || self.initial_backoff > self.max_backoff {
            return Err(invalid(
                "response.initial-backoff",
                "must be positive and at most max-backoff",
            ));
        }
        if self.give_up_after < self.max_backoff {
            return Err(invalid(
                "response.give-up-after",
                "must be at least max-backoff",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.revokers.iter().enumerate() {
            let at = |k: &str| format!("response.revokers[{i}].{k}");
            if !names.insert(r.name()) {
                return Err(invalid(
                    &at("name"),
                    format!("{:?} is used by another revoker", r.name()),
                ));
            }
            let (url_key, url, secret_env) = match r {
                RevokerConfig::Vault(v) => ("addr", &v.addr, ("token-env", &v.token_env)),
                RevokerConfig::Oauth(o) => (
                    "endpoint",
                    &o.endpoint,
                    ("client-secret-env", &o.client_secret_env),
                ),
                RevokerConfig::Webhook(w) => ("url", &w.url, ("secret-env", &w.secret_env)),
                RevokerConfig::Log(l) => {
                    if l.path.as_os_str().is_empty() {
                        return Err(invalid(&at("path"), "must not be empty"));
                    }
                    continue;
                }
            };
            if !is_http_url(url) {
                return Err(invalid(&at(url_key), "must be an http(s) URL"));
            }
            if secret_env.1.is_empty() {
                return Err(invalid(&at(secret_env.0), "must name a variable"));
            }
            if let RevokerConfig::Oauth(o) = r {
                if o.client_id.is_empty() {
                    return Err(invalid(&at("client-id"), "must not be empty"));
                }
                if !["", "access_token", "refresh_token"].contains(&o.token_type_hint.as_str()) {
                    return Err(invalid(
                        &at("token-type-hint"),
                        "must be access_token, refresh_token or empty",
                    ));
                }
            }
        }
        if !self.slack.webhook_url.is_empty() && !is_http_url(&self.slack.webhook_url) {
            return Err(invalid(
                "response.slack.webhook-url",
                "must be an http(s) URL",
            ));
        }
        if !self.pagerduty.routing_key.is_empty() && self.pagerduty.routing_key.len() != 32 {
            return Err(invalid(
                "response.pagerduty.routing-key",
                "must be the 32-character integration key",
            ));
        }
        if !is_http_url(&self.pagerduty.events_url) {
            return Err(invalid(
                "response.pagerduty.events-url",
                "must be an http(s) URL",
            ));
        }
        Ok(())
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

impl Config {
    /// Reads and validates a file; `None` gives the defaults (plus env).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut cfg = match path {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
        };
        if let Ok(key) = std::env::var("WARDEN_HASH_KEY") {
            cfg.detector.hash_key = key;
        }
        if let Ok(url) = std::env::var("WARDEN_REDIS_URL") {
            cfg.redis.url = url;
        }
        cfg.response.apply_env();
        cfg.apply_deprecated_keys()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Moves the token variables still named under `[response]` (their home
    /// until this release) to `[server]`, saying so.
    fn apply_deprecated_keys(&mut self) -> Result<(), ConfigError> {
        let defaults = ServerConfig::default();
        for (old_key, new_key, old, new, default) in [
            (
                "response.admin-tokens-env",
                "server.admin-tokens-env",
                self.response.admin_tokens_env.take(),
                &mut self.server.admin_tokens_env,
                &defaults.admin_tokens_env,
            ),
            (
                "response.read-tokens-env",
                "server.read-tokens-env",
                self.response.read_tokens_env.take(),
                &mut self.server.read_tokens_env,
                &defaults.read_tokens_env,
            ),
        ] {
            let Some(old) = old else { continue };
            if new != default && *new != old {
                return Err(invalid(
                    old_key,
                    format!("is deprecated and disagrees with {new_key}; keep only {new_key}"),
                ));
            }
            tracing::warn!(
                key = old_key,
                instead = new_key,
                "Deprecated config key; it still works for this release."
            );
            *new = old;
        }
        Ok(())
    }

    /// Whether any agent can be in enforce mode: the default, a class or
    /// an agent override.
    pub fn may_enforce(&self) -> bool {
        let p = &self.policy;
        p.mode == Mode::Enforce
            || p.classes.iter().any(|c| c.mode == Some(Mode::Enforce))
            || p.agents.values().any(|a| a.mode == Some(Mode::Enforce))
    }

    /// Refuses an open door: with enforce possible, whoever can post events
    /// can get credentials revoked, so ingest off loopback needs tokens.
    /// `ingest_tokens` says whether `server.ingest-tokens-env` holds any.
    pub fn check_exposure(&self, ingest_tokens: bool) -> Result<(), ConfigError> {
        let loopback = self
            .server
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if self.may_enforce() && !loopback && !ingest_tokens {
            return Err(invalid(
                "server.listen",
                format!(
                    "{} is not a loopback address, agents can be in enforce mode, and {} \
                     (server.ingest-tokens-env) holds no ingest token: anyone who reaches \
                     the listener could get credentials revoked. Set {} or listen on loopback",
                    self.server.listen,
                    self.server.ingest_tokens_env,
                    self.server.ingest_tokens_env
                ),
            ));
        }
        Ok(())
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks every value that has a range, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.detector;
        if d.half_life < Duration::from_secs(60) {
            return Err(invalid("detector.half-life", "must be at least 1m"));
        }
        d.binding.validate()?;
        if d.session_timeout.is_zero() {
            return Err(invalid("detector.session-timeout", "must be positive"));
        }
        if d.max_sessions_per_agent == 0 {
            return Err(invalid(
                "detector.max-sessions-per-agent",
                "must be at least 1",
            ));
        }
        if !d.hash_key.is_empty() && HashKey::parse(&d.hash_key, "detector.hash-key").is_err() {
            return Err(invalid(
                "detector.hash-key",
                "must be empty (generate one) or 32 hex digits (a 128-bit key, e.g. `openssl rand -hex 16`)",
            ));
        }
        if d.min_history.is_nan() || d.min_history < 1.0 {
            return Err(invalid("detector.min-history", "must be at least 1"));
        }
        if d.backoff_strength.is_nan() || d.backoff_strength <= 0.0 {
            return Err(invalid("detector.backoff-strength", "must be positive"));
        }
        for (key, v) in [
            ("detector.max-tool-bits", d.max_tool_bits),
            ("detector.max-sequence-bits", d.max_sequence_bits),
        ] {
            if v.is_nan() || v <= 0.0 {
                return Err(invalid(key, "must be a positive number of bits"));
            }
        }
        for (key, v) in [
            ("detector.values-per-tool", d.values_per_tool),
            ("detector.parents-per-tool", d.parents_per_tool),
            ("detector.values-per-agent", d.values_per_agent),
            ("detector.parents-per-agent", d.parents_per_agent),
            ("detector.tools-per-agent", d.tools_per_agent),
            ("detector.sequence-entries", d.sequence_entries),
        ] {
            if !(1..=65_536).contains(&v) {
                return Err(invalid(key, "must be between 1 and 65536"));
            }
        }
        let p = &self.policy;
        if !(0.0..0.5).contains(&p.target_false_alarm_rate) || p.target_false_alarm_rate == 0.0 {
            return Err(invalid(
                "policy.target-false-alarm-rate",
                "must be in (0, 0.5)",
            ));
        }
        for (key, v) in [
            ("policy.threshold-bits", p.threshold_bits),
            ("policy.min-threshold-bits", p.min_threshold_bits),
            ("policy.max-threshold-bits", p.max_threshold_bits),
            ("policy.margin-bits", p.margin_bits),
            ("policy.carry-allowance-bits", p.carry_allowance_bits),
            ("policy.max-carry-bits", p.max_carry_bits),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(key, "must be a non-negative number of bits"));
            }
        }
        if !(0.0..=1.0).contains(&p.carry_decay) {
            return Err(invalid("policy.carry-decay", "must be between 0 and 1"));
        }
        if p.min_threshold_bits > p.max_threshold_bits {
            return Err(invalid(
                "policy.min-threshold-bits",
                "must not exceed max-threshold-bits",
            ));
        }
        for (i, c) in p.classes.iter().enumerate() {
            if c.name.is_empty() {
                return Err(invalid(
                    &format!("policy.classes[{i}].name"),
                    "must not be empty",
                ));
            }
            if let Some(t) = c.threshold_bits.filter(|t| !(t.is_finite() && *t > 0.0)) {
                return Err(invalid(
                    &format!("policy.classes[{i}].threshold-bits"),
                    format!("{t} is not a positive number of bits"),
                ));
            }
        }
        for (id, a) in &p.agents {
            if let Some(class) = &a.class {
                if !p.classes.iter().any(|c| &c.name == class) {
                    return Err(invalid(
                        &format!("policy.agents.{id}.class"),
                        format!("no class named {class:?}"),
                    ));
                }
            }
            if let Some(t) = a.threshold_bits.filter(|t| !(t.is_finite() && *t > 0.0)) {
                return Err(invalid(
                    &format!("policy.agents.{id}.threshold-bits"),
                    format!("{t} is not a positive number of bits"),
                ));
            }
        }
        self.response.validate()?;
        self.fleet.validate()?;
        if self.ingest.max_event_bytes < 64 {
            return Err(invalid("ingest.max-event-bytes", "must be at least 64"));
        }
        let sv = &self.server;
        if sv.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "server.listen",
                format!("{:?} is not an address like 127.0.0.1:8080", sv.listen),
            ));
        }
        match sv.admin_listen.parse::<std::net::SocketAddr>() {
            Err(_) => {
                return Err(invalid(
                    "server.admin-listen",
                    format!(
                        "{:?} is not an address like 127.0.0.1:9090",
                        sv.admin_listen
                    ),
                ))
            }
            Ok(a) if a.port() != 0 && sv.admin_listen == sv.listen => {
                return Err(invalid(
                    "server.admin-listen",
                    "must differ from server.listen: admin routes stay off the ingest listener",
                ))
            }
            Ok(_) => {}
        }
        for (key, v) in [
            ("server.ingest-tokens-env", &sv.ingest_tokens_env),
            ("server.read-tokens-env", &sv.read_tokens_env),
            ("server.admin-tokens-env", &sv.admin_tokens_env),
        ] {
            if v.trim().is_empty() {
                return Err(invalid(key, "must name an environment variable"));
            }
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&sv.redis_read_timeout) {
            return Err(invalid(
                "server.redis-read-timeout",
                "must be between 10ms and 10s",
            ));
        }
        if sv.max_body_bytes < self.ingest.max_event_bytes {
            return Err(invalid(
                "server.max-body-bytes",
                "must be at least ingest.max-event-bytes",
            ));
        }
        if sv.queue_depth == 0 {
            return Err(invalid("server.queue-depth", "must be at least 1"));
        }
        if sv.checkpoint_interval < Duration::from_secs(1) {
            return Err(invalid("server.checkpoint-interval", "must be at least 1s"));
        }
        if sv.data_dir.as_os_str().is_empty() {
            return Err(invalid("server.data-dir", "must not be empty"));
        }
        self.redis.validate()?;
        self.kafka.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse("[detector]\nhalf-lief = \"1d\"").unwrap_err();
        assert!(e.contains("half-lief"), "{e}");
        let cfg = Config::parse("[policy]\ntarget-false-alarm-rate = 2.0").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("policy.target-false-alarm-rate"), "{e}");
        let cfg = Config::parse("[policy.agents.x]\nclass = \"nope\"").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("policy.agents.x.class"), "{e}");
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact_url("redis://:s3cret@10.0.0.1:6379"),
            "redis://:<redacted>@10.0.0.1:6379"
        );
        assert_eq!(
            redact_url("redis://app:pw@h/0"),
            "redis://app:<redacted>@h/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn open_ingest_with_enforce_is_refused_off_loopback() {
        let exposed = "[server]\nlisten = \"0.0.0.0:8080\"\n";
        // Shadow everywhere: nothing can be revoked, so no refusal.
        let cfg = Config::parse(exposed).unwrap();
        cfg.validate().unwrap();
        cfg.check_exposure(false).unwrap();
        // Enforce by default, by class or by agent: refused without tokens.
        for policy in [
            "[policy]\nmode = \"enforce\"\n",
            "[[policy.classes]]\nname = \"p\"\nagents = [\"pay-*\"]\nmode = \"enforce\"\n",
            "[policy.agents.a]\nmode = \"enforce\"\n",
        ] {
            let cfg = Config::parse(&format!("{exposed}{policy}")).unwrap();
            assert!(cfg.may_enforce(), "{policy}");
            let e = cfg.check_exposure(false).unwrap_err().to_string();
            assert!(
                e.contains("server.listen") && e.contains("WARDEN_INGEST_TOKEN"),
                "{e}"
            );
            cfg.check_exposure(true).unwrap();
        }
        let cfg = Config::parse("[policy]\nmode = \"enforce\"\n").unwrap();
        cfg.check_exposure(false).unwrap();
        let cfg = Config::parse("[server]\nlisten = \"[::1]:0\"\n[policy]\nmode = \"enforce\"\n")
            .unwrap();
        cfg.check_exposure(false).unwrap();
    }

    #[test]
    fn listeners_and_token_variables_are_checked() {
        let cfg = Config::parse("[server]\nadmin-listen = \"nowhere\"").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("server.admin-listen"), "{e}");
        let cfg = Config::parse(
            "[server]\nlisten = \"127.0.0.1:7000\"\nadmin-listen = \"127.0.0.1:7000\"",
        )
        .unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("server.admin-listen"), "{e}");
        let cfg = Config::parse("[server]\ningest-tokens-env = \"\"").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("server.ingest-tokens-env"), "{e}");
        let cfg = Config::parse("[server]\nredis-read-timeout = \"1h\"").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("server.redis-read-timeout"), "{e}");
    }

    #[test]
    fn token_variables_under_response_still_work_for_a_release() {
        let mut cfg = Config::parse("[response]\nadmin-tokens-env = \"OPS_ADMIN\"").unwrap();
        cfg.apply_deprecated_keys().unwrap();
        assert_eq!(cfg.server.admin_tokens_env, "OPS_ADMIN");
        assert_eq!(cfg.response.admin_tokens_env, None);
        let mut cfg =
            Config::parse("[server]\nread-tokens-env = \"A\"\n[response]\nread-tokens-env = \"B\"")
                .unwrap();
        let e = cfg.apply_deprecated_keys().unwrap_err().to_string();
        assert!(e.contains("response.read-tokens-env"), "{e}");
    }

    #[test]
    fn durations_are_human() {
        let cfg =
            Config::parse("[detector]\nhalf-life = \"14d\"\nsession-timeout = \"10m\"").unwrap();
        assert_eq!(cfg.detector.half_life, Duration::from_secs(14 * 86_400));
        assert_eq!(cfg.detector.session_timeout, Duration::from_secs(600));
    }
}

#[cfg(test)]
mod response_tests {
    use super::*;

    #[test]
    fn an_instance_owns_records_by_its_name_and_its_former_owner_id() {
        let mut k = KafkaConfig {
            instance_id: "eu-1".to_owned(),
            ..KafkaConfig::default()
        };
        assert_eq!(k.instance(), "eu-1");
        assert!(k.owns("eu-1"));
        // What releases before this one recorded as the owner.
        assert!(k.owns("warden-warden-eu-1"));
        assert!(!k.owns("eu-2") && !k.owns("warden-warden-eu-2"));
        // Unnamed: the host's name, never empty.
        k.instance_id.clear();
        let host = k.instance();
        assert!(!host.is_empty() && !host.contains('\n'), "{host:?}");
        assert!(k.owns(&host));
    }

    #[test]
    fn revokers_parse_by_kind_and_reject_unknown_keys() {
        let cfg = Config::parse(
            r#"
            [[response.revokers]]
            kind = "vault"
            addr = "http://127.0.0.1:8200"
            method = "accessor"
            [[response.revokers]]
            kind = "oauth"
            endpoint = "http://127.0.0.1:9000/oauth2/revoke"
            client-id = "warden"
            client-auth = "client_secret_post"
            [[response.revokers]]
            kind = "webhook"
            name = "gateway"
            url = "http://127.0.0.1:9001/revoke"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let names: Vec<&str> = cfg.response.revokers.iter().map(|r| r.name()).collect();
        assert_eq!(names, ["vault", "oauth", "gateway"]);
        let e = Config::parse(
            "[[response.revokers]]\nkind = \"vault\"\naddr = \"http://x\"\ntokn-env = \"X\"",
        )
        .unwrap_err();
        assert!(e.contains("tokn-env"), "{e}");
        let cfg = Config::parse("[[response.revokers]]\nkind = \"vault\"\naddr = \"vault:8200\"")
            .unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("response.revokers[0].addr"), "{e}");
        let cfg = Config::parse("[response]\ncredential-id = \"handle\"").unwrap();
        assert_eq!(cfg.response.credential_id, CredentialIdMode::Handle);
        assert_eq!(
            Config::default().response.credential_id,
            CredentialIdMode::Secret
        );
        let e = Config::parse("[response]\ncredential-id = \"plain\"").unwrap_err();
        assert!(e.contains("credential-id") && e.contains("secret"), "{e}");
        let cfg = Config::parse("[response.pagerduty]\nrouting-key = \"short\"").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("response.pagerduty.routing-key"), "{e}");
    }
}

#[cfg(test)]
mod transport_tests {
    use super::*;

    fn err(cfg: &Config) -> String {
        cfg.validate().unwrap_err().to_string()
    }

    /// `[kafka]` enabled, plus `extra` lines.
    fn kafka(extra: &str) -> Config {
        Config::parse(&format!("[kafka]\nenabled = true\n{extra}")).unwrap()
    }

    #[test]
    fn kafka_keys_parse_in_their_documented_spelling() {
        let cfg = Config::parse(
            "[kafka]\nsecurity-protocol = \"sasl_plaintext\"\nsasl-mechanism = \"SCRAM-SHA-256\"\n\
             ssl-endpoint-identification = \"none\"\n[kafka.librdkafka]\n\"socket.keepalive.enable\" = \"true\"\n",
        )
        .unwrap();
        assert_eq!(cfg.kafka.security_protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(cfg.kafka.sasl_mechanism, SaslMechanism::ScramSha256);
        assert_eq!(
            cfg.kafka.ssl_endpoint_identification,
            EndpointIdentification::None
        );
        let e = Config::parse("[kafka]\nsecurity-protocol = \"tls\"").unwrap_err();
        assert!(e.contains("security-protocol") || e.contains("tls"), "{e}");
        let e = Config::parse("[kafka]\nsasl-mechanism = \"GSSAPI\"").unwrap_err();
        assert!(e.contains("GSSAPI"), "{e}");
    }

    #[test]
    fn the_transaction_timeout_outlasts_commits_and_stays_under_the_broker_cap() {
        assert_eq!(
            kafka("").kafka.transaction_timeout,
            Duration::from_secs(300)
        );
        kafka("transaction-timeout = \"15m\"\n").validate().unwrap();
        for bad in [
            "transaction-timeout = \"5s\"\n",
            "transaction-timeout = \"16m\"\n",
            "commit-interval = \"1m\"\ntransaction-timeout = \"90s\"\n",
        ] {
            assert!(
                err(&kafka(bad)).contains("kafka.transaction-timeout"),
                "{bad}"
            );
        }
        let cfg =
            Config::parse("[kafka.librdkafka]\n\"transaction.timeout.ms\" = \"1000\"\n").unwrap();
        assert!(
            err(&cfg).contains("kafka.transaction-timeout"),
            "{}",
            err(&cfg)
        );
    }

    #[test]
    fn sasl_needs_a_user_and_a_set_password_variable() {
        let var = "WARDEN_CONFIG_TEST_SASL_PASSWORD";
        let cfg = kafka(&format!(
            "security-protocol = \"sasl_ssl\"\nsasl-password-env = {var:?}\n"
        ));
        assert!(err(&cfg).contains("kafka.sasl-username"), "{}", err(&cfg));
        let cfg = kafka(&format!(
            "security-protocol = \"sasl_ssl\"\nsasl-username = \"warden\"\nsasl-password-env = {var:?}\n"
        ));
        let e = err(&cfg);
        assert!(
            e.contains("kafka.sasl-password-env") && e.contains(&format!("{var} is not set")),
            "{e}"
        );
        std::env::set_var(var, "s3cret-value");
        cfg.validate().unwrap();
        // A user name under plaintext would be silently unused.
        let e = err(&kafka("sasl-username = \"warden\"\n"));
        assert!(e.contains("kafka.sasl-username"), "{e}");
    }

    #[test]
    fn librdkafka_pass_through_refuses_secrets_and_warden_own_properties() {
        let cfg = Config::parse("[kafka.librdkafka]\n\"sasl.password\" = \"hunter2\"\n").unwrap();
        let e = err(&cfg);
        assert!(
            e.contains("kafka.librdkafka.\"sasl.password\"")
                && e.contains("kafka.sasl-password-env"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let cfg =
            Config::parse("[kafka.librdkafka]\n\"ssl.key.password\" = \"hunter2\"\n").unwrap();
        assert!(err(&cfg).contains("kafka.ssl-key-password-env"));
        for (key, instead) in [
            ("group.id", "kafka.group"),
            ("security.protocol", "kafka.security-protocol"),
            ("enable.ssl.certificate.verification", "always checked"),
        ] {
            let cfg = Config::parse(&format!("[kafka.librdkafka]\n{key:?} = \"x\"\n")).unwrap();
            let e = err(&cfg);
            assert!(e.contains(key) && e.contains(instead), "{e}");
        }
        let cfg = Config::parse("[kafka.librdkafka]\n\"Bad Key\" = \"x\"\n").unwrap();
        assert!(err(&cfg).contains("not a librdkafka property"));
        let cfg =
            Config::parse("[kafka.librdkafka]\n\"socket.keepalive.enable\" = \"true\"\n").unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn tls_files_need_a_tls_protocol_exist_and_pair_up() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "x").unwrap();
        let e = err(&kafka(&format!("ssl-ca-location = {pem:?}\n")));
        assert!(
            e.contains("kafka.ssl-ca-location") && e.contains("security-protocol ssl"),
            "{e}"
        );
        kafka(&format!(
            "security-protocol = \"ssl\"\nssl-ca-location = {pem:?}\n"
        ))
        .validate()
        .unwrap();
        let missing = dir.path().join("nope.pem");
        let e = err(&kafka(&format!(
            "security-protocol = \"ssl\"\nssl-ca-location = {missing:?}\n"
        )));
        assert!(
            e.contains("kafka.ssl-ca-location") && e.contains("is not a file"),
            "{e}"
        );
        let e = err(&kafka(&format!(
            "security-protocol = \"ssl\"\nssl-certificate-location = {pem:?}\n"
        )));
        assert!(e.contains("kafka.ssl-key-location"), "{e}");
        let e = err(&kafka(&format!(
            "security-protocol = \"ssl\"\nssl-certificate-location = {pem:?}\nssl-key-location = {pem:?}\n\
             ssl-key-password-env = \"WARDEN_CONFIG_TEST_UNSET_KEY_PASSWORD\"\n"
        )));
        assert!(
            e.contains("kafka.ssl-key-password-env")
                && e.contains("WARDEN_CONFIG_TEST_UNSET_KEY_PASSWORD"),
            "{e}"
        );
    }

    #[test]
    fn redis_tls_keys_need_rediss_and_certificate_checks() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "x").unwrap();
        let redis =
            |extra: &str| Config::parse(&format!("[redis]\nenabled = true\n{extra}")).unwrap();
        let e = err(&redis(&format!("ca-file = {pem:?}\n")));
        assert!(
            e.contains("redis.ca-file") && e.contains("rediss://"),
            "{e}"
        );
        redis(&format!(
            "url = \"rediss://127.0.0.1:6380\"\nca-file = {pem:?}\n"
        ))
        .validate()
        .unwrap();
        let e = err(&redis("url = \"rediss://127.0.0.1:6380/#insecure\"\n"));
        assert!(e.contains("redis.url") && e.contains("insecure"), "{e}");
        let e = err(&redis(&format!(
            "url = \"rediss://127.0.0.1:6380\"\nclient-cert-file = {pem:?}\n"
        )));
        assert!(e.contains("redis.client-key-file"), "{e}");
        let e = err(&redis(
            "password-env = \"WARDEN_CONFIG_TEST_UNSET_REDIS\"\n",
        ));
        assert!(
            e.contains("redis.password-env") && e.contains("WARDEN_CONFIG_TEST_UNSET_REDIS"),
            "{e}"
        );
        let e = err(&redis("url = \"http://127.0.0.1\"\n"));
        assert!(e.contains("redis.url"), "{e}");
    }
}
