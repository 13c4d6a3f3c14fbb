//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod app;
pub mod delivery;
pub mod mock_rp_process;
pub mod process;
pub mod recording_rp;
pub mod serve_process;
pub mod ssf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use logoutd_core::SigningAlg;
use logoutd_core::{ClientId, Issuer, SessionId, UserId};
use logoutd_core::{KeySet, SigningKey};
use logoutd_core::{LogoutTokenBuilder, Subject};
use std::path::PathBuf;

/// The issuer every test token uses.
pub const ISSUER: &str = "https://op.example";
/// The audience every test token uses.
pub const CLIENT: &str = "rp-1";

/// A path under the repository's `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// The fixture key file for `alg`.
pub fn fixture_key_file(alg: SigningAlg) -> PathBuf {
    fixture(match alg {
        SigningAlg::RS256 => "keys/rs256.pem",
        SigningAlg::PS256 => "keys/ps256.pem",
        SigningAlg::ES256 => "keys/es256.pem",
        SigningAlg::EdDSA => "keys/ed25519.pem",
    })
}

/// The fixture key for `alg`, parsed.
pub fn fixture_key(alg: SigningAlg) -> SigningKey {
    let pem = std::fs::read_to_string(fixture_key_file(alg)).unwrap();
    SigningKey::from_pkcs8_pem(alg, &pem).unwrap()
}

/// A key set with the four fixture keys active.
pub fn fixture_keys() -> KeySet {
    KeySet::from_keys(SigningAlg::ALL.into_iter().map(fixture_key).collect())
}

/// A fixed instant: 2023-11-14T22:13:20Z.
pub fn fixed_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

/// A builder for a sub + sid token to [`CLIENT`] from [`ISSUER`] at `now`.
pub fn builder(now: DateTime<Utc>) -> LogoutTokenBuilder {
    LogoutTokenBuilder::new(
        &Issuer::new(ISSUER),
        &ClientId::new(CLIENT),
        Subject::Both(UserId::new("user-1"), SessionId::new("sess-1")),
        now,
    )
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS of the exact `header` and `claims` texts, signed by `key`.
pub fn sign_raw(key: &SigningKey, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let sig = key.with_signature(input.as_bytes(), b64).unwrap();
    format!("{input}.{sig}")
}

/// The standard header for `key`, with `typ`.
pub fn header_for(key: &SigningKey, typ: &str) -> String {
    format!(
        r#"{{"alg":"{}","typ":"{typ}","kid":"{}"}}"#,
        key.alg(),
        key.kid()
    )
}
