//! The ID-token encryption members of a client registration: `id_token_encrypted_response_alg`,
//! `id_token_encrypted_response_enc`, `jwks_uri` and `jwks` (OpenID Connect Dynamic Client
//! Registration 1.0 §2), and the rules a registration must meet to use them.

use super::ApiError;
use crate::clients::TokenEncryption;
use crate::jwe::{ContentEnc, KeyAlg, check_inline_jwks};
use crate::net_policy::NetPolicy;
use axum::http::StatusCode;

/// The encryption members of a create or PATCH body, as given: absent is `None`, `null` is
/// `Some(None)`.
#[derive(Debug, Default)]
pub(super) struct EncryptionBody {
    pub alg: Option<Option<KeyAlg>>,
    pub enc: Option<Option<ContentEnc>>,
    pub jwks_uri: Option<Option<String>>,
    pub jwks: Option<Option<serde_json::Value>>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid_body(message)
}

impl EncryptionBody {
    /// Applies the members given to `target`, then checks the result as a whole.
    pub(super) fn apply(
        self,
        target: &mut TokenEncryption,
        net: NetPolicy,
    ) -> Result<(), ApiError> {
        if let Some(alg) = self.alg {
            if alg.is_none() && self.enc.is_none() {
                target.id_token_encrypted_response_enc = None;
            }
            target.id_token_encrypted_response_alg = alg;
        }
        if let Some(enc) = self.enc {
            target.id_token_encrypted_response_enc = enc;
        }
        if let Some(uri) = self.jwks_uri {
            target.jwks_uri = match uri {
                Some(raw) => Some(net.validate_url(&raw).map_err(|err| {
                    let text =
                        err.to_string()
                            .replacen("backchannel_logout_urls entries", "jwks_uri", 1);
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_uri", text)
                })?),
                None => None,
            };
        }
        if let Some(jwks) = self.jwks {
            target.jwks = jwks;
        }
        check(target)
    }
}

/// The rules of a registration's encryption members, checked on what a create or PATCH
/// results in.
fn check(target: &mut TokenEncryption) -> Result<(), ApiError> {
    let alg = target.id_token_encrypted_response_alg;
    match (alg, target.id_token_encrypted_response_enc) {
        (None, Some(_)) => {
            return Err(invalid(
                "id_token_encrypted_response_enc needs id_token_encrypted_response_alg",
            ));
        }
        (Some(_), None) => {
            // OpenID Connect Dynamic Client Registration 1.0 §2: the default enc.
            target.id_token_encrypted_response_enc = Some(ContentEnc::default());
        }
        _ => {}
    }
    if target.jwks_uri.is_some() && target.jwks.is_some() {
        return Err(invalid("give jwks_uri or jwks, not both"));
    }
    if let Some(alg) = alg
        && target.jwks_uri.is_none()
        && target.jwks.is_none()
    {
        return Err(invalid(format!(
            "id_token_encrypted_response_alg {alg} needs the client's public keys: give \
             jwks_uri or jwks"
        )));
    }
    if let Some(jwks) = &target.jwks {
        check_inline_jwks(jwks, alg).map_err(|why| invalid(format!("jwks: {why}")))?;
    }
    Ok(())
}
