//! `bench deliver` over PostgreSQL: a throwaway database on the given server, `N` `logoutd
//! serve` child processes sharing it, the end calls spread over them, and their CPU time
//! summed from `/proc` (design §5: several nodes share the outbox).

use super::deliver::{Report, Scenario};
#[cfg(feature = "postgres")]
use super::served;

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
    served::run_nodes(scenario, url, sinks, served::Setup::Store).await
}
