//! The dashboards and alert rules against Debian's real Prometheus
//! (`apt-get install prometheus`; `.ci/run` installs it), scraping a real
//! `warden run` that consumes replay-data from the Kafka broker and alerts
//! a local Slack contract server:
//!
//! - `/metrics` passes `promtool check metrics`, and
//!   `dashboards/warden-alerts.yml` passes `promtool check rules`;
//! - every expression of every dashboard panel parses and returns data;
//! - every alert rule loads, and its expression, with its thresholds
//!   removed, returns data (the rules' thresholds are for production,
//!   not for a few minutes of replay).
#![cfg(feature = "integration-tests")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::contracts::ContractServer;
use common::*;

fn dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// The Prometheus child, killed when the test ends either way.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(bin: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{bin}` not found: install it with `apt-get install -y prometheus` (.ci/run does)")
    })
}

fn start_prometheus(dir: &Path, target: &str) -> Prometheus {
    let port = ContractServer::free_port();
    let rules = dashboards().join("warden-alerts.yml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: warden\n    static_configs:\n      - targets: [{target:?}]\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(which("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Prometheus {
        child,
        addr: format!("127.0.0.1:{port}"),
    }
}

/// Every `expr` of every panel of the dashboards, with the file and panel.
fn dashboard_exprs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in ["warden-overview", "warden-detection", "warden-response"] {
        let text = std::fs::read_to_string(dashboards().join(format!("{name}.json"))).unwrap();
        let d: serde_json::Value = serde_json::from_str(&text).unwrap();
        let var = &d["templating"]["list"][0];
        assert_eq!(var["name"], "datasource", "{name}: the datasource input");
        assert_eq!(var["type"], "datasource");
        for p in d["panels"].as_array().unwrap() {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{name}: {}",
                p["title"]
            );
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap().to_owned();
                out.push((format!("{name}: {}", p["title"].as_str().unwrap()), expr));
            }
        }
    }
    out
}

/// The alert rules' expressions: (alert, expr as written, expr with its
/// numeric comparisons removed).
fn rule_exprs() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dashboards().join("warden-alerts.yml")).unwrap();
    let mut out = Vec::new();
    let mut alert = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(a) = line.strip_prefix("- alert: ") {
            alert = a.to_owned();
        } else if let Some(e) = line.strip_prefix("expr: ") {
            out.push((alert.clone(), e.to_owned(), without_thresholds(e)));
        }
    }
    assert!(out.len() >= 5, "{out:?}");
    out
}

/// `a > 0 and b == 0` → `a and b`: drops each comparison with a number.
fn without_thresholds(expr: &str) -> String {
    let mut out = Vec::new();
    let mut words = expr.split(' ').peekable();
    while let Some(w) = words.next() {
        let is_cmp = matches!(w, ">" | "<" | ">=" | "<=" | "==" | "!=");
        if is_cmp && words.peek().is_some_and(|n| n.parse::<f64>().is_ok()) {
            words.next();
            continue;
        }
        out.push(w);
    }
    out.join(" ")
}

