//! The start-up summary: one log line each for what a flag does per class,
//! where events come from, who revokes, who is alerted and where state
//! lives, so an operator sees from the log alone what is switched on.

use std::net::SocketAddr;

use crate::config::{redact_url, Config, RevokerConfig, VaultMethod};

use super::auth::Tokens;

/// Logs the summary of `cfg` as `warden run` applies it.
pub fn log_summary(cfg: &Config, addr: SocketAddr, admin_addr: SocketAddr, tokens: &Tokens) {
    let p = &cfg.policy;
    let classes = list(
        p.classes
            .iter()
            .map(|c| format!("{}:{}", c.name, c.mode.unwrap_or(p.mode).as_str())),
    );
    let agents = list(
        p.agents
            .iter()
            .filter_map(|(id, a)| a.mode.map(|m| format!("{id}:{}", m.as_str()))),
    );
    tracing::info!(
        default = %p.mode.as_str(),
        classes = %classes,
        agents = %agents,
        "Modes: learn records, shadow alerts without revoking, enforce revokes."
    );

    let kafka = if cfg.kafka.enabled {
        format!(
            "{}@{}(group:{})",
            cfg.kafka.topic, cfg.kafka.brokers, cfg.kafka.group
        )
    } else {
        "off".to_owned()
    };
    let ingest_auth = if tokens.ingest.is_empty() {
        if tokens.any() {
            "closed"
        } else {
            "open"
        }
    } else {
        "token"
    };
    tracing::info!(
        http = %addr,
        http_auth = %ingest_auth,
        kafka = %kafka,
        admin = %admin_addr,
        "Sources: events arrive over HTTP and, when on, Kafka."
    );

    let revokers = if cfg.response.revokers.is_empty() {
        "none(enforce writes what to revoke to revocations.jsonl)".to_owned()
    } else {
        list(cfg.response.revokers.iter().map(describe_revoker))
    };
    tracing::info!(revokers = %revokers, "Revokers: enforce mode revokes through each.");

    let mut notifiers = vec!["log".to_owned()];
    if !cfg.response.slack.webhook_url.is_empty() {
        notifiers.push("slack".to_owned());
    }
    if !cfg.response.pagerduty.routing_key.is_empty() {
        notifiers.push(format!(
            "pagerduty({})",
            redact_url(&cfg.response.pagerduty.events_url)
        ));
    }
    tracing::info!(notifiers = %notifiers.join(","), "Notifiers: each incident is alerted through each.");

    let data_dir = cfg.server.data_dir.display().to_string();
    let (profiles, quarantines) = if cfg.redis.enabled {
        let r = format!("redis:{}", redact_url(&cfg.redis.url));
        (r.clone(), r)
    } else {
        (
            format!("{data_dir}/profiles-N.ckpt"),
            format!("{data_dir}/quarantines/"),
        )
    };
    let decisions = match (
        cfg.server.decisions_file.as_os_str().is_empty(),
        cfg.kafka.enabled && !cfg.kafka.decisions_topic.is_empty(),
    ) {
        (true, false) => "off".to_owned(),
        (true, true) => format!("kafka:{}", cfg.kafka.decisions_topic),
        (false, false) => cfg.server.decisions_file.display().to_string(),
        (false, true) => format!(
            "{},kafka:{}",
            cfg.server.decisions_file.display(),
            cfg.kafka.decisions_topic
        ),
    };
    tracing::info!(
        data_dir = %data_dir,
        profiles = %profiles,
        quarantines = %quarantines,
        decisions = %decisions,
        audit = %cfg.response.audit_path(&cfg.server.data_dir).display(),
        "State: where profiles, incidents, decisions and the audit log live."
    );
}

fn describe_revoker(r: &RevokerConfig) -> String {
    match r {
        RevokerConfig::Vault(v) => {
            let method = match v.method {
                VaultMethod::Token => "token",
                VaultMethod::Accessor => "accessor",
                VaultMethod::Lease => "lease",
            };
            format!("{}(vault:{method}@{})", v.name, redact_url(&v.addr))
        }
        RevokerConfig::Oauth(o) => format!("{}(oauth@{})", o.name, redact_url(&o.endpoint)),
        // A webhook URL may carry a token in its path: name the host only.
        RevokerConfig::Webhook(w) => format!(
            "{}(webhook@{})",
            w.name,
            reqwest::Url::parse(&w.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default()
        ),
        RevokerConfig::Log(l) => format!("{}(log:{})", l.name, l.path.display()),
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(",")
    }
}
