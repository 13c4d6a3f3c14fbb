//! `logoutd deliveries list|show|retry`: the delivery status API for operators, over HTTP.

use super::delivery_api::{DeliveryApi, query};
use super::http::{ApiArgs, ApiClient, cell, table};
use clap::{Args, Subcommand};
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
    /// The query parameters of the given filters.
    fn query(&self) -> Vec<(&'static str, String)> {
        query(&[
            ("state", &self.state),
            ("client_id", &self.client),
            ("session_id", &self.session),
            ("user_id", &self.user),
        ])
    }
}

/// The delivery listing of `/api/v2/logout-deliveries`.
const DELIVERIES: DeliveryApi = DeliveryApi {
    path: "logout-deliveries",
    noun: "delivery",
    failed: "failed deliveries",
    columns: &[
        ("ID", "id"),
        ("STATE", "state"),
        ("CLIENT", "client_id"),
        ("SESSION", "session_id"),
        ("USER", "user_id"),
        ("INITIATOR", "initiator"),
        ("ATTEMPTS", "attempts"),
        ("LAST_STATUS", "last_status"),
        ("CREATED", "created_at"),
    ],
    fields: &[
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
    ],
};

/// Runs a `deliveries` command.
pub async fn run(args: DeliveriesArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.api.url)?;
    let json = args.api.json;
    match args.command {
        DeliveriesCommand::List(filters) => {
            let query = filters.query();
            DELIVERIES.list(&client, query, filters.limit, json).await
        }
        DeliveriesCommand::Show { id } => show(&client, &id, json).await,
        DeliveriesCommand::Retry { id: Some(id), .. } => {
            DELIVERIES.retry_one(&client, &id, json).await
        }
        DeliveriesCommand::Retry { id: None, bulk } => retry_all(client, bulk, json).await,
    }?;
    Ok(ExitCode::SUCCESS)
}

/// One delivery, field by field, then its attempt history.
async fn show(client: &ApiClient, id: &str, json: bool) -> anyhow::Result<()> {
    let Some(detail) = DELIVERIES.show(client, id, json).await? else {
        return Ok(());
    };
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

/// Re-drives every failed delivery matching the filters with one request.
async fn retry_all(client: ApiClient, args: BulkRetry, json: bool) -> anyhow::Result<()> {
    let filters = [
        ("client_id", &args.client),
        ("failed_since", &args.since),
        ("failed_before", &args.before),
        ("initiator", &args.initiator),
    ];
    let key = args.idempotency_key.as_deref();
    let missing =
        "give a delivery id, or at least one of --client, --since, --before and --initiator";
    DELIVERIES
        .retry_all(client, &filters, key, missing, json)
        .await
}
