//! `logoutd deliveries list|show|retry`: the delivery status API for operators, over HTTP.

use super::http::{ApiArgs, ApiClient, bulk_outcome, cell, print_json, progress, table};
use anyhow::bail;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::ExitCode;

/// `logoutd deliveries ...`.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// API location and output format.
    #[command(flatten)]
    pub api: ApiArgs,
    /// The operation.
    #[command(subcommand)]
    pub command: DeliveriesCommand,
}

/// The delivery operations.
#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, oldest id first, following every page.
    List(Filters),
    /// Show one delivery with its attempt history.
    Show {
        /// The delivery id.
        id: String,
    },
    /// Re-drive one failed delivery, or every failed delivery matching the filters.
    Retry {
        /// The delivery id; omit it and give filters to re-drive in bulk.
        id: Option<String>,
        /// Which deliveries to re-drive in bulk (`--state` must be `failed`).
        #[command(flatten)]
        filters: Filters,
    },
}

/// Listing filters of `GET /api/v2/logout-deliveries`.
#[derive(Debug, Clone, Default, Args)]
pub struct Filters {
    /// Only deliveries in this state (pending, in_flight, delivered, failed, cancelled).
    #[arg(long)]
    pub state: Option<String>,
    /// Only deliveries to this client.
    #[arg(long)]
    pub client: Option<String>,
    /// Only deliveries of this session.
    #[arg(long)]
    pub session: Option<String>,
    /// Only deliveries of this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Stop after this many deliveries.
    #[arg(long)]
    pub limit: Option<usize>,
}

impl Filters {
    /// The query parameters of the set filters.
    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("state", &self.state),
            ("client_id", &self.client),
            ("session_id", &self.session),
            ("user_id", &self.user),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }

    fn is_empty(&self) -> bool {
        self.query().is_empty()
    }
}

/// Runs a `deliveries` command.
pub async fn run(args: DeliveriesArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.api.url)?;
    let json = args.api.json;
    match args.command {
        DeliveriesCommand::List(filters) => list(&client, &filters, json).await,
        DeliveriesCommand::Show { id } => show(&client, &id, json).await,
        DeliveriesCommand::Retry { id: Some(id), .. } => retry_one(&client, &id, json).await,
        DeliveriesCommand::Retry { id: None, filters } => retry_all(&client, filters, json).await,
    }?;
    Ok(ExitCode::SUCCESS)
}

async fn list(client: &ApiClient, filters: &Filters, json: bool) -> anyhow::Result<()> {
    let items = client
        .walk(
            &["logout-deliveries"],
            filters.query(),
            "deliveries",
            filters.limit,
        )
        .await?;
    if json {
        return print_json(&Value::Array(items));
    }
    let headers = [
        "ID",
        "STATE",
        "CLIENT",
        "SESSION",
        "USER",
        "INITIATOR",
        "ATTEMPTS",
        "LAST_STATUS",
        "CREATED",
    ];
    let fields = [
        "id",
        "state",
        "client_id",
        "session_id",
        "user_id",
        "initiator",
        "attempts",
        "last_status",
        "created_at",
    ];
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|d| fields.iter().map(|f| cell(&d[*f])).collect())
        .collect();
    logoutd_core::outln!("{}", table(&headers, &rows));
    Ok(())
}

async fn show(client: &ApiClient, id: &str, json: bool) -> anyhow::Result<()> {
    let url = client.url(&["logout-deliveries", id], &[])?;
    let detail = client.send(Method::GET, url, None).await?;
    if json {
        return print_json(&detail);
    }
    let fields = [
        "id",
        "event_id",
        "session_id",
        "user_id",
        "client_id",
        "initiator",
        "state",
        "attempts",
        "next_attempt_at",
        "last_status",
        "last_error",
        "created_at",
        "delivered_at",
    ];
    let rows: Vec<Vec<String>> = fields
        .iter()
        .map(|f| vec![(*f).to_owned(), cell(&detail[*f])])
        .collect();
    logoutd_core::outln!("{}", table(&["FIELD", "VALUE"], &rows));
    let history = detail["attempt_history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|a| {
            ["at", "status", "error", "latency_ms", "jti"]
                .iter()
                .map(|f| cell(&a[*f]))
                .collect()
        })
        .collect();
    logoutd_core::outln!(
        "\n{}",
        table(&["AT", "STATUS", "ERROR", "LATENCY_MS", "JTI"], &rows)
    );
    Ok(())
}

async fn retry_one(client: &ApiClient, id: &str, json: bool) -> anyhow::Result<()> {
    let url = client.url(&["logout-deliveries", id, "retry"], &[])?;
    let reply = client.send(Method::POST, url, None).await?;
    if json {
        return print_json(&reply);
    }
    logoutd_core::outln!("delivery {id} re-driven");
    Ok(())
}

/// Walks every matching failed delivery, then re-drives each, with a progress bar.
async fn retry_all(client: &ApiClient, mut filters: Filters, json: bool) -> anyhow::Result<()> {
    if filters.is_empty() {
        bail!("give a delivery id, or filters such as --client C --state failed");
    }
    match filters.state.as_deref() {
        None | Some("failed") => filters.state = Some("failed".to_owned()),
        Some(other) => bail!("only failed deliveries can be re-driven, not {other}"),
    }
    let items = client
        .walk(
            &["logout-deliveries"],
            filters.query(),
            "deliveries",
            filters.limit,
        )
        .await?;
    let bar = progress(items.len(), "re-driving");
    let mut failures = Vec::new();
    let mut done = 0;
    for id in items.iter().filter_map(|d| d["id"].as_str()) {
        let url = client.url(&["logout-deliveries", id, "retry"], &[])?;
        match client.send(Method::POST, url, None).await {
            Ok(_) => done += 1,
            Err(err) => failures.push(format!("{id}: {err:#}")),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if json {
        print_json(&json!({ "retried": done, "failed": failures.len() }))?;
    } else {
        logoutd_core::outln!("re-drove {done} of {} deliveries", items.len());
    }
    bulk_outcome(done, &failures, "re-drive")
}
