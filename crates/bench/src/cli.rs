//! `logoutd-bench`: performance figures, each next to its limit measured in the same run.
//!
//! One variant per benchmark; add new ones to [`BenchCommand`] and a branch to [`run`].

use crate::sign;
use logoutd_core::SigningAlg;
use std::process::ExitCode;
use std::time::Duration;

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Full logout tokens per second per core against the raw aws-lc-rs signature rate,
    /// for RS256, PS256, ES256 and EdDSA.
    Sign(SignArgs),
    /// End-to-end deliveries into a loopback receiver (another process): deliveries/s, CPU
    /// per delivery next to the raw signature cost, the share of the signing ceiling left by
    /// the receiver's CPU, peak RSS, end-session API latency.
    Deliver(DeliverArgs),
    /// What SSF push streams add: `logoutd serve` delivering N sessions × M RPs without SSF
    /// and with S streams, in alternating pairs, and the added CPU per SET next to the CPU per
    /// logout token and the raw RS256 signature.
    Ssf(SsfArgs),
    /// Management API latency on SQLite: session create, PATCH metadata, GET session, p50/p99
    /// at each concurrency.
    Api(ApiArgs),
    /// Head-of-line blocking across origins: a healthy RP's time to its last receipt with
    /// hostile RPs (never answering, dripping, late) paused and then live, in one run.
    Hol(HolArgs),
    /// API load and deliveries to a healthy RP and to hostile ones together for a bounded
    /// time: the healthy RP's latency, RSS and open descriptors at the start and at the end.
    Soak(SoakArgs),
    /// Stalled API connections (half a request's headers each) against `serve` under a small
    /// descriptor limit: seconds until `/healthz` and `POST /api/v2/logout-events` answer.
    SlowClients(SlowClientsArgs),
    /// The loopback receiver `bench deliver` runs as a child process.
    #[command(hide = true)]
    Sink(SinkArgs),
    /// Reads `benches/compare.sh`'s result lines on stdin and prints logoutd's figures against
    /// oidc-provider's best; fails if a side is missing or the receiver saturated a core.
    CompareSummary,
}

/// Arguments of `bench deliver`.
#[derive(Debug, clap::Args)]
pub struct DeliverArgs {
    /// Signing alg; repeatable [default: RS256 and ES256].
    #[arg(long = "alg")]
    algs: Vec<SigningAlg>,
    /// Sessions ended per scenario.
    #[arg(long, default_value_t = 2000)]
    sessions: usize,
    /// RPs per session; repeatable for several scenarios [default: 5].
    #[arg(long = "rps")]
    rps: Vec<usize>,
    /// Sessions per user; each user is ended with one API call.
    #[arg(long, default_value_t = 100)]
    sessions_per_user: usize,
    /// Single-session ends timed while the mass logout is in flight.
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// `session_metadata` pairs on every session (0 to 25, the Auth0 limit), each a 40-character
    /// value; when above 0, every RP opts in and each token carries them.
    #[arg(long, default_value_t = 0, value_parser = metadata_pairs)]
    metadata_pairs: usize,
    /// Store URL [default: a fresh SQLite file per scenario]. A postgres:// URL names a
    /// server (e.g. postgres://postgres@127.0.0.1:5432/postgres) on which each scenario
    /// creates and drops a database `logoutd_bench_<random>`, served by `--nodes` child
    /// `logoutd serve` processes. SIGTERM or SIGINT stops the run, its nodes and its database.
    #[arg(long)]
    store: Option<String>,
    /// `logoutd serve` processes sharing the work; above 1 needs a postgres:// --store.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// On SQLite, run logoutd as a `logoutd serve` child process (its RPs and sessions
    /// created through /api/v2, its CPU time read from /proc) instead of in this process,
    /// which is kept for profiling. Over PostgreSQL the nodes are always `serve` processes.
    #[arg(long)]
    serve: bool,
    /// Deliver into an already running `bench sink` at these URLs (as it printed them, the
    /// first one answering `/count` and `/distinct`) instead of starting one; repeatable.
    #[arg(long = "sink")]
    sinks: Vec<String>,
}

