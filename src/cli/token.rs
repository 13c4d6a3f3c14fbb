//! `logoutd token`: mint a logout token for inspection, or verify one as an RP would.

use super::keys::KeysDirArg;
use anyhow::{Context as _, bail};
use logoutd_core::KeySet;
use logoutd_core::SessionMetadata;
use logoutd_core::{ClientId, Issuer, SessionId, UserId};
use logoutd_core::{DecryptionKey, JwksSource, TypPolicy, VerifyOptions, decrypt_token};
use logoutd_core::{LogoutTokenBuilder, Subject};
use logoutd_core::{SigningAlg, TokenTyp};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// The `token` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Print a signed logout token (compact JWT) on stdout.
    Mint(MintArgs),
    /// Validate a token as Back-Channel Logout 1.0 §2.6 tells an RP to.
    Verify(VerifyArgs),
}

/// Arguments of `token mint`.
#[derive(Debug, clap::Args)]
pub struct MintArgs {
    #[command(flatten)]
    dir: KeysDirArg,
    /// The `iss` claim.
    #[arg(long, env = "LOGOUTD_ISSUER")]
    issuer: String,
    /// The `aud` claim.
    #[arg(long)]
    client_id: String,
    /// The `sub` claim (user id).
    #[arg(long)]
    sub: Option<String>,
    /// The `sid` claim (session id).
    #[arg(long)]
    sid: Option<String>,
    /// A session metadata pair, `key=value`; repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// The signing alg; defaults to RS256 if active, else the one active alg.
    #[arg(long)]
    alg: Option<SigningAlg>,
    /// The `typ` header: logout+jwt (default) or JWT.
    #[arg(long, default_value = "logout+jwt")]
    typ: TokenTyp,
    /// Lifetime in seconds, 1 to 120.
    #[arg(long, default_value_t = logoutd_core::DEFAULT_TOKEN_LIFETIME_SECS)]
    lifetime: i64,
}

/// Arguments of `token verify`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("jwks").args(["jwks_uri", "jwks_file"])))]
pub struct VerifyArgs {
    #[command(flatten)]
    dir: KeysDirArg,
    /// The expected `iss`.
    #[arg(long)]
    issuer: String,
    /// Where to fetch the JWKS (https, or http on loopback).
    #[arg(long)]
    jwks_uri: Option<String>,
    /// A JWKS file. Without --jwks-uri or --jwks-file, the JWKS of --keys-dir is used.
    #[arg(long)]
    jwks_file: Option<PathBuf>,
    /// The expected `aud`.
    #[arg(long)]
    client_id: String,
    #[command(flatten)]
    checks: CheckFlags,
    /// The token, or `-` to read it from stdin.
    token: String,
}

/// How strictly a token is checked; shared by `token verify` and `mock-rp`.
#[derive(Debug, clap::Args)]
pub struct CheckFlags {
    /// An accepted alg; repeatable. Default: all supported algs.
    #[arg(long = "alg")]
    algs: Vec<SigningAlg>,
    /// Also accept this typ; only `JWT` is meaningful.
    #[arg(long, value_parser = ["JWT"])]
    accept_typ: Option<String>,
    /// Also accept a token without typ.
    #[arg(long)]
    allow_untyped: bool,
    /// Clock skew allowed for iat, exp and nbf, in seconds.
    #[arg(long, default_value_t = logoutd_core::DEFAULT_LEEWAY_SECS)]
    leeway: i64,
    /// Refuse tokens whose exp - iat exceeds this many seconds (e.g. 120). Off by default:
    /// spec §2.6 sets no upper bound an RP must enforce.
    #[arg(long)]
    max_lifetime: Option<i64>,
    /// The RP's private key (a JWK, a JWK Set or a PKCS#8 PEM file) for encrypted tokens:
    /// with it only encrypted tokens (JWE) are accepted, decrypted, then checked as usual.
    #[arg(long, value_name = "FILE")]
    decryption_key: Option<PathBuf>,
}

impl CheckFlags {
    /// The key of `--decryption-key`, read and parsed; its contents never reach an error.
    pub fn decryption_key(&self) -> anyhow::Result<Option<DecryptionKey>> {
        let Some(path) = &self.decryption_key else {
            return Ok(None);
        };
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the decryption key {}", path.display()))?,
        );
        let key = DecryptionKey::parse(&text)
            .map_err(|err| anyhow::anyhow!("the decryption key {}: {err}", path.display()))?;
        Ok(Some(key))
    }

    /// The verifier options for `issuer` and `client_id` under these flags.
    pub fn options(&self, issuer: &str, client_id: &str) -> VerifyOptions {
        VerifyOptions {
            issuer: Issuer::new(issuer),
            client_id: ClientId::new(client_id),
            allowed_algs: (!self.algs.is_empty()).then(|| self.algs.clone()),
            accept_typ: TypPolicy {
                accept_jwt: self.accept_typ.is_some(),
                allow_untyped: self.allow_untyped,
            },
            leeway_secs: self.leeway,
            max_lifetime_secs: self.max_lifetime,
        }
    }
}

/// Runs a `token` subcommand.
pub async fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Mint(args) => mint(args),
        TokenCommand::Verify(args) => verify(args).await,
    }
}

fn parse_meta(pairs: &[String]) -> anyhow::Result<SessionMetadata> {
    let mut map = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--meta takes key=value");
        };
        map.insert(key.to_owned(), value.to_owned());
    }
    Ok(SessionMetadata::try_from_map(map)?)
}

fn mint(args: MintArgs) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let Some(subject) =
        Subject::from_parts(args.sub.map(UserId::new), args.sid.map(SessionId::new))
    else {
        bail!("a logout token needs --sub, --sid or both");
    };
    let metadata = parse_meta(&args.meta)?;
    let keys = KeySet::load(&args.dir.keys_dir, now)?;
    let Some(alg) = args.alg.or_else(|| keys.default_alg()) else {
        bail!(
            "no active signing key in {}; run `logoutd keys generate --alg RS256`",
            args.dir.keys_dir.display()
        );
    };
    let claims = LogoutTokenBuilder::new(
        &Issuer::new(args.issuer),
        &ClientId::new(args.client_id),
        subject,
        now,
    )
    .lifetime(chrono::Duration::seconds(args.lifetime))?
    .session_metadata(&metadata)
    .build();
    logoutd_core::outln!("{}", keys.sign(alg, args.typ, &claims)?);
    Ok(ExitCode::SUCCESS)
}

async fn jwks_source(args: &VerifyArgs) -> anyhow::Result<JwksSource> {
    if let Some(uri) = &args.jwks_uri {
        return Ok(JwksSource::from_uri(uri).await?);
    }
    if let Some(path) = &args.jwks_file {
        return Ok(JwksSource::from_file(path)?);
    }
    let now = chrono::Utc::now();
    Ok(JwksSource::fixed(
        KeySet::load(&args.dir.keys_dir, now)?.jwks(now),
    ))
}

fn read_token(arg: &str) -> anyhow::Result<String> {
    if arg != "-" {
        return Ok(arg.to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the token from stdin")?;
    Ok(text.trim().to_owned())
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let token = read_token(&args.token)?;
    let source = jwks_source(&args).await?;
    let opts = args.checks.options(&args.issuer, &args.client_id);
    let key = args.checks.decryption_key()?;
    let token = match decrypt_token(&token, key.as_ref(), &opts.issuer) {
        Ok(token) => token,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::from(1));
        }
    };
    match source.verify(&token, &opts, chrono::Utc::now()).await {
        Ok(verified) => {
            logoutd_core::outln!("{}", serde_json::to_string_pretty(&verified.claims)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
