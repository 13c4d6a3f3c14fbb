//! (stub) `logoutd serve`.
use std::process::ExitCode;

/// (stub)
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

/// Runs the command.
pub async fn run(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
