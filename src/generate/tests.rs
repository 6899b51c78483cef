//! Unit tests of the generator's parts; tests/generate.rs checks its output.

use super::scenarios::{attack_start, eligible, lookalike, Scenario};
use super::tasks::{catalogue, Ctx};
use super::util::{iban, mod97, rfc3339, sub_rng, DAY, EPOCH_MS, HOUR, MINUTE};
use super::vocab::{CONSUMER_DOMAINS, NEW_PARTNER_DOMAINS, PARTNER_DOMAINS};
use super::world::{Arch, World};
use super::Plan;

#[test]
fn epoch_is_monday_midnight() {
    assert_eq!(rfc3339(EPOCH_MS), "2026-10-05T00:00:00.000Z");
    let weekday = chrono::DateTime::from_timestamp_millis(EPOCH_MS)
        .map(|t| t.format("%a").to_string())
        .unwrap_or_default();
    assert_eq!(weekday, "Mon");
}

#[test]
fn ibans_have_valid_check_digits() {
    let mut rng = sub_rng(1, &["iban"]);
    for country in ["DE", "FR", "NL", "GB", "ES", "IT", "BE", "AT", "LT", "PL"] {
        let i = iban(&mut rng, country);
        let rearranged = format!("{}{}", &i[4..], &i[..4]);
        assert_eq!(mod97(&rearranged), 1, "{i}");
    }
    // The example of ISO 13616.
    assert_eq!(mod97("370400440532013000DE89"), 1);
}

#[test]
fn every_agent_has_what_its_tasks_need() {
    let world = World::build(&mut sub_rng(3, &["world"]), 28);
    assert!(world.agents.len() >= 7 * 3);
    for a in &world.agents {
        assert!(!a.contacts.is_empty() && !a.staff.is_empty(), "{}", a.id);
        assert!(a.weights.iter().any(|x| *x > 0.0), "{}", a.id);
        match a.arch {
            Arch::Support => assert!(!a.customers.is_empty()),
            Arch::Travel => assert!(!a.routes.is_empty() && !a.customers.is_empty()),
            Arch::Payments => assert!(!a.payees.is_empty() && a.amount_median > 0.0),
            Arch::Chat => assert!(!a.channels.is_empty()),
            Arch::DevOps => assert!(!a.services.is_empty()),
            Arch::Analyst => assert!(!a.tables.is_empty()),
            Arch::Mail => {}
        }
    }
    let mut ids: Vec<&str> = world.agents.iter().map(|a| a.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), world.agents.len());
}

/// Every template calls only the tools it declares, so `possible_tools`
/// (used to pick victims and never-used tools) is exact.
#[test]
fn templates_declare_their_tools() {
    let mut world = World::build(&mut sub_rng(5, &["world"]), 28);
    for agent in world.agents.iter_mut() {
        for t in catalogue(agent.arch) {
            for i in 0..30 {
                let mut rng = sub_rng(i, &[t.name]);
                let mut ctx = Ctx::new(&mut rng, agent, EPOCH_MS);
                let built = (t.build)(&mut ctx);
                assert!(!built.calls.is_empty(), "{}", t.name);
                for c in &built.calls {
                    assert!(t.tools.contains(&c.tool), "{} calls {}", t.name, c.tool);
                }
            }
        }
    }
}

#[test]
fn lookalikes_are_new_domains() {
    let mut rng = sub_rng(9, &["lookalike"]);
    let known: Vec<&str> = PARTNER_DOMAINS
        .iter()
        .chain(NEW_PARTNER_DOMAINS)
        .chain(CONSUMER_DOMAINS)
        .copied()
        .collect();
    for d in PARTNER_DOMAINS
        .iter()
        .chain(&["hooli.co.uk", "acme-corp.com"])
    {
        for _ in 0..20 {
            let l = lookalike(&mut rng, d);
            assert!(!known.contains(&l.as_str()) && l != *d, "{d} -> {l}");
        }
    }
}

#[test]
fn every_scenario_has_several_victims() {
    let world = World::build(&mut sub_rng(1, &["world"]), 28);
    for s in Scenario::ALL {
        let n = world.agents.iter().filter(|a| eligible(s, a)).count();
        assert!(n >= 2, "{s:?}: {n}");
    }
}

#[test]
fn attacks_start_in_the_test_period_and_off_hours_at_night() {
    let plan = Plan::new(3, 3, 2);
    let mut rng = sub_rng(1, &["attack-start"]);
    let world = World::build(&mut sub_rng(1, &["world"]), plan.total_days);
    for a in &world.agents {
        for off_hours in [false, true] {
            for _ in 0..20 {
                let ts = attack_start(a, &mut rng, &plan, off_hours);
                assert!(ts >= plan.train_end && ts < plan.test_end, "{}", a.id);
                let local = (ts + a.org.offset_min * MINUTE).rem_euclid(DAY);
                if off_hours {
                    assert!(
                        (2 * HOUR..4 * HOUR + 30 * MINUTE).contains(&local),
                        "{}",
                        a.id
                    );
                } else if a.business_hours() {
                    let hour = (local / HOUR) as u32;
                    assert!(a.hour_weight(hour) > 0.0, "{} at {hour}", a.id);
                }
            }
        }
    }
}

/// replay-data/README.md documents every agent, task type and scenario.
#[test]
fn readme_names_every_agent_task_and_scenario() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/replay-data/README.md");
    let readme = std::fs::read_to_string(path).expect("replay-data/README.md");
    let world = World::build(&mut sub_rng(1, &["world"]), 28);
    let mut missing: Vec<&str> = world
        .agents
        .iter()
        .map(|a| a.id)
        .chain(Scenario::ALL.iter().map(|s| s.slug()))
        .filter(|name| {
            !readme.contains(&format!("{name} ")) && !readme.contains(&format!("`{name}`"))
        })
        .collect();
    for arch in [
        Arch::Mail,
        Arch::Support,
        Arch::Payments,
        Arch::Travel,
        Arch::Chat,
        Arch::DevOps,
        Arch::Analyst,
    ] {
        missing.extend(
            catalogue(arch)
                .iter()
                .map(|t| t.name)
                .filter(|n| !readme.contains(n)),
        );
    }
    assert!(missing.is_empty(), "not in the README: {missing:?}");
}
