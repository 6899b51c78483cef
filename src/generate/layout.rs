//! Lays a session plan out in time: a prompt, then each call after a
//! tool-dependent think time, each read followed by its result 50–800 ms
//! later (never after the next call, so values arrive before they are used).

use rand::Rng;

use super::model::{Call, Origin, Pace, Session};
use super::util::{lognormal, Rand, SECOND};

/// Where a call's instruction came from, resolved to events.
#[derive(Debug, Clone)]
pub(crate) enum OriginRef {
    /// `user_prompt` with the runtime's message id.
    User(String),
    /// `tool_output`: the result event (by creation index) and the excerpt.
    Tool { result: usize, excerpt: String },
}

#[derive(Debug)]
pub(crate) enum Body {
    Prompt {
        text: String,
        entities: Vec<String>,
    },
    Call {
        call: Call,
        origin: Option<OriginRef>,
    },
    Result {
        /// Creation index of the call this answers.
        call: usize,
        tool: &'static str,
        text: String,
        entities: Vec<String>,
    },
}

/// One event before ids are assigned. `seq` is the creation index (the
/// position in the event vector), used for references and to break ties.
#[derive(Debug)]
pub(crate) struct Event {
    pub seq: usize,
    pub ts: i64,
    pub test: bool,
    /// Index of the session the event belongs to.
    pub session: usize,
    pub body: Body,
}

/// Median think time before a call, by what the tool does: lookups are
/// quick, composing a message or waiting on a deploy is not.
fn think_median_secs(tool: &str) -> f64 {
    match tool {
        "send_email" | "reply_email" | "forward_email" | "post_message" | "reply_thread"
        | "add_comment" | "create_pr" | "create_event" | "send_itinerary" | "create_invoice" => {
            20.0
        }
        "deploy_service" | "run_pipeline" | "rollback_service" | "merge_pr" => 25.0,
        "run_query" | "export_csv" | "create_dashboard" => 10.0,
        "send_payment" | "create_transfer" | "approve_transfer" | "book_flight" | "book_hotel"
        | "issue_refund" => 8.0,
        _ => 3.5,
    }
}

fn gap_ms(rng: &mut Rand, call: &Call) -> i64 {
    match call.pace {
        Pace::Normal => {
            let secs = lognormal(rng, think_median_secs(call.tool), 0.7).clamp(1.0, 90.0);
            (secs * 1000.0) as i64
        }
        Pace::Quick => rng.gen_range(SECOND..4 * SECOND),
        Pace::Burst => rng.gen_range(150..900),
    }
}

/// Append the events of one session.
pub(crate) fn lay_out(
    index: usize,
    session: &mut Session,
    test: bool,
    rng: &mut Rand,
    events: &mut Vec<Event>,
) {
    let msg_ref = format!("msg-{}", session.session_id.trim_start_matches("sess-"));
    let mut t = session.start_ms;
    events.push(Event {
        seq: events.len(),
        ts: t,
        test,
        session: index,
        body: Body::Prompt {
            text: std::mem::take(&mut session.built.prompt),
            entities: std::mem::take(&mut session.built.entities),
        },
    });
    // The model reads the request before its first call.
    t += (lognormal(rng, 2.5, 0.5).clamp(0.8, 15.0) * 1000.0) as i64;
    let mut ready = t;
    let mut injected: Option<(usize, String)> = None;
    let calls = std::mem::take(&mut session.built.calls);
    for (k, mut call) in calls.into_iter().enumerate() {
        if k > 0 {
            t += gap_ms(rng, &call);
        }
        t = t.max(ready);
        let origin = match call.origin {
            Origin::User => Some(OriginRef::User(msg_ref.clone())),
            Origin::Injected => Some(match &injected {
                Some((result, excerpt)) => OriginRef::Tool {
                    result: *result,
                    excerpt: excerpt.clone(),
                },
                None => OriginRef::User(msg_ref.clone()),
            }),
            Origin::Absent => None,
        };
        let output = call.output.take();
        let burst = call.pace == Pace::Burst;
        let tool = call.tool;
        let call_seq = events.len();
        events.push(Event {
            seq: call_seq,
            ts: t,
            test,
            session: index,
            body: Body::Call { call, origin },
        });
        ready = t;
        if let Some(out) = output {
            let latency = if burst {
                rng.gen_range(50..250)
            } else {
                rng.gen_range(50..800)
            };
            let result_seq = events.len();
            events.push(Event {
                seq: result_seq,
                ts: t + latency,
                test,
                session: index,
                body: Body::Result {
                    call: call_seq,
                    tool,
                    text: out.text,
                    entities: out.entities,
                },
            });
            let slack = if burst {
                rng.gen_range(10..60)
            } else {
                rng.gen_range(20..250)
            };
            ready = t + latency + slack;
            if let Some(excerpt) = out.injected {
                injected = Some((result_seq, excerpt));
            }
        }
    }
}
