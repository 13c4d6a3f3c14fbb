//! `logoutd deliveries list|show|retry`: the delivery status API for operators, over HTTP.

use super::http::{ApiArgs, ApiClient, cell, print_json, spinner, table};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Duration;

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
        /// The delivery id; omit it and give filters (at least one) to re-drive in bulk.
        id: Option<String>,
        /// Which failed deliveries to re-drive in bulk.
        #[command(flatten)]
        bulk: BulkRetry,
    },
}

/// The filters of `POST /api/v2/logout-deliveries/retry`, and its idempotency key.
#[derive(Debug, Clone, Default, Args)]
pub struct BulkRetry {
    /// Only failed deliveries to this client.
    #[arg(long, conflicts_with = "id")]
    pub client: Option<String>,
    /// Only deliveries that failed at or after this time (RFC 3339).
    #[arg(long, conflicts_with = "id")]
    pub since: Option<String>,
    /// Only deliveries that failed before this time (RFC 3339).
    #[arg(long, conflicts_with = "id")]
    pub before: Option<String>,
    /// Only deliveries of sessions ended by this initiator (e.g. rp-logout).
    #[arg(long, conflicts_with = "id")]
    pub initiator: Option<String>,
    /// Makes a repeat of this request answer the first one's count and re-drive nothing
    /// more (printable ASCII, 1 to 255 characters).
    #[arg(long, conflicts_with = "id")]
    pub idempotency_key: Option<String>,
}

impl BulkRetry {
    /// The request body: the filters given.
    fn body(&self) -> Value {
        given(&[
            ("client_id", &self.client),
            ("failed_since", &self.since),
            ("failed_before", &self.before),
            ("initiator", &self.initiator),
        ])
    }
}

/// A JSON object of the `fields` that were given, as strings.
pub(super) fn given(fields: &[(&str, &Option<String>)]) -> Value {
    Value::Object(
        fields
            .iter()
            .filter_map(|(k, v)| Some(((*k).to_owned(), Value::String((*v).clone()?))))
            .collect(),
    )
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
}

/// Runs a `deliveries` command.
pub async fn run(args: DeliveriesArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.api.url)?;
    let json = args.api.json;
    match args.command {
        DeliveriesCommand::List(filters) => list(&client, &filters, json).await,
        DeliveriesCommand::Show { id } => show(&client, &id, json).await,
        DeliveriesCommand::Retry { id: Some(id), .. } => retry_one(&client, &id, json).await,
        DeliveriesCommand::Retry { id: None, bulk } => retry_all(client, bulk, json).await,
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
        "scope",
        "sessions",
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

/// How long the bulk re-drive may take to answer: the server pages through every match
/// before it does.
const BULK_TIMEOUT: Duration = Duration::from_secs(600);

/// Re-drives every failed delivery matching the filters with one request.
async fn retry_all(client: ApiClient, args: BulkRetry, json: bool) -> anyhow::Result<()> {
    let body = args.body();
    // Every dead letter at once is one request away through the API (`{}`); on the command
    // line it takes a filter, so that a forgotten id does not re-drive everything.
    if body.as_object().is_some_and(serde_json::Map::is_empty) {
        anyhow::bail!(
            "give a delivery id, or at least one of --client, --since, --before and --initiator"
        );
    }
    let key = args.idempotency_key.as_deref();
    let path = ["logout-deliveries", "retry"];
    retry_in_bulk(client, &path, body, key, "failed deliveries", json).await
}

/// Sends a bulk re-drive of `body` to `path`, with the idempotency key if given, and prints
/// how many `rows` it re-drove and whether that was a replay. The server pages through every
/// match before it answers; a spinner with the elapsed time runs while it waits.
pub(super) async fn retry_in_bulk(
    client: ApiClient,
    path: &[&str],
    body: Value,
    key: Option<&str>,
    rows: &str,
    json: bool,
) -> anyhow::Result<()> {
    let client = client.with_timeout(BULK_TIMEOUT);
    let url = client.url(path, &[])?;
    let headers: Vec<(&str, &str)> = key
        .map(|key| ("Idempotency-Key", key))
        .into_iter()
        .collect();
    let bar = spinner(&format!("re-driving {rows}"));
    let reply = client
        .send_with(Method::POST, url, Some(body), &headers)
        .await;
    bar.finish_and_clear();
    let (reply, response_headers) = reply?;
    let redriven = reply["redriven"].as_u64().unwrap_or_default();
    let replayed = response_headers
        .get("idempotent-replayed")
        .is_some_and(|v| v.as_bytes() == b"true");
    if json {
        return print_json(&json!({ "redriven": redriven, "replayed": replayed }));
    }
    if replayed {
        logoutd_core::outln!(
            "re-drove {redriven} {rows} (the answer to an earlier request with this key; \
             nothing more was re-driven)"
        );
    } else {
        logoutd_core::outln!("re-drove {redriven} {rows}");
    }
    Ok(())
}
