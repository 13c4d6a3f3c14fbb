//! Validation of a logout token as OpenID Connect Back-Channel Logout 1.0 §2.6 tells an RP
//! to do it, with the explicit typing of RFC 8725 §3.11 enforced by default.
//!
//! [`verify`] collects every rule the token breaks (one [`VerifyError`] per reason) rather
//! than stopping at the first, except when the token cannot be parsed at all.

mod claims;
mod encrypted;
mod header;
mod json;
mod source;

pub use encrypted::decrypt_token;
pub use source::{DEFAULT_FETCH_TIMEOUT, DEFAULT_REFETCH_INTERVAL, JwksSource};

use crate::alg::SigningAlg;
use crate::ids::{ClientId, Issuer, Jti, SessionId, UserId};
use crate::keys::Jwks;
use crate::metadata::MetadataError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Default allowed clock skew, in seconds.
pub const DEFAULT_LEEWAY_SECS: i64 = 30;

/// Which `typ` header values are accepted (RFC 8725 §3.11; spec errata §2.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TypPolicy {
    /// Also accept `JWT` (Auth0-era issuers).
    pub accept_jwt: bool,
    /// Also accept a token with no `typ`.
    pub allow_untyped: bool,
}

impl TypPolicy {
    /// Only `logout+jwt` (the default).
    pub const STRICT: Self = Self {
        accept_jwt: false,
        allow_untyped: false,
    };
}

/// What an RP expects of its logout tokens.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The OP's issuer; `iss` must equal it exactly.
    pub issuer: Issuer,
    /// The RP's client_id; `aud` must be it or contain it.
    pub client_id: ClientId,
    /// Accepted algs; `None` accepts all of [`SigningAlg::ALL`].
    pub allowed_algs: Option<Vec<SigningAlg>>,
    /// Accepted `typ` values.
    pub accept_typ: TypPolicy,
    /// Allowed clock skew for `iat` and `exp`, in seconds.
    pub leeway_secs: i64,
    /// If set, `exp - iat` must be positive and at most this many seconds.
    pub max_lifetime_secs: Option<i64>,
}

impl VerifyOptions {
    /// Strict options for `issuer` and `client_id` with the default leeway.
    pub fn new(issuer: Issuer, client_id: ClientId) -> Self {
        Self {
            issuer,
            client_id,
            allowed_algs: None,
            accept_typ: TypPolicy::STRICT,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_lifetime_secs: None,
        }
    }
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims, including unknown ones.
    pub claims: Value,
    /// The `jti`, for a replay cache.
    pub jti: Jti,
    /// The `sid`, if present.
    pub sid: Option<SessionId>,
    /// The `sub`, if present.
    pub sub: Option<UserId>,
}

/// One reason a token was refused. Messages never quote claim values or metadata.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// Not three base64url parts of JSON objects (RFC 7515 §7.1).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// A JSON member name appears twice.
    #[error("{part} has a duplicate member {name}")]
    DuplicateMember {
        /// `header` or `claims`.
        part: &'static str,
        /// The repeated name, quoted.
        name: String,
    },
    /// `alg` is missing or not a string.
    #[error("header alg is missing")]
    MissingAlg,
    /// `alg` is `none` (spec §2.6 step 2).
    #[error("alg none is refused")]
    AlgNone,
    /// `alg` is an HMAC alg; logout tokens must be signed asymmetrically here.
    #[error("symmetric alg {0} is refused")]
    SymmetricAlg(String),
    /// `alg` is not one logoutd supports.
    #[error("unsupported alg {0}")]
    UnsupportedAlg(String),
    /// `alg` is supported but not among the expected ones.
    #[error("alg {0} is not allowed")]
    AlgNotAllowed(SigningAlg),
    /// The `typ` header is wrong or missing (RFC 8725 §3.11).
    #[error("typ {found} is not accepted (expected {expected})")]
    Typ {
        /// The typ found, or `missing`.
        found: String,
        /// The accepted values.
        expected: String,
    },
    /// The header has `crit`, which this verifier does not understand (RFC 7515 §4.1.11).
    #[error("header has crit, which is not supported")]
    Crit,
    /// No `kid`, and the JWKS has more than one key.
    #[error("header has no kid and the JWKS has several keys")]
    MissingKid,
    /// The `kid` is not in the JWKS.
    #[error("unknown kid {0}")]
    UnknownKid(String),
    /// The JWK does not fit the header alg.
    #[error("key {kid} cannot verify {alg}: {reason}")]
    KeyMismatch {
        /// The key's kid.
        kid: String,
        /// The header alg.
        alg: SigningAlg,
        /// What does not fit.
        reason: &'static str,
    },
    /// The signature does not verify.
    #[error("signature is invalid")]
    BadSignature,
    /// `iss` is not the expected issuer.
    #[error("iss is not the expected issuer")]
    WrongIssuer,
    /// `aud` does not name this client.
    #[error("aud does not contain the client_id")]
    WrongAudience,
    /// A required claim is absent.
    #[error("claim {0} is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type.
    #[error("claim {claim} must be {expected}")]
    ClaimType {
        /// The claim.
        claim: &'static str,
        /// The expected type.
        expected: &'static str,
    },
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `iat` is in the future beyond the leeway.
    #[error("iat is in the future")]
    IssuedInFuture,
    /// `nbf` (RFC 7519 §4.1.5), when present, is in the future beyond the leeway.
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// `exp - iat` is not within the accepted lifetime.
    #[error("lifetime exp - iat must be between 1 and {0} seconds")]
    Lifetime(i64),
    /// `events` is not exactly the back-channel logout event with value `{}` (spec §2.4).
    #[error("events {0}")]
    Events(&'static str),
    /// Neither `sub` nor `sid` is present (spec §2.4).
    #[error("neither sub nor sid is present")]
    NoSubject,
    /// `nonce` is present (spec §2.4 forbids it).
    #[error("nonce must not be present")]
    Nonce,
    /// `session_metadata` breaks the metadata rules.
    #[error("{0}")]
    Metadata(MetadataError),
    /// An encrypted token could not be opened, or its encryption is not what the receiver
    /// expects (a JWE without a key, a plain JWS with one).
    #[error("{0}")]
    Encryption(String),
}

