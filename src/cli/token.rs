//! (stub) `logoutd token`.
use std::process::ExitCode;

/// (stub)
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// (stub)
    Stub,
}

/// Runs the command.
pub async fn run(_args: TokenCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
