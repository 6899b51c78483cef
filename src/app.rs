//! Runs a parsed command: builds the components from the validated config
//! and maps failures to exit codes (64 for configuration errors, 75 when a
//! Kafka transaction failed and the service stopped to replay).

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::generate::{self, GenerateOptions};
use crate::replay::{self, ReplayOptions};

/// `EX_USAGE`: the configuration or the command line is wrong.
pub const EXIT_USAGE: u8 = 64;

/// `EX_TEMPFAIL`: stopped on a transient failure; a restart recovers.
pub const EXIT_TEMPFAIL: u8 = 75;

pub fn run(cli: Cli) -> ExitCode {
    crate::telemetry::init(&cli.log, cli.log_format);
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden: {}", render_error(&e));
            ExitCode::from(exit_status(&e))
        }
    }
}

/// An error and its causes, each once: many errors quote their source in
/// their own message, which `{:#}` would then print a second time
/// (`No such file or directory (os error 2): No such file or directory
/// (os error 2)`).
fn render_error(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

/// The exit status of a failed command.
fn exit_status(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<crate::config::ConfigError>().is_some() {
        EXIT_USAGE
    } else if let Some(crate::service::ServiceError::KafkaTransaction(_)) = e.downcast_ref() {
        EXIT_TEMPFAIL
    } else {
        1
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            let config = Config::load(args.config.as_deref())?;
            check_exposure(&config)?;
            // What `warden validate` checks too, before any port is bound.
            config.preflight()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let fleet = crate::fleet::command::resolve(&args.models)?;
            let opts = crate::service::RunOptions {
                train: args.train,
                fleet,
            };
            let result = runtime.block_on(crate::service::run(config, opts));
            // A service stopped by a failure may leave blocking work
            // behind (a parked barrier): do not wait for it forever.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            result
        }
        Command::Replay(args) => {
            let config = Config::load(args.config.as_deref())?;
            let opts = ReplayOptions {
                train: args.train,
                test: args.test,
                labels: args.labels,
                decisions: args.decisions,
                rejects: args.rejects,
                config,
                fleet: crate::fleet::command::resolve(&args.models)?,
            };
            let report = replay::run(&opts).context("replay failed")?;
            print!("{}", report.render());
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(())
        }
        Command::Tune(args) => {
            let config = Config::load(args.config.as_deref())?;
            let opts = crate::tune::TuneOptions {
                train: args.train,
                test: args.test,
                labels: args.labels,
                target_fp: args.target_fp,
                out: args.out,
                config,
                fleet: crate::fleet::command::resolve(&args.models)?,
                min_sessions: args.min_sessions,
                prior_sessions: args.prior_sessions,
                validate: args.validate.map(|test| crate::tune::Validate {
                    train: args.validate_train,
                    test,
                    labels: args.validate_labels,
                }),
            };
            let report = crate::tune::run(&opts).context("tune failed")?;
            print!("{}", report.render());
            if args.apply.is_some() && args.yes {
                report.may_apply(args.force)?;
            }
            if let Some(url) = &args.apply {
                let reason = format!(
                    "warden tune: at most {:.1}% of benign sessions flagged on {}",
                    args.target_fp * 100.0,
                    opts.test.display()
                );
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the async runtime")?;
                let applied = runtime
                    .block_on(crate::tune::apply::apply(
                        &report,
                        url,
                        &args.admin_token_env,
                        !args.yes,
                        &reason,
                    ))
                    .context("--apply failed")?;
                print!("\n{}", applied.render());
            }
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(())
        }
        Command::Generate(args) => {
            let opts = GenerateOptions {
                seed: args.seed,
                out_dir: args.out,
                train_days: args.train_days,
                test_days: args.test_days,
                attacks_per_scenario: args.attacks_per_scenario,
                suite: args.suite,
            };
            let s = generate::generate(&opts).context("generate failed")?;
            println!(
                "wrote {}: {} agents, {} train events, {} test events, {} attack calls in {} attacked sessions",
                opts.out_dir.display(),
                s.agents,
                s.train_events,
                s.test_events,
                s.attack_calls,
                s.attacked_sessions
            );
            Ok(())
        }
        Command::Train(args) => crate::fleet::command::train(args),
        Command::Models(crate::cli::ModelsCommand::Inspect { file }) => {
            crate::fleet::command::inspect(&file)
        }
        Command::Audit(crate::cli::AuditCommand::Verify { file }) => {
            let v = crate::respond::audit::verify(&file)?;
            println!(
                "{}: {} records, chain intact (last hash {})",
                file.display(),
                v.records,
                v.last_hash
            );
            Ok(())
        }
        Command::FingerprintCredential(args) => {
            use std::io::{BufRead, Write};
            // The deployment's own key, as `warden run` resolves it: the
            // fingerprints must be the ones its alerts show.
            let config =
                crate::service::with_deployment_key(Config::load(args.config.as_deref())?)?;
            let fp = crate::respond::credential::fingerprinter(&config);
            let mut out = std::io::stdout().lock();
            for line in std::io::stdin().lock().lines() {
                let line = line.context("cannot read standard input")?;
                let credential = line.trim_end_matches('\r');
                if !credential.is_empty() {
                    writeln!(out, "{}", fp.fingerprint(credential))?;
                }
            }
            Ok(())
        }
        Command::Check(args) => {
            let config = Config::load(args.config.as_deref())?;
            config.preflight()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let outcomes = runtime.block_on(crate::check::run(&config));
            if outcomes.is_empty() {
                println!("Nothing to check: no Slack, PagerDuty or revoker is configured.");
            }
            for o in &outcomes {
                println!("{o}");
            }
            let failed = outcomes.iter().filter(|o| !o.ok).count();
            if failed > 0 {
                anyhow::bail!("{failed} of {} checks failed", outcomes.len());
            }
            Ok(())
        }
        Command::Validate(args) => {
            let mut config = Config::load(args.config.as_deref())?;
            check_exposure(&config)?;
            config.preflight()?;
            // Secrets may come from the environment: never print them.
            config.detector.hash_key = "<redacted>".to_owned();
            config.redis.url = crate::config::redact_url(&config.redis.url);
            // Revoker and PagerDuty URLs may carry a password.
            config.response.pagerduty.events_url =
                crate::config::redact_url(&config.response.pagerduty.events_url);
            for r in &mut config.response.revokers {
                match r {
                    crate::config::RevokerConfig::Vault(v) => {
                        v.addr = crate::config::redact_url(&v.addr)
                    }
                    crate::config::RevokerConfig::Oauth(o) => {
                        o.endpoint = crate::config::redact_url(&o.endpoint)
                    }
                    crate::config::RevokerConfig::Webhook(w) => {
                        w.url = crate::config::redact_url(&w.url)
                    }
                    crate::config::RevokerConfig::Log(_) => {}
                }
            }
            // A Slack webhook URL and a PagerDuty routing key are secrets too.
            for s in [
                &mut config.response.slack.webhook_url,
                &mut config.response.pagerduty.routing_key,
            ] {
                if !s.is_empty() {
                    *s = "<redacted>".to_owned();
                }
            }
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
    }
}

/// `warden run` and `warden validate` refuse open ingest where enforce can
/// revoke credentials (see [`Config::check_exposure`]).
fn check_exposure(config: &Config) -> Result<(), crate::config::ConfigError> {
    let tokens = crate::service::auth::Tokens::from_env(&config.server);
    config.check_exposure(!tokens.ingest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::kafka::KafkaSourceError;
    use crate::service::ServiceError;

    #[test]
    fn failures_map_to_their_exit_status() {
        let tx = ServiceError::KafkaTransaction(KafkaSourceError::Transaction(
            rdkafka::error::KafkaError::Canceled,
        ));
        assert_eq!(exit_status(&tx.into()), EXIT_TEMPFAIL);
        let cfg = Config::parse("[server]\nlisten = \"x\"")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            exit_status(&anyhow::Error::from(cfg).context("loading")),
            EXIT_USAGE
        );
        assert_eq!(exit_status(&anyhow::anyhow!("other")), 1);
    }

    #[test]
    fn a_cause_quoted_by_its_error_is_printed_once() {
        let e = Config::load(Some(std::path::Path::new("/nonexistent/warden.toml"))).unwrap_err();
        let text = render_error(&anyhow::Error::from(e).context("loading"));
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
        assert!(
            text.starts_with("loading: cannot read config file"),
            "{text}"
        );
    }
}
