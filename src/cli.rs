//! Command line: one subcommand per mode.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Warden watches AI agents' tool calls, learns what each agent normally
/// does, and flags (and, in enforce mode, quarantines) agents that deviate.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `warden=debug`.
    #[arg(long, global = true, env = "WARDEN_LOG", default_value = "info")]
    pub log: String,
    /// Log line format: `text` (human) or `json` (one object per line:
    /// `timestamp`, `level`, `message` and the event's fields).
    #[arg(long, global = true, env = "WARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: HTTP ingest on 127.0.0.1:8080 by default, state
    /// checkpointed under `warden-data/`, decisions to
    /// `warden-data/decisions.jsonl`, flagged calls logged.
    Run(RunArgs),
    /// Learn from benign history, then score a test stream as the service
    /// would, writing one decision per tool call and, with labels, printing
    /// detection and false-alarm figures.
    Replay(ReplayArgs),
    /// Sweep thresholds over labelled replay data: per agent and per class,
    /// attacked sessions flagged, attack calls through, benign sessions
    /// falsely flagged and incidents per agent-week; recommend thresholds
    /// for a target false-alarm rate and write them as a config snippet.
    Tune(TuneArgs),
    /// Write a labelled, seeded replay data set (train, test, labels).
    Generate(GenerateArgs),
    /// Fit the fleet model (peer groups, their priors and session models)
    /// from benign history, and write it to `OUT/fleet.json`.
    Train(TrainArgs),
    /// Fleet model file tools.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Check a configuration file and print it with every default filled in.
    Validate(ValidateArgs),
    /// Prove the wiring before an incident: send a clearly marked test
    /// alert through each configured notifier (Slack, PagerDuty: triggered
    /// and resolved at once) and a dry run to each revoker (Vault
    /// lookup-self, an RFC 7009 revocation of a token that never existed,
    /// the webhook with `"test": true`), print what each answered, and
    /// exit 1 if any failed.
    Check(ValidateArgs),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print the fingerprint (`cred:…`) alerts show for each credential read
    /// from standard input, one per line, under this deployment's key: to
    /// find which credential an alert means. Read from stdin so that the
    /// token never appears in a process list or shell history.
    FingerprintCredential(FingerprintArgs),
}

