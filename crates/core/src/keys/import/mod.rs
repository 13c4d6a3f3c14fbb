//! `logoutd keys import`: bringing an IdP's own private signing key into the keys directory,
//! so the IdP's JWKS, which relying parties already trust, verifies logoutd's tokens too.
//!
//! The input is PEM (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY`) or
//! a private JWK (RFC 7517, RFC 7518 §6), told apart by content. Every check runs before the
//! directory is touched, so a refused key leaves it as it was. The key is stored as PKCS#8,
//! like a generated key, and keeps its kid: `--kid`, else the JWK's `kid`, else the RFC 7638
//! thumbprint.

mod der;
mod jwk;
mod pem;

use super::store::{self, KeyEntry};
use super::{KeyError, SigningKey};
use crate::alg::SigningAlg;
use crate::ids::KeyId;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Longest kid accepted, in characters.
pub const MAX_KID_CHARS: usize = 255;

/// Why a key was not imported. Messages name the problem and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is neither a PEM private key nor a JSON Web Key.
    #[error("not a key logoutd can read: {0}")]
    Unrecognised(String),
    /// The key is protected by a passphrase.
    #[error(
        "the key is encrypted ({0}); decrypt it first, e.g. `openssl pkey -in FILE -out \
         plain.pem`, import plain.pem and delete it"
    )]
    Encrypted(&'static str),
    /// Only a public key or certificate was given.
    #[error("{0} holds only a public key; logoutd needs the private key to sign")]
    PublicOnly(&'static str),
    /// More than one private key in one file.
    #[error("the file holds {0} private keys; import them one at a time")]
    SeveralKeys(usize),
    /// An RSA key outside 2048-8192 bits.
    #[error("the RSA key has {0} bits; logoutd signs with RSA keys of 2048 to 8192 bits")]
    RsaSize(usize),
    /// An elliptic curve logoutd does not sign with.
    #[error("curve {0} is not supported; logoutd signs with P-256 (ES256) and Ed25519 (EdDSA)")]
    Curve(String),
    /// A key type that cannot sign with RS256, PS256, ES256 or EdDSA.
    #[error("{0} keys are not supported; logoutd signs with RSA, P-256 and Ed25519 keys")]
    KeyType(String),
    /// An RSA key restricted to RSASSA-PSS by its algorithm identifier (RFC 4055).
    #[error(
        "the key is an RSASSA-PSS-restricted RSA key (OID 1.2.840.113549.1.1.10), which \
         logoutd cannot read; to sign PS256, import a plain RSA key with --alg PS256"
    )]
    RsaPss,
    /// An RSA JWK without the CRT members aws-lc-rs needs.
    #[error(
        "the RSA JWK lacks the CRT members {0}, which logoutd needs: export the key with \
         p, q, dp, dq and qi, or as PEM"
    )]
    RsaCrt(String),
    /// A JWK member is missing or not base64url of the right size.
    #[error("the JWK member {0} is missing or malformed")]
    Member(&'static str),
    /// A JWK meant for encryption.
    #[error("the JWK's use is {0:?}; only a signing key (use \"sig\") can be imported")]
    Use(String),
    /// An RSA key needs `--alg`, since it can sign with either RSA alg.
    #[error("an RSA key can sign RS256 or PS256 tokens: choose one with --alg")]
    AlgNeeded,
    /// The alg asked for does not fit the key.
    #[error("{alg} does not fit {key} key (it signs {fits})")]
    AlgMismatch {
        /// The alg asked for.
        alg: SigningAlg,
        /// The key type, with its article: "an RSA", "a P-256", "an Ed25519".
        key: &'static str,
        /// The algs that would fit.
        fits: String,
    },
    /// `--alg` and the JWK's `alg` disagree.
    #[error("--alg {flag} contradicts the JWK's alg {jwk}")]
    AlgConflict {
        /// The flag.
        flag: SigningAlg,
        /// The JWK's member.
        jwk: SigningAlg,
    },
    /// The JWK's `alg` is not one logoutd signs with.
    #[error("the JWK's alg {0:?} is not one logoutd signs with (RS256, PS256, ES256, EdDSA)")]
    JwkAlg(String),
    /// A kid that cannot appear in a JOSE header as given.
    #[error(
        "kid {0:?} is not usable: a kid must be 1 to {MAX_KID_CHARS} characters without \
         spaces or control characters"
    )]
    Kid(String),
    /// The kid is already in the directory.
    #[error("kid {kid} already exists in {dir}; choose another with --kid")]
    KidTaken {
        /// The kid.
        kid: KeyId,
        /// The keys directory.
        dir: PathBuf,
    },
    /// The same key is already in the directory, under this kid.
    #[error("this key is already in {dir} as kid {kid}")]
    KeyPresent {
        /// The kid it has there.
        kid: KeyId,
        /// The keys directory.
        dir: PathBuf,
    },
    /// aws-lc-rs refused the key, e.g. inconsistent JWK members.
    #[error("the {0} key was rejected: {1}")]
    Rejected(&'static str, String),
}

/// The kinds of private key logoutd can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA, 2048 to 8192 bits.
    Rsa,
    /// ECDSA on P-256.
    P256,
    /// Ed25519.
    Ed25519,
}

impl KeyKind {
    /// The algs a key of this kind signs with.
    fn algs(self) -> &'static [SigningAlg] {
        match self {
            Self::Rsa => &[SigningAlg::RS256, SigningAlg::PS256],
            Self::P256 => &[SigningAlg::ES256],
            Self::Ed25519 => &[SigningAlg::EdDSA],
        }
    }

    /// The kind with its article, for messages.
    fn described(self) -> &'static str {
        match self {
            Self::Rsa => "an RSA",
            Self::P256 => "a P-256",
            Self::Ed25519 => "an Ed25519",
        }
    }
}

