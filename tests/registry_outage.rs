//! The broker's agent endpoint with the quarantine registry in Redis fails
//! closed, fast: during an outage it answers 503 within a second, whether
//! Redis refuses connections or accepts them and never answers.
//!
//! Warden reaches the real Redis server (scripts/redis.sh) through a proxy
//! in this test, which then plays each outage; the server itself stays up
//! for the other tests.
#![cfg(feature = "integration-tests")]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod common;
use common::*;

fn upstream() -> String {
    std::env::var("WARDEN_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned()
}

/// A local TCP listener on `port` that either forwards to Redis or holds
/// every connection without a byte in reply (a black hole).
struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Both ends of every connection, to cut them when the mode changes.
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(port: u16, forward: bool) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let accept = {
            let (stop, conns) = (stop.clone(), conns.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let client = match listener.accept() {
                        Ok((c, _)) => c,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                    };
                    client.set_nonblocking(false).unwrap();
                    conns.lock().unwrap().push(client.try_clone().unwrap());
                    if !forward {
                        continue;
                    }
                    let server = TcpStream::connect(upstream()).unwrap();
                    conns.lock().unwrap().push(server.try_clone().unwrap());
                    pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                    pipe(server, client);
                }
            })
        };
        Proxy {
            port,
            stop,
            conns,
            accept: Some(accept),
        }
    }

    /// Closes the listener (the port then refuses) and every connection.
    fn cut(mut self) -> u16 {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.port
    }
}

/// Copies one direction until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Asks the agent endpoint and the quarantine lookup `times` times each;
/// returns the statuses, asserting every answer took under a second.
fn ask(svc: &Service, times: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..times {
        for path in [
            "/v1/quarantines/agents/mail-assist-acme",
            "/v1/quarantines/q-0123abcd",
        ] {
            let started = Instant::now();
            let (status, body) = svc.admin("GET", path, "");
            let took = started.elapsed();
            eprintln!("{path}: {status} in {took:?}");
            assert!(
                took < Duration::from_secs(1),
                "{path}: {status} after {took:?}"
            );
            if status == 503 {
                assert!(body.contains("treat the agent as quarantined"), "{body}");
            }
            statuses.push(status);
        }
    }
    statuses
}

#[test]
fn agent_endpoint_answers_503_within_a_second_during_a_redis_outage() {
    let proxy = Proxy::start(0, true);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\nworkers = 1\n\
             data-dir = {:?}\ndecisions-file = \"\"\n\
             [redis]\nenabled = true\nurl = \"redis://127.0.0.1:{}\"\nkey-prefix = \"warden-outage-{}\"\n",
            dir.path().join("state"),
            proxy.port,
            std::process::id()
        ),
    )
    .unwrap();
    let svc = Service::start(&config, false);
    // Up: answered from Redis (the lookup's connections are now pooled).
    assert_eq!(ask(&svc, 2), [200, 404, 200, 404]);

    // A restart closes the pooled connections; the next answers still
    // come from Redis, over fresh ones.
    let port = proxy.cut();
    let proxy = Proxy::start(port, true);
    assert_eq!(ask(&svc, 2), [200, 404, 200, 404]);

    // Connection refused: nothing listens on the port any more.
    let port = proxy.cut();
    assert!(ask(&svc, 3).iter().all(|s| *s == 503));

    // A black hole: connections are accepted and never answered.
    let hole = Proxy::start(port, false);
    assert!(ask(&svc, 3).iter().all(|s| *s == 503));

    // Back: the next answers come from Redis again.
    hole.cut();
    let _proxy = Proxy::start(port, true);
    assert_eq!(ask(&svc, 1), [200, 404]);
    svc.stop();
}
