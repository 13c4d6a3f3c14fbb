//! `logoutd ssf-deliveries list|show|retry`: the SET delivery status API for operators, over
//! HTTP, as `logoutd deliveries` is for logout tokens.

use super::delivery_api::{DeliveryApi, query};
use super::http::{ApiArgs, ApiClient};
use clap::{Args, Subcommand};
use std::process::ExitCode;

/// `logoutd ssf-deliveries ...`.
#[derive(Debug, Args)]
pub struct SsfDeliveriesArgs {
    /// API location and output format.
    #[command(flatten)]
    pub api: ApiArgs,
    /// The operation.
    #[command(subcommand)]
    pub command: SsfDeliveriesCommand,
}

/// The SET delivery operations.
#[derive(Debug, Subcommand)]
pub enum SsfDeliveriesCommand {
    /// List SET deliveries, oldest first, following every page.
    List(SetFilters),
    /// Show one SET delivery: its kind, stream, state and last attempt.
    Show {
        /// The SET row id.
        id: String,
    },
    /// Re-drive one failed SET, or every failed SET matching the filters.
    Retry {
        /// The SET row id; omit it and give filters (at least one) to re-drive in bulk.
        id: Option<String>,
        /// Which failed SETs to re-drive in bulk.
        #[command(flatten)]
        bulk: SetBulkRetry,
    },
}

/// Listing filters of `GET /api/v2/ssf-deliveries`.
#[derive(Debug, Clone, Default, Args)]
pub struct SetFilters {
    /// Only SETs of this stream.
    #[arg(long)]
    pub stream: Option<String>,
    /// Only SETs of this receiver.
    #[arg(long)]
    pub receiver: Option<String>,
    /// Only SETs in this state (pending, in_flight, delivered, failed, cancelled).
    #[arg(long)]
    pub state: Option<String>,
    /// Only SETs of this kind (session_revoked, verification, stream_updated).
    #[arg(long)]
    pub kind: Option<String>,
    /// Stop after this many SETs.
    #[arg(long)]
    pub limit: Option<usize>,
}

impl SetFilters {
    /// The query parameters of the given filters.
    fn query(&self) -> Vec<(&'static str, String)> {
        query(&[
            ("stream_id", &self.stream),
            ("receiver_id", &self.receiver),
            ("state", &self.state),
            ("kind", &self.kind),
        ])
    }
}

/// The filters of `POST /api/v2/ssf-deliveries/retry`, and its idempotency key.
#[derive(Debug, Clone, Default, Args)]
pub struct SetBulkRetry {
    /// Only failed SETs of this stream.
    #[arg(long, conflicts_with = "id")]
    pub stream: Option<String>,
    /// Only failed SETs of this receiver.
    #[arg(long, conflicts_with = "id")]
    pub receiver: Option<String>,
    /// Only failed SETs of this kind (session_revoked, verification, stream_updated).
    #[arg(long, conflicts_with = "id")]
    pub kind: Option<String>,
    /// Only SETs that failed at or after this time (RFC 3339).
    #[arg(long, conflicts_with = "id")]
    pub since: Option<String>,
    /// Only SETs that failed before this time (RFC 3339).
    #[arg(long, conflicts_with = "id")]
    pub before: Option<String>,
    /// Makes a repeat of this request answer the first one's count and re-drive nothing
    /// more (printable ASCII, 1 to 255 characters).
    #[arg(long, conflicts_with = "id")]
    pub idempotency_key: Option<String>,
}

/// The delivery listing of `/api/v2/ssf-deliveries`. A SET row keeps its attempt count and
/// its last attempt's status and error (its `jti` is the same on every attempt), not a history
/// of each.
const SET_DELIVERIES: DeliveryApi = DeliveryApi {
    path: "ssf-deliveries",
    noun: "SET delivery",
    failed: "failed SET deliveries",
    columns: &[
        ("ID", "id"),
        ("KIND", "kind"),
        ("STREAM", "stream_id"),
        ("RECEIVER", "receiver_id"),
        ("STATE", "state"),
        ("ATTEMPTS", "attempts"),
        ("LAST_STATUS", "last_status"),
        ("LAST_ERROR", "last_error"),
        ("TXN", "txn"),
        ("SESSION", "session_id"),
        ("NEXT_ATTEMPT", "next_attempt_at"),
    ],
    fields: &[
        "id",
        "kind",
        "stream_id",
        "receiver_id",
        "jti",
        "txn",
        "session_id",
        "user_id",
        "state",
        "attempts",
        "next_attempt_at",
        "last_status",
        "last_error",
        "created_at",
        "delivered_at",
    ],
};

/// Runs an `ssf-deliveries` command.
pub async fn run(args: SsfDeliveriesArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.api.url)?;
    let json = args.api.json;
    match args.command {
        SsfDeliveriesCommand::List(filters) => {
            let query = filters.query();
            SET_DELIVERIES
                .list(&client, query, filters.limit, json)
                .await
        }
        SsfDeliveriesCommand::Show { id } => {
            SET_DELIVERIES.show(&client, &id, json).await.map(drop)
        }
        SsfDeliveriesCommand::Retry { id: Some(id), .. } => {
            SET_DELIVERIES.retry_one(&client, &id, json).await
        }
        SsfDeliveriesCommand::Retry { id: None, bulk } => retry_all(client, bulk, json).await,
    }?;
    Ok(ExitCode::SUCCESS)
}

/// Re-drives every failed SET matching the filters with one request.
async fn retry_all(client: ApiClient, args: SetBulkRetry, json: bool) -> anyhow::Result<()> {
    let filters = [
        ("stream_id", &args.stream),
        ("receiver_id", &args.receiver),
        ("kind", &args.kind),
        ("failed_since", &args.since),
        ("failed_before", &args.before),
    ];
    let key = args.idempotency_key.as_deref();
    let missing = "give a SET delivery id, or at least one of --stream, --receiver, --kind, \
                   --since and --before";
    SET_DELIVERIES
        .retry_all(client, &filters, key, missing, json)
        .await
}
