//! The `logoutd` command line (clap). Logs go to stderr so stdout can be piped.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod bench;
pub mod deliveries;
pub mod http;
pub mod keys;
pub mod logs;
pub mod mock_rp;
pub mod openapi;
pub mod serve;
pub mod sessions;
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
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Inspect and re-drive deliveries through the API.
    Deliveries(deliveries::DeliveriesArgs),
    /// Inspect and end sessions through the API.
    Sessions(sessions::SessionsArgs),
    /// Manage scoped API tokens (read, operate, admin).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Print the HTTP API's OpenAPI 3.1 document (the text of docs/openapi.json).
    Openapi,
}

/// Writes one line to stdout. A closed pipe (`logoutd keys jwks | head`) ends the process
/// quietly with the conventional status 141 instead of a panic; other write errors are
/// ignored, as a terminal that went away is no reason to crash.
pub fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(args).and_then(|()| out.write_all(b"\n"))
        && err.kind() == std::io::ErrorKind::BrokenPipe
    {
        logs::flush();
        std::process::exit(141);
    }
}

/// `crate::outln!` that never panics; see [`print_line`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

/// Waits for SIGTERM or SIGINT, and logs which one came.
pub async fn stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    Ok(())
}

/// Parses the command line, sets up logging to stderr and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if matches!(cli.command, Command::Bench(bench::BenchCommand::Sink(_))) {
        // The benchmark receiver shares the cores with what it measures: one thread keeps up
        // and takes the least from it.
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            logs::flush();
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Keys(cmd) => keys::run(cmd).await,
            Command::Token(cmd) => token::run(cmd).await,
            Command::MockRp(args) => mock_rp::run(args).await,
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Deliveries(args) => deliveries::run(args).await,
            Command::Sessions(args) => sessions::run(args).await,
            Command::Tokens(cmd) => tokens::run(cmd).await,
            Command::Openapi => openapi::run(),
        }
    });
    // The runtime's threads may still log while they stop.
    drop(runtime);
    logs::flush();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up the `tracing` subscriber, writing through [`logs::BatchedStderr`], and a panic hook
/// that writes the waiting lines before the panic's message.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        logs::flush();
        report(info);
    }));
    let filter = EnvFilter::try_from_env("LOGOUTD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOGOUTD_LOG_FORMAT").is_ok_and(|v| v == "json");
    // Colour codes only for a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(logs::BatchedStderr::start());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
