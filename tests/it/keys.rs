//! The `logoutd keys` and `logoutd token` commands, run as a user would run them, and the
//! JWKS as a relying party fetches it.

mod import;
mod registration;

use crate::support::*;
use logoutd_core::KeySet;
use logoutd_core::{ClientId, Issuer};
use logoutd_core::{JwksSource, VerifyError, VerifyOptions};
use logoutd_core::{SigningAlg, TokenTyp};
use serde_json::Value;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub(crate) fn logoutd(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(args)
        .env("LOGOUTD_KEYS_DIR", dir)
        .env_remove("LOGOUTD_ISSUER")
        .output()
        .unwrap()
}

pub(crate) fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub(crate) fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

#[test]
fn keys_generate_rotate_and_jwks_publish_public_members_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let rs = stdout(&logoutd(&dir, &["keys", "generate", "--alg", "RS256"]));
    stdout(&logoutd(&dir, &["keys", "generate", "--alg", "ES256"]));
    stdout(&logoutd(&dir, &["keys", "generate", "--alg", "EdDSA"]));
    stdout(&logoutd(
        &dir,
        &["keys", "generate", "--alg", "PS256", "--bits", "3072"],
    ));
    let rotated = stdout(&logoutd(&dir, &["keys", "rotate", "--alg", "RS256"]));
    assert_ne!(rs, rotated);
    assert_eq!(mode(&dir), 0o700);
    for entry in std::fs::read_dir(&dir).unwrap() {
        assert_eq!(mode(&entry.unwrap().path()), 0o600);
    }
    let jwks: Value = serde_json::from_str(&stdout(&logoutd(&dir, &["keys", "jwks"]))).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 5, "four active keys and the retired RS256 key");
    for key in keys {
        for member in PRIVATE_MEMBERS {
            assert!(key.get(member).is_none(), "{member} published");
        }
        assert_eq!(key["use"], "sig");
    }
    let kids: Vec<&str> = keys.iter().filter_map(|k| k["kid"].as_str()).collect();
    assert!(kids.contains(&rs.trim()) && kids.contains(&rotated.trim()));
}

#[test]
fn bad_rsa_size_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = logoutd(
        tmp.path(),
        &["keys", "generate", "--alg", "RS256", "--bits", "1024"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("2048, 3072 or 4096"));
}

#[test]
fn logs_written_to_a_pipe_are_plain_text() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(["keys", "generate", "--alg", "ES256"])
        .env("LOGOUTD_KEYS_DIR", tmp.path())
        .env("LOGOUTD_LOG", "info")
        .env_remove("LOGOUTD_LOG_FORMAT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("generated signing key"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
}

