//! What `warden run` needs from its surroundings before it binds a port,
//! checked the same way by `warden validate` and `warden check`: every
//! revoker's secret present, every outbound URL parseable, the state
//! directory and files writable, and no integration half-configured from
//! the environment. Each failure is a [`ConfigError`] naming the key or
//! variable (exit 64).

use std::path::Path;

use super::{invalid, Config, ConfigError, RevokerConfig};

/// The variables that switch a part on from the environment alone (the
/// README's quick start), with the variable each needs beside it.
const PAIRS: [(&str, &str, &str); 2] = [
    (
        "WARDEN_VAULT_TOKEN",
        "WARDEN_VAULT_ADDR",
        "a Vault revoker needs its address",
    ),
    (
        "WARDEN_PAGERDUTY_EVENTS_URL",
        "WARDEN_PAGERDUTY_ROUTING_KEY",
        "PagerDuty needs its routing key",
    ),
];

impl Config {
    /// Runs every check `warden run` would otherwise meet only after
    /// binding (or at the first incident).
    pub fn preflight(&self) -> Result<(), ConfigError> {
        self.check_half_configured()?;
        self.check_revoker_secrets()?;
        self.check_urls()?;
        self.check_writable()
    }

    fn check_half_configured(&self) -> Result<(), ConfigError> {
        for (set, missing, why) in PAIRS {
            if !env_set(set) || env_set(missing) {
                continue;
            }
            // A Vault token consumed by a configured Vault revoker is not
            // half a configuration: the file gives the address.
            let consumed = self.response.revokers.iter().any(|r| match r {
                RevokerConfig::Vault(v) => v.token_env == set,
                _ => false,
            });
            let has_key = set == "WARDEN_PAGERDUTY_EVENTS_URL"
                && !self.response.pagerduty.routing_key.is_empty();
            if !consumed && !has_key {
                return Err(invalid(
                    missing,
                    format!(
                        "{set} is set but {missing} is not: {why} (set {missing}, or unset {set})"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_revoker_secrets(&self) -> Result<(), ConfigError> {
        for (i, r) in self.response.revokers.iter().enumerate() {
            let (key, var) = match r {
                RevokerConfig::Vault(v) => ("token-env", &v.token_env),
                RevokerConfig::Oauth(o) => ("client-secret-env", &o.client_secret_env),
                RevokerConfig::Webhook(w) => ("secret-env", &w.secret_env),
                RevokerConfig::Log(_) => continue,
            };
            if !env_set(var) {
                return Err(invalid(
                    &format!("response.revokers[{i}].{key}"),
                    format!(
                        "environment variable {var} is not set (revoker {:?} needs its secret there)",
                        r.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_urls(&self) -> Result<(), ConfigError> {
        let resp = &self.response;
        let mut urls: Vec<(String, &str)> = vec![
            ("response.public-url".into(), resp.public_url.as_str()),
            (
                "response.pagerduty.events-url".into(),
                resp.pagerduty.events_url.as_str(),
            ),
        ];
        if !resp.slack.webhook_url.is_empty() {
            urls.push((
                "response.slack.webhook-url".into(),
                resp.slack.webhook_url.as_str(),
            ));
        }
        for (i, r) in resp.revokers.iter().enumerate() {
            let (key, url) = match r {
                RevokerConfig::Vault(v) => ("addr", v.addr.as_str()),
                RevokerConfig::Oauth(o) => ("endpoint", o.endpoint.as_str()),
                RevokerConfig::Webhook(w) => ("url", w.url.as_str()),
                RevokerConfig::Log(_) => continue,
            };
            urls.push((format!("response.revokers[{i}].{key}"), url));
        }
        for (key, url) in urls {
            match reqwest::Url::parse(url) {
                Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {}
                // The URL may hold a secret (a Slack webhook): say what is
                // wrong, not what it is.
                Ok(_) => return Err(invalid(&key, "is a URL without a host")),
                Err(e) => return Err(invalid(&key, format!("is not a valid URL ({e})"))),
            }
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<(), ConfigError> {
        let sv = &self.server;
        writable_dir("server.data-dir", &sv.data_dir)?;
        for (key, file) in [
            ("server.decisions-file", &sv.decisions_file),
            ("response.audit-file", &self.response.audit_file),
        ] {
            if file.as_os_str().is_empty() {
                continue;
            }
            if file.is_dir() {
                return Err(invalid(key, format!("{} is a directory", file.display())));
            }
            match file.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(dir) => writable_dir(key, dir)?,
                None => writable_dir(key, Path::new("."))?,
            }
        }
        Ok(())
    }
}

fn env_set(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| !v.is_empty())
}

/// `dir` is a writable directory, or can be created: its nearest existing
/// ancestor is one. Probed by creating and removing a file, which is what
/// counts (permissions, read-only mounts, ACLs alike).
fn writable_dir(key: &str, dir: &Path) -> Result<(), ConfigError> {
    let mut at = dir;
    loop {
        if at.exists() {
            break;
        }
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => {
                at = Path::new(".");
                break;
            }
        }
    }
    if !at.is_dir() {
        return Err(invalid(key, format!("{} is not a directory", at.display())));
    }
    let probe = at.join(format!(".warden-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        // io::Error's Display already carries "(os error N)": print it once.
        Err(e) => Err(invalid(
            key,
            format!("cannot write in {}: {}", at.display(), io_reason(&e)),
        )),
    }
}

/// An I/O error's reason, without the "(os error N)" suffix repeated by
/// callers that add their own context.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(at) => s[..at].to_owned(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let cfg = Config::parse(text).unwrap();
        cfg.validate().unwrap();
        cfg
    }

    #[test]
    fn an_unset_revoker_secret_names_key_and_variable() {
        let cfg = config(
            "[[response.revokers]]\nkind = \"vault\"\naddr = \"http://127.0.0.1:8200\"\ntoken-env = \"WARDEN_PREFLIGHT_TEST_UNSET\"\n",
        );
        let e = cfg.preflight().unwrap_err().to_string();
        assert!(
            e.contains("response.revokers[0].token-env")
                && e.contains("WARDEN_PREFLIGHT_TEST_UNSET"),
            "{e}"
        );
    }

    #[test]
    fn a_url_that_does_not_parse_is_named() {
        let cfg = config(
            "[[response.revokers]]\nkind = \"webhook\"\nurl = \"http://exa mple/revoke\"\nsecret-env = \"PATH\"\n",
        );
        let e = cfg.preflight().unwrap_err().to_string();
        assert!(e.contains("response.revokers[0].url"), "{e}");
    }

    #[test]
    fn an_unwritable_data_dir_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let cfg = config(&format!("[server]\ndata-dir = {:?}\n", file.join("sub")));
        let e = cfg.preflight().unwrap_err().to_string();
        assert!(
            e.contains("server.data-dir") && e.contains("not a directory"),
            "{e}"
        );
        let cfg = config(&format!(
            "[server]\ndata-dir = {:?}\n",
            dir.path().join("new/state")
        ));
        cfg.preflight().unwrap();
    }
}
