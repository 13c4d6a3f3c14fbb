//! JSON Web Encryption (RFC 7516) in compact serialization, over aws-lc-rs: what encrypts the
//! logout tokens of clients that registered ID-token encryption (OpenID Connect Core §10.2,
//! a nested JWT: the signed token is the plaintext) and what `mock-rp` and `token verify`
//! decrypt them with.
//!
//! Supported: key management `RSA-OAEP-256` and `ECDH-ES` (direct key agreement on P-256,
//! P-384, P-521 or X25519, RFC 7518 §4.6 and RFC 8037 §3.2), content encryption `A256GCM`
//! and `A128CBC-HS256` (RFC 7518 §5.3 and §5.2.3). No compression (`zip`), no `crit`.

mod compact;
mod content;
mod ecdh;
mod fetch;
mod jwk;

pub use compact::{Decrypted, decrypt, encrypt};
pub use fetch::{
    ClientKeys, DEFAULT_JWKS_TTL, JWKS_MAX_BYTES, MAX_JWKS_TTL, MIN_JWKS_TTL, REFETCH_INTERVAL,
};
pub(crate) use jwk::check_inline_jwks;
pub use jwk::{DecryptionKey, RecipientKey, choose_key};

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// A key-management algorithm (`alg` of a JWE, `id_token_encrypted_response_alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum KeyAlg {
    /// RSAES-OAEP with SHA-256 and MGF1 with SHA-256 (RFC 7518 §4.3); RSA keys of 2048
    /// bits or more.
    #[serde(rename = "RSA-OAEP-256")]
    RsaOaep256,
    /// Elliptic-curve Diffie-Hellman Ephemeral Static, direct key agreement (RFC 7518 §4.6).
    #[serde(rename = "ECDH-ES")]
    EcdhEs,
}

impl KeyAlg {
    /// Every supported value.
    pub const ALL: [KeyAlg; 2] = [KeyAlg::RsaOaep256, KeyAlg::EcdhEs];

    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RsaOaep256 => "RSA-OAEP-256",
            Self::EcdhEs => "ECDH-ES",
        }
    }

    /// The value with this registered name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// A content-encryption algorithm (`enc` of a JWE, `id_token_encrypted_response_enc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
pub enum ContentEnc {
    /// AES-128-CBC with HMAC-SHA-256 (RFC 7518 §5.2.3): the default of OpenID Connect Dynamic
    /// Client Registration when only the alg is registered.
    #[default]
    #[serde(rename = "A128CBC-HS256")]
    A128CbcHs256,
    /// AES-256-GCM (RFC 7518 §5.3).
    #[serde(rename = "A256GCM")]
    A256Gcm,
}

impl ContentEnc {
    /// Every supported value.
    pub const ALL: [ContentEnc; 2] = [ContentEnc::A128CbcHs256, ContentEnc::A256Gcm];

    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A128CbcHs256 => "A128CBC-HS256",
            Self::A256Gcm => "A256GCM",
        }
    }

    /// The value with this registered name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// The content-encryption key's length in bytes.
    pub fn key_len(self) -> usize {
        32
    }

    /// The initialization vector's length in bytes.
    pub fn iv_len(self) -> usize {
        match self {
            Self::A128CbcHs256 => 16,
            Self::A256Gcm => 12,
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ContentEnc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a JWE could not be made or opened. The texts never hold key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    /// The input is not a compact JWE, or a part of it is malformed.
    #[error("malformed JWE: {0}")]
    Malformed(String),
    /// The header names an algorithm or feature that is not accepted.
    #[error("unsupported JWE: {0}")]
    Unsupported(String),
    /// The key does not fit the algorithm or the header (wrong type or curve).
    #[error("the key does not fit the JWE: {0}")]
    KeyMismatch(String),
    /// A key could not be read.
    #[error("unusable key: {0}")]
    BadKey(String),
    /// Authentication failed: the token was altered, or it was encrypted to another key.
    #[error("JWE decryption failed (altered, or encrypted to another key)")]
    Decrypt,
    /// The crypto library failed.
    #[error("JWE encryption failed in the crypto library")]
    Crypto,
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str, what: &str) -> Result<Vec<u8>, JweError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JweError::Malformed(format!("{what} is not base64url")))
}

fn random<const N: usize>() -> Result<[u8; N], JweError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| JweError::Crypto)?;
    Ok(out)
}

#[cfg(test)]
mod tests;
