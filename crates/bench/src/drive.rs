//! The measured part of `bench deliver`: end every user's sessions through the API of one or
//! more nodes while timing single-session ends, then wait until the sink has seen every
//! (session, RP) pair and, with SSF streams, every SET, reading the CPU time consumed
//! meanwhile.

use super::deliver::Scenario;
use super::proc_stats::{CpuSplit, thread_times};
use futures_util::StreamExt as _;
use std::time::{Duration, Instant};

/// Longest wait for every delivery to arrive.
const DELIVERY_LIMIT: Duration = Duration::from_secs(3600);
/// How often the sink is asked how far it got.
const POLL: Duration = Duration::from_millis(20);
/// User-wide end calls in flight.
const END_CONCURRENCY: usize = 8;

/// Where the workload goes and how its cost is read.
pub struct Target<'a> {
    /// Base URLs of the nodes; end calls are spread over them round-robin.
    pub bases: &'a [String],
    /// API bearer token.
    pub token: &'a str,
    /// Base URL of the sink (`/count`, `/distinct`).
    pub sink: &'a str,
    /// Prefix of this scenario's user and session ids.
    pub tag: &'a str,
    /// CPU time consumed so far by the logoutd processes measured.
    pub cpu: &'a (dyn Fn() -> Duration + Sync),
    /// Whether logoutd runs in this process, so that its CPU time can be split by thread.
    pub in_process: bool,
}

impl Target<'_> {
    fn base(&self, i: usize) -> &str {
        self.bases
            .get(i % self.bases.len().max(1))
            .map_or("", String::as_str)
    }
}

/// What one run measured.
pub struct Measured {
    /// Distinct (session, RP) pairs delivered.
    pub delivered: u64,
    /// POSTs beyond the first of each pair.
    pub duplicates: u64,
    /// From the first end call to the last pair's arrival.
    pub wall: Duration,
    /// CPU time over the same span.
    pub cpu: Duration,
    /// The same, by kind of thread (in-process runs only).
    pub split: Option<CpuSplit>,
    /// Single-session end latencies, ms.
    pub latencies: Vec<f64>,
    /// The slowest single-session end: its latency and how long after the start of the
    /// mass logout it began, ms.
    pub slowest: Option<(f64, f64)>,
    /// The sink's CPU time over the same span (`None` from a sink that does not report it).
    pub sink_cpu: Option<Duration>,
    /// Distinct SETs (by `jti`) the sink received.
    pub sets: u64,
    /// SET POSTs beyond the first of each `jti`.
    pub set_duplicates: u64,
}

/// What the sink has counted so far.
#[derive(Debug, Clone, Copy)]
struct SinkCounts {
    posts: u64,
    distinct: u64,
    set_posts: u64,
    set_distinct: u64,
}

impl SinkCounts {
    /// What arrived since `before`.
    fn since(self, before: Self) -> Self {
        Self {
            posts: self.posts.saturating_sub(before.posts),
            distinct: self.distinct.saturating_sub(before.distinct),
            set_posts: self.set_posts.saturating_sub(before.set_posts),
            set_distinct: self.set_distinct.saturating_sub(before.set_distinct),
        }
    }
}

