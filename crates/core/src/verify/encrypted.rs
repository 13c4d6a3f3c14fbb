//! Encrypted logout tokens at the receiver: a JWE whose plaintext is the signed token (a
//! nested JWT, OpenID Connect Core 1.0 §10.2), opened before the usual checks.

use super::VerifyError;
use crate::ids::Issuer;
use crate::jwe::{DecryptionKey, decrypt};
use serde_json::Value;
use std::borrow::Cow;

/// The signed token inside `token`. With a key, only a JWE is accepted: it is decrypted, its
/// header must say `cty: "JWT"`, and an `iss` replicated in it (RFC 7519 §5.3) must be the
/// expected issuer. Without a key, a JWE is refused with a message saying what is missing,
/// and a JWS passes through as it is.
pub fn decrypt_token<'a>(
    token: &'a str,
    key: Option<&DecryptionKey>,
    issuer: &Issuer,
) -> Result<Cow<'a, str>, VerifyError> {
    let token = token.trim();
    let encrypted = token.split('.').count() == 5;
    let Some(key) = key else {
        if encrypted {
            return Err(VerifyError::Encryption(
                "the token is encrypted (a JWE); give the RP's private key with \
                 --decryption-key"
                    .into(),
            ));
        }
        return Ok(Cow::Borrowed(token));
    };
    if !encrypted {
        return Err(VerifyError::Encryption(
            "the token is not encrypted, and with --decryption-key only encrypted (JWE) \
             tokens are accepted"
                .into(),
        ));
    }
    let opened = decrypt(token, key).map_err(|e| VerifyError::Encryption(e.to_string()))?;
    let cty = opened
        .header
        .get("cty")
        .and_then(Value::as_str)
        .unwrap_or("");
    let cty = cty.strip_prefix("application/").unwrap_or(cty);
    if !cty.eq_ignore_ascii_case("JWT") {
        return Err(VerifyError::Encryption(
            "the JWE header must have cty JWT (a nested signed token)".into(),
        ));
    }
    if let Some(iss) = opened.header.get("iss")
        && iss.as_str() != Some(issuer.as_str())
    {
        return Err(VerifyError::Encryption(
            "the JWE header iss is not the expected issuer".into(),
        ));
    }
    String::from_utf8(opened.plaintext.to_vec())
        .map(Cow::Owned)
        .map_err(|_| VerifyError::Encryption("the JWE plaintext is not text".into()))
}
