//! What a worker gathers for an alert while it still has the call in hand:
//! the session's recent calls, what the agent normally does, and the flag
//! itself. Kept small: a fixed ring of inline entries per agent, no heap
//! allocation per call.

use std::collections::VecDeque;

use arrayvec::ArrayString;

use super::incident::{Baseline, CallSummary, Flag, OriginInfo, Reason};
use crate::baseline::Profile;
use crate::decide::Decision;
use crate::engine::ExplainedReason;
use crate::event::{Millis, ToolCall};

/// Longest argument text kept in an alert.
const ARGS_CHARS: usize = 1500;

/// One call as the timeline remembers it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    ts: Millis,
    session: u64,
    tool: ArrayString<40>,
    resource: ArrayString<64>,
    action: ArrayString<8>,
    score: f32,
    flagged: bool,
}

impl Entry {
    /// The call as alerts and the explain route show it.
    fn summary(&self) -> CallSummary {
        CallSummary {
            event_id: String::new(),
            ts: rfc3339(self.ts),
            tool: self.tool.to_string(),
            action: (!self.action.is_empty()).then(|| self.action.to_string()),
            resource_type: None,
            resource_id: (!self.resource.is_empty()).then(|| self.resource.to_string()),
            args: None,
            score: r2(self.score),
            flagged: self.flagged,
        }
    }
}

fn clip<const N: usize>(s: &str) -> ArrayString<N> {
    let mut out = ArrayString::new();
    for c in s.chars() {
        if out.try_push(c).is_err() {
            // Mark the cut so nobody mistakes a prefix for the value.
            while out.len() + '…'.len_utf8() > N {
                out.pop();
            }
            out.push('…');
            break;
        }
    }
    out
}

/// The last calls of one agent (all its sessions), oldest first.
#[derive(Debug, Default)]
pub struct Timeline {
    entries: VecDeque<Entry>,
}

pub fn session_key(call: &ToolCall) -> u64 {
    let s = call
        .session_id
        .as_deref()
        .or(call.agent_instance.as_deref())
        .unwrap_or("");
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

impl Timeline {
    /// Remembers a decided call, forgetting the oldest beyond `cap`.
    pub fn push(&mut self, call: &ToolCall, score: f32, flagged: bool, cap: usize) {
        if cap == 0 {
            return;
        }
        if self.entries.len() >= cap {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            ts: call.ts,
            session: session_key(call),
            tool: clip(&call.tool),
            resource: clip(call.resource_id.as_deref().unwrap_or("")),
            action: clip(call.action.map_or("", |a| a.as_str())),
            score,
            flagged,
        });
    }

    /// The calls of `session`, oldest first, as alerts show them.
    pub fn of_session(&self, session: u64) -> Vec<CallSummary> {
        self.entries
            .iter()
            .filter(|e| e.session == session)
            .map(Entry::summary)
            .collect()
    }

    /// The last `n` calls of every session, oldest first.
    pub fn last(&self, n: usize) -> Vec<CallSummary> {
        let skip = self.entries.len().saturating_sub(n);
        self.entries.iter().skip(skip).map(Entry::summary).collect()
    }

    /// Distinct resources of the recent unflagged calls, newest first.
    pub fn recent_resources(&self, n: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self.entries.iter().rev().filter(|e| !e.flagged) {
            if !e.resource.is_empty() && !out.iter().any(|r| r == e.resource.as_str()) {
                out.push(e.resource.to_string());
                if out.len() == n {
                    break;
                }
            }
        }
        out
    }
}

pub use crate::event::rfc3339;

/// What the agent normally does, in human terms.
pub fn baseline(p: &Profile, recent: Vec<String>) -> Baseline {
    let total: f32 = p.tools.iter().map(|t| t.calls).sum();
    let mut tools: Vec<(String, f32)> = p
        .tools
        .iter()
        .filter(|t| t.calls > 0.0)
        .map(|t| (t.name.to_string(), t.calls / total.max(f32::MIN_POSITIVE)))
        .collect();
    tools.sort_by(|a, b| b.1.total_cmp(&a.1));
    tools.truncate(6);
    let gap = (p.gaps.total() > 0.0).then(|| p.gaps.quantile_edge(0.5) / 4.0);
    let days = (p.last_ts - p.first_ts) as f32 / 86_400_000.0;
    let per_day = (days >= 1.0).then(|| p.events_learned as f32 / days);
    // Rounded as f64, so the API and alerts show `0.17`, not the f32's
    // `0.17196567356586456`.
    Baseline {
        usual_tools: tools
            .into_iter()
            .map(|(t, share)| (t, round(share, 1e4)))
            .collect(),
        recent_resources: recent,
        median_gap_secs: gap.map(r2),
        calls_per_day: per_day.map(r2),
        events_learned: p.events_learned,
        sessions_learned: p.sessions_learned,
    }
}

