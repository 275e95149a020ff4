//! The `laser-host` command: parses arguments, runs the command, and prints
//! any error chain once.

use std::process::ExitCode;

use clap::Parser;
use laser_host::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = if cli.verbose { "laser=debug,laser_host=debug,laser_gpu=debug,laser_plugins=debug" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LASER_HOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match laser_host::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
