//! Trust boundaries of `warden run` as a process: which listener serves
//! which route, which token role each route takes, the deprecated
//! quarantine paths on the ingest listener, and the refusal to start with
//! open ingest where enforce can revoke.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::*;

const INGEST: &str = "ingest-tok";
const READ: &str = "read-tok";
const ADMIN: &str = "admin-tok";

const EVENT: &str = r#"{"event_id":"auth-1","ts":"2026-10-27T10:00:00Z","agent_id":"mail-assist-acme","tool":"read_email"}"#;
const RELEASE: &str = r#"{"actor":"t","reason":"test","false_positive":false}"#;

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("warden.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\nworkers = 1\n\
             data-dir = {:?}\ndecisions-file = \"\"\n{extra}",
            dir.join("state")
        ),
    )
    .unwrap();
    path
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// One route: where it is, what it needs, and what it answers once let in.
struct RouteCase {
    admin_listener: bool,
    method: &'static str,
    path: &'static str,
    body: &'static str,
    /// Tokens of other roles, each answered 403.
    wrong_roles: &'static [&'static str],
    right: &'static str,
    /// The status once past authentication.
    served: u16,
    role: &'static str,
}

fn cases() -> Vec<RouteCase> {
    let mut v = vec![RouteCase {
        admin_listener: false,
        method: "POST",
        path: "/v1/events",
        body: EVENT,
        wrong_roles: &[READ, ADMIN],
        right: INGEST,
        served: 202,
        role: "ingest",
    }];
    // The quarantine API on the admin listener, and (deprecated) on the
    // ingest listener, with the same rules.
    for admin_listener in [true, false] {
        for (path, served) in [
            ("/v1/quarantines", 200),
            ("/v1/quarantines/q-00", 404),
            ("/v1/quarantines/agents/mail-assist-acme", 200),
        ] {
            v.push(RouteCase {
                admin_listener,
                method: "GET",
                path,
                body: "",
                wrong_roles: &[INGEST],
                right: READ,
                served,
                role: "read",
            });
        }
        v.push(RouteCase {
            admin_listener,
            method: "POST",
            path: "/v1/quarantines/q-00/release",
            body: RELEASE,
            wrong_roles: &[INGEST, READ],
            right: ADMIN,
            served: 404,
            role: "admin",
        });
    }
    v.push(RouteCase {
        admin_listener: true,
        method: "GET",
        path: "/metrics",
        body: "",
        wrong_roles: &[INGEST],
        right: READ,
        served: 200,
        role: "read",
    });
    v
}

#[test]
fn every_route_takes_only_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_env(
        &config(dir.path(), ""),
        false,
        &[
            ("WARDEN_INGEST_TOKEN", INGEST),
            ("WARDEN_READ_TOKEN", READ),
            ("WARDEN_ADMIN_TOKEN", &format!("other-admin, {ADMIN}")),
        ],
    );
    for c in cases() {
        let addr = if c.admin_listener {
            &svc.admin_addr
        } else {
            &svc.addr
        };
        let at = format!(
            "{} {} on the {} listener",
            c.method,
            c.path,
            if c.admin_listener { "admin" } else { "ingest" }
        );
        let call = |token: Option<&str>| {
            let auth = token.map(bearer);
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            http_request(addr, c.method, c.path, &headers, c.body).0
        };
        for (token, want) in [(None, 401), (Some("not-a-token"), 401)] {
            let (status, body) = call(token);
            assert_eq!(status, want, "{at} with {token:?}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["required_role"], c.role, "{at}: {body}");
        }
        for token in c.wrong_roles {
            let (status, body) = call(Some(token));
            assert_eq!(status, 403, "{at} with the {token} token: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["required_role"], c.role, "{at}: {body}");
        }
        let (status, body) = call(Some(c.right));
        assert_eq!(status, c.served, "{at} with the right token: {body}");
        // An admin token also reads.
        if c.role == "read" {
            assert_eq!(call(Some(ADMIN)).0, c.served, "{at} with an admin token");
        }
    }
    // Probes stay open on both listeners; metrics are not on ingest.
    for addr in [&svc.addr, &svc.admin_addr] {
        for path in ["/live", "/ready"] {
            assert_eq!(http_request(addr, "GET", path, &[], "").0 .0, 200, "{path}");
        }
    }
    let ingest = [("Authorization", bearer(INGEST))];
    let ingest: Vec<(&str, &str)> = ingest.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(
        http_request(&svc.addr, "GET", "/metrics", &ingest, "").0 .0,
        404
    );
    let ((status, _), _) = http_request(&svc.admin_addr, "POST", "/v1/events", &ingest, EVENT);
    assert_eq!(status, 404, "no ingest on the admin listener");
    svc.stop();
}

#[test]
fn deprecated_paths_answer_on_the_ingest_listener_and_warn_once_per_route() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&config(dir.path(), ""), false);
    for _ in 0..3 {
        let ((status, body), headers) = http_request(&svc.addr, "GET", "/v1/quarantines", &[], "");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"quarantines\""), "{body}");
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "deprecation" && v == "true"),
            "{headers:?}"
        );
    }
    let ((status, _), _) = http_request(
        &svc.addr,
        "GET",
        "/v1/quarantines/agents/mail-assist-acme",
        &[],
        "",
    );
    assert_eq!(status, 200);
    // The same routes on the admin listener are not deprecated.
    let (_, headers) = http_request(&svc.admin_addr, "GET", "/v1/quarantines", &[], "");
    assert!(
        !headers.iter().any(|(n, _)| n == "deprecation"),
        "{headers:?}"
    );
    let admin_addr = svc.admin_addr.clone();
    let logs = svc.stop();
    let warnings: Vec<&String> = logs.iter().filter(|l| l.contains("Deprecated")).collect();
    assert_eq!(warnings.len(), 2, "one per route: {warnings:#?}");
    assert!(
        warnings.iter().all(|l| l.contains(&admin_addr)),
        "{warnings:#?}"
    );
    assert!(warnings
        .iter()
        .any(|l| l.contains("GET /v1/quarantines/agents/{agent_id}")));
}