#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// Configuration file (TOML); the key is `detector.hash-key` or
    /// `WARDEN_HASH_KEY`, as for `warden run`.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "warden.toml")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Benign history to learn from (JSON Lines, `.gz` allowed); repeatable.
    #[arg(long = "train", value_name = "TRAIN.jsonl")]
    pub train: Vec<PathBuf>,
    /// The stream to score, in order (JSON Lines, `.gz` allowed).
    #[arg(value_name = "TEST.jsonl")]
    pub test: PathBuf,
    /// Labels of attacked calls (`{"event_id","attack":true,"scenario"}` per
    /// line); enables the detection report.
    #[arg(long, value_name = "LABELS.jsonl")]
    pub labels: Option<PathBuf>,
    /// Where to write one decision per test tool call (JSON Lines).
    #[arg(long, value_name = "OUT.jsonl")]
    pub decisions: Option<PathBuf>,
    /// Where to write rejected input lines with their reasons (JSON Lines).
    #[arg(long, value_name = "REJECTS.jsonl")]
    pub rejects: Option<PathBuf>,
    /// Configuration file (TOML); defaults apply to every key it omits.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "warden.toml")]
    pub config: Option<PathBuf>,
    /// Also print the report as JSON on the last line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub models: ModelsArgs,
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Benign history to learn from (JSON Lines, `.gz` allowed); repeatable.
    #[arg(long = "train", value_name = "TRAIN.jsonl")]
    pub train: Vec<PathBuf>,
    /// The labelled stream to score, in order.
    #[arg(value_name = "TEST.jsonl")]
    pub test: PathBuf,
    /// Labels (`{"event_id","attack"}` per line); repeatable: the replay
    /// data's labels and the admin API's `GET /v1/feedback` export.
    #[arg(long = "labels", value_name = "LABELS.jsonl", required = true)]
    pub labels: Vec<PathBuf>,
    /// Largest share of an agent's benign sessions it may flag.
    #[arg(long, default_value_t = 0.01, value_name = "RATE")]
    pub target_fp: f64,
    /// Where to write the recommended thresholds (TOML snippet).
    #[arg(long, value_name = "SNIPPET.toml")]
    pub out: Option<PathBuf>,
    /// Configuration file (TOML); defaults apply to every key it omits.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "warden.toml")]
    pub config: Option<PathBuf>,
    /// Also print the report as JSON on the last line.
    #[arg(long)]
    pub json: bool,
    /// Set the recommended thresholds on a running service through its
    /// admin API (the admin listener's URL, e.g. `http://127.0.0.1:9090`),
    /// audited as `warden-tune`. A dry run that prints the changes unless
    /// `--yes` is given.
    #[arg(long, value_name = "URL")]
    pub apply: Option<String>,
    /// With `--apply`: make the changes (without it, only print them).
    #[arg(long, requires = "apply")]
    pub yes: bool,
    /// With `--apply`: the environment variable holding the admin token
    /// (never the token itself on the command line).
    #[arg(long, default_value = "WARDEN_ADMIN_TOKEN", value_name = "VAR")]
    pub admin_token_env: String,
    /// With `--apply --yes`: apply even when `--validate` found that the
    /// recommendation flags more benign sessions than the defaults.
    #[arg(long, requires = "yes")]
    pub force: bool,
    /// Benign sessions an agent needs for a threshold of its own (else it
    /// keeps its default); default: `policy.calibration-min-sessions`.
    #[arg(long, value_name = "N")]
    pub min_sessions: Option<usize>,
    /// Pseudo-count n0 of the shrinkage of each agent's threshold toward
    /// its class, weight n / (n + n0); default: 1 / --target-fp.
    #[arg(long, value_name = "N0")]
    pub prior_sessions: Option<f64>,
    /// Another labelled week to check the recommendation on, out of sample.
    #[arg(long, value_name = "TEST2.jsonl", requires = "validate_labels")]
    pub validate: Option<PathBuf>,
    /// Labels of the `--validate` week; repeatable.
    #[arg(long, value_name = "LABELS2.jsonl", requires = "validate")]
    pub validate_labels: Vec<PathBuf>,
    /// Benign history of the `--validate` week; repeatable; default: `--train`.
    #[arg(long, value_name = "TRAIN2.jsonl", requires = "validate")]
    pub validate_train: Vec<PathBuf>,
    /// Tune against the same fleet model `warden run` would load.
    #[command(flatten)]
    pub models: ModelsArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML); defaults apply to every key it omits.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "warden.toml")]
    pub config: Option<PathBuf>,
    /// Benign history to learn before serving (JSON Lines, `.gz` allowed;
    /// repeatable). Ignored when checkpointed profiles are restored.
    #[arg(long = "train", value_name = "TRAIN.jsonl")]
    pub train: Vec<PathBuf>,
    #[command(flatten)]
    pub models: ModelsArgs,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Seed: the same seed writes byte-identical files.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Days of benign history in train.jsonl.gz.
    #[arg(long, default_value_t = 21)]
    pub train_days: u32,
    /// Days of mixed traffic in test.jsonl.gz.
    #[arg(long, default_value_t = 7)]
    pub test_days: u32,
    /// Attacked sessions per scenario.
    #[arg(long, default_value_t = 20)]
    pub attacks_per_scenario: u32,
    /// Data set: `fleet` (27 agents), `customers` (multi-customer retail and
    /// airline agents) or `heldout` (the generalisation split).
    #[arg(long, default_value = "fleet")]
    pub suite: crate::generate::Suite,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["data", "from_checkpoint", "from_redis"]))]
pub struct TrainArgs {
    /// Benign history (JSON Lines, `.gz` allowed); repeatable.
    #[arg(long = "data", value_name = "FILE", num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Retrain peer groups from a running deployment's own profiles: the
    /// service's data directory (`server.data-dir`), its checkpoints read
    /// with its `hash.key` (or WARDEN_HASH_KEY). Profiles hold no events,
    /// so the model gets groups and their priors but no session models and
    /// no blend or young thresholds.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["data", "from_redis"])]
    pub from_checkpoint: Option<PathBuf>,
    /// As `--from-checkpoint`, from the profiles a Redis deployment stores
    /// (the config's `[redis]` section and WARDEN_REDIS_URL).
    #[arg(long, conflicts_with = "data")]
    pub from_redis: bool,
    /// Directory to write `fleet.json` to (created if missing).
    #[arg(long, value_name = "DIR", default_value = "models")]
    pub out: PathBuf,
    /// Configuration file (TOML): the detector settings profiles are
    /// learned with, as in `warden run`.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "warden.toml")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Print what a model file holds: version, schema, training data,
    /// groups, their sizes, priors and session models. Exits 1 naming the
    /// problem when the file is truncated, foreign or of another version.
    Inspect {
        /// The model file (e.g. `models/fleet.json`).
        file: PathBuf,
    },
}

/// Where `warden run` and `warden replay` find the fleet model.
#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// Directory holding `fleet.json` (peer groups and session models).
    /// The default `models` is skipped with a note when it holds none; a
    /// directory given explicitly must hold one.
    #[arg(long = "models", value_name = "DIR", env = "WARDEN_MODELS")]
    pub models: Option<PathBuf>,
    /// Run without fleet models.
    #[arg(long = "no-models", conflicts_with = "models")]
    pub no_models: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of an audit log; exits 1 naming the first
    /// altered, missing or reordered line.
    Verify {
        /// The audit log (JSON Lines).
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "WARDEN_CONFIG", value_name = "warden.toml")]
    pub config: Option<PathBuf>,
}
