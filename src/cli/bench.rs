//! `logoutd bench`: performance figures, each next to its limit measured in the same run.
//!
//! One variant per benchmark; add new ones to [`BenchCommand`] and a branch to [`run`].

use crate::alg::SigningAlg;
use crate::bench::sign;
use std::process::ExitCode;
use std::time::Duration;

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Full logout tokens per second per core against the raw aws-lc-rs signature rate,
    /// for RS256, PS256, ES256 and EdDSA.
    Sign(SignArgs),
}

/// Arguments of `bench sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Seconds to measure each alg.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Measure only this alg; repeatable. Default: all four.
    #[arg(long = "alg")]
    algs: Vec<SigningAlg>,
}

/// Runs a benchmark.
pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Sign(args) => run_sign(args).await,
    }
}

async fn run_sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        anyhow::bail!("--seconds must be a positive number");
    }
    let total = Duration::from_secs_f64(args.seconds);
    let algs = if args.algs.is_empty() {
        SigningAlg::ALL.to_vec()
    } else {
        args.algs
    };
    for alg in algs {
        let report = tokio::task::spawn_blocking(move || sign::measure(alg, total)).await??;
        println!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}
