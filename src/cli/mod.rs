//! The `logoutd` command line (clap). Logs go to stderr so stdout can be piped.

use clap::{Parser, Subcommand};
use logoutd_core::{command_runtime, finish_command, init_logging};
use std::process::ExitCode;

pub mod clients;
pub mod deliveries;
mod delivery_api;
pub mod http;
pub mod keys;
pub mod mock_rp;
pub mod mock_ssf;
pub mod openapi;
mod receiver;
pub mod serve;
pub mod sessions;
pub mod ssf_deliveries;
pub mod token;
pub mod tokens;

/// logoutd: OIDC Back-Channel Logout tokens, delivered durably.
#[derive(Debug, Parser)]
#[command(name = "logoutd", version, about)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the management API and the delivery dispatcher.
    Serve(serve::ServeArgs),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Mint or verify logout tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Run the conformance receiver (mock relying party).
    MockRp(mock_rp::MockRpArgs),
    /// Run the strict SSF receiver (push or poll) against a transmitter.
    MockSsf(mock_ssf::MockSsfArgs),
    /// Inspect relying parties' endpoint health through the API.
    Clients(clients::ClientsArgs),
    /// Inspect and re-drive deliveries through the API.
    Deliveries(deliveries::DeliveriesArgs),
    /// Inspect and end sessions through the API.
    Sessions(sessions::SessionsArgs),
    /// Inspect and re-drive SET deliveries (SSF) through the API.
    SsfDeliveries(ssf_deliveries::SsfDeliveriesArgs),
    /// Manage scoped API tokens (read, operate, admin).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Print the HTTP API's OpenAPI 3.1 document (the text of docs/openapi.json).
    Openapi,
}

/// Parses the command line, sets up logging to stderr and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let Some(runtime) = command_runtime(None) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Keys(cmd) => keys::run(cmd).await,
            Command::Token(cmd) => token::run(cmd).await,
            Command::MockRp(args) => mock_rp::run(args).await,
            Command::MockSsf(args) => mock_ssf::run(args).await,
            Command::Clients(args) => clients::run(args).await,
            Command::Deliveries(args) => deliveries::run(args).await,
            Command::Sessions(args) => sessions::run(args).await,
            Command::SsfDeliveries(args) => ssf_deliveries::run(args).await,
            Command::Tokens(cmd) => tokens::run(cmd).await,
            Command::Openapi => openapi::run(),
        }
    });
    finish_command(runtime, result)
}
