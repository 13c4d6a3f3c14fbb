//! `bench deliver` against `logoutd serve` child processes, the way users run it: the nodes
//! start on the given store, and their CPU time and peak RSS are read from `/proc/<pid>`. On
//! SQLite (`--serve`) one node runs on a fresh file and the RPs and sessions are registered
//! through `/api/v2`, as the README does; over PostgreSQL ([`super::cluster`]) they are
//! written into the store before the nodes start. SSF streams are always made the way a
//! receiver makes them: registered through `/api/v2/ssf-receivers`, then created with the
//! receiver's token at `POST /ssf/stream`.

use super::deliver::{self, Report, Scenario};
use super::drive::{Target, drive};
use super::nodes::{self, NodeConfig};
use futures_util::StreamExt as _;

/// The `iss` of every node.
const ISSUER: &str = "https://logoutd.bench";
/// Set-up calls in flight.
const SETUP_CONCURRENCY: usize = 16;

/// How the RPs and sessions get to the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Setup {
    /// Written into the store before the nodes start.
    Store,
    /// Created through the first node's API once it listens.
    Api,
}

/// Runs `scenario` on one `logoutd serve` over a fresh SQLite file (or the given store),
/// set up through its API.
pub async fn run(scenario: Scenario, sinks: &[String]) -> anyhow::Result<Report> {
    let dir = deliver::scratch()?;
    let store = scenario
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.0.display()));
    run_nodes(scenario, &store, sinks, Setup::Api).await
}

/// Starts `scenario.nodes` nodes on `store`, sets them up, drives the workload and stops them.
pub(super) async fn run_nodes(
    scenario: Scenario,
    store: &str,
    sinks: &[String],
    setup: Setup,
) -> anyhow::Result<Report> {
    let dir = deliver::scratch()?;
    let keys_dir = dir.0.join("keys");
    logoutd_core::generate_key(&keys_dir, scenario.alg, None, chrono::Utc::now())?;
    let tag = deliver::tag();
    if setup == Setup::Store {
        let stores = logoutd_core::open_store(store).await?;
        deliver::populate(&stores, &scenario, sinks, &tag).await?;
    }
    let api_token = logoutd_core::random_secret();
    let config = NodeConfig {
        store,
        keys_dir: &keys_dir,
        work_dir: &dir.0,
        issuer: ISSUER,
        api_token: &api_token,
        ssf: scenario.ssf_streams > 0,
    };
    let nodes = nodes::start(&config, scenario.nodes.max(1)).await?;
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid).collect();
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let http = reqwest::Client::builder().no_proxy().build()?;
    if setup == Setup::Api {
        let api = Api {
            http: &http,
            base: bases.first().map_or("", String::as_str),
            token: &api_token,
        };
        api.populate(&scenario, sinks, &tag).await?;
    }
    if scenario.ssf_streams > 0 {
        let api = Api {
            http: &http,
            base: bases.first().map_or("", String::as_str),
            token: &api_token,
        };
        api.ssf_streams(scenario.ssf_streams, sinks).await?;
    }
    let cpu = || nodes::cpu_total(&pids);
    let target = Target {
        bases: &bases,
        token: &api_token,
        sink: sinks.first().map_or("", String::as_str),
        tag: &tag,
        cpu: &cpu,
        in_process: false,
    };
    let raw_before = deliver::raw_rate(scenario.alg).await?;
    let measured = drive(&http, &target, &scenario).await;
    let rss = nodes::peak_rss_max(&pids);
    for node in nodes {
        node.stop().await;
    }
    deliver::report(scenario, measured?, rss, raw_before).await
}

/// One node's management API.
struct Api<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    token: &'a str,
}

impl Api<'_> {
    /// `POST /api/v2/{path}` with `body`, which must answer 201.
    async fn create(&self, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
        self.post_created(&format!("api/v2/{path}"), self.token, body)
            .await
            .map(drop)
    }

    /// `POST /{path}` with `body` and bearer `token`, which must answer 201; its JSON answer.
    async fn post_created(
        &self,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http
            .post(format!("{}/{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(status.as_u16() == 201, "POST /{path} answered {status}");
        Ok(response.json().await?)
    }

    /// Registers `streams` SSF receivers of scope `all`, each creating a push stream of
    /// `session-revoked` into a sink (SSF §8.1.1.1), so that every ended session sends one
    /// SET per stream (not measured).
    async fn ssf_streams(&self, streams: usize, sinks: &[String]) -> anyhow::Result<()> {
        for i in 0..streams {
            let sink = sinks
                .get(i % sinks.len().max(1))
                .ok_or_else(|| anyhow::anyhow!("no sink address"))?;
            let body = serde_json::json!({ "name": format!("bench ssf-{i}"), "scope": "all" });
            let receiver = self
                .post_created("api/v2/ssf-receivers", self.token, body)
                .await?;
            let token = receiver["token"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("the SSF receiver came without a token"))?;
            let stream = serde_json::json!({
                "delivery": {
                    "method": logoutd_core::PUSH_METHOD,
                    "endpoint_url": format!("{sink}/ssf/{i}"),
                },
                "events_requested": [logoutd_core::SESSION_REVOKED],
            });
            self.post_created("ssf/stream", token, stream).await?;
        }
        Ok(())
    }

    /// Registers the RPs and creates the sessions [`deliver::populate`] writes, with the
    /// same ids, through the API (not measured).
    async fn populate(&self, s: &Scenario, sinks: &[String], tag: &str) -> anyhow::Result<()> {
        for i in 0..s.rps {
            let sink = sinks
                .get(i % sinks.len().max(1))
                .ok_or_else(|| anyhow::anyhow!("no sink address"))?;
            self.create("clients", client_body(i, sink, s)).await?;
        }
        let metadata = deliver::metadata_pairs(s.metadata_pairs);
        let per_user = s.sessions_per_user.max(1);
        let sessions =
            (0..s.sessions).map(|n| (format!("{tag}s-{n}"), format!("{tag}user-{}", n / per_user)));
        let probes = (0..s.probes).map(|n| (format!("{tag}probe-{n}"), format!("{tag}probe-{n}")));
        let calls = futures_util::stream::iter(sessions.chain(probes)).map(|(id, user)| {
            let clients: Vec<_> = (0..s.rps)
                .map(|i| serde_json::json!({ "client_id": format!("rp-{i}") }))
                .collect();
            let body = serde_json::json!({
                "id": id, "user_id": user, "clients": clients, "session_metadata": metadata,
            });
            self.create("sessions", body)
        });
        let mut calls = calls.buffer_unordered(SETUP_CONCURRENCY);
        while let Some(result) = calls.next().await {
            result?;
        }
        Ok(())
    }
}

/// The registration of RP `i`, posting to `sink`, as [`deliver`] builds it for the store.
fn client_body(i: usize, sink: &str, s: &Scenario) -> serde_json::Value {
    serde_json::json!({
        "client_id": format!("rp-{i}"),
        "name": format!("bench rp-{i}"),
        "oidc_logout": {
            "backchannel_logout_urls": [format!("{sink}/logout/{i}")],
            "backchannel_logout_session_metadata": { "include": s.metadata_pairs > 0 },
        },
        "backchannel_logout_session_required": false,
        "logout_token_typ": "logout+jwt",
        "id_token_signed_response_alg": s.alg.as_str(),
    })
}
