use std::process::ExitCode;

use clap::Parser;

/// mimalloc, not glibc's malloc: in a flag storm a fifth of Warden's CPU
/// went to glibc's allocator (flags are built on worker threads and freed
/// on the responder's, which glibc handles worst); see
/// scripts/bench-kafka.sh.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    warden::app::run(warden::cli::Cli::parse())
}
