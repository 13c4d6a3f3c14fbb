//! `bench deliver` over PostgreSQL: a throwaway database on the given server, `N` `logoutd
//! serve` child processes sharing it, the end calls spread over them, and their CPU time
//! summed from `/proc` (design §5: several nodes share the outbox).

use super::deliver::{Report, Scenario};
#[cfg(feature = "postgres")]
use super::{
    deliver,
    drive::{Target, drive},
    nodes::{self, NodeConfig},
};

/// The `iss` of every node.
#[cfg(feature = "postgres")]
const ISSUER: &str = "https://logoutd.bench";

/// Runs `scenario` on a database created for it on the server at `scenario.store`, and drops
/// the database afterwards whatever the outcome. SIGTERM or SIGINT ends the run early: the
/// nodes are killed as they are dropped, and the database is still dropped, so neither
/// outlives an interrupted benchmark.
#[cfg(feature = "postgres")]
pub async fn run(scenario: Scenario, sinks: &[String]) -> anyhow::Result<Report> {
    use super::database::BenchDatabase;
    let server = scenario.store.clone().unwrap_or_default();
    let db = BenchDatabase::create(&server).await?;
    let interrupted = async {
        if logoutd_core::stop_signal().await.is_err() {
            // Without signal handlers the run is not interruptible, as before.
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        result = on_database(scenario, &db.url, sinks) => result,
        () = interrupted => Err(anyhow::anyhow!("interrupted; the nodes were stopped")),
    };
    if let Err(err) = db.drop_now().await {
        eprintln!("could not drop the benchmark database: {err:#}");
    }
    result
}

/// Without the `postgres` feature there is nothing to run the nodes on.
#[cfg(not(feature = "postgres"))]
pub async fn run(_scenario: Scenario, _sinks: &[String]) -> anyhow::Result<Report> {
    anyhow::bail!("this build has no PostgreSQL support (feature `postgres`)")
}

/// Populates the database, starts the nodes, drives the workload and stops the nodes.
#[cfg(feature = "postgres")]
async fn on_database(scenario: Scenario, url: &str, sinks: &[String]) -> anyhow::Result<Report> {
    let dir = deliver::scratch()?;
    let keys_dir = dir.0.join("keys");
    logoutd_core::generate_key(&keys_dir, scenario.alg, None, chrono::Utc::now())?;
    let tag = deliver::tag();
    {
        let stores = logoutd_core::open_store(url).await?;
        deliver::populate(&stores, &scenario, sinks, &tag).await?;
    }
    let api_token = logoutd_core::random_secret();
    let config = NodeConfig {
        store: url,
        keys_dir: &keys_dir,
        work_dir: &dir.0,
        issuer: ISSUER,
        api_token: &api_token,
    };
    let nodes = nodes::start(&config, scenario.nodes.max(1)).await?;
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid).collect();
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let cpu = || nodes::cpu_total(&pids);
    let target = Target {
        bases: &bases,
        token: &api_token,
        sink: sinks.first().map_or("", String::as_str),
        tag: &tag,
        cpu: &cpu,
        in_process: false,
    };
    let http = reqwest::Client::builder().no_proxy().build()?;
    let raw_before = deliver::raw_rate(scenario.alg).await?;
    let measured = drive(&http, &target, &scenario).await;
    let rss = nodes::peak_rss_max(&pids);
    for node in nodes {
        node.stop().await;
    }
    deliver::report(scenario, measured?, rss, raw_before).await
}
