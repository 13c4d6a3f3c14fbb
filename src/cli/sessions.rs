//! `logoutd sessions get|list|end`: sessions for operators, over HTTP.

use super::http::{ApiArgs, ApiClient, bulk_outcome, cell, print_json, progress, table};
use anyhow::bail;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::ExitCode;

/// `logoutd sessions ...`.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// API location and output format.
    #[command(flatten)]
    pub api: ApiArgs,
    /// The operation.
    #[command(subcommand)]
    pub command: SessionsCommand,
}

/// The session operations.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Show one session.
    Get {
        /// The session id.
        id: String,
    },
    /// List a user's active sessions, following every page.
    List {
        /// The user.
        #[arg(long)]
        user: String,
    },
    /// End one session, or every active session of a user (one by one, with progress).
    End {
        /// The session id; omit it and give --user to end all of a user's sessions.
        id: Option<String>,
        /// End every active session of this user.
        #[arg(long, conflicts_with = "id")]
        user: Option<String>,
        /// The logout initiator the RPs are told about.
        #[arg(long, default_value = "session-revoked")]
        initiator: String,
    },
}

/// Runs a `sessions` command.
pub async fn run(args: SessionsArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.api.url)?;
    let json = args.api.json;
    match args.command {
        SessionsCommand::Get { id } => get(&client, &id, json).await,
        SessionsCommand::List { user } => list(&client, &user, json).await,
        SessionsCommand::End {
            id: Some(id),
            initiator,
            ..
        } => end_one(&client, &id, &initiator, json).await,
        SessionsCommand::End {
            user: Some(user),
            initiator,
            ..
        } => end_user(&client, &user, &initiator, json).await,
        SessionsCommand::End { .. } => bail!("give a session id or --user U"),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// One table row of a session.
fn row(s: &Value) -> Vec<String> {
    let clients: Vec<&str> = s["clients"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["client_id"].as_str()).collect())
        .unwrap_or_default();
    let mut row: Vec<String> = [
        "id",
        "user_id",
        "created_at",
        "expires_at",
        "idle_expires_at",
    ]
    .iter()
    .map(|f| cell(&s[*f]))
    .collect();
    row.push(if clients.is_empty() {
        "-".to_owned()
    } else {
        clients.join(",")
    });
    row.push(cell(&s["ended_at"]));
    row
}

const HEADERS: [&str; 7] = [
    "ID",
    "USER",
    "CREATED",
    "EXPIRES",
    "IDLE_EXPIRES",
    "CLIENTS",
    "ENDED",
];

async fn get(client: &ApiClient, id: &str, json: bool) -> anyhow::Result<()> {
    let session = client
        .send(Method::GET, client.url(&["sessions", id], &[])?, None)
        .await?;
    if json {
        return print_json(&session);
    }
    logoutd_core::outln!("{}", table(&HEADERS, &[row(&session)]));
    Ok(())
}

async fn list(client: &ApiClient, user: &str, json: bool) -> anyhow::Result<()> {
    let sessions = client
        .walk(&["users", user, "sessions"], Vec::new(), "sessions", None)
        .await?;
    if json {
        return print_json(&Value::Array(sessions));
    }
    let rows: Vec<Vec<String>> = sessions.iter().map(row).collect();
    logoutd_core::outln!("{}", table(&HEADERS, &rows));
    Ok(())
}

/// Ends one session with `POST /api/v2/logout-events`; returns its reply.
async fn end(client: &ApiClient, id: &str, initiator: &str) -> anyhow::Result<Value> {
    let body = json!({ "session_id": id, "initiator": initiator });
    client
        .send(
            Method::POST,
            client.url(&["logout-events"], &[])?,
            Some(body),
        )
        .await
}

async fn end_one(client: &ApiClient, id: &str, initiator: &str, json: bool) -> anyhow::Result<()> {
    let reply = end(client, id, initiator).await?;
    if json {
        return print_json(&reply);
    }
    logoutd_core::outln!(
        "session {id} ended; {} deliveries queued",
        cell(&reply["deliveries"])
    );
    let mut notes = Notes::default();
    notes.add(&reply);
    notes.print(initiator, false);
    Ok(())
}

/// The clients that ends skipped or hold, one entry per (list, client, reason) with the
/// number of sessions, in the order first met.
#[derive(Default)]
struct Notes {
    entries: Vec<Note>,
}

struct Note {
    list: &'static str,
    client_id: String,
    reason: String,
    sessions: u64,
}

impl Notes {
    /// Adds the `skipped` and `held` entries of one end reply.
    fn add(&mut self, reply: &Value) {
        for list in ["skipped", "held"] {
            for entry in reply[list].as_array().into_iter().flatten() {
                let client_id = entry["client_id"].as_str().unwrap_or("?");
                let reason = entry["reason"].as_str().unwrap_or("?");
                let sessions = entry["sessions"].as_u64().unwrap_or(1);
                match self
                    .entries
                    .iter_mut()
                    .find(|n| n.list == list && n.client_id == client_id && n.reason == reason)
                {
                    Some(note) => note.sessions += sessions,
                    None => self.entries.push(Note {
                        list,
                        client_id: client_id.to_owned(),
                        reason: reason.to_owned(),
                        sessions,
                    }),
                }
            }
        }
    }

    /// The entries as JSON, for `--json`.
    fn to_json(&self, list: &str) -> Value {
        self.entries
            .iter()
            .filter(|n| n.list == list)
            .map(
                |n| json!({ "client_id": n.client_id, "reason": n.reason, "sessions": n.sessions }),
            )
            .collect()
    }

    /// One line per entry, saying what the reason means; with `counts`, in how many sessions.
    fn print(&self, initiator: &str, counts: bool) {
        for n in &self.entries {
            let why = match n.reason.as_str() {
                "not_subscribed" => format!("not subscribed to {initiator}"),
                "no_url" => "no back-channel logout URL registered".to_owned(),
                "unknown_client" => "deleted since the session started".to_owned(),
                "paused" => "paused; its delivery waits until it is resumed".to_owned(),
                other => other.to_owned(),
            };
            let times = if counts {
                format!(" in {} session(s)", n.sessions)
            } else {
                String::new()
            };
            logoutd_core::outln!(
                "  {:<7} {} ({}){times}: {why}",
                n.list,
                n.client_id,
                n.reason
            );
        }
    }
}

/// Lists the user's sessions, then ends each, with a progress bar.
async fn end_user(
    client: &ApiClient,
    user: &str,
    initiator: &str,
    json: bool,
) -> anyhow::Result<()> {
    let sessions = client
        .walk(&["users", user, "sessions"], Vec::new(), "sessions", None)
        .await?;
    let bar = progress(sessions.len(), "ending sessions");
    let (mut ended, mut deliveries) = (0usize, 0u64);
    let mut notes = Notes::default();
    let mut failures = Vec::new();
    for id in sessions.iter().filter_map(|s| s["id"].as_str()) {
        match end(client, id, initiator).await {
            Ok(reply) => {
                ended += 1;
                deliveries += reply["deliveries"].as_u64().unwrap_or(0);
                notes.add(&reply);
            }
            Err(err) => failures.push(format!("{id}: {err:#}")),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if json {
        print_json(&json!({
            "sessions_ended": ended,
            "deliveries": deliveries,
            "skipped": notes.to_json("skipped"),
            "held": notes.to_json("held"),
        }))?;
    } else {
        logoutd_core::outln!("ended {ended} sessions of {user}; {deliveries} deliveries queued");
        notes.print(initiator, true);
    }
    bulk_outcome(ended, &failures, "ending sessions")
}
