//! `bench ssf`: what SSF push streams add to a session end. In one run, side by side, `logoutd
//! serve` ends N sessions × M RPs with user-wide calls, without SSF (run A) and with S push
//! streams of scope `all` into the same receiver (run B, one `session-revoked` SET per stream
//! per ended session), each on a fresh SQLite file. The pairs alternate A B, B A, A B, ... so
//! that a drift of the machine's speed falls on both sides alike.
//!
//! The summary sets the added CPU per SET, (B's CPU − A's CPU) ÷ SETs, next to the CPU per
//! logout token, A's CPU ÷ tokens, and both next to the CPU time of a raw RS256 signature
//! (SETs are always signed RS256) measured after each run; each figure is pooled over the
//! pairs, with the spread of the pairs beside it. The raw signature is timed by the thread's
//! CPU time, not the clock, so that it stays comparable with the CPU figures when other work
//! shares the cores.

use super::deliver::{self, Report, Scenario};
use logoutd_core::SigningAlg;
use std::time::Duration;

/// The workload of each run.
#[derive(Debug, Clone)]
pub struct SsfScenario {
    /// Signing alg of the logout tokens (SETs are RS256 whatever it is).
    pub alg: SigningAlg,
    /// Sessions ended per run.
    pub sessions: usize,
    /// RPs per session.
    pub rps: usize,
    /// SSF push streams in run B.
    pub streams: usize,
    /// Sessions per user; each user is ended with one call.
    pub sessions_per_user: usize,
    /// Single-session ends timed while the mass logout runs.
    pub probes: usize,
    /// A and B pairs.
    pub pairs: usize,
}

impl SsfScenario {
    /// Run B when `streams`, else run A.
    fn deliver(&self, streams: usize) -> Scenario {
        Scenario {
            alg: self.alg,
            sessions: self.sessions,
            rps: self.rps,
            sessions_per_user: self.sessions_per_user,
            probes: self.probes,
            metadata_pairs: 0,
            store: None,
            nodes: 1,
            serve: true,
            ssf_streams: streams,
        }
    }
}

/// What one run measured, as the summary uses it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    /// Logout tokens delivered (distinct session and RP pairs).
    pub tokens: u64,
    /// SETs delivered (distinct `jti`s).
    pub sets: u64,
    /// Logout token and SET POSTs beyond the first of each.
    pub duplicates: u64,
    /// From the first end call to the last receipt.
    pub wall: Duration,
    /// The `serve` process's CPU time over the same span.
    pub cpu: Duration,
    /// The receiver's CPU time over the same span.
    pub sink_cpu: Option<Duration>,
    /// CPU time of one raw RS256 signature, measured after the run.
    pub raw_rs256: Duration,
    /// End-session API p99 latency, ms.
    pub end_p99_ms: Option<f64>,
}

impl Run {
    /// The figures of `report`, with `raw_rs256` measured beside it.
    pub fn of(report: &Report, raw_rs256: Duration) -> Self {
        Self {
            tokens: report.deliveries,
            sets: report.sets,
            duplicates: report.duplicates + report.set_duplicates,
            wall: report.wall,
            cpu: report.cpu,
            sink_cpu: report.sink_cpu,
            raw_rs256,
            end_p99_ms: report.end_latency_ms.map(|(_, p99)| p99),
        }
    }

    /// The raw RS256 signature, µs.
    fn raw_us(&self) -> f64 {
        us(self.raw_rs256)
    }

    /// The line of run `name`.
    pub fn line(&self, name: &str) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut line = format!(
            "ssf run={name} tokens={} sets={} duplicates={} wall={:.2}s serve_cpu={:.0}ms",
            self.tokens,
            self.sets,
            self.duplicates,
            self.wall.as_secs_f64(),
            ms(self.cpu)
        );
        if let Some(sink) = self.sink_cpu {
            line.push_str(&format!(" sink_cpu={:.0}ms", ms(sink)));
        }
        line.push_str(&format!(" raw_rs256_cpu={:.0}us", self.raw_us()));
        if let Some(p99) = self.end_p99_ms {
            line.push_str(&format!(" end_api_p99={p99:.1}ms"));
        }
        line
    }
}

/// A figure pooled over the pairs, and its lowest and highest pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Over every pair together.
    pub pooled: f64,
    /// The lowest pair's.
    pub min: f64,
    /// The highest pair's.
    pub max: f64,
}

impl Spread {
    /// `numerator ÷ denominator` summed over `pairs`, and the range of each pair's own ratio.
    fn of(
        pairs: &[(Run, Run)],
        numerator: impl Fn(&Run, &Run) -> f64,
        denominator: impl Fn(&Run, &Run) -> f64,
    ) -> Self {
        let (mut top, mut bottom) = (0.0, 0.0);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for (a, b) in pairs {
            let (n, d) = (numerator(a, b), denominator(a, b));
            top += n;
            bottom += d;
            let each = n / d.max(1e-9);
            min = min.min(each);
            max = max.max(each);
        }
        Self {
            pooled: top / bottom.max(1e-9),
            min,
            max,
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0}us ({:.0}-{:.0})", self.pooled, self.min, self.max)
    }
}

/// The comparison of the pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// (A, B) in the order they ran.
    pub pairs: Vec<(Run, Run)>,
}