pub(crate) fn verify_with_stdin(
    dir: &Path,
    jwks_file: &Path,
    token: &str,
    extra: &[&str],
) -> Output {
    let jwks = jwks_file.to_str().unwrap();
    let mut args = vec!["token", "verify", "--issuer", ISSUER, "--client-id", CLIENT];
    args.extend_from_slice(&["--jwks-file", jwks]);
    args.extend_from_slice(extra);
    args.push("-");
    let mut child = Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(&args)
        .env("LOGOUTD_KEYS_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_sub_only_token_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    stdout(&logoutd(&dir, &["keys", "generate", "--alg", "ES256"]));
    let mint = [
        "token",
        "mint",
        "--issuer",
        ISSUER,
        "--client-id",
        CLIENT,
        "--sub",
        "auth0|dana",
    ];
    let token = stdout(&logoutd(&dir, &mint));
    let jwks_file = tmp.path().join("jwks.json");
    std::fs::write(&jwks_file, stdout(&logoutd(&dir, &["keys", "jwks"]))).unwrap();
    let verified = verify_with_stdin(&dir, &jwks_file, &token, &[]);
    let claims: Value = serde_json::from_str(&stdout(&verified)).unwrap();
    assert_eq!(claims["sub"], "auth0|dana");
    assert!(claims.get("sid").is_none(), "{claims}");
}

#[test]
fn token_mint_then_verify_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    stdout(&logoutd(&dir, &["keys", "generate", "--alg", "ES256"]));
    let mint = [
        "token",
        "mint",
        "--issuer",
        ISSUER,
        "--client-id",
        CLIENT,
        "--sid",
        "s-1",
        "--meta",
        "tenant=acme",
        "--typ",
        "JWT",
        "--lifetime",
        "60",
    ];
    let token = stdout(&logoutd(&dir, &mint));
    assert_eq!(token.trim().split('.').count(), 3);
    let jwks_file = tmp.path().join("jwks.json");
    std::fs::write(&jwks_file, stdout(&logoutd(&dir, &["keys", "jwks"]))).unwrap();

    let strict = verify_with_stdin(&dir, &jwks_file, &token, &[]);
    assert_eq!(strict.status.code(), Some(1));
    let reasons = String::from_utf8(strict.stderr).unwrap();
    assert!(reasons.contains("typ"), "{reasons}");

    let lenient = verify_with_stdin(&dir, &jwks_file, &token, &["--accept-typ", "JWT"]);
    let claims: Value = serde_json::from_str(&stdout(&lenient)).unwrap();
    assert_eq!(claims["sid"], "s-1");
    assert_eq!(claims["session_metadata"]["tenant"], "acme");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        60
    );

    let wrong_alg = verify_with_stdin(
        &dir,
        &jwks_file,
        &token,
        &["--accept-typ", "JWT", "--alg", "RS256"],
    );
    assert_eq!(wrong_alg.status.code(), Some(1));
}

#[test]
fn token_mint_needs_sub_or_sid_and_valid_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    stdout(&logoutd(
        tmp.path(),
        &["keys", "generate", "--alg", "EdDSA"],
    ));
    let base = ["token", "mint", "--issuer", ISSUER, "--client-id", CLIENT];
    let neither = logoutd(tmp.path(), &base);
    assert!(!neither.status.success());
    assert!(String::from_utf8_lossy(&neither.stderr).contains("--sub, --sid"));
    let mut bad_meta = base.to_vec();
    bad_meta.extend_from_slice(&["--sub", "u", "--meta", "bad.key=secret-value"]);
    let out = logoutd(tmp.path(), &bad_meta);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.key") && !stderr.contains("secret-value"),
        "{stderr}"
    );
    let mut no_key = base.to_vec();
    no_key.extend_from_slice(&["--sub", "u", "--alg", "RS256"]);
    let out = logoutd(tmp.path(), &no_key);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active signing key for RS256"));
}

#[test]
fn token_verify_defaults_to_the_local_keys_dir() {
    let tmp = tempfile::tempdir().unwrap();
    stdout(&logoutd(
        tmp.path(),
        &["keys", "generate", "--alg", "RS256"],
    ));
    let mint = [
        "token",
        "mint",
        "--issuer",
        ISSUER,
        "--client-id",
        CLIENT,
        "--sub",
        "u",
    ];
    let token = stdout(&logoutd(tmp.path(), &mint));
    let verify = [
        "token",
        "verify",
        "--issuer",
        ISSUER,
        "--client-id",
        "other",
        token.trim(),
    ];
    let out = logoutd(tmp.path(), &verify);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "aud does not contain the client_id"
    );
}

// ---- fetching the JWKS as a relying party does ----

