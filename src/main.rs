use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    warden::app::run(warden::cli::Cli::parse())
}
