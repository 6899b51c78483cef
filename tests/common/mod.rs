//! Helpers shared by the integration tests that run `warden run` as a
//! process.
#![allow(dead_code)]

pub mod contracts;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

pub fn data(name: &str) -> String {
    format!("{}/replay-data/seed-11/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The first `n` lines of the report split's test stream, from `skip`.
pub fn test_lines(skip: usize, n: usize) -> String {
    let f = std::fs::File::open(data("test.jsonl.gz")).unwrap();
    let r = BufReader::new(flate2::read::GzDecoder::new(f));
    let mut out = String::new();
    for l in r.lines().skip(skip).take(n) {
        out.push_str(&l.unwrap());
        out.push('\n');
    }
    out
}

/// Asserts that a command run to completion succeeded, showing what it
/// printed when it did not; returns its standard output.
pub fn assert_ran(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub struct Service {
    pub child: Child,
    /// The ingest listener (`server.listen`).
    pub addr: String,
    /// The admin listener (`server.admin-listen`): metrics, quarantines.
    pub admin_addr: String,
    pub log: mpsc::Receiver<String>,
    /// What it logged up to `Ready.`.
    pub startup: Vec<String>,
    /// A read (else admin) token from the child's environment, which
    /// `admin` and `metric` present.
    pub read_token: Option<String>,
    /// An ingest token from the child's environment, which `request`
    /// presents.
    pub ingest_token: Option<String>,
}

/// The value of `name=` in a log line (a whole field: `addr=` does not
/// match inside `admin_addr=`).
pub fn log_field(line: &str, name: &str) -> Option<String> {
    let key = format!("{name}=");
    line.match_indices(&key)
        .find(|(at, _)| *at == 0 || line.as_bytes()[at - 1] == b' ')
        .and_then(|(at, _)| line[at + key.len()..].split_whitespace().next())
        .map(str::to_owned)
}

impl Service {
    pub fn start(config: &Path, train: bool) -> Self {
        Self::start_env(config, train, &[])
    }

    /// Like `start`, with environment variables set on the child process.
    /// A config that does not set `server.admin-listen` gets
    /// `127.0.0.1:0`, so tests running side by side never share a port.
    pub fn start_env(config: &Path, train: bool, env: &[(&str, &str)]) -> Self {
        let train = train.then(|| data("train.jsonl.gz"));
        Self::start_trained(config, train.as_deref(), env)
    }

    /// Like `start_env`, trained on `train` (any replay file) when given.
    pub fn start_trained(config: &Path, train: Option<&str>, env: &[(&str, &str)]) -> Self {
        let text = std::fs::read_to_string(config).unwrap();
        if !text.contains("admin-listen") {
            let text = match text.split_once("[server]\n") {
                Some((before, after)) => {
                    format!("{before}[server]\nadmin-listen = \"127.0.0.1:0\"\n{after}")
                }
                None => format!("{text}\n[server]\nadmin-listen = \"127.0.0.1:0\"\n"),
            };
            std::fs::write(config, text).unwrap();
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.arg("run").arg("--config").arg(config);
        if let Some(train) = train {
            cmd.arg("--train").arg(train);
        }
        cmd.envs(env.iter().copied());
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
        let (mut addr, mut admin_addr) = (None, None);
        let mut startup = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("service logs Ready within 60 s");
            if let Some(a) = log_field(&line, "addr") {
                addr = Some(a);
            }
            if let Some(a) = log_field(&line, "admin_addr") {
                admin_addr = Some(a);
            }
            let ready = line.contains("Ready.");
            startup.push(line);
            if ready {
                break;
            }
        }
        let token = |var: &str| {
            env.iter()
                .find(|(k, _)| *k == var)
                .and_then(|(_, v)| v.split(',').next())
                .map(|t| t.trim().to_owned())
        };
        Service {
            child,
            addr: addr.expect("listening address logged"),
            admin_addr: admin_addr.expect("admin listening address logged"),
            log: rx,
            startup,
            read_token: token("WARDEN_READ_TOKEN").or_else(|| token("WARDEN_ADMIN_TOKEN")),
            ingest_token: token("WARDEN_INGEST_TOKEN"),
        }
    }

    /// A request to the ingest listener, with the ingest token if the
    /// service has one.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let auth = bearer(&self.ingest_token);
        self.request_with(method, path, &auth_header(&auth), body)
    }

    /// A request to the ingest listener with exactly these extra headers.
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        http_request(&self.addr, method, path, headers, body).0
    }

    /// A request to the admin listener, with the read token if the
    /// service has one.
    pub fn admin(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let auth = bearer(&self.read_token);
        self.admin_with(method, path, &auth_header(&auth), body)
    }

    /// A request to the admin listener with exactly these extra headers.
    pub fn admin_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        http_request(&self.admin_addr, method, path, headers, body).0
    }

    pub fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.admin("GET", "/metrics", "");
        assert_eq!(status, 200, "{text}");
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits (bounded, 20 s) until `name` reaches `value`.
    pub fn wait_metric(&self, name: &str, value: f64) {
        self.wait_metric_for(name, value, Duration::from_secs(20));
    }

    /// Waits until `name` reaches `value`, at most `limit`.
    pub fn wait_metric_for(&self, name: &str, value: f64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if TcpStream::connect(&self.admin_addr).is_err() {
                self.fail(&format!("waiting for {name}: the service is gone"));
            }
            let v = self.metric(name);
            if v >= value {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("{name} stuck at {v} < {value}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics with `why` and what the service logged last, which is what
    /// explains a stall or an exit.
    pub fn fail(&self, why: &str) -> ! {
        let logs: Vec<String> = self.log.try_iter().collect();
        let tail = &logs[logs.len().saturating_sub(200)..];
        panic!("{why}; last service log lines:\n{}", tail.join("\n"))
    }

    /// SIGTERM, then a bounded wait for a clean exit.
    ///
    /// A test that panics before this leaves the child to `Drop`, which
    /// kills it: no orphaned `warden run` outlives its test.
    pub fn stop(mut self) -> Vec<String> {
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

fn bearer(token: &Option<String>) -> Option<String> {
    token.as_ref().map(|t| format!("Bearer {t}"))
}

fn auth_header(auth: &Option<String>) -> Vec<(&'static str, &str)> {
    auth.iter().map(|a| ("Authorization", a.as_str())).collect()
}

/// One HTTP/1.1 request on its own connection: the status, the body and
/// the response headers (lower-cased names).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> ((u16, String), Vec<(String, String)>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let response_headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    ((status, body.to_owned()), response_headers)
}

pub fn tool_calls(ndjson: &str) -> usize {
    ndjson
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].is_null())
        .count()
}

/// The Kafka broker the integration tests use.
pub fn brokers() -> String {
    std::env::var("WARDEN_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A name no earlier run used: topics and groups start empty.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Writes `<dir>/warden.toml` for a `warden run` that consumes `topic`
/// (a fresh group named after `name`) and alerts `slack_url`, committing
/// every `commit_interval`; returns its path.
pub fn kafka_slack_config(
    dir: &Path,
    name: &str,
    topic: &str,
    commit_interval: &str,
    slack_url: &str,
) -> std::path::PathBuf {
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\ndata-dir = {:?}\ndecisions-file = \"\"\n\
             checkpoint-interval = \"1s\"\n\
             [kafka]\nenabled = true\nbrokers = {:?}\ntopic = {topic:?}\ngroup = {:?}\n\
             commit-interval = {commit_interval:?}\ninstance-id = {name:?}\n\
             [response]\nalert-delay = \"1s\"\nrequest-timeout = \"1s\"\n\
             [response.slack]\nwebhook-url = {slack_url:?}\n",
            dir.join("state"),
            brokers(),
            unique(&format!("{name}-group")),
        ),
    )
    .unwrap();
    config
}

/// Produces `lines` keyed by agent, and every 1,000 lines one of `bad`;
/// returns how many bad messages were sent.
pub fn produce(topic: &str, lines: &str, bad: &[&[u8]]) -> usize {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap();
    let mut sent = 0;
    for (i, line) in lines.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["agent_id"].as_str().unwrap().to_owned();
        while producer
            .send(BaseRecord::to(topic).key(&key).payload(line))
            .is_err()
        {
            producer.poll(Duration::from_millis(10));
        }
        if i % 1000 == 0 && !bad.is_empty() {
            producer
                .send(
                    BaseRecord::to(topic)
                        .key("bad")
                        .payload(bad[sent % bad.len()]),
                )
                .unwrap();
            sent += 1;
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    sent
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
