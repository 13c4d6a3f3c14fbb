//! `logoutd clients health [CLIENT_ID]`: each client's endpoint health, over HTTP.

use super::http::{ApiArgs, ApiClient, cell, print_json, table};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;
use std::process::ExitCode;

/// `logoutd clients ...`.
#[derive(Debug, Args)]
pub struct ClientsArgs {
    /// API location and output format.
    #[command(flatten)]
    pub api: ApiArgs,
    /// The operation.
    #[command(subcommand)]
    pub command: ClientsCommand,
}

/// The client operations.
#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Show endpoint health (success rate and latency over the last 24 hours, the failure
    /// streak, who paused it): of one client, or of every client, following every page.
    Health {
        /// The client; omit it for every client.
        client_id: Option<String>,
    },
}

/// Runs a `clients` command.
pub async fn run(args: ClientsArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.api.url)?;
    match args.command {
        ClientsCommand::Health { client_id } => {
            health(&client, client_id.as_deref(), args.api.json).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn health(client: &ApiClient, id: Option<&str>, json: bool) -> anyhow::Result<()> {
    let items = match id {
        Some(id) => {
            let url = client.url(&["clients", id, "health"], &[])?;
            vec![client.send(Method::GET, url, None).await?]
        }
        None => {
            client
                .walk(&["client-health"], Vec::new(), "clients", None)
                .await?
        }
    };
    if json {
        return match (id, items.as_slice()) {
            (Some(_), [one]) => print_json(one),
            _ => print_json(&Value::Array(items)),
        };
    }
    let headers = [
        "CLIENT",
        "ATTEMPTS",
        "SUCCESS_RATE",
        "P50_MS",
        "P99_MS",
        "LAST_SUCCESS",
        "FAILURES_SINCE_SUCCESS",
        "PAUSED_BY",
    ];
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    logoutd_core::outln!("{}", table(&headers, &rows));
    Ok(())
}

/// One client's health as a table row.
fn row(h: &Value) -> Vec<String> {
    let rate = h["success_rate"]
        .as_f64()
        .map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    vec![
        cell(&h["client_id"]),
        cell(&h["attempts"]),
        rate,
        cell(&h["latency_ms"]["p50"]),
        cell(&h["latency_ms"]["p99"]),
        cell(&h["last_success_at"]),
        cell(&h["failures_since_success"]),
        cell(&h["paused_by"]),
    ]
}