/// The call as an alert shows it, arguments included (shortened).
pub fn summary(call: &ToolCall, score: f32, flagged: bool) -> CallSummary {
    CallSummary {
        event_id: call.event_id.to_string(),
        ts: rfc3339(call.ts),
        tool: call.tool.to_string(),
        action: call.action.map(|a| a.as_str().to_owned()),
        resource_type: call.resource_type.as_deref().map(str::to_owned),
        resource_id: call.resource_id.as_deref().map(str::to_owned),
        args: call.args.map(|a| {
            let s = a.get();
            if s.chars().count() > ARGS_CHARS {
                let cut: String = s.chars().take(ARGS_CHARS).collect();
                format!("{cut}… (truncated)")
            } else {
                s.to_owned()
            }
        }),
        score: r2(score),
        flagged,
    }
}

/// Two decimals, as f64: what people read (no `34.27000045776367`).
fn r2(x: f32) -> f64 {
    round(x, 100.0)
}

/// `x` as f64, rounded to `1 / scale`.
fn round(x: f32, scale: f64) -> f64 {
    (f64::from(x) * scale).round() / scale
}

/// How much of a flagged call a worker gathers for the responder, by what
/// the flag will do there ([`Rolls`](super::responder::Rolls)).
#[derive(Clone, Copy)]
pub enum Gather<'p> {
    /// All of it, with the agent's baseline when it has a profile: the
    /// flag opens an incident.
    All(Option<&'p Profile>),
    /// All but the baseline, which a roll-up never reads.
    NoBaseline,
    /// For an incident that keeps no more flagged calls: the reasons, but
    /// neither the raw event nor the arguments; the session timeline only
    /// when `timeline` (a worker sends one at most once a second).
    Light { timeline: bool },
}

