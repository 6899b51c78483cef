//! Response latency, end to end: from an attack event handed to
//! `warden run` (HTTP ingest) to the revocation request arriving at a local
//! Vault-contract server, and to the Slack alert arriving.
//!
//! Replays the report split (seed 11) in order through a real `warden run`
//! in enforce mode, trained on its training file. Every labelled attack
//! call gets a credential of its own, so each one the detector flags opens
//! a quarantine and triggers exactly one revocation; benign traffic between
//! attacks is posted in batches, untimed. Latencies go into hdrhistograms.
//!
//! Attacks are sent one at a time (the next after the previous revocation
//! arrived, or 200 ms), each once the benign calls before it are decided:
//! the latency of the path, not of a backlog. Set
//! `WARDEN_BENCH_BURST=1` to post them without waiting, which measures how
//! fast a backlog of quarantines drains instead. `WARDEN_BENCH_DUMP=FILE`
//! writes each attack's start and latency, to find what the tail waits on.
//!
//! `cargo bench --bench response` (prints p50/p99/max and counts).
//!
//! First, the burst case: how many incidents the embedded registry records
//! per second when a burst opens them together (each with its queued
//! credential, committed once per burst of 1,000 as the responder does).
//! `WARDEN_BENCH_CASE=burst` runs only that.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post as route_post;
use axum::Router;

type Seen = Arc<Mutex<HashMap<String, Instant>>>;
/// Every Slack message, with when it arrived.
type Messages = Arc<Mutex<Vec<(Instant, String)>>>;

fn data(name: &str) -> String {
    format!("{}/replay-data/seed-11/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Vault's token revocation (204) and Slack's webhook (200 "ok"), each
/// recording when a credential first reached it.
fn recorders(rt: &tokio::runtime::Runtime) -> (String, Seen, Messages) {
    let vault: Seen = Arc::default();
    let slack: Messages = Arc::default();
    async fn revoke(State(seen): State<(Seen, Messages)>, body: Bytes) -> StatusCode {
        let now = Instant::now();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(t) = v["token"].as_str() {
            seen.0.lock().unwrap().entry(t.to_owned()).or_insert(now);
        }
        StatusCode::NO_CONTENT
    }
    // Alerts name the agent, never the credential (only its
    // fingerprint): matched to attacks by agent after the run.
    async fn slack_hook(State(seen): State<(Seen, Messages)>, body: Bytes) -> &'static str {
        let now = Instant::now();
        let text = String::from_utf8_lossy(&body).into_owned();
        seen.1.lock().unwrap().push((now, text));
        "ok"
    }
    let app = Router::new()
        .route("/v1/auth/token/revoke", route_post(revoke))
        .route("/slack", route_post(slack_hook))
        .with_state((vault.clone(), slack.clone()));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), vault, slack)
}

fn post(addr: &str, body: &str) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
}

