//! `warden run` as a process: HTTP ingest, decisions, dedup, metrics,
//! graceful shutdown with a checkpoint, and restart from it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn data(name: &str) -> String {
    format!("{}/replay-data/seed-11/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The first `n` lines of the report split's test stream, from `skip`.
fn test_lines(skip: usize, n: usize) -> String {
    let f = std::fs::File::open(data("test.jsonl.gz")).unwrap();
    let r = BufReader::new(flate2::read::GzDecoder::new(f));
    let mut out = String::new();
    for l in r.lines().skip(skip).take(n) {
        out.push_str(&l.unwrap());
        out.push('\n');
    }
    out
}

struct Service {
    child: Child,
    addr: String,
    log: mpsc::Receiver<String>,
}

impl Service {
    fn start(config: &Path, train: bool) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.arg("run").arg("--config").arg(config);
        if train {
            cmd.arg("--train").arg(data("train.jsonl.gz"));
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addr = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("service logs Ready within 60 s");
            if let Some(at) = line.find("addr=") {
                addr = Some(line[at + 5..].split_whitespace().next().unwrap().to_owned());
            }
            if line.contains("Ready.") {
                break;
            }
        }
        Service {
            child,
            addr: addr.expect("listening address logged"),
            log: rx,
        }
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp[9..12].parse().unwrap();
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.request("GET", "/metrics", "");
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits (bounded) until `name` reaches `value`.
    fn wait_metric(&self, name: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.metric(name) < value {
            assert!(
                Instant::now() < deadline,
                "{name} stuck at {} < {value}",
                self.metric(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then a bounded wait for a clean exit.
    fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(exit.success(), "exit status {exit}");
        self.log.try_iter().collect()
    }
}

fn tool_calls(ndjson: &str) -> usize {
    ndjson
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].is_null())
        .count()
}

#[test]
fn serves_decides_dedups_checkpoints_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    let state = dir.path().join("state");
    let decisions = dir.path().join("decisions.jsonl");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\ndata-dir = {:?}\ndecisions-file = {:?}\ncheckpoint-interval = \"1s\"\n",
            state, decisions
        ),
    )
    .unwrap();

    let svc = Service::start(&config, true);
    assert_eq!(svc.request("GET", "/live", "").0, 200);
    assert_eq!(svc.request("GET", "/ready", "").0, 200);

    let first = test_lines(0, 3000);
    let (status, body) = svc.request("POST", "/v1/events", &first);
    assert_eq!(status, 202, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["accepted"], 3000);
    let calls = tool_calls(&first) as f64;
    svc.wait_metric("warden_decisions_total", calls);

    // A JSON array with bad items: per-item errors, the good one accepted.
    let bad = r#"[{"event_id":"x1","ts":"2026-10-27T10:00:00Z","agent_id":"mail-assist-acme","tool":"read_email"},
                 {"event_id":5,"ts":"2026-10-27T10:00:00Z","agent_id":"a","tool":"t"},
                 {"event_id":"x2","ts":"not a time","agent_id":"a","tool":"t"}]"#;
    let (status, body) = svc.request("POST", "/v1/events", bad);
    assert_eq!(status, 202);
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (reply["accepted"].as_u64(), reply["rejected"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(reply["errors"][0]["index"], 1);
    assert_eq!(reply["errors"][0]["field"], "event_id");
    assert_eq!(reply["errors"][1]["kind"], "bad_timestamp");
    assert_eq!(svc.request("POST", "/v1/events", "[1,").0, 400);

    // Redelivery: no second decision.
    svc.request("POST", "/v1/events", &first);
    svc.wait_metric("warden_duplicates_total", calls);
    assert_eq!(svc.metric("warden_decisions_total"), calls + 1.0);
    assert!(svc.metric("warden_decisions_total{flagged=\"true\"}") > 0.0);
    let logs = svc.stop();
    assert!(
        logs.iter().any(|l| l.contains("Shut down cleanly.")),
        "{logs:?}"
    );

    let decided = std::fs::read_to_string(&decisions).unwrap();
    assert_eq!(
        decided.lines().count() as f64,
        calls + 1.0,
        "one decision per call"
    );
    let flagged = decided
        .lines()
        .filter(|l| l.contains("\"flagged\":true"))
        .count();
    assert!(flagged > 0);
    assert!(state.join("profiles-0.ckpt").exists() && state.join("profiles-1.ckpt").exists());
    assert!(state.join("rejects.jsonl").exists());

    // Restart: profiles and the dedup window come back from the checkpoint.
    let svc = Service::start(&config, false);
    let (_, m) = svc.request("GET", "/metrics", "");
    assert!(m.contains("warden_agents 27"), "{m}");
    svc.request("POST", "/v1/events", &first);
    svc.wait_metric("warden_duplicates_total", calls);
    let next = test_lines(3000, 2000);
    svc.request("POST", "/v1/events", &next);
    svc.wait_metric("warden_decisions_total", tool_calls(&next) as f64);
    svc.stop();
    let decided = std::fs::read_to_string(&decisions).unwrap();
    assert_eq!(
        decided.lines().count(),
        tool_calls(&first) + 1 + tool_calls(&next),
        "restart decided only new events"
    );
    // Restored agents are out of warm-up: no decision carries the warm-up
    // threshold.
    assert!(!decided.contains("\"threshold\":1000.0"));
}

#[test]
fn config_errors_name_the_key_and_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[server]\nlisten = \"nowhere\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listen"), "{err}");
    std::fs::write(&config, "[server]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
}
