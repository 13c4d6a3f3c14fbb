//! `logoutd keys`: generate, rotate and publish signing keys (design §3).

use crate::alg::SigningAlg;
use crate::keys::{self, KeySet};
use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// The keys directory flag shared by every `keys` and `token` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct KeysDirArg {
    /// Directory holding the signing keys and their manifest.
    #[arg(long = "keys-dir", env = "LOGOUTD_KEYS_DIR", default_value = "keys")]
    pub keys_dir: PathBuf,
}

/// The `keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key. It becomes active if its alg has no active key; otherwise it is
    /// published now and activated by the next `keys rotate`.
    Generate(GenerateArgs),
    /// Make a new key active; the previous one stays published until its tokens expire.
    Rotate(RotateArgs),
    /// Print the public JWKS as JSON.
    Jwks(KeysDirArg),
}

/// Arguments of `keys generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    dir: KeysDirArg,
    /// The algorithm: RS256, PS256, ES256 or EdDSA.
    #[arg(long)]
    alg: SigningAlg,
    /// RSA modulus size: 2048 (default), 3072 or 4096.
    #[arg(long)]
    bits: Option<usize>,
}

/// Arguments of `keys rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    dir: KeysDirArg,
    /// The algorithm whose key to rotate.
    #[arg(long, default_value = "RS256")]
    alg: SigningAlg,
}

/// Runs a `keys` subcommand.
pub async fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    match command {
        KeysCommand::Generate(args) => {
            let dir = &args.dir.keys_dir;
            let kid = keys::generate(dir, args.alg, args.bits, now)
                .with_context(|| format!("generating a {} key", args.alg))?;
            let set = KeySet::load(dir, now)?;
            let state = if set.active_kid(args.alg) == Some(&kid) {
                "active"
            } else {
                "standby"
            };
            tracing::info!(alg = %args.alg, %kid, state, "generated signing key");
            crate::outln!("{kid}");
        }
        KeysCommand::Rotate(args) => {
            let kid = keys::rotate(&args.dir.keys_dir, args.alg, now)
                .with_context(|| format!("rotating the {} key", args.alg))?;
            tracing::info!(alg = %args.alg, %kid, "rotated signing key");
            crate::outln!("{kid}");
        }
        KeysCommand::Jwks(dir) => {
            let set = KeySet::load(&dir.keys_dir, now)?;
            crate::outln!("{}", serde_json::to_string_pretty(&set.jwks(now))?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