#[test]
fn without_tokens_ingest_and_reads_are_open_and_releases_off() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&config(dir.path(), ""), false);
    let (status, body) = svc.request_with("POST", "/v1/events", &[], EVENT);
    assert_eq!(status, 202, "{body}");
    for path in [
        "/metrics",
        "/v1/quarantines",
        "/v1/quarantines/agents/mail-assist-acme",
    ] {
        let (status, body) = svc.admin_with("GET", path, &[], "");
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = svc.admin_with("POST", "/v1/quarantines/q-00/release", &[], RELEASE);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("WARDEN_ADMIN_TOKEN"), "{body}");
    // Once any token is set, anonymous ingest is refused.
    svc.stop();
    let svc = Service::start_env(
        &config(dir.path(), ""),
        false,
        &[("WARDEN_READ_TOKEN", READ)],
    );
    let (status, body) = svc.request_with("POST", "/v1/events", &[], EVENT);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("WARDEN_INGEST_TOKEN"), "{body}");
    svc.stop();
}

/// `warden <command> --config <config>` with no token in its environment.
fn warden(command: &str, config: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.args([command, "--config"]).arg(config);
    for var in [
        "WARDEN_INGEST_TOKEN",
        "WARDEN_READ_TOKEN",
        "WARDEN_ADMIN_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

#[test]
fn enforce_with_open_ingest_off_loopback_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let exposed = dir.path().join("exposed.toml");
    std::fs::write(
        &exposed,
        format!(
            "[server]\nlisten = \"0.0.0.0:0\"\nadmin-listen = \"127.0.0.1:0\"\ndata-dir = {:?}\n\
             [[policy.classes]]\nname = \"payments\"\nagents = [\"pay-*\"]\nmode = \"enforce\"\n",
            dir.path().join("state")
        ),
    )
    .unwrap();
    for command in ["run", "validate"] {
        let out = warden(command, &exposed, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{command}: {err}");
        assert!(
            err.contains("server.listen") && err.contains("WARDEN_INGEST_TOKEN"),
            "{command}: {err}"
        );
    }
    // Nothing was started: no state directory.
    assert!(!dir.path().join("state").exists());
    // With an ingest token the same configuration is accepted.
    let out = warden("validate", &exposed, &[("WARDEN_INGEST_TOKEN", INGEST)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The variable named in the config is the one that counts.
    let text = std::fs::read_to_string(&exposed).unwrap().replace(
        "[server]\n",
        "[server]\ningest-tokens-env = \"GATEWAY_TOKEN\"\n",
    );
    std::fs::write(&exposed, text).unwrap();
    let out = warden("validate", &exposed, &[("WARDEN_INGEST_TOKEN", INGEST)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("GATEWAY_TOKEN"), "{err}");
    assert!(warden("validate", &exposed, &[("GATEWAY_TOKEN", INGEST)])
        .status
        .success());
}
