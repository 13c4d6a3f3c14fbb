//! The operator webhook's request as Standard Webhooks defines it: the headers `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256(secret,
//! "id.timestamp.body")>`, and the secret (`whsec_` followed by base64) it is signed with.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

/// The prefix of a Standard Webhooks secret.
const PREFIX: &str = "whsec_";

/// Fewest key bytes accepted: 128 bits.
const MIN_KEY_BYTES: usize = 16;

/// Most key bytes accepted (Standard Webhooks keys are 24 to 64 bytes).
const MAX_KEY_BYTES: usize = 64;

/// The key the operator webhook's requests are signed with. `Debug` never shows it; the key
/// bytes are zeroized when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

/// Why a webhook secret was refused. Never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSecretError {
    /// It does not start with `whsec_`.
    #[error("the operator webhook secret must start with whsec_")]
    Prefix,
    /// What follows the prefix is not base64.
    #[error("the operator webhook secret is not whsec_ followed by base64")]
    Base64,
    /// The key is shorter than 16 or longer than 64 bytes.
    #[error("the operator webhook secret's key must be 16 to 64 bytes")]
    Length,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`, surrounding whitespace ignored.
    pub fn parse(text: &str) -> Result<Self, WebhookSecretError> {
        let encoded = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(WebhookSecretError::Prefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| WebhookSecretError::Base64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(WebhookSecretError::Length);
        }
        Ok(Self(key))
    }

    /// A fresh random secret of 32 bytes, in its `whsec_` form.
    pub fn generate() -> String {
        let mut key = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut key).is_err() {
            use rand::RngCore as _;
            rand::rng().fill_bytes(&mut key);
        }
        format!("{PREFIX}{}", STANDARD.encode(key))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl Drop for WebhookSecret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// The `webhook-signature` value of one request: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` under `secret`.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret.0);
    let mut context = hmac::Context::with_key(&key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}
