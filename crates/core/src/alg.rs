//! The JWS algorithms logoutd signs with, and the logout token `typ` values.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A signing algorithm a client may ask for (`id_token_signed_response_alg`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256; the default.
    #[default]
    RS256,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlg {
    /// Every supported algorithm, default first.
    pub const ALL: [SigningAlg; 4] = [Self::RS256, Self::PS256, Self::ES256, Self::EdDSA];

    /// The JWS `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::PS256 => "PS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str() == s)
            .ok_or_else(|| {
                format!("unsupported alg {s:?}: expected one of RS256, PS256, ES256, EdDSA")
            })
    }
}

/// The `typ` header of a logout token.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
pub enum TokenTyp {
    /// `logout+jwt`, the explicit type of RFC 8725 §3.11 and the spec's errata; the default.
    #[default]
    #[serde(rename = "logout+jwt")]
    LogoutJwt,
    /// `JWT`, for Auth0-era receivers that check for it.
    #[serde(rename = "JWT")]
    Jwt,
    /// `secevent+jwt`, the explicit type of a Security Event Token (RFC 8417 §2.3; SSF 1.0
    /// §4.1.1). Never a logout token's: clients cannot choose it, so it is neither parsed
    /// nor shown as a client setting.
    #[serde(skip)]
    SecEventJwt,
}

impl TokenTyp {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LogoutJwt => "logout+jwt",
            Self::Jwt => "JWT",
            Self::SecEventJwt => "secevent+jwt",
        }
    }
}

/// Parses a logout token's `typ`; `secevent+jwt` is refused, as it is no logout token's.
impl FromStr for TokenTyp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "logout+jwt" => Ok(Self::LogoutJwt),
            "JWT" => Ok(Self::Jwt),
            other => Err(format!(
                "unsupported typ {other:?}: expected logout+jwt or JWT"
            )),
        }
    }
}
