//! (stub) `logoutd mock_rp`.
use std::process::ExitCode;

/// (stub)
#[derive(Debug, clap::Args)]
pub struct MockRpArgs {}

/// Runs the command.
pub async fn run(_args: MockRpArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
