//! The `rocksnap` command: the library's operator tool and node.

mod alloc;
mod cli;
mod node;
mod sigpipe;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Colour only on a terminal, and never when `NO_COLOR` is set
/// (<https://no-color.org>): a log written to a file or a pipe is plain text.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn main() -> ExitCode {
    alloc::pin_mmap_threshold();
    let cli = cli::Cli::parse();
    if !matches!(cli.command, cli::Command::Node(_)) {
        sigpipe::end_quietly_on_closed_pipe();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rocksnap: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocksnap: {e}");
            ExitCode::FAILURE
        }
    }
}