/// A private key read from the input, before it is checked against the directory.
pub(crate) struct Parsed {
    kind: KeyKind,
    /// The key as PKCS#8 DER.
    pkcs8: Zeroizing<Vec<u8>>,
    /// A JWK's `kid` member.
    kid: Option<String>,
    /// A JWK's `alg` member.
    alg: Option<String>,
}

/// Checks an RSA modulus size before aws-lc-rs sees the key, whose refusal would not say why.
fn check_rsa_bits(bits: usize) -> Result<(), ImportError> {
    if super::RSA_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(ImportError::RsaSize(bits))
    }
}

/// Reads a key from the text of a key file, telling the format from its content.
fn parse(text: &str) -> Result<Parsed, ImportError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        jwk::parse(trimmed)
    } else if trimmed.contains("-----BEGIN ") {
        pem::parse(text)
    } else {
        Err(ImportError::Unrecognised(
            "expected a PEM private key or a private JWK (JSON); convert a DER file with \
             `openssl pkey -inform DER -in FILE -out key.pem`"
                .into(),
        ))
    }
}

/// The alg to sign with: `--alg`, else the JWK's `alg`, else the only one the key allows.
fn choose_alg(
    kind: KeyKind,
    flag: Option<SigningAlg>,
    jwk_alg: Option<&str>,
) -> Result<SigningAlg, ImportError> {
    let from_jwk = jwk_alg
        .map(|s| s.parse().map_err(|_| ImportError::JwkAlg(s.to_owned())))
        .transpose()?;
    if let (Some(flag), Some(jwk)) = (flag, from_jwk)
        && flag != jwk
    {
        return Err(ImportError::AlgConflict { flag, jwk });
    }
    let fits = kind.algs();
    match (flag.or(from_jwk), fits) {
        (Some(alg), _) if fits.contains(&alg) => Ok(alg),
        (Some(alg), _) => Err(ImportError::AlgMismatch {
            alg,
            key: kind.described(),
            fits: fits
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
        }),
        (None, [only]) => Ok(*only),
        (None, _) => Err(ImportError::AlgNeeded),
    }
}

/// Checks a kid given by the operator or the JWK. It goes into JOSE headers and the JWKS as a
/// JSON string, and into `keys list` and shell commands logoutd prints, so no whitespace.
fn check_kid(kid: String) -> Result<KeyId, ImportError> {
    let len = kid.chars().count();
    if len == 0 || len > MAX_KID_CHARS || kid.chars().any(|c| c.is_control() || c.is_whitespace()) {
        let shown: String = kid.chars().take(64).collect();
        return Err(ImportError::Kid(shown));
    }
    Ok(KeyId::new(kid))
}

/// What to import.
#[derive(Debug, Clone, Copy)]
pub struct ImportRequest<'a> {
    /// The key file's text.
    pub text: &'a str,
    /// `--alg`.
    pub alg: Option<SigningAlg>,
    /// `--kid`.
    pub kid: Option<&'a str>,
}

/// What [`import`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The kid the key signs and is published under.
    pub kid: KeyId,
    /// The alg it signs with.
    pub alg: SigningAlg,
    /// True when it became the active key of its alg; false for a standby key.
    pub active: bool,
}

/// Imports a private key into `dir` (created 0700 if needed) as a PKCS#8 file of mode 0600,
/// recorded in the manifest with `imported: true`.
///
/// Like a generated key it becomes active only when its alg has no active key; otherwise it
/// is a standby key, published at once, which [`super::activate`] or [`super::rotate`] makes
/// active.
pub fn import(
    dir: &Path,
    request: ImportRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Imported, KeyError> {
    // 1. Read and check the key.
    let parsed = parse(request.text)?;
    let alg = choose_alg(parsed.kind, request.alg, parsed.alg.as_deref())?;
    let key = SigningKey::from_pkcs8_der(alg, &parsed.pkcs8)?;
    let thumbprint = key.thumbprint();
    let kid = match request.kid.map(str::to_owned).or(parsed.kid) {
        Some(kid) => check_kid(kid)?,
        None => thumbprint.clone(),
    };
    // 2. Check it against the directory.
    let mut manifest = store::read_manifest(dir)?;
    if manifest.keys.iter().any(|e| e.kid == kid) {
        let dir = dir.to_owned();
        return Err(ImportError::KidTaken { kid, dir }.into());
    }
    if let Some(present) = manifest.keys.iter().find(|e| e.thumbprint() == &thumbprint) {
        let (kid, dir) = (present.kid.clone(), dir.to_owned());
        return Err(ImportError::KeyPresent { kid, dir }.into());
    }
    // 3. Only now write: the key file, then the manifest that names it.
    store::ensure_dir(dir)?;
    let active = manifest.active(alg).is_none();
    let entry = KeyEntry {
        alg,
        kid: kid.clone(),
        thumbprint: Some(thumbprint),
        imported: true,
        created_at: now,
        activated_at: active.then_some(now),
        retired_at: None,
    };
    store::write_private(&dir.join(entry.file_name()), key.to_pkcs8_pem()?.as_bytes())?;
    manifest.keys.push(entry);
    store::write_manifest(dir, &manifest)?;
    Ok(Imported { kid, alg, active })
}

#[cfg(test)]
mod tests;