/// Arguments of `bench ssf`.
#[derive(Debug, clap::Args)]
pub struct SsfArgs {
    /// Signing alg of the logout tokens (SETs are always RS256).
    #[arg(long, default_value = "RS256")]
    alg: SigningAlg,
    /// Sessions ended per run.
    #[arg(long, default_value_t = 2000, value_parser = at_least_one)]
    sessions: usize,
    /// RPs per session.
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    rps: usize,
    /// SSF push streams of scope `all` in the runs with SSF (one SET each per ended session).
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    streams: usize,
    /// Sessions per user; each user is ended with one API call.
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    sessions_per_user: usize,
    /// Single-session ends timed while the mass logout is in flight.
    #[arg(long, default_value_t = 100)]
    probes: usize,
    /// Pairs of runs without and with SSF, alternating A B, B A, ...
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    pairs: usize,
}

/// Arguments of `bench api`.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Requests per operation and concurrency level.
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    /// Concurrent clients; repeatable [default: 1 and 64].
    #[arg(long = "concurrency")]
    concurrency: Vec<usize>,
}

/// Arguments of `bench hol`.
#[derive(Debug, clap::Args)]
pub struct HolArgs {
    /// Sessions ended; each took part in the healthy RP and in every hostile one.
    #[arg(long, default_value_t = 300)]
    sessions: usize,
    /// Hostile origins of each kind (never answers, drips 1 byte/s, answers after 10 s).
    #[arg(long, default_value_t = 2)]
    each: usize,
    /// Signing alg of every client.
    #[arg(long, default_value = "RS256")]
    alg: SigningAlg,
}

/// Arguments of `bench soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Signing alg of every client.
    #[arg(long, default_value = "ES256")]
    alg: SigningAlg,
    /// Age budget of a delivery in seconds: the hostile RPs' rows fail once it is spent.
    #[arg(long, default_value_t = 60)]
    max_age_seconds: u64,
}

/// Arguments of `bench slow-clients`.
#[derive(Debug, clap::Args)]
pub struct SlowClientsArgs {
    /// Stalled connections to open.
    #[arg(long, default_value_t = 300)]
    connections: usize,
    /// The server's descriptor limit (`ulimit -n`).
    #[arg(long, default_value_t = 256)]
    nofile: u64,
    /// Seconds to keep probing before giving up.
    #[arg(long, default_value_t = 30)]
    limit_seconds: u64,
    /// The `logoutd` binary to run as the server [default: `LOGOUTD_BIN`, else the one next
    /// to this executable].
    #[arg(long)]
    server_binary: Option<std::path::PathBuf>,
}

/// Arguments of `bench sink`.
#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// Listeners to open (one origin per RP, up to this many).
    #[arg(long, default_value_t = 1)]
    ports: usize,
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

/// logoutd-bench: logoutd's benchmarks, each figure next to its limit measured in the same
/// run.
#[derive(Debug, clap::Parser)]
#[command(name = "logoutd-bench", version, about)]
pub struct Cli {
    /// The benchmark to run.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// Parses the command line, sets up logging to stderr and runs the benchmark.
pub fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    logoutd_core::init_logging();
    // The benchmark receiver shares the cores with what it measures: one thread keeps up and
    // takes the least from it.
    let threads = matches!(cli.command, BenchCommand::Sink(_)).then_some(1);
    let Some(runtime) = logoutd_core::command_runtime(threads) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(run(cli.command));
    logoutd_core::finish_command(runtime, result)
}

/// Runs a benchmark.
pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Sign(args) => run_sign(args).await,
        BenchCommand::Deliver(args) => run_deliver(args).await,
        BenchCommand::Ssf(args) => run_ssf(args).await,
        BenchCommand::Api(args) => run_api(args).await,
        BenchCommand::Hol(args) => run_hol(args).await,
        BenchCommand::Soak(args) => run_soak(args).await,
        BenchCommand::SlowClients(args) => run_slow_clients(args).await,
        BenchCommand::Sink(args) => crate::sink::serve(args.ports)
            .await
            .map(|()| ExitCode::SUCCESS),
        BenchCommand::CompareSummary => run_compare_summary().await,
    }
}