struct Api {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        self.rt.block_on(async {
            let r = self
                .client
                .post(format!("{}{path}", self.base))
                .form(form)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match r {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.json().await.unwrap_or_default())
                }
                Err(_) => (0, serde_json::Value::Null),
            }
        })
    }

    fn get_json(&self, path: &str) -> serde_json::Value {
        self.rt.block_on(async {
            match self
                .client
                .get(format!("{}{path}", self.base))
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            }
        })
    }

    fn query(&self, expr: &str) -> (u16, serde_json::Value) {
        self.post("/api/v1/query", &[("query", expr)])
    }

    fn ready(&self) -> bool {
        self.rt.block_on(async {
            self.client
                .get(format!("{}/-/ready", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    }
}

/// The first value of a query result, for the record.
fn first_value(result: &serde_json::Value) -> String {
    let r = &result["data"]["result"];
    let n = r.as_array().map_or(0, Vec::len);
    let v = r[0]["value"][1].as_str().unwrap_or("?");
    format!("{n} series, first = {v}")
}

#[test]
fn dashboards_and_alert_rules_return_data_from_a_real_prometheus() {
    let promtool = which("promtool");
    let rules = dashboards().join("warden-alerts.yml");
    let out = Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let slack = ContractServer::slack();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("prom-events");
    let config = kafka_slack_config(dir.path(), "prom", &topic, "500ms", &slack.url());
    // Enough of the test week for flags, incidents and alerts; small
    // enough for a debug build on a busy machine.
    let lines = test_lines(0, 800);
    let calls = tool_calls(&lines) as f64;
    produce(&topic, &lines, &[]);
    let svc = Service::start(&config, true);
    let deadline = Instant::now() + Duration::from_secs(240);
    while svc.metric("warden_decisions_total") < calls {
        if Instant::now() > deadline {
            let log: Vec<String> = svc.log.try_iter().collect();
            let (_, metrics) = svc.admin("GET", "/metrics", "");
            panic!(
                "{} of {calls} calls decided in 240 s\n{}\n{metrics}",
                svc.metric("warden_decisions_total"),
                log[log.len().saturating_sub(60)..].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // The exposition Prometheus does not ask for (text 0.0.4) is what
    // promtool checks.
    let (status, text) = svc.admin("GET", "/metrics", "");
    assert_eq!(status, 200);
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let prom = start_prometheus(dir.path(), &svc.admin_addr);
    let api = Api {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        client: reqwest::Client::new(),
        base: format!("http://{}", prom.addr),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !api.ready() {
        assert!(Instant::now() < deadline, "Prometheus not ready in 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Enough scrapes for rate() and deriv(): at least 5 samples.
    loop {
        let (_, r) = api.query("count_over_time(warden_events_total{kind=\"tool_call\"}[1m])");
        let n: f64 = r["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if n >= 5.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has not scraped Warden 5 times in 60 s: {r}\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // More traffic while Prometheus watches, over HTTP this time, so that
    // the rates the panels show are not all zero.
    let more = test_lines(800, 600);
    let (status, body) = svc.request_with(
        "POST",
        "/v1/events",
        &[("Content-Type", "application/x-ndjson")],
        &more,
    );
    assert_eq!(status, 202, "{body}");
    let decided = calls + tool_calls(&more) as f64;
    svc.wait_metric_for("warden_decisions_total", decided, Duration::from_secs(120));
    loop {
        let (_, r) = api.query("sum(rate(warden_decisions_total[5m]))");
        let rate: f64 = r["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if rate > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "Prometheus sees no decisions: {r}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, up) = api.query("up{job=\"warden\"}");
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");

    let mut failures = Vec::new();
    let mut report = Vec::new();
    for (panel, expr) in dashboard_exprs() {
        let (status, r) = api.query(&expr);
        let n = r["data"]["result"].as_array().map_or(0, Vec::len);
        if status != 200 || r["status"] != "success" || n == 0 {
            failures.push(format!("{panel}: {expr}: HTTP {status} {r}"));
        }
        report.push(format!("{panel}\n    {expr}\n    -> {}", first_value(&r)));
    }
    for (alert, expr, probe) in rule_exprs() {
        let (status, r) = api.query(&expr);
        if status != 200 || r["status"] != "success" {
            failures.push(format!("rule {alert}: {expr}: HTTP {status} {r}"));
        }
        let (status, r) = api.query(&probe);
        let n = r["data"]["result"].as_array().map_or(0, Vec::len);
        if status != 200 || n == 0 {
            failures.push(format!(
                "rule {alert} without thresholds: {probe}: HTTP {status} {r}"
            ));
        }
        report.push(format!(
            "rule {alert}\n    {probe}\n    -> {}",
            first_value(&r)
        ));
    }
    // The rules loaded and evaluate without error.
    let rules = api.get_json("/api/v1/rules");
    let loaded: Vec<&serde_json::Value> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(loaded.len(), rule_exprs().len(), "{rules}");
    for r in &loaded {
        if r["health"] == "err" {
            failures.push(format!("rule {} evaluates with an error: {r}", r["name"]));
        }
    }
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Alerts reached Slack, so the delivery panels show real outcomes.
    assert!(
        svc.metric("warden_alerts_total{destination=\"slack\",outcome=\"delivered\"}") > 0.0,
        "no alert delivered to the Slack contract server"
    );
    drop(prom);
    svc.stop();
}

#[test]
fn thresholds_are_removed_only_where_compared_with_a_number() {
    assert_eq!(
        without_thresholds("sum(rate(a[5m])) > 0 and sum(b) == 0"),
        "sum(rate(a[5m])) and sum(b)"
    );
    assert_eq!(
        without_thresholds("sum(a) / clamp_min(sum(b), 1e-9) > 0.01"),
        "sum(a) / clamp_min(sum(b), 1e-9)"
    );
    assert_eq!(without_thresholds("a > b"), "a > b");
}
