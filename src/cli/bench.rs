//! (stub) `logoutd bench`.
use std::process::ExitCode;

/// (stub)
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// (stub)
    Stub,
}

/// Runs the command.
pub async fn run(_args: BenchCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
