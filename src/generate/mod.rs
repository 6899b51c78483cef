//! Deterministic, seeded generator of labelled replay data (`warden generate`).
//!
//! A fixed cast of agents (seven archetypes, see `world`) works through task
//! types (`tasks`) on a simulated calendar that starts Monday
//! 2026-10-05T00:00:00Z. The first `train_days` days are benign; the next
//! `test_days` add legitimate drift (`benign`) and injected attacks
//! (`scenarios`). Every random choice comes from ChaCha8 streams derived from
//! the seed, so the same seed gives byte-identical files. See
//! replay-data/README.md for what the data contains and why.

mod benign;
pub mod customers;
mod layout;
mod model;
mod scenarios;
mod tasks;
mod util;
mod vocab;
mod world;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use customers::{Suite, ASSISTANT_SCENARIOS, CUSTOMER_SCENARIOS};
pub use scenarios::SCENARIOS;
pub use writer::{LABELS_FILE, TEST_FILE, TRAIN_FILE};

use util::{sub_rng, DAY, EPOCH_MS};

/// Longest simulated period accepted (train + test days).
pub const MAX_DAYS: u32 = 366;
/// Most attacked sessions accepted per scenario.
pub const MAX_ATTACKS_PER_SCENARIO: u32 = 1_000;

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Seed of the whole data set: the same seed gives byte-identical files.
    pub seed: u64,
    /// Directory that receives `train.jsonl.gz`, `test.jsonl.gz`, `labels.jsonl`.
    pub out_dir: PathBuf,
    /// Days of benign history written to the training file.
    pub train_days: u32,
    /// Days of mixed benign and attacked traffic written to the test file.
    pub test_days: u32,
    /// Attacked sessions injected per scenario.
    pub attacks_per_scenario: u32,
    /// Which data set: the fleet, the multi-customer agents, or the
    /// held-out generalisation split.
    pub suite: Suite,
}

impl GenerateOptions {
    pub const DEFAULT_TRAIN_DAYS: u32 = 21;
    pub const DEFAULT_TEST_DAYS: u32 = 7;
    pub const DEFAULT_ATTACKS_PER_SCENARIO: u32 = 20;

    /// The options of the committed data sets: 21 days of training, 7 of
    /// test, 20 attacked sessions per scenario.
    pub fn with_defaults(seed: u64, out_dir: impl Into<PathBuf>) -> Self {
        GenerateOptions {
            seed,
            out_dir: out_dir.into(),
            train_days: Self::DEFAULT_TRAIN_DAYS,
            test_days: Self::DEFAULT_TEST_DAYS,
            attacks_per_scenario: Self::DEFAULT_ATTACKS_PER_SCENARIO,
            suite: Suite::Fleet,
        }
    }

    fn validate(&self) -> Result<(), GenerateError> {
        let bad = |msg: String| Err(GenerateError::InvalidOptions(msg));
        if self.train_days == 0 {
            return bad("train_days must be at least 1".into());
        }
        if self.test_days == 0 {
            return bad("test_days must be at least 1".into());
        }
        if self.train_days.saturating_add(self.test_days) > MAX_DAYS {
            return bad(format!("train_days + test_days must not exceed {MAX_DAYS}"));
        }
        if self.attacks_per_scenario > MAX_ATTACKS_PER_SCENARIO {
            return bad(format!(
                "attacks_per_scenario must not exceed {MAX_ATTACKS_PER_SCENARIO}"
            ));
        }
        Ok(())
    }
}

/// Counts of what was written, printed by the CLI.
#[derive(Debug, Clone, Default)]
pub struct GenerateSummary {
    pub agents: usize,
    pub train_events: usize,
    pub test_events: usize,
    pub attack_calls: usize,
    pub attacked_sessions: usize,
}

/// Errors while writing the data set.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid generate options: {0}")]
    InvalidOptions(String),
}

/// The simulated calendar.
pub(crate) struct Plan {
    pub seed: u64,
    pub train_days: i64,
    pub test_days: i64,
    pub total_days: i64,
    /// First instant of the test period.
    pub train_end: i64,
    /// First instant after the test period.
    pub test_end: i64,
    /// Day (index from the epoch) a new tool is rolled out.
    pub rollout_day: i64,
}

impl Plan {
    pub fn new(seed: u64, train_days: u32, test_days: u32) -> Plan {
        let train_days = i64::from(train_days);
        let test_days = i64::from(test_days);
        Plan {
            seed,
            train_days,
            test_days,
            total_days: train_days + test_days,
            train_end: EPOCH_MS + train_days * DAY,
            test_end: EPOCH_MS + (train_days + test_days) * DAY,
            rollout_day: train_days + test_days * 2 / 7,
        }
    }
}

/// Generate the data set described by `opts` into `opts.out_dir`.
pub fn generate(opts: &GenerateOptions) -> Result<GenerateSummary, GenerateError> {
    opts.validate()?;
    if opts.suite != Suite::Fleet {
        return customers::generate(opts, opts.suite);
    }
    let plan = Plan::new(opts.seed, opts.train_days, opts.test_days);
    let mut world = world::World::build(&mut sub_rng(opts.seed, &["world"]), plan.total_days);

    let mut sessions = benign::sessions(&plan, &mut world);
    let attacks = scenarios::sessions(&plan, &mut world, opts.attacks_per_scenario);
    let attacked_sessions = attacks.len();
    sessions.extend(attacks);

    let mut events = Vec::new();
    for (i, s) in sessions.iter_mut().enumerate() {
        let mut rng = sub_rng(opts.seed, &["layout", &s.session_id]);
        let test = s.start_ms >= plan.train_end;
        layout::lay_out(i, s, test, &mut rng, &mut events);
    }
    let written = writer::write(&opts.out_dir, opts.seed, &world, &sessions, &events)?;
    Ok(GenerateSummary {
        agents: world.agents.len(),
        train_events: written.train_events,
        test_events: written.test_events,
        attack_calls: written.attack_calls,
        attacked_sessions,
    })
}
