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

pub struct Service {
    pub child: Child,
    pub addr: String,
    pub log: mpsc::Receiver<String>,
    /// What it logged up to `Ready.`.
    pub startup: Vec<String>,
}

impl Service {
    pub fn start(config: &Path, train: bool) -> Self {
        Self::start_env(config, train, &[])
    }

    /// Like `start`, with environment variables set on the child process.
    pub fn start_env(config: &Path, train: bool, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.arg("run").arg("--config").arg(config);
        if train {
            cmd.arg("--train").arg(data("train.jsonl.gz"));
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
        let mut addr = None;
        let mut startup = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("service logs Ready within 60 s");
            if let Some(at) = line.find("addr=") {
                addr = Some(line[at + 5..].split_whitespace().next().unwrap().to_owned());
            }
            let ready = line.contains("Ready.");
            startup.push(line);
            if ready {
                break;
            }
        }
        Service {
            child,
            addr: addr.expect("listening address logged"),
            log: rx,
            startup,
        }
    }

    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.request_with(method, path, &[], body)
    }

    /// Like `request`, with extra request headers.
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
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
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.request("GET", "/metrics", "");
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