/// Ends every user's sessions ([`END_CONCURRENCY`] calls at a time) while timing
/// single-session ends, then waits for the sink to have seen every pair and every SET (one
/// per ended session and stream).
pub async fn drive(
    http: &reqwest::Client,
    target: &Target<'_>,
    s: &Scenario,
) -> anyhow::Result<Measured> {
    let counts0 = sink_counts(http, target.sink, s.ssf_streams > 0).await?;
    let sink_cpu0 = sink_cpu(http, target.sink).await;
    let expected = ((s.sessions + s.probes) * s.rps) as u64;
    let expected_sets = ((s.sessions + s.probes) * s.ssf_streams) as u64;
    let threads0 = target.in_process.then(thread_times);
    let cpu0 = (target.cpu)();
    let start = Instant::now();
    let users = s.sessions.div_ceil(s.sessions_per_user.max(1));
    let (ends, latencies) = tokio::join!(
        end_users(http, target, users),
        probe_ends(http, target, s.probes)
    );
    ends?;
    let (latencies, slowest) = latencies?;
    loop {
        let got = sink_counts(http, target.sink, s.ssf_streams > 0)
            .await?
            .since(counts0);
        let seen = got.distinct;
        if seen >= expected && got.set_distinct >= expected_sets {
            let sink_cpu = sink_cpu(http, target.sink).await;
            return Ok(Measured {
                delivered: seen,
                duplicates: got.posts.saturating_sub(seen),
                sets: got.set_distinct,
                set_duplicates: got.set_posts.saturating_sub(got.set_distinct),
                wall: start.elapsed(),
                cpu: (target.cpu)().saturating_sub(cpu0),
                split: threads0.map(|before| CpuSplit::between(&before, &thread_times())),
                latencies,
                slowest,
                sink_cpu: sink_cpu0
                    .zip(sink_cpu)
                    .map(|(before, after)| after.saturating_sub(before)),
            });
        }
        if start.elapsed() > DELIVERY_LIMIT {
            anyhow::bail!(
                "only {seen} of {expected} deliveries and {} of {expected_sets} SETs arrived \
                 within an hour",
                got.set_distinct
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One `POST /api/v2/logout-events` to `base`, which must answer 202.
async fn end(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let response = http
        .post(format!("{base}/api/v2/logout-events"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().as_u16() == 202,
        "end call answered {}",
        response.status()
    );
    Ok(())
}

async fn end_users(
    http: &reqwest::Client,
    target: &Target<'_>,
    users: usize,
) -> anyhow::Result<()> {
    let calls = futures_util::stream::iter(0..users).map(|u| {
        let user = format!("{}user-{u}", target.tag);
        let body = serde_json::json!({ "user_id": user, "initiator": "rp-logout" });
        end(http, target.base(u), target.token, body)
    });
    let mut calls = calls.buffer_unordered(END_CONCURRENCY);
    while let Some(result) = calls.next().await {
        result?;
    }
    Ok(())
}

/// Ends the probe sessions one at a time, returning each call's latency in ms.
async fn probe_ends(
    http: &reqwest::Client,
    target: &Target<'_>,
    probes: usize,
) -> anyhow::Result<(Vec<f64>, Option<(f64, f64)>)> {
    let first = Instant::now();
    let mut latencies = Vec::with_capacity(probes);
    let mut slowest: Option<(f64, f64)> = None;
    for n in 0..probes {
        let started = Instant::now();
        let sid = format!("{}probe-{n}", target.tag);
        let body = serde_json::json!({ "session_id": sid, "initiator": "rp-logout" });
        end(http, target.base(n), target.token, body).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if slowest.is_none_or(|(worst, _)| ms > worst) {
            let at = started.duration_since(first).as_secs_f64() * 1000.0;
            slowest = Some((ms, at));
        }
        latencies.push(ms);
    }
    Ok((latencies, slowest))
}

/// The sink's logout token POSTs and distinct (sid, aud) pairs, and with `sets` its SET
/// POSTs and distinct `jti`s (zero without: an older sink does not count them).
async fn sink_counts(http: &reqwest::Client, sink: &str, sets: bool) -> anyhow::Result<SinkCounts> {
    let (set_posts, set_distinct) = if sets {
        (
            sink_figure(http, sink, "/set_count").await?,
            sink_figure(http, sink, "/set_distinct").await?,
        )
    } else {
        (0, 0)
    };
    Ok(SinkCounts {
        posts: sink_figure(http, sink, "/count").await?,
        distinct: sink_figure(http, sink, "/distinct").await?,
        set_posts,
        set_distinct,
    })
}

/// The CPU time the sink's process has used, or `None` from a sink that does not report it.
async fn sink_cpu(http: &reqwest::Client, sink: &str) -> Option<Duration> {
    let micros = sink_figure(http, sink, "/cpu_us").await.ok()?;
    Some(Duration::from_micros(micros))
}

/// One number the sink serves at `path`.
async fn sink_figure(http: &reqwest::Client, sink: &str, path: &str) -> anyhow::Result<u64> {
    let response = http.get(format!("{sink}{path}")).send().await?;
    let text = response.error_for_status()?.text().await?;
    Ok(text.trim().parse::<u64>()?)
}

/// p50 and p99 of `samples` (nearest rank).
pub fn percentiles(mut samples: Vec<f64>) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    Some((rank(0.50), rank(0.99)))
}
