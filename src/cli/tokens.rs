//! `logoutd tokens`: add, list and revoke the scoped management-API tokens. A running
//! `serve` picks up every change within seconds, with no restart.

use anyhow::Context as _;
use logoutd_core::{DEFAULT_TOKENS_FILE, Scope, TokenFile};
use std::path::PathBuf;
use std::process::ExitCode;

/// The token file flag shared by every `tokens` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct TokensFileArg {
    /// The token file that `serve --api-tokens-file` reads.
    #[arg(long = "file", env = "LOGOUTD_API_TOKENS_FILE", default_value = DEFAULT_TOKENS_FILE)]
    pub file: PathBuf,
}

/// The `tokens` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it once; only its hash is stored.
    Add {
        #[command(flatten)]
        file: TokensFileArg,
        /// What it may do: read (GET routes), operate (read, plus re-drive, pause, resume
        /// and prune) or admin (everything).
        #[arg(long)]
        scope: Scope,
        /// A name to tell it by.
        #[arg(long)]
        name: String,
        /// Let it read session metadata values. Without it a read or operate token sees
        /// metadata keys with every value as "[redacted]"; admin tokens always see values.
        #[arg(long)]
        metadata: bool,
    },
    /// List the tokens: id, name, scope, metadata grant, creation time (never the token).
    List {
        #[command(flatten)]
        file: TokensFileArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a token by its id; requests with it are refused once `serve` reloads.
    Revoke {
        #[command(flatten)]
        file: TokensFileArg,
        /// The token's id (`tok_...`), as `tokens list` shows it.
        id: String,
    },
}

/// Runs a `tokens` subcommand.
pub async fn run(command: TokensCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokensCommand::Add {
            file,
            scope,
            name,
            metadata,
        } => {
            let mut tokens = TokenFile::load(&file.file)?;
            let token = tokens.add(&name, scope, metadata, chrono::Utc::now());
            tokens
                .save(&file.file)
                .with_context(|| format!("saving {}", file.file.display()))?;
            let added = tokens.tokens.last();
            let id = added.map(|t| t.id.as_str()).unwrap_or("");
            let grant = if added.is_some_and(|t| t.may_read_metadata()) {
                "may read metadata values"
            } else {
                "metadata values redacted"
            };
            eprintln!(
                "added {scope} token {id} ({name}, {grant}) to {}; it is shown once:",
                file.file.display()
            );
            logoutd_core::outln!("{token}");
        }
        TokensCommand::List { file, json } => {
            let tokens = TokenFile::load(&file.file)?;
            if json {
                let rows: Vec<serde_json::Value> = tokens
                    .tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({"id": t.id, "name": t.name, "scope": t.scope,
                            "metadata": t.may_read_metadata(), "created_at": t.created_at})
                    })
                    .collect();
                logoutd_core::outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                logoutd_core::outln!(
                    "{:<27}  {:<8}  {:<8}  {:<20}  NAME",
                    "ID",
                    "SCOPE",
                    "METADATA",
                    "CREATED"
                );
                for t in &tokens.tokens {
                    let grant = if t.may_read_metadata() {
                        "values"
                    } else {
                        "keys"
                    };
                    logoutd_core::outln!(
                        "{:<27}  {:<8}  {:<8}  {:<20}  {}",
                        t.id,
                        t.scope,
                        grant,
                        t.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                        t.name.escape_debug()
                    );
                }
            }
        }
        TokensCommand::Revoke { file, id } => {
            let mut tokens = TokenFile::load(&file.file)?;
            if !tokens.revoke(&id) {
                anyhow::bail!("no token with id {id:?} in {}", file.file.display());
            }
            tokens
                .save(&file.file)
                .with_context(|| format!("saving {}", file.file.display()))?;
            eprintln!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
