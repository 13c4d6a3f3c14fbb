//! Header rules: `alg`, `typ`, `crit`, key selection by `kid`, and the signature
//! (spec §2.6 steps 1-2; RFC 7515 §4.1; RFC 8725 §3.1 and §3.11).

use super::{VerifyError, VerifyOptions};
use crate::alg::SigningAlg;
use crate::keys::{Jwk, Jwks};
use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Applies every header rule and, when a key was found, checks the signature.
pub(super) fn check(
    header: &Map<String, Value>,
    jwks: &Jwks,
    opts: &VerifyOptions,
    signing_input: &[u8],
    signature: &[u8],
) -> Vec<VerifyError> {
    let mut errors = Vec::new();
    let alg = check_alg(header, opts);
    if let Err(err) = check_typ(header, opts) {
        errors.push(err);
    }
    if header.contains_key("crit") {
        errors.push(VerifyError::Crit);
    }
    match alg {
        Err(err) => errors.push(err),
        Ok(alg) => match candidate_keys(header, jwks, alg) {
            Err(err) => errors.push(err),
            Ok(keys) => {
                let verified = keys
                    .iter()
                    .any(|jwk| verify_signature(alg, jwk, signing_input, signature).is_ok());
                if !verified {
                    errors.push(VerifyError::BadSignature);
                }
            }
        },
    }
    errors
}

/// Checks only that `alg` signed the token with a key of `jwks` (no `typ` rule): for tokens
/// with rules of their own, such as SETs. `crit` is refused as in [`check`].
pub(super) fn check_signature(
    header: &Map<String, Value>,
    jwks: &Jwks,
    alg: SigningAlg,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    match header.get("alg").and_then(Value::as_str) {
        None => return Err(VerifyError::MissingAlg),
        Some(name) if name != alg.as_str() => {
            return Err(VerifyError::UnsupportedAlg(shorten(name)));
        }
        Some(_) => {}
    }
    if header.contains_key("crit") {
        return Err(VerifyError::Crit);
    }
    let keys = candidate_keys(header, jwks, alg)?;
    if keys
        .iter()
        .any(|jwk| verify_signature(alg, jwk, signing_input, signature).is_ok())
    {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

fn check_alg(header: &Map<String, Value>, opts: &VerifyOptions) -> Result<SigningAlg, VerifyError> {
    let Some(name) = header.get("alg").and_then(Value::as_str) else {
        return Err(VerifyError::MissingAlg);
    };
    if name.eq_ignore_ascii_case("none") {
        return Err(VerifyError::AlgNone);
    }
    if name.starts_with("HS") {
        return Err(VerifyError::SymmetricAlg(shorten(name)));
    }
    let alg: SigningAlg = name
        .parse()
        .map_err(|_| VerifyError::UnsupportedAlg(shorten(name)))?;
    match &opts.allowed_algs {
        Some(allowed) if !allowed.contains(&alg) => Err(VerifyError::AlgNotAllowed(alg)),
        _ => Ok(alg),
    }
}

fn shorten(text: &str) -> String {
    format!("{:?}", text.chars().take(20).collect::<String>())
}

/// Compares media types as RFC 7515 §4.1.9 says: case-insensitively, and with the
/// `application/` prefix optional.
pub(super) fn typ_matches(found: &str, expected: &str) -> bool {
    let bare = |s: &str| {
        let lower = s.to_ascii_lowercase();
        match lower.strip_prefix("application/") {
            Some(rest) => rest.to_owned(),
            None => lower,
        }
    };
    bare(found) == bare(expected)
}

fn check_typ(header: &Map<String, Value>, opts: &VerifyOptions) -> Result<(), VerifyError> {
    let policy = opts.accept_typ;
    let ok = match header.get("typ") {
        None => policy.allow_untyped,
        Some(Value::String(typ)) => {
            typ_matches(typ, "logout+jwt") || (policy.accept_jwt && typ_matches(typ, "JWT"))
        }
        Some(_) => false,
    };
    if ok {
        return Ok(());
    }
    let mut expected = String::from("logout+jwt");
    if policy.accept_jwt {
        expected.push_str(" or JWT");
    }
    if policy.allow_untyped {
        expected.push_str(" or none");
    }
    let found = match header.get("typ") {
        None => "missing".to_owned(),
        Some(Value::String(typ)) => shorten(typ),
        Some(_) => "non-string".to_owned(),
    };
    Err(VerifyError::Typ { found, expected })
}

/// Every key that may have signed a token with this header and `alg`.
///
/// A JWKS may list several keys under one `kid` (RFC 7517 §4.5 only says a `kid` should
/// single out one key): during a rotation, or with one key per alg under a shared name. Each
/// key whose `kid` matches and that fits `alg` is a candidate, and the signature is tried
/// with each in turn, so a wrong key listed first cannot make a valid token fail. Without a
/// `kid`, the JWKS must hold exactly one key.
fn candidate_keys<'a>(
    header: &Map<String, Value>,
    jwks: &'a Jwks,
    alg: SigningAlg,
) -> Result<Vec<&'a Jwk>, VerifyError> {
    let named: Vec<&Jwk> = match header.get("kid") {
        Some(Value::String(kid)) => jwks
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
            .collect(),
        Some(_) => return Err(VerifyError::Malformed("header kid must be a string".into())),
        None => match jwks.keys.as_slice() {
            [only] => vec![only],
            _ => return Err(VerifyError::MissingKid),
        },
    };
    let Some(first) = named.first() else {
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Err(VerifyError::UnknownKid(shorten(kid)));
    };
    let fitting: Vec<&Jwk> = named
        .iter()
        .copied()
        .filter(|jwk| key_fits(jwk, alg).is_ok())
        .collect();
    match key_fits(first, alg) {
        Err(reason) if fitting.is_empty() => Err(VerifyError::KeyMismatch {
            kid: first.kid.clone().unwrap_or_default(),
            alg,
            reason,
        }),
        _ => Ok(fitting),
    }
}

