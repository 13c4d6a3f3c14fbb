//! `logoutd keys`: generate, import, rotate, activate, list and publish signing keys
//! (design §3).

use super::http::{cell, print_json, table};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use logoutd_core::KeyEntry;
use logoutd_core::KeyId;
use logoutd_core::{ImportRequest, KeySet};
use logoutd_core::{
    RETIRED_KEY_GRACE_SECS, SigningAlg, activate_key, generate_key, import_key, read_key_manifest,
    rotate_key, rotate_keys,
};
use serde_json::{Value, json};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zeroize::Zeroizing;

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
    /// published now and activated by the next `keys rotate` (or `keys activate KID`).
    Generate(GenerateArgs),
    /// Import an existing private key (e.g. your IdP's), keeping its kid. It becomes active
    /// if its alg has no active key; otherwise it is a standby key for `keys activate`.
    Import(ImportArgs),
    /// Make a new key active; the previous one stays published until its tokens expire.
    /// Without --alg, every alg that has an active key is rotated.
    Rotate(RotateArgs),
    /// Make one standby key active, retiring the current key of its alg.
    Activate(ActivateArgs),
    /// List the keys: kid, alg, state, times, and whether each was imported.
    List(ListArgs),
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

/// Arguments of `keys import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    dir: KeysDirArg,
    /// The algorithm. Required for an RSA key (RS256 or PS256) unless a JWK's `alg` gives it;
    /// a P-256 key signs ES256 and an Ed25519 key EdDSA.
    #[arg(long)]
    alg: Option<SigningAlg>,
    /// The kid to publish and sign under. Default: the JWK's `kid`, else the RFC 7638
    /// thumbprint.
    #[arg(long)]
    kid: Option<String>,
    /// The private key: PEM (PKCS#8, PKCS#1 RSA or SEC1 EC, unencrypted) or a private JWK;
    /// `-` reads standard input.
    file: PathBuf,
}

/// Arguments of `keys rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    dir: KeysDirArg,
    /// The algorithm whose key to rotate. Default: every alg that has an active key.
    #[arg(long)]
    alg: Option<SigningAlg>,
}

/// Arguments of `keys activate`.
#[derive(Debug, clap::Args)]
pub struct ActivateArgs {
    #[command(flatten)]
    dir: KeysDirArg,
    /// The kid of a standby key.
    kid: String,
}

/// Arguments of `keys list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    dir: KeysDirArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs a `keys` subcommand.
pub async fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    match command {
        KeysCommand::Generate(args) => {
            let dir = &args.dir.keys_dir;
            let kid = generate_key(dir, args.alg, args.bits, now)
                .with_context(|| format!("generating a {} key", args.alg))?;
            let set = KeySet::load(dir, now)?;
            let state = if set.active_kid(args.alg) == Some(&kid) {
                "active"
            } else {
                "standby"
            };
            tracing::info!(alg = %args.alg, %kid, state, "generated signing key");
            logoutd_core::outln!("{kid}");
        }
        KeysCommand::Import(args) => import(&args, now)?,
        KeysCommand::Rotate(args) => rotate(&args, now)?,
        KeysCommand::Activate(args) => {
            let kid = KeyId::new(args.kid);
            let done = activate_key(&args.dir.keys_dir, &kid, now)
                .with_context(|| format!("activating key {kid}"))?;
            tracing::info!(alg = %done.alg, %kid, "activated signing key");
            let retired = match &done.retired {
                Some(old) => format!(
                    "; {old} is retired and stays published for {} s",
                    RETIRED_KEY_GRACE_SECS
                ),
                None => String::new(),
            };
            logoutd_core::outln!("{kid} now signs {} tokens{retired}", done.alg);
        }
        KeysCommand::List(args) => list(&args.dir.keys_dir, args.json)?,
        KeysCommand::Jwks(dir) => {
            let set = KeySet::load(&dir.keys_dir, now)?;
            logoutd_core::outln!("{}", serde_json::to_string_pretty(&set.jwks(now))?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the key file, or standard input for `-`, into memory that is wiped afterwards.
fn read_key_text(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(Vec::new());
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the key from standard input")?;
    } else {
        *bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => anyhow::bail!(
            "{} is not text: logoutd reads PEM or JWK; convert a DER key with \
             `openssl pkey -inform DER -in FILE -out key.pem`",
            path.display()
        ),
    }
}

fn import(args: &ImportArgs, now: DateTime<Utc>) -> anyhow::Result<()> {
    let dir = &args.dir.keys_dir;
    let text = read_key_text(&args.file)?;
    let request = ImportRequest {
        text: &text,
        alg: args.alg,
        kid: args.kid.as_deref(),
    };
    let imported = import_key(dir, request, now)
        .with_context(|| format!("importing {}", args.file.display()))?;
    let (kid, alg) = (&imported.kid, imported.alg);
    let state = if imported.active { "active" } else { "standby" };
    tracing::info!(%alg, %kid, state, "imported signing key");
    if imported.active {
        logoutd_core::outln!("imported {alg} key {kid}: active, it signs {alg} tokens now");
    } else {
        logoutd_core::outln!(
            "imported {alg} key {kid}: standby, published in the JWKS but not signing; \
             make it sign with `logoutd keys activate --keys-dir {} {kid}`",
            dir.display()
        );
    }
    Ok(())
}

fn rotate(args: &RotateArgs, now: DateTime<Utc>) -> anyhow::Result<()> {
    let dir = &args.dir.keys_dir;
    let rotated = match args.alg {
        Some(alg) => {
            let kid =
                rotate_key(dir, alg, now).with_context(|| format!("rotating the {alg} key"))?;
            vec![(alg, kid)]
        }
        None => rotate_keys(dir, now).context("rotating the signing keys")?,
    };
    for (alg, kid) in rotated {
        tracing::info!(%alg, %kid, "rotated signing key");
        logoutd_core::outln!("{kid}");
    }
    Ok(())
}

fn time(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |t| {
        Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

fn entry_json(entry: &KeyEntry) -> Value {
    json!({
        "kid": entry.kid,
        "alg": entry.alg,
        "state": entry.state(),
        "created_at": time(Some(entry.created_at)),
        "activated_at": time(entry.activated_at),
        "retired_at": time(entry.retired_at),
        "imported": entry.imported,
    })
}

/// Lists the manifest's keys, oldest first. Reads only the manifest, so it also works when a
/// key file is unreadable.
fn list(dir: &Path, json: bool) -> anyhow::Result<()> {
    let manifest = read_key_manifest(dir)?;
    let items: Vec<Value> = manifest.keys.iter().map(entry_json).collect();
    if json {
        return print_json(&Value::Array(items));
    }
    let fields = [
        "kid",
        "alg",
        "state",
        "created_at",
        "activated_at",
        "retired_at",
    ];
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            let mut row: Vec<String> = fields.iter().map(|f| cell(&item[*f])).collect();
            row.push(
                if item["imported"] == true {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
            );
            row
        })
        .collect();
    let headers = [
        "KID",
        "ALG",
        "STATE",
        "CREATED",
        "ACTIVATED",
        "RETIRED",
        "IMPORTED",
    ];
    logoutd_core::outln!("{}", table(&headers, &rows));
    Ok(())
}