async fn serve_jwks(
    body: std::sync::Arc<std::sync::Mutex<Value>>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let body = body.lock().unwrap().clone();
            counter.fetch_add(1, Ordering::SeqCst);
            async move { axum::Json(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/jwks"), hits)
}

#[tokio::test]
async fn jwks_uri_is_refetched_on_unknown_kid_at_most_once_per_interval() {
    use std::sync::atomic::Ordering;
    let now = fixed_now();
    let opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(CLIENT));
    let old = KeySet::from_keys(vec![fixture_key(SigningAlg::ES256)]);
    let new_key = fixture_key(SigningAlg::EdDSA);
    let published = std::sync::Arc::new(std::sync::Mutex::new(
        serde_json::to_value(old.jwks(now)).unwrap(),
    ));
    let (uri, hits) = serve_jwks(published.clone()).await;
    let token = KeySet::from_keys(vec![new_key])
        .sign(
            SigningAlg::EdDSA,
            TokenTyp::LogoutJwt,
            &builder(fixed_now()).build(),
        )
        .unwrap();

    // Within the interval: no refetch, the unknown kid stays unknown.
    let limited = JwksSource::from_uri(&uri).await.unwrap();
    *published.lock().unwrap() = serde_json::to_value(fixture_keys().jwks(now)).unwrap();
    let errors = limited.verify(&token, &opts, now).await.unwrap_err();
    assert!(matches!(errors.as_slice(), [VerifyError::UnknownKid(_)]));
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // With no interval, the unknown kid triggers one refetch, which finds it.
    *published.lock().unwrap() = serde_json::to_value(old.jwks(now)).unwrap();
    let eager = JwksSource::from_uri(&uri)
        .await
        .unwrap()
        .with_refetch_interval(std::time::Duration::ZERO);
    let before = hits.load(Ordering::SeqCst);
    *published.lock().unwrap() = serde_json::to_value(fixture_keys().jwks(now)).unwrap();
    assert!(eager.verify(&token, &opts, now).await.is_ok());
    assert_eq!(hits.load(Ordering::SeqCst), before + 1);
    assert_eq!(eager.fetches(), 2);
}

#[tokio::test]
async fn plain_http_jwks_uri_is_refused_off_loopback() {
    let err = JwksSource::from_uri("http://op.example/jwks")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("https"));
}

#[test]
fn token_verify_tries_every_key_under_a_shared_kid() {
    let tmp = tempfile::tempdir().unwrap();
    let real = fixture_key(SigningAlg::ES256);
    let mut decoy = logoutd_core::SigningKey::generate(SigningAlg::ES256, None)
        .unwrap()
        .jwk()
        .clone();
    decoy.kid = Some(real.kid().to_string());
    let jwks = logoutd_core::Jwks {
        keys: vec![decoy, real.jwk().clone()],
    };
    let jwks_file = tmp.path().join("jwks.json");
    std::fs::write(&jwks_file, serde_json::to_vec(&jwks).unwrap()).unwrap();
    let token = KeySet::from_keys(vec![real])
        .sign(
            SigningAlg::ES256,
            TokenTyp::LogoutJwt,
            &builder(chrono::Utc::now()).build(),
        )
        .unwrap();
    let out = verify_with_stdin(tmp.path(), &jwks_file, &token, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_jwks_reload_also_waits_out_the_refetch_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("jwks.json");
    let now = fixed_now();
    let old = KeySet::from_keys(vec![fixture_key(SigningAlg::ES256)]).jwks(now);
    std::fs::write(&file, serde_json::to_vec(&old).unwrap()).unwrap();
    let interval = std::time::Duration::from_secs(10);
    let source = JwksSource::from_file(&file)
        .unwrap()
        .with_refetch_interval(interval);
    let opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(CLIENT));
    let rotated = KeySet::from_keys(vec![fixture_key(SigningAlg::EdDSA)])
        .sign(
            SigningAlg::EdDSA,
            TokenTyp::LogoutJwt,
            &builder(now).build(),
        )
        .unwrap();

    // The interval has passed, but the reload it allows fails.
    tokio::time::advance(interval + std::time::Duration::from_secs(1)).await;
    std::fs::write(&file, b"not a JWKS").unwrap();
    let errors = source.verify(&rotated, &opts, now).await.unwrap_err();
    assert!(matches!(errors.as_slice(), [VerifyError::UnknownKid(_)]));

    // The failure restarted the interval: the repaired file is not read yet.
    std::fs::write(
        &file,
        serde_json::to_vec(&fixture_keys().jwks(now)).unwrap(),
    )
    .unwrap();
    let errors = source.verify(&rotated, &opts, now).await.unwrap_err();
    assert!(matches!(errors.as_slice(), [VerifyError::UnknownKid(_)]));
    assert_eq!(source.fetches(), 1);

    tokio::time::advance(interval).await;
    assert!(source.verify(&rotated, &opts, now).await.is_ok());
    assert_eq!(source.fetches(), 2);
}