/// Whether `jwk` can verify `alg`: its `alg` and `use` (when given), `kty` and `crv`.
fn key_fits(jwk: &Jwk, alg: SigningAlg) -> Result<(), &'static str> {
    if jwk.alg.as_deref().is_some_and(|a| a != alg.as_str()) {
        return Err("the JWK names another alg");
    }
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("the JWK is not for signatures");
    }
    let (kty, crv) = match alg {
        SigningAlg::RS256 | SigningAlg::PS256 => ("RSA", None),
        SigningAlg::ES256 => ("EC", Some("P-256")),
        SigningAlg::EdDSA => ("OKP", Some("Ed25519")),
    };
    if jwk.kty != kty {
        return Err("wrong kty");
    }
    if crv.is_some() && jwk.crv.as_deref() != crv {
        return Err("wrong crv");
    }
    Ok(())
}

struct Invalid;

fn member(value: &Option<String>) -> Result<Vec<u8>, Invalid> {
    let text = value.as_deref().ok_or(Invalid)?;
    URL_SAFE_NO_PAD.decode(text).map_err(|_| Invalid)
}

fn verify_signature(alg: SigningAlg, jwk: &Jwk, message: &[u8], sig: &[u8]) -> Result<(), Invalid> {
    let result = match alg {
        SigningAlg::RS256 | SigningAlg::PS256 => {
            let params = match alg {
                SigningAlg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                _ => &signature::RSA_PKCS1_2048_8192_SHA256,
            };
            let key = RsaPublicKeyComponents {
                n: member(&jwk.n)?,
                e: member(&jwk.e)?,
            };
            key.verify(params, message, sig)
        }
        SigningAlg::ES256 => {
            let (x, y) = (member(&jwk.x)?, member(&jwk.y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err(Invalid);
            }
            let point = [&[4u8][..], &x, &y].concat();
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(message, sig)
        }
        SigningAlg::EdDSA => {
            UnparsedPublicKey::new(&signature::ED25519, member(&jwk.x)?).verify(message, sig)
        }
    };
    result.map_err(|_| Invalid)
}