/// Everything the responder needs about one flagged call.
#[allow(clippy::too_many_arguments)]
pub fn flag(
    call: &ToolCall,
    raw: &[u8],
    score: f32,
    decision: &Decision,
    reasons: &[ExplainedReason],
    class: Option<&str>,
    timeline: &Timeline,
    gather: Gather<'_>,
) -> Flag {
    let light = matches!(gather, Gather::Light { .. });
    // The flagged call itself; in full, with its arguments.
    let this = if light {
        CallSummary {
            event_id: call.event_id.to_string(),
            ts: rfc3339(call.ts),
            tool: call.tool.to_string(),
            action: None,
            resource_type: None,
            resource_id: None,
            args: None,
            score: r2(score),
            flagged: true,
        }
    } else {
        summary(call, score, true)
    };
    let mut session = match gather {
        Gather::Light { timeline: false } => Vec::new(),
        _ => timeline.of_session(session_key(call)),
    };
    // The flagged call itself is the last entry; give it its id and args.
    match session.last_mut() {
        Some(last) if last.flagged && last.ts == this.ts && last.tool == this.tool => {
            if !light {
                *last = this.clone();
            }
        }
        _ if matches!(gather, Gather::Light { timeline: false }) => {}
        _ => session.push(this.clone()),
    }
    Flag {
        agent_id: call.agent_id.to_string(),
        agent_instance: call.agent_instance.as_deref().map(str::to_owned),
        principal: call.principal.as_deref().map(str::to_owned),
        credential_id: call
            .credential_id
            .as_deref()
            .map(super::credential::SecretString::new),
        // The responder seals it: only it holds the fingerprint key.
        credential: None,
        session_id: call.session_id.as_deref().map(str::to_owned),
        trace_id: call.trace_id.as_deref().map(str::to_owned),
        class: class.map(str::to_owned),
        mode: decision.mode,
        score: r2(score),
        threshold: r2(decision.threshold),
        basis: decision.basis.as_str(),
        reasons: reasons
            .iter()
            .map(|r| Reason {
                signal: r.signal.to_owned(),
                detail: r.detail.clone(),
                bits: r2(r.bits),
            })
            .collect(),
        call: this,
        raw: if light {
            String::new()
        } else {
            String::from_utf8_lossy(raw).into_owned()
        },
        timeline: session,
        origin: call.origin.as_ref().map(|o| OriginInfo {
            kind: o.kind.as_deref().map(str::to_owned),
            reference: o.reference.as_deref().map(str::to_owned),
            excerpt: o.excerpt.as_deref().map(str::to_owned),
        }),
        baseline: match gather {
            Gather::All(Some(p)) => baseline(p, timeline.recent_resources(5)),
            _ => Baseline::default(),
        },
        flagged_at: std::time::Instant::now(),
        folded: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_numbers_read_as_people_write_them() {
        use crate::test_util::{engine, train_days, Call};
        let mut e = engine();
        train_days(&mut e, 9, 7, |d, n, t| {
            let s = format!("s{d}-{n}");
            let mut calls = vec![Call::new("a", &s, "get", t)];
            if n % 3 == 0 {
                calls.push(Call::new("a", &s, "put", t + 7_300));
            }
            calls
        });
        let b = baseline(&e.agent("a").unwrap().profile, Vec::new());
        let json = serde_json::to_value(&b).unwrap().to_string();
        // Every number has at most four decimals (no f32 noise such as
        // `0.009999999776482582`).
        for n in json.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
            let decimals = n.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 4, "{n} in {json}");
        }
        assert_eq!(b.usual_tools[0].0, "get");
        assert!(json.contains("\"calls_per_day\""), "{json}");
    }

    #[test]
    fn a_flag_into_a_full_incident_carries_no_raw_event_nor_arguments_but_its_reasons() {
        let line = |i: usize| {
            format!(
                r#"{{"event_id":"e{i}","ts":"2026-11-24T09:00:0{i}Z","agent_id":"a","tool":"t{i}","session_id":"s","args":{{"to":"x@y.z"}}}}"#
            )
        };
        let lines: Vec<String> = (0..3).map(line).collect();
        let decoded: Vec<_> = lines
            .iter()
            .map(
                |l| match crate::ingest::decode::decode_bytes(l.as_bytes(), 4096).unwrap() {
                    crate::event::Event::ToolCall(c) => c,
                    _ => panic!(),
                },
            )
            .collect();
        let mut t = Timeline::default();
        for (i, c) in decoded.iter().enumerate() {
            t.push(c, 1.0, i == 2, 8);
        }
        let (raw, call) = (&lines[2], &decoded[2]);
        let d = crate::decide::decide(
            30.0,
            (14.0, crate::decide::Basis::Calibrated),
            crate::decide::Mode::Shadow,
        );
        let reasons = [ExplainedReason {
            signal: "tool",
            detail: "first call of `t2`".into(),
            bits: 30.0,
        }];
        let make = |g| flag(call, raw.as_bytes(), 30.0, &d, &reasons, None, &t, g);
        let all = make(Gather::NoBaseline);
        assert_eq!(all.raw, *raw);
        assert!(all.call.args.is_some());
        assert_eq!(all.timeline.len(), 3);
        for timeline in [false, true] {
            let light = make(Gather::Light { timeline });
            assert!(light.raw.is_empty() && light.call.args.is_none());
            assert_eq!((light.call.event_id.as_str(), light.score), ("e2", 30.0));
            assert_eq!(
                light.reasons.len(),
                1,
                "an incident it opens must still say why"
            );
            let tools: Vec<&str> = light.timeline.iter().map(|c| c.tool.as_str()).collect();
            assert_eq!(
                tools,
                if timeline {
                    vec!["t0", "t1", "t2"]
                } else {
                    vec![]
                }
            );
        }
    }

    #[test]
    fn clip_marks_cuts_on_char_boundaries() {
        assert_eq!(clip::<8>("short").as_str(), "short");
        let c = clip::<8>("ééééééé");
        assert!(c.ends_with('…') && c.len() <= 8, "{c}");
    }

    #[test]
    fn timeline_keeps_the_last_calls_per_session() {
        let line = |i: usize, session: &str| {
            format!(
                r#"{{"event_id":"e{i}","ts":"2026-11-24T09:00:0{i}Z","agent_id":"a","tool":"t{i}","session_id":"{session}","resource_id":"r{i}"}}"#
            )
        };
        let mut t = Timeline::default();
        for i in 0..6 {
            let l = line(i, if i % 2 == 0 { "s1" } else { "s2" });
            let crate::event::Event::ToolCall(c) =
                crate::ingest::decode::decode_bytes(l.as_bytes(), 4096).unwrap()
            else {
                panic!()
            };
            t.push(&c, i as f32, i == 4, 4);
        }
        let l = line(9, "s1");
        let crate::event::Event::ToolCall(c) =
            crate::ingest::decode::decode_bytes(l.as_bytes(), 4096).unwrap()
        else {
            panic!()
        };
        let s1 = t.of_session(session_key(&c));
        let tools: Vec<&str> = s1.iter().map(|c| c.tool.as_str()).collect();
        assert_eq!(tools, ["t2", "t4"]);
        assert!(s1[1].flagged);
        assert_eq!(t.recent_resources(5), ["r5", "r3", "r2"]);
    }
}