/// A flag of agent `i` as a worker would hand it over.
fn burst_flag(i: usize) -> warden::respond::incident::Flag {
    use warden::respond::incident::{CallSummary, Flag, Reason};
    let call = CallSummary {
        event_id: format!("e-{i}"),
        ts: "2026-03-01T12:03:04.500Z".into(),
        tool: "send_payment".into(),
        action: Some("write".into()),
        resource_type: Some("bank_account".into()),
        resource_id: Some(format!("GB02LJSA{i:014}")),
        args: Some(r#"{"amount":32.07,"currency":"EUR"}"#.into()),
        score: 31.3,
        flagged: true,
    };
    Flag {
        agent_id: format!("agent-{i}"),
        agent_instance: Some(format!("agent-{i}-a")),
        principal: Some("customer:c-1".into()),
        credential_id: Some(warden::respond::credential::SecretString::new(format!(
            "tok-{i}"
        ))),
        credential: Some(warden::respond::credential::Credential {
            fingerprint: format!("cred:{i:016x}"),
            handle: None,
        }),
        session_id: Some(format!("sess-{i}")),
        trace_id: None,
        class: None,
        mode: warden::decide::Mode::Enforce,
        score: 31.3,
        threshold: 14.0,
        basis: "calibrated",
        reasons: vec![Reason {
            signal: "origin".into(),
            detail: "first call instructed by tool_output".into(),
            bits: 15.1,
        }],
        raw: format!(r#"{{"event_id":"e-{i}","agent_id":"agent-{i}"}}"#),
        timeline: vec![call.clone(); 8],
        call,
        origin: None,
        baseline: Default::default(),
        flagged_at: Instant::now(),
        folded: 0,
    }
}

/// Incidents recorded per second in bursts of 1,000 (queued credential,
/// record, one commit per burst), into an hdrhistogram of burst times.
fn burst_case() {
    use warden::respond::incident::Quarantine;
    let dir = tempfile::tempdir().unwrap();
    let mut reg = warden::respond::registry::Registry::file(dir.path()).unwrap();
    let revokers = [("vault".to_owned(), None)];
    let notifiers = ["slack".to_owned(), "pagerduty".to_owned()];
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let (bursts, size) = (20, 1000);
    let qs: Vec<_> = (0..bursts * size)
        .map(|i| {
            let f = burst_flag(i);
            (Quarantine::open(&f, &revokers, &notifiers, "bench"), f)
        })
        .collect();
    let started = Instant::now();
    for chunk in qs.chunks(size) {
        let t0 = Instant::now();
        for (q, f) in chunk {
            reg.queue_revocation(&q.id, 0, f.credential_id.as_ref().unwrap())
                .unwrap();
            reg.save(q).unwrap();
        }
        reg.commit().unwrap();
        h.record(t0.elapsed().as_micros() as u64).unwrap();
    }
    let total = started.elapsed().as_secs_f64();
    println!(
        "burst: {} incidents recorded in {total:.2} s: {:.0} incidents/s; per burst of {size}: p50 {:.1} ms, p99 {:.1} ms",
        bursts * size,
        (bursts * size) as f64 / total,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
    );
}

fn main() {
    // `cargo test --benches` runs benches once as tests: nothing to check.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    burst_case();
    if std::env::var("WARDEN_BENCH_CASE").is_ok_and(|c| c == "burst") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (base, vault, slack) = recorders(&rt);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\nworkers = 2\ndata-dir = {:?}\ndecisions-file = \"\"\n\
             [policy]\nmode = \"enforce\"\n[response]\nalert-delay = \"2s\"\n\
             [response.slack]\nwebhook-url = \"{base}/slack\"\n\
             [[response.revokers]]\nkind = \"vault\"\naddr = \"{base}\"\n",
            dir.path().join("state")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--train")
        .arg(data("train.jsonl.gz"))
        .env("WARDEN_VAULT_TOKEN", "bench")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let (addr, admin) = wait_ready(&rx);

    let labels: HashSet<String> = std::fs::read_to_string(data("labels.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["event_id"].as_str().map(str::to_owned))
        .collect();
    let f = std::fs::File::open(data("test.jsonl.gz")).unwrap();
    let lines = BufReader::new(flate2::read::GzDecoder::new(f)).lines();
    let burst = std::env::var("WARDEN_BENCH_BURST").is_ok_and(|v| v == "1");
    let mut sent: HashMap<String, Instant> = HashMap::new();
    // Each agent's first attack: the one its incident's page is about.
    let mut first_attack: HashMap<String, Instant> = HashMap::new();
    let mut batch = String::new();
    let started = Instant::now();
    let mut events = 0usize;
    let mut calls = 0u64;
    for (i, line) in lines.map_while(Result::ok).enumerate() {
        events += 1;
        let mut v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["kind"].as_str().is_none_or(|k| k == "tool_call") {
            calls += 1;
        }
        let attack = v["event_id"].as_str().is_some_and(|id| labels.contains(id));
        if !attack {
            batch.push_str(&line);
            batch.push('\n');
            if batch.len() > 256 * 1024 {
                post(&addr, &batch);
                batch.clear();
            }
            continue;
        }
        if !batch.is_empty() {
            post(&addr, &batch);
            batch.clear();
        }
        if !burst {
            wait_decided(&admin, calls - 1);
        }
        let cred = format!("bench-cred-{i}");
        v["credential_id"] = cred.clone().into();
        let body = v.to_string();
        let t0 = Instant::now();
        post(&addr, &body);
        // One attack at a time: this measures the path, not a queue of
        // thousands of simultaneous quarantines (see `burst` below).
        while !burst
            && !vault.lock().unwrap().contains_key(&cred)
            && t0.elapsed() < Duration::from_millis(200)
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        sent.insert(cred, t0);
        if let Some(agent) = v["agent_id"].as_str() {
            first_attack.entry(agent.to_owned()).or_insert(t0);
        }
    }
    if !batch.is_empty() {
        post(&addr, &batch);
    }
    let posted = started.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    let mut revoke = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut alert = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let v = vault.lock().unwrap();
    let s = slack.lock().unwrap();
    // WARDEN_BENCH_DUMP=FILE: one line per attack (ms since the start,
    // latency in µs), to see whether slow ones cluster in time.
    let mut dump = String::new();
    for (cred, t0) in &sent {
        if let Some(t) = v.get(cred) {
            let us = t.duration_since(*t0).as_micros() as u64;
            revoke.record(us).unwrap();
            dump.push_str(&format!(
                "{} {us}\n",
                t0.duration_since(started).as_millis()
            ));
        }
    }
    if let Ok(path) = std::env::var("WARDEN_BENCH_DUMP") {
        std::fs::write(path, dump).unwrap();
    }
    // The first Slack message naming the agent after its first attack:
    // its incident's opening alert, or a digest listing it when pacing
    // held the opening alert back. Includes `alert-delay` (2 s here).
    for (agent, t0) in &first_attack {
        if let Some((t, _)) = s
            .iter()
            .find(|(t, text)| t >= t0 && text.contains(agent.as_str()))
        {
            alert
                .record(t.duration_since(*t0).as_micros() as u64)
                .unwrap();
        }
    }
    println!(
        "replayed {events} events in {:.1} s; {} attack calls posted, {} revoked (flagged as new quarantines)",
        posted.as_secs_f64(),
        sent.len(),
        revoke.len()
    );
    report("revocation received", &revoke);
    report("Slack alert received", &alert);
    println!(
        "Slack: {} messages for {} agents attacked (one incident each; paced at 1 message/s)",
        s.len(),
        first_attack.len()
    );
}

/// One line of latencies in milliseconds (recorded in microseconds).
fn report(what: &str, h: &hdrhistogram::Histogram<u64>) {
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "attack event posted -> {what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        h.len()
    );
}

/// The ingest and admin addresses, once `warden run` is ready.
fn wait_ready(rx: &std::sync::mpsc::Receiver<String>) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let field = |line: &str, name: &str| -> Option<String> {
        let at = line.find(&format!(" {name}="))?;
        let rest = &line[at + name.len() + 2..];
        Some(rest.split_whitespace().next()?.to_owned())
    };
    let (mut addr, mut admin) = (None, None);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("warden logs Ready within 120 s");
        addr = addr.or_else(|| field(&line, "addr"));
        admin = admin.or_else(|| field(&line, "admin_addr"));
        if line.contains("Ready.") {
            return (
                addr.expect("listening address logged"),
                admin.expect("admin address logged"),
            );
        }
    }
}

/// Tool calls done with so far: decided, skipped as duplicates or
/// rejected.
fn decided(admin: &str) -> u64 {
    let mut s = TcpStream::connect(admin).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.lines()
        .filter(|l| {
            [
                "warden_decisions_total",
                "warden_duplicates_total",
                "warden_rejected_total",
            ]
            .iter()
            .any(|m| l.starts_with(m))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits (bounded) until every tool call posted so far is decided: an
/// attack is timed on an idle path, not behind the benign batch before it.
fn wait_decided(admin: &str, calls: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while decided(admin) < calls && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(500));
    }
}
