//! `logoutd mock-ssf`: the strict SSF receiver on a socket, until Ctrl-C or SIGTERM.
//!
//! The bound address is printed on stdout as one line, `listening on http://ADDR`, once the
//! stream is set up, so that scripts started with `--listen 127.0.0.1:0` can find the port.

use super::receiver::{ReceiptArgs, bind, say_listening, stopped};
use anyhow::Context as _;
use hyper::StatusCode;
use logoutd_core::{DEFAULT_POLL_MAX_EVENTS, Faults, MockSsf, MockSsfConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `mock-ssf`.
#[derive(Debug, clap::Args)]
pub struct MockSsfArgs {
    /// The transmitter's issuer, exactly as its metadata and SETs carry it.
    #[arg(long)]
    transmitter: String,
    /// The receiver's bearer token at the transmitter (prefer --token-file: arguments are
    /// visible to other local users).
    #[arg(
        long,
        conflicts_with = "token_file",
        required_unless_present = "token_file"
    )]
    token: Option<String>,
    /// A file holding the receiver's bearer token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Poll the transmitter (RFC 8936) instead of receiving pushes.
    #[arg(long)]
    poll: bool,
    /// `maxEvents` of each poll.
    #[arg(long, default_value_t = DEFAULT_POLL_MAX_EVENTS)]
    max_events: u32,
    /// The events to request (`events_requested`); all supported ones when absent.
    #[arg(long, value_name = "URI", num_args = 1..)]
    events: Option<Vec<String>>,
    #[command(flatten)]
    receipts: ReceiptArgs,
    /// Answer the first N pushes with 500.
    #[arg(long, value_name = "N", default_value_t = 0)]
    fail: u64,
    /// Delay every push answer by this many milliseconds.
    #[arg(long, value_name = "MS")]
    delay: Option<u64>,
    /// Close every push's connection without answering.
    #[arg(long)]
    drop: bool,
    /// Answer valid pushes with this status instead of 202.
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(200..=599))]
    status: Option<u16>,
}

fn token(args: &MockSsfArgs) -> anyhow::Result<String> {
    if let Some(token) = &args.token {
        return Ok(token.clone());
    }
    let path = args
        .token_file
        .as_ref()
        .context("give --token or --token-file")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(!token.is_empty(), "{} is empty", path.display());
    Ok(token.to_owned())
}

fn config(args: &MockSsfArgs) -> anyhow::Result<MockSsfConfig> {
    let mut config = MockSsfConfig::new(args.transmitter.clone(), token(args)?);
    config.poll = args.poll;
    config.max_events = args.max_events;
    config.events = args.events.clone();
    config.faults = Faults {
        fail_first: args.fail,
        fail_status: StatusCode::INTERNAL_SERVER_ERROR,
        delay: args.delay.map(Duration::from_millis),
        drop_first: if args.drop { u64::MAX } else { 0 },
        ..Faults::default()
    };
    config.status = args
        .status
        .map(StatusCode::from_u16)
        .transpose()
        .context("--status is not an HTTP status")?;
    config.receipts_file = args.receipts.file();
    config.receipt_limits = args.receipts.limits();
    Ok(config)
}

/// Runs the mock SSF receiver until Ctrl-C or SIGTERM.
pub async fn run(args: MockSsfArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    let listener = bind(&args.listen).await?;
    let receiver = MockSsf::start(listener, config)
        .await
        .context("cannot start the mock SSF receiver")?;
    say_listening(receiver.addr())?;
    tracing::info!(
        addr = %receiver.addr(),
        stream_id = %receiver.stream().stream_id,
        poll = args.poll,
        "mock SSF receiver ready"
    );
    let stopped = stopped().await;
    receiver.shutdown().await;
    stopped?;
    Ok(ExitCode::SUCCESS)
}