/// The three decoded parts of a compact JWS.
struct Parts<'a> {
    signing_input: &'a [u8],
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signature: Vec<u8>,
}

fn decode_part(name: &'static str, b64: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| VerifyError::Malformed(format!("{name} is not unpadded base64url")))
}

fn parse_part(name: &'static str, bytes: &[u8]) -> Result<Map<String, Value>, VerifyError> {
    json::parse_object(bytes).map_err(|problem| match problem {
        json::JsonProblem::Duplicate(member) => VerifyError::DuplicateMember {
            part: name,
            name: member,
        },
        json::JsonProblem::Invalid(why) => VerifyError::Malformed(format!("{name}: {why}")),
    })
}

fn split(token: &str) -> Result<Parts<'_>, VerifyError> {
    let pieces: Vec<&str> = token.split('.').collect();
    let [h, c, s] = pieces.as_slice() else {
        return Err(VerifyError::Malformed(format!(
            "expected 3 dot-separated parts, found {}",
            pieces.len()
        )));
    };
    let signing_input = token
        .get(..h.len() + 1 + c.len())
        .unwrap_or_default()
        .as_bytes();
    Ok(Parts {
        signing_input,
        header: parse_part("header", &decode_part("header", h)?)?,
        claims: parse_part("claims", &decode_part("claims", c)?)?,
        signature: decode_part("signature", s)?,
    })
}

/// A compact JWS whose signature verified, its header and claims not otherwise checked.
#[derive(Debug, Clone)]
pub(crate) struct SignedParts {
    /// The JOSE header.
    pub(crate) header: Map<String, Value>,
    /// The claims.
    pub(crate) claims: Map<String, Value>,
}

/// Splits `token` and checks that `alg`, and only it, signed it with a key of `jwks`. No
/// claim and no `typ` is checked: for tokens with rules of their own (SETs, RFC 8417).
pub(crate) fn verify_signature(
    token: &str,
    jwks: &Jwks,
    alg: SigningAlg,
) -> Result<SignedParts, VerifyError> {
    let parts = split(token.trim())?;
    header::check_signature(
        &parts.header,
        jwks,
        alg,
        parts.signing_input,
        &parts.signature,
    )?;
    Ok(SignedParts {
        header: parts.header,
        claims: parts.claims,
    })
}

/// Validates `token` against `jwks` and `opts` at `now` (spec §2.6 steps 1-7, except the
/// replay check of step 7, which needs the caller's `jti` cache).
pub fn verify(
    token: &str,
    jwks: &Jwks,
    opts: &VerifyOptions,
    now: DateTime<Utc>,
) -> Result<VerifiedToken, Vec<VerifyError>> {
    let parts = split(token.trim()).map_err(|e| vec![e])?;
    let mut errors = header::check(
        &parts.header,
        jwks,
        opts,
        parts.signing_input,
        &parts.signature,
    );
    errors.extend(claims::check(&parts.claims, opts, now));
    if !errors.is_empty() {
        return Err(errors);
    }
    let string = |name: &str| {
        parts
            .claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(VerifiedToken {
        jti: Jti::new(string("jti").unwrap_or_default()),
        sid: string("sid").map(SessionId::new),
        sub: string("sub").map(UserId::new),
        header: parts.header,
        claims: Value::Object(parts.claims),
    })
}

#[cfg(test)]
mod tests;
