//! The fleet subcommands (`warden train`, `warden models inspect`) and the
//! `--models`/`--no-models` choice of `warden run` and `warden replay`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use super::file::{ModelFile, ModelFileError, FILE_NAME};
use super::Fleet;
use crate::cli::{ModelsArgs, TrainArgs};
use crate::config::Config;

/// Directory `warden run` and `warden replay` read by default.
pub const DEFAULT_DIR: &str = "models";

/// `warden train`.
pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let started = Instant::now();
    let profiles = match (&args.from_checkpoint, args.from_redis) {
        (Some(dir), _) => Some(super::source::from_checkpoint(dir, &config)?),
        (None, true) => Some(super::source::from_redis(&config)?),
        (None, false) => None,
    };
    let file = match profiles {
        Some(p) => super::train::train_on_profiles(p.agents, p.inputs, p.digest, &config)?,
        None => super::train::train(&args.data, &config)?,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join(FILE_NAME);
    file.save(&path)?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({} bytes) in {:.1} s: {} groups from {} agents, {} sessions, {} tool calls",
        path.display(),
        bytes,
        started.elapsed().as_secs_f64(),
        file.groups.len(),
        file.training.agents,
        file.training.sessions,
        file.training.tool_calls,
    );
    Ok(())
}

/// `warden models inspect FILE`.
pub fn inspect(file: &Path) -> anyhow::Result<()> {
    let model = ModelFile::load(file)?;
    print!("{}", model.describe());
    Ok(())
}

/// The fleet model `warden run` or `warden replay` uses: none with
/// `--no-models`; the one in `--models DIR` (which must hold one); or the
/// one in `models/` when it exists. A file that exists but cannot be used
/// is always an error: silently running without it would change decisions.
pub fn resolve(args: &ModelsArgs) -> Result<Option<Arc<Fleet>>, ModelFileError> {
    if args.no_models {
        return Ok(None);
    }
    let (dir, explicit) = match &args.models {
        Some(d) => (d.clone(), true),
        None => (PathBuf::from(DEFAULT_DIR), false),
    };
    if !explicit && !dir.join(FILE_NAME).exists() {
        tracing::info!(
            dir = %dir.display(),
            "No fleet model found; running without peer groups and session models."
        );
        return Ok(None);
    }
    let fleet = Fleet::load_dir(&dir)?;
    tracing::info!(
        file = %dir.join(FILE_NAME).display(),
        groups = fleet.file().groups.len(),
        digest = %fleet.file().training.digest,
        "Fleet model loaded."
    );
    Ok(Some(Arc::new(fleet)))
}