/// A duration in µs.
fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// CPU time of B beyond A's, µs; negative when noise made B the cheaper.
fn added(a: Duration, b: Duration) -> f64 {
    us(b) - us(a)
}

impl Summary {
    /// A's CPU per logout token, µs.
    pub fn cpu_per_token(&self) -> Spread {
        Spread::of(&self.pairs, |a, _| us(a.cpu), |a, _| a.tokens as f64)
    }

    /// B's CPU beyond A's per SET, µs.
    pub fn added_cpu_per_set(&self) -> Spread {
        Spread::of(
            &self.pairs,
            |a, b| added(a.cpu, b.cpu),
            |_, b| b.sets as f64,
        )
    }

    /// The raw RS256 signature's CPU time, µs: the mean over both runs of each pair.
    pub fn raw_rs256(&self) -> Spread {
        Spread::of(&self.pairs, |a, b| a.raw_us() + b.raw_us(), |_, _| 2.0)
    }

    /// The receiver's CPU per logout token in A, µs (`None` when it did not report it).
    pub fn sink_per_token(&self) -> Option<Spread> {
        self.with_sink().then(|| {
            Spread::of(
                &self.pairs,
                |a, _| us(a.sink_cpu.unwrap_or_default()),
                |a, _| a.tokens as f64,
            )
        })
    }

    /// The receiver's CPU in B beyond A's per SET, µs.
    pub fn sink_added_per_set(&self) -> Option<Spread> {
        self.with_sink().then(|| {
            Spread::of(
                &self.pairs,
                |a, b| {
                    added(
                        a.sink_cpu.unwrap_or_default(),
                        b.sink_cpu.unwrap_or_default(),
                    )
                },
                |_, b| b.sets as f64,
            )
        })
    }

    /// The receiver's busiest share of one core in any run.
    pub fn sink_core_max(&self) -> Option<f64> {
        self.with_sink().then(|| {
            self.pairs
                .iter()
                .flat_map(|(a, b)| [a, b])
                .map(|r| us(r.sink_cpu.unwrap_or_default()) / us(r.wall).max(1e-9))
                .fold(0.0, f64::max)
        })
    }

    /// B's wall time over A's.
    pub fn wall_ratio(&self) -> Spread {
        Spread::of(&self.pairs, |_, b| us(b.wall), |a, _| us(a.wall))
    }

    fn with_sink(&self) -> bool {
        !self.pairs.is_empty()
            && self
                .pairs
                .iter()
                .all(|(a, b)| a.sink_cpu.is_some() && b.sink_cpu.is_some())
    }

    /// The summary lines.
    pub fn lines(&self) -> Vec<String> {
        let token = self.cpu_per_token();
        let set = self.added_cpu_per_set();
        let raw = self.raw_rs256();
        let wall = self.wall_ratio();
        let mut lines = vec![
            format!(
                "ssf summary pairs={} cpu/token={token} added_cpu/set={set} set/token={:.2} raw_rs256_cpu={raw}",
                self.pairs.len(),
                set.pooled / token.pooled.max(1e-9),
            ),
            format!(
                "ssf summary cpu/token/raw={:.2} added_cpu/set/raw={:.2} wall_b/a={:.2} ({:.2}-{:.2})",
                token.pooled / raw.pooled.max(1e-9),
                set.pooled / raw.pooled.max(1e-9),
                wall.pooled,
                wall.min,
                wall.max
            ),
        ];
        if let (Some(sink_token), Some(sink_set), Some(core)) = (
            self.sink_per_token(),
            self.sink_added_per_set(),
            self.sink_core_max(),
        ) {
            lines.push(format!(
                "ssf summary sink_cpu/token={sink_token} sink_added_cpu/set={sink_set} sink_core_max={:.0}%",
                core * 100.0
            ));
        }
        lines
    }
}

/// Runs `scenario.pairs` pairs into the sink at `sinks`, calling `on_run` with each run's line
/// as it ends, and returns their summary.
pub async fn run(
    scenario: &SsfScenario,
    sinks: &[String],
    mut on_run: impl FnMut(String),
) -> anyhow::Result<Summary> {
    let mut pairs = Vec::with_capacity(scenario.pairs);
    for pair in 1..=scenario.pairs {
        // A B, then B A: a steady drift of the machine's speed favours neither side.
        let a_first = pair % 2 == 1;
        let mut runs = [None, None];
        for b in [!a_first, a_first] {
            let streams = if b { scenario.streams } else { 0 };
            let report = deliver::run(scenario.deliver(streams), sinks).await?;
            let run = Run::of(&report, raw_rs256().await?);
            on_run(run.line(&format!("{}{pair}", if b { 'B' } else { 'A' })));
            runs[usize::from(b)] = Some(run);
        }
        if let [Some(a), Some(b)] = runs {
            pairs.push((a, b));
        }
    }
    Ok(Summary { pairs })
}

/// How long the raw RS256 signature is timed after each run, in CPU time.
const RAW_CPU: Duration = Duration::from_secs(1);

/// The CPU time of one raw RS256 signature, measured now.
async fn raw_rs256() -> anyhow::Result<Duration> {
    let raw = tokio::task::spawn_blocking(|| {
        super::sign::raw_cpu_per_signature(SigningAlg::RS256, RAW_CPU)
    });
    Ok(raw.await??)
}

#[cfg(test)]
#[path = "ssf_tests.rs"]
mod tests;
