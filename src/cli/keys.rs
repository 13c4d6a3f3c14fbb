//! (stub) `logoutd keys`.
use std::process::ExitCode;

/// (stub)
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// (stub)
    Stub,
}

/// Runs the command.
pub async fn run(_args: KeysCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
