use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::event::Event;
use crate::ingest::decode::decode_str;
use crate::score::features::{Fingerprinter, Observation};
use crate::test_util::{Call, DAY, T0};

fn learn_lines(p: &mut Profile, limits: &ProfileLimits, lines: &[String]) {
    let fp = Fingerprinter::new(crate::state::hash_key::HashKey::OFFLINE);
    let mut ctx = SeqContext {
        prev1: START,
        prev2: START,
        gap_ms: None,
    };
    for line in lines {
        let Event::ToolCall(c) = decode_str(line).unwrap() else {
            panic!()
        };
        let obs = Observation::extract(&c, &fp);
        p.learn(&obs.sample(1.0, 0), obs.tool_name, &ctx, Some(1.0), limits);
        ctx = SeqContext {
            prev1: obs.tool,
            prev2: ctx.prev1,
            gap_ms: Some(1000),
        };
    }
}

prop_compose! {
    fn call_line()(tool in 0u8..12, value in 0u32..5000, amount in 0u32..100_000, dt in 0i64..(90 * DAY)) -> String {
        Call::new("a", "s", &format!("tool{tool}"), T0 + dt)
            .resource("thing", &format!("user{value}@d{}.com", value % 40))
            .action(["read", "write", "delete"][(value % 3) as usize])
            .set("args", json!({"amount": amount, "to": [format!("x{value}@y.io")]}))
            .line()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever is learned, counts stay finite and non-negative, sets stay
    /// within their caps, novelty never exceeds observations, and the
    /// profile stays in the kilobytes.
    #[test]
    fn update_invariants(mut lines in proptest::collection::vec(call_line(), 1..400)) {
        lines.sort_by_key(|l| l[l.find("\"ts\"").unwrap()..].to_owned());
        let limits = ProfileLimits { values_per_tool: 32, parents_per_tool: 8, values_per_agent: 64, parents_per_agent: 16, tools_per_agent: 8, sequence_entries: 64, half_life_ms: 5.0 * DAY as f64 };
        let mut p = Profile::new(T0);
        learn_lines(&mut p, &limits, &lines);
        prop_assert!(p.calls.is_finite() && p.calls > 0.0);
        prop_assert!(p.tools.len() <= limits.tools_per_agent);
        prop_assert!(p.values.len() <= limits.values_per_agent);
        prop_assert!(p.parents.len() <= limits.parents_per_agent);
        prop_assert!(p.seq_pairs.len() <= limits.sequence_entries);
        prop_assert!(p.value_n1 <= p.value_obs * 1.0001 && p.value_n1 >= 0.0);
        for t in &p.tools {
            prop_assert!(t.values.len() <= limits.values_per_tool);
            prop_assert!(t.parents.len() <= limits.parents_per_tool);
            prop_assert!(t.value_n1 <= t.value_obs * 1.0001 && t.value_n1 >= 0.0);
            prop_assert!(t.parent_n1 <= t.value_obs * 1.0001 && t.parent_n1 >= 0.0);
            prop_assert!(t.calls >= 0.0 && t.calls.is_finite());
            // Every call counts once in its tool's origins: a rebase must
            // decay them exactly as it decays the calls (it once did twice).
            let origins: f32 = t.origins.iter().sum();
            prop_assert!((origins - t.calls).abs() <= 1e-3 * t.calls.max(1.0), "origins {} calls {}", origins, t.calls);
        }
        prop_assert!(p.size_bytes() < 64 * 1024, "{} bytes", p.size_bytes());
        prop_assert_eq!(p.events_learned, lines.len() as u64);
    }
}

#[test]
fn decay_follows_change() {
    // Tool A for 30 days, then tool B for 60: B must dominate A.
    let limits = ProfileLimits {
        half_life_ms: 10.0 * DAY as f64,
        ..ProfileLimits::default()
    };
    let mut p = Profile::new(T0);
    let lines: Vec<String> = (0..90)
        .map(|d| Call::new("a", "s", if d < 30 { "A" } else { "B" }, T0 + d * DAY).line())
        .collect();
    learn_lines(&mut p, &limits, &lines);
    let a = p.tools.iter().find(|t| &*t.name == "A").unwrap().calls;
    let b = p.tools.iter().find(|t| &*t.name == "B").unwrap().calls;
    assert!(b > 20.0 * a, "a={a} b={b}");
    // Rebasing kept the weights bounded.
    assert!(p.weight(T0 + 90 * DAY, &limits) <= 1024.0);
}
