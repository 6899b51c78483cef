//! Emitting events to Warden from a Rust agent runtime, in a few lines:
//! a prompt, a tool call and its result (docs/events.md), over HTTP
//! ingest or to Kafka (message key = agent_id).
//!
//! cargo run --example emit -- http://127.0.0.1:8080
//! cargo run --example emit -- kafka 127.0.0.1:9092 tool-calls
//!
//! With ingest tokens on, set WARDEN_INGEST_TOKEN.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let agent = "ops-bot";
    let ts = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let id = |n: &str| {
        format!(
            "{n}-{}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        )
    };
    let (call_id, session) = (id("call"), id("sess"));
    let events = [
        json!({"kind": "prompt", "event_id": id("prompt"), "ts": ts(), "agent_id": agent,
               "session_id": session, "text": "Restart the web tier", "entities": ["web"]}),
        json!({"event_id": call_id, "ts": ts(), "agent_id": agent, "agent_class": "ci-bot",
               "session_id": session, "tool": "restart_service", "resource_type": "service",
               "resource_id": "web", "action": "execute", "args": {"service": "web"},
               "credential_id": "accessor-4f2a", "origin": {"kind": "user_prompt"}}),
        json!({"kind": "tool_result", "event_id": id("result"), "ts": ts(), "agent_id": agent,
               "session_id": session, "call_event_id": call_id, "tool": "restart_service",
               "result": "web restarted", "trust": "trusted"}),
    ];
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["kafka", brokers, topic] => {
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .create()?;
            for e in &events {
                let payload = e.to_string();
                let record = FutureRecord::to(topic).key(agent).payload(&payload);
                producer
                    .send(record, Duration::from_secs(5))
                    .await
                    .map_err(|(e, _)| e)?;
            }
            println!("{{\"produced\":{}}}", events.len());
        }
        [url] => {
            let body: String = events.iter().map(|e| format!("{e}\n")).collect();
            let mut req = reqwest::Client::new()
                .post(format!("{}/v1/events", url.trim_end_matches('/')))
                .header("Content-Type", "application/x-ndjson")
                .body(body);
            if let Ok(token) = std::env::var("WARDEN_INGEST_TOKEN") {
                req = req.bearer_auth(token);
            }
            let resp = req.send().await?;
            let status = resp.status();
            println!("{}", resp.text().await?);
            if !status.is_success() {
                return Err(format!("Warden answered {status}").into());
            }
        }
        _ => return Err("usage: emit URL | emit kafka BROKERS TOPIC".into()),
    }
    Ok(())
}