async fn run_compare_summary() -> anyhow::Result<ExitCode> {
    let output =
        tokio::task::spawn_blocking(|| std::io::read_to_string(std::io::stdin())).await??;
    for line in crate::compare::summarize(&output)? {
        logoutd_core::outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
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
        logoutd_core::outln!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The sink child process and its URLs.
struct Sink {
    _child: tokio::process::Child,
    urls: Vec<String>,
}

async fn start_sink(ports: usize) -> anyhow::Result<Sink> {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["sink", "--ports", &ports.to_string()])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("sink has no stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await?
        .ok_or_else(|| anyhow::anyhow!("sink exited before listening"))?;
    let urls: Vec<String> = line
        .trim_start_matches("listening on ")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(!urls.is_empty(), "sink reported no address");
    Ok(Sink {
        _child: child,
        urls,
    })
}

/// A `--metadata-pairs` value: a count a session may hold.
fn metadata_pairs(text: &str) -> Result<usize, String> {
    let pairs: usize = text.parse().map_err(|_| format!("not a count: {text}"))?;
    if pairs > logoutd_core::MAX_METADATA_PAIRS {
        return Err(format!(
            "a session holds at most {} metadata pairs",
            logoutd_core::MAX_METADATA_PAIRS
        ));
    }
    Ok(pairs)
}

/// A count of at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("not a count: {text}")),
    }
}

