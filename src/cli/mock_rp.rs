//! `logoutd mock-rp`: the conformance receiver on a socket, until Ctrl-C or SIGTERM.
//!
//! The bound address is printed on stdout as one line, `listening on http://ADDR`, so that
//! scripts started with `--listen 127.0.0.1:0` can find the port.

use super::receiver::{ReceiptArgs, bind, say_listening, stopped};
use super::token::CheckFlags;

use anyhow::Context as _;
use hyper::StatusCode;
use logoutd_core::{DEFAULT_FAIL_STATUS, Faults, MockRp, MockRpConfig};
use logoutd_core::{DEFAULT_FETCH_TIMEOUT, DEFAULT_REFETCH_INTERVAL, JwksSource};
use std::process::ExitCode;
use std::time::Duration;
use url::Url;

/// Arguments of `mock-rp`.
#[derive(Debug, clap::Args)]
pub struct MockRpArgs {
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The expected `iss`.
    #[arg(long)]
    issuer: String,
    /// Where to fetch the OP's JWKS (https, or http on loopback).
    #[arg(long)]
    jwks_uri: String,
    /// The expected `aud`.
    #[arg(long)]
    client_id: String,
    #[command(flatten)]
    receipts: ReceiptArgs,
    #[command(flatten)]
    checks: CheckArgs,
    #[command(flatten)]
    faults: FaultArgs,
}

/// How tokens are checked: the same flags as `token verify`, plus the receiver's own.
#[derive(Debug, clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    flags: CheckFlags,
    /// Shortest time between the starts of two JWKS refetches triggered by unknown kids, in
    /// seconds; a failed refetch counts.
    #[arg(long, default_value_t = DEFAULT_REFETCH_INTERVAL.as_secs())]
    jwks_refetch_interval: u64,
    /// Longest one JWKS fetch may take, in seconds.
    #[arg(long, default_value_t = DEFAULT_FETCH_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    jwks_fetch_timeout: u64,
    /// Answer a replayed jti with 400 instead of 200.
    #[arg(long)]
    replay_as_error: bool,
}

/// Faults to inject, for testing senders.
#[derive(Debug, clap::Args)]
struct FaultArgs {
    /// Answer the first N POSTs (after any dropped ones) with --fail-status.
    #[arg(long, default_value_t = 0)]
    fail_first: u64,
    /// The status of --fail-first replies.
    #[arg(long, default_value_t = DEFAULT_FAIL_STATUS.as_u16(),
          value_parser = clap::value_parser!(u16).range(200..=599))]
    fail_status: u16,
    /// Add `Retry-After: SECONDS` to --fail-first replies.
    #[arg(long, value_name = "SECONDS")]
    retry_after: Option<u64>,
    /// Delay every reply by this many milliseconds.
    #[arg(long, value_name = "MS")]
    delay_ms: Option<u64>,
    /// Close the connection without replying for the first N POSTs.
    #[arg(long, default_value_t = 0)]
    drop_first: u64,
    /// Answer every other POST with 307 and this Location.
    #[arg(long, value_name = "URL")]
    redirect_to: Option<Url>,
}

impl FaultArgs {
    fn faults(&self) -> anyhow::Result<Faults> {
        Ok(Faults {
            fail_first: self.fail_first,
            fail_status: StatusCode::from_u16(self.fail_status)
                .context("--fail-status is not an HTTP status")?,
            retry_after: self.retry_after,
            delay: self.delay_ms.map(Duration::from_millis),
            drop_first: self.drop_first,
            redirect_to: self.redirect_to.clone(),
        })
    }
}

async fn config(args: &MockRpArgs) -> anyhow::Result<MockRpConfig> {
    let interval = Duration::from_secs(args.checks.jwks_refetch_interval);
    let jwks = JwksSource::from_uri(&args.jwks_uri)
        .await?
        .with_refetch_interval(interval)
        .with_fetch_timeout(Duration::from_secs(args.checks.jwks_fetch_timeout));
    let mut config = MockRpConfig::new(
        args.checks.flags.options(&args.issuer, &args.client_id),
        jwks,
    );
    config.faults = args.faults.faults()?;
    config.replay_as_error = args.checks.replay_as_error;
    config.decryption_key = args.checks.flags.decryption_key()?.map(std::sync::Arc::new);
    config.receipts_file = args.receipts.file();
    config.receipt_limits = args.receipts.limits();
    Ok(config)
}

/// Runs the mock RP until Ctrl-C or SIGTERM.
pub async fn run(args: MockRpArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args).await?;
    let listener = bind(&args.listen).await?;
    let rp = MockRp::start(listener, config)
        .await
        .context("cannot start the mock RP")?;
    say_listening(rp.addr())?;
    tracing::info!(addr = %rp.addr(), "mock RP ready");
    let stopped = stopped().await;
    rp.shutdown().await;
    stopped?;
    Ok(ExitCode::SUCCESS)
}
