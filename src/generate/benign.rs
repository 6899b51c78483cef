//! Benign traffic: per agent and local day, session starts drawn from the
//! agent's diurnal and weekly shape, each session an instance of one of its
//! task types. The test period adds legitimate drift: a rolled-out tool,
//! task types absent from training, sessions at slightly unusual hours.

use std::collections::BTreeSet;

use rand::Rng;

use super::model::{Built, Origin, Session};
use super::tasks::{catalogue, Avail, Ctx, Task};
use super::util::{
    chance, hex, lognormal, pick, poisson, sub_rng, weighted, Rand, DAY, EPOCH_MS, HOUR,
};
use super::world::{credential, Agent, World};
use super::Plan;

/// Chance that a test session (after the rollout day) uses the new tool.
const P_ROLLOUT: f64 = 0.10;
/// Chance that a test session is of a task type the agent never did.
const P_UNSEEN: f64 = 0.09;
/// Chance that a benign call reports no origin (runtimes drop it now and
/// then), so that a missing origin alone does not give attacks away.
const P_NO_ORIGIN: f64 = 0.02;
/// Chance per business-hours agent and test day of one session at an hour
/// it never works (early morning or late evening, not the dead of night).
const P_ODD_HOURS: f64 = 0.07;

/// Every benign session of every agent, train and test.
pub(crate) fn sessions(plan: &Plan, world: &mut World) -> Vec<Session> {
    let mut out = Vec::new();
    for (ai, agent) in world.agents.iter_mut().enumerate() {
        // Tool sets of this agent's training sessions, so that "unseen task"
        // sessions in test really are unseen.
        let mut trained: BTreeSet<Vec<&'static str>> = BTreeSet::new();
        for local_day in -1..=plan.total_days {
            let mut rng = sub_rng(plan.seed, &["day", agent.id, &local_day.to_string()]);
            for start in session_starts(agent, &mut rng, local_day, plan) {
                if start < EPOCH_MS || start >= plan.test_end {
                    continue;
                }
                let test = start >= plan.train_end;
                let (mut built, principal) = build(plan, agent, &mut rng, start, test, &trained);
                for call in built.calls.iter_mut() {
                    if chance(&mut rng, P_NO_ORIGIN) {
                        call.origin = Origin::Absent;
                    }
                }
                if !test {
                    let tools = built.tool_set();
                    agent.trained_tools.extend(tools.iter().copied());
                    trained.insert(tools);
                }
                out.push(new_session(
                    plan, ai, agent, &mut rng, start, principal, built,
                ));
            }
        }
    }
    out
}

/// Wrap a built session with its instance, credential and ids.
pub(crate) fn new_session(
    plan: &Plan,
    ai: usize,
    agent: &Agent,
    rng: &mut Rand,
    start: i64,
    principal: Option<String>,
    built: Built,
) -> Session {
    let day = (start - EPOCH_MS).div_euclid(DAY);
    let instance = agent.instance(rng, day);
    let credential = credential(plan.seed, &instance, day);
    Session {
        agent: ai,
        start_ms: start,
        instance,
        credential,
        principal,
        session_id: format!("sess-{}", hex(rng, 12)),
        trace_id: hex(rng, 32),
        built,
    }
}

/// Session starts of one local day: an inhomogeneous Poisson process whose
/// hourly mean follows the agent's working hours and weekday.
fn session_starts(agent: &Agent, rng: &mut Rand, local_day: i64, plan: &Plan) -> Vec<i64> {
    let midnight = agent.local_midnight(local_day);
    let weekday = local_day.rem_euclid(7);
    let weights: Vec<f64> = (0..24).map(|h| agent.hour_weight(h)).collect();
    let total: f64 = weights.iter().sum();
    let mut starts = Vec::new();
    if total <= 0.0 {
        return starts;
    }
    // Day-to-day variation in workload.
    let day_mult = agent.day_factor(weekday) * lognormal(rng, 1.0, 0.2);
    for (h, w) in weights.iter().enumerate() {
        let mean = agent.rate * day_mult * w / total;
        for _ in 0..poisson(rng, mean) {
            starts.push(midnight + h as i64 * HOUR + rng.gen_range(0..HOUR));
        }
    }
    if let Some((open, close)) = agent.hours {
        if midnight >= plan.train_end && weekday < 5 && chance(rng, P_ODD_HOURS) {
            let h = if chance(rng, 0.5) {
                open.saturating_sub(2)
            } else {
                (close + 2).min(23)
            };
            starts.push(midnight + i64::from(h) * HOUR + rng.gen_range(0..HOUR));
        }
    }
    starts.sort_unstable();
    starts
}

/// Pick and build the task of one benign session.
fn build(
    plan: &Plan,
    agent: &mut Agent,
    rng: &mut Rand,
    start: i64,
    test: bool,
    trained: &BTreeSet<Vec<&'static str>>,
) -> (Built, Option<String>) {
    let cat = catalogue(agent.arch);
    let day = (start - EPOCH_MS).div_euclid(DAY);
    if test {
        if day >= plan.rollout_day && chance(rng, P_ROLLOUT) {
            if let Some(t) = cat.iter().find(|t| matches!(t.avail, Avail::Rollout)) {
                return run(t, agent, rng, start);
            }
        }
        if chance(rng, P_UNSEEN) {
            // Test-only task types, and everyday task types this agent left
            // out of its training mix.
            let candidates: Vec<usize> = cat
                .iter()
                .enumerate()
                .filter(|(i, t)| {
                    matches!(t.avail, Avail::Novel)
                        || (agent.weights[*i] <= 0.0 && !t.burst && t.avail.fits(agent.flavor))
                })
                .map(|(i, _)| i)
                .collect();
            if !candidates.is_empty() {
                for _ in 0..6 {
                    let i = *pick(rng, &candidates);
                    let (b, p) = run(&cat[i], agent, rng, start);
                    if !trained.contains(&b.tool_set()) {
                        return (b, p);
                    }
                }
            }
        }
    }
    let i = weighted(rng, &agent.weights);
    run(&cat[i], agent, rng, start)
}

fn run(task: &Task, agent: &mut Agent, rng: &mut Rand, start: i64) -> (Built, Option<String>) {
    let mut ctx = Ctx::new(rng, agent, start);
    let built = (task.build)(&mut ctx);
    (built, ctx.principal.take())
}