async fn run_ssf(args: SsfArgs) -> anyhow::Result<ExitCode> {
    use crate::ssf::{self, SsfScenario};
    let scenario = SsfScenario {
        alg: args.alg,
        sessions: args.sessions,
        rps: args.rps,
        streams: args.streams,
        sessions_per_user: args.sessions_per_user,
        probes: args.probes,
        pairs: args.pairs,
    };
    let sink = start_sink(args.rps.max(args.streams)).await?;
    let summary = ssf::run(&scenario, &sink.urls, |line| logoutd_core::outln!("{line}")).await?;
    for line in summary.lines() {
        logoutd_core::outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_deliver(args: DeliverArgs) -> anyhow::Result<ExitCode> {
    use crate::deliver::{self, Scenario};
    let algs = if args.algs.is_empty() {
        vec![SigningAlg::RS256, SigningAlg::ES256]
    } else {
        args.algs
    };
    let rps_list = if args.rps.is_empty() {
        vec![5]
    } else {
        args.rps
    };
    let postgres = args
        .store
        .as_deref()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"));
    if args.nodes == 0 || (args.nodes > 1 && !postgres) {
        anyhow::bail!("--nodes must be 1, or more with a postgres:// --store");
    }
    let (_sink, urls) = if args.sinks.is_empty() {
        let sink = start_sink(rps_list.iter().copied().max().unwrap_or(1)).await?;
        let urls = sink.urls.clone();
        (Some(sink), urls)
    } else {
        (None, args.sinks)
    };
    for alg in algs {
        for &rps in &rps_list {
            let scenario = Scenario {
                alg,
                sessions: args.sessions,
                rps,
                sessions_per_user: args.sessions_per_user,
                probes: args.probes,
                metadata_pairs: args.metadata_pairs,
                store: args.store.clone(),
                nodes: args.nodes,
                serve: args.serve,
                ssf_streams: 0,
            };
            let report = deliver::run(scenario, &urls).await?;
            logoutd_core::outln!("{report}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_api(args: ApiArgs) -> anyhow::Result<ExitCode> {
    let levels = if args.concurrency.is_empty() {
        vec![1, 64]
    } else {
        args.concurrency
    };
    for concurrency in levels {
        for report in crate::api::run(args.requests, concurrency).await? {
            logoutd_core::outln!("{report}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_hol(args: HolArgs) -> anyhow::Result<ExitCode> {
    use crate::hol::{self, HolScenario};
    anyhow::ensure!(args.sessions > 0, "--sessions must be at least 1");
    let sink = start_sink(1).await?;
    let url = sink
        .urls
        .first()
        .ok_or_else(|| anyhow::anyhow!("sink reported no address"))?;
    let scenario = HolScenario {
        sessions: args.sessions,
        each: args.each,
        alg: args.alg,
    };
    logoutd_core::outln!("{}", hol::run(scenario, url).await?);
    Ok(ExitCode::SUCCESS)
}

async fn run_soak(args: SoakArgs) -> anyhow::Result<ExitCode> {
    use crate::soak::{self, SoakScenario};
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    anyhow::ensure!(
        args.max_age_seconds > 0,
        "--max-age-seconds must be at least 1"
    );
    let sink = start_sink(1).await?;
    let url = sink
        .urls
        .first()
        .ok_or_else(|| anyhow::anyhow!("sink reported no address"))?;
    let scenario = SoakScenario {
        duration: std::time::Duration::from_secs(args.seconds),
        alg: args.alg,
        max_age: std::time::Duration::from_secs(args.max_age_seconds),
    };
    logoutd_core::outln!("{}", soak::run(scenario, url).await?);
    Ok(ExitCode::SUCCESS)
}

async fn run_slow_clients(args: SlowClientsArgs) -> anyhow::Result<ExitCode> {
    use crate::slow_clients::{self, SlowClientsScenario};
    let binary = match args.server_binary {
        Some(path) => path,
        None => crate::logoutd_binary()?,
    };
    let scenario = SlowClientsScenario {
        connections: args.connections,
        nofile: args.nofile,
        limit: Duration::from_secs(args.limit_seconds),
        binary,
        serve_args: Vec::new(),
    };
    logoutd_core::outln!("{}", slow_clients::run(scenario).await?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn deliver_takes_serve_and_compare_summary_parses() {
        let cli =
            Cli::try_parse_from(["logoutd-bench", "deliver", "--serve", "--alg", "RS256"]).unwrap();
        let BenchCommand::Deliver(args) = cli.command else {
            panic!("not deliver");
        };
        assert!(args.serve);
        let cli = Cli::try_parse_from(["logoutd-bench", "deliver"]).unwrap();
        assert!(matches!(
            cli.command,
            BenchCommand::Deliver(DeliverArgs { serve: false, .. })
        ));
        let cli = Cli::try_parse_from(["logoutd-bench", "compare-summary"]).unwrap();
        assert!(matches!(cli.command, BenchCommand::CompareSummary));
    }

    #[test]
    fn ssf_defaults_to_two_pairs_of_2000_sessions_5_rps_and_2_streams_signed_rs256() {
        let cli = Cli::try_parse_from(["logoutd-bench", "ssf"]).unwrap();
        let BenchCommand::Ssf(args) = cli.command else {
            panic!("not ssf");
        };
        assert_eq!(args.alg, SigningAlg::RS256);
        assert_eq!(
            (args.sessions, args.rps, args.streams, args.pairs),
            (2000, 5, 2, 2)
        );
        assert_eq!((args.sessions_per_user, args.probes), (100, 100));
    }

    #[test]
    fn ssf_takes_its_sizes_and_refuses_zero_counts() {
        let argv = [
            "logoutd-bench",
            "ssf",
            "--sessions",
            "9000",
            "--streams",
            "3",
            "--pairs",
            "4",
            "--probes",
            "0",
            "--alg",
            "ES256",
        ];
        let BenchCommand::Ssf(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not ssf");
        };
        assert_eq!(
            (args.sessions, args.streams, args.pairs, args.probes),
            (9000, 3, 4, 0)
        );
        assert_eq!(args.alg, SigningAlg::ES256);
        for flag in [
            "--sessions",
            "--rps",
            "--streams",
            "--pairs",
            "--sessions-per-user",
        ] {
            let refused = Cli::try_parse_from(["logoutd-bench", "ssf", flag, "0"]);
            assert!(refused.is_err(), "{flag} 0 accepted");
        }
    }
}
