//! Signing keys: loading, generation, rotation, the JWKS, and compact-JWS signing.
//!
//! Design §3 ("The logout token") and §6: every key that signs is in the JWKS before its
//! first use and stays there for at least the longest token lifetime after it stops
//! signing. The lifecycle of a key, as recorded in the manifest ([`store`]):
//!
//! 1. *standby*: generated or imported while its alg already had an active key; published,
//!    not signing;
//! 2. *active*: the one key that signs for its alg;
//! 3. *retired*: replaced by [`rotate`] or [`activate`]; published until `retired_at` +
//!    [`RETIRED_GRACE_SECS`], then dropped from the JWKS.
//!
//! Keys are generated here ([`generate`]) or imported from an IdP ([`import()`]), so that
//! logoutd signs with a key the IdP already publishes.

pub mod import;
mod jwk;
mod lifecycle;
mod ring;
mod signer;
pub(crate) mod store;

pub(crate) use import::ImportError;
pub use import::{ImportRequest, import};
pub(crate) use jwk::Jwk;
pub use jwk::Jwks;
pub use lifecycle::{activate, ensure_set_signing_key, generate, rotate, rotate_all};
pub use ring::KeyRing;
pub(crate) use signer::RSA_BITS;
pub use signer::{SignError, SigningKey};

use crate::alg::{SigningAlg, TokenTyp};
use crate::ids::KeyId;
use crate::token::{LogoutClaims, MAX_LIFETIME_SECS};
use chrono::{DateTime, Duration, Utc};
use std::path::{Path, PathBuf};
use store::{KeyEntry, Manifest};

/// Extra time a retired key stays published beyond the longest token lifetime, in seconds,
/// to cover clock skew and delivery latency.
pub(crate) const RETIRED_MARGIN_SECS: i64 = 300;
/// How long a retired key stays in the JWKS after it stops signing, in seconds.
pub const RETIRED_GRACE_SECS: i64 = MAX_LIFETIME_SECS + RETIRED_MARGIN_SECS;

/// A failure to read, write or parse keys. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("{path}: invalid key manifest: {reason}")]
    Manifest {
        /// The manifest's path.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A key could not be parsed or generated.
    #[error("{0}")]
    Invalid(String),
    /// An RSA size other than 2048, 3072 or 4096 bits was asked for.
    #[error("RSA keys must be 2048, 3072 or 4096 bits, not {0}")]
    RsaBits(usize),
    /// A key file does not hold the key the manifest names.
    #[error("the key file of kid {kid} holds the key with thumbprint {actual}, not {expected}")]
    ThumbprintMismatch {
        /// The kid in the manifest.
        kid: KeyId,
        /// The thumbprint the manifest records.
        expected: KeyId,
        /// The thumbprint of the key in the file.
        actual: KeyId,
    },
    /// A key to import was refused; nothing was written.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// `keys rotate` without an alg found no active key to rotate.
    #[error(
        "no active signing key in {0}: create one with `logoutd keys generate --alg RS256` \
         or `logoutd keys import`"
    )]
    NoActiveKey(PathBuf),
    /// No key in the manifest has this kid.
    #[error("no key with kid {0} in the keys directory (see `logoutd keys list`)")]
    UnknownKid(KeyId),
    /// Only a standby key can be activated.
    #[error(
        "key {kid} is {state}; only a standby key can be activated (import or generate \
         a new key instead)"
    )]
    NotStandby {
        /// The key asked for.
        kid: KeyId,
        /// Its state: `active` or `retired`.
        state: &'static str,
    },
    /// Rotating would replace an imported key with one the IdP does not publish.
    #[error(
        "the active {alg} key {kid} was imported and no standby {alg} key is waiting; a \
         generated key would sign tokens your IdP's JWKS cannot verify. Import the IdP's next \
         key with `logoutd keys import --alg {alg} FILE` (or, to leave the IdP's key behind, \
         add one with `logoutd keys generate --alg {alg}`) and rotate again"
    )]
    ImportedActive {
        /// The alg to rotate.
        alg: SigningAlg,
        /// The active imported key.
        kid: KeyId,
    },
    /// The keys directory or a file in it can be read by other users.
    #[error(
        "{path} is open to other users (mode {mode:o}); run `chmod {wanted:o} {path}`, or \
         start serve with --allow-loose-key-permissions to use it anyway"
    )]
    LoosePermissions {
        /// The directory or file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode to set.
        wanted: u32,
    },
}

impl KeyError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// One loaded key and when it stopped signing.
#[derive(Debug)]
struct Published {
    key: SigningKey,
    retired_at: Option<DateTime<Utc>>,
}

/// Every published key, with at most one active key per alg. `Send + Sync`; share it in an
/// `Arc` (see [`KeyRing`]).
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Published>,
    /// Index into `keys` of the active key, per alg in [`SigningAlg::ALL`] order.
    active: [Option<usize>; 4],
}

fn alg_index(alg: SigningAlg) -> usize {
    match alg {
        SigningAlg::RS256 => 0,
        SigningAlg::PS256 => 1,
        SigningAlg::ES256 => 2,
        SigningAlg::EdDSA => 3,
    }
}

fn still_published(retired_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    retired_at.is_none_or(|at| now < at + Duration::seconds(RETIRED_GRACE_SECS))
}

impl KeySet {
    /// Loads every published key in `dir`, parsing each private key once.
    pub fn load(dir: &Path, now: DateTime<Utc>) -> Result<KeySet, KeyError> {
        Self::from_manifest(dir, &store::read_manifest(dir)?, now)
    }

    /// Loads `dir`, first creating it (mode 0700) and an RS256 key if it holds no key.
    /// The flag is true when a key was created.
    pub fn load_or_create_default(
        dir: &Path,
        now: DateTime<Utc>,
    ) -> Result<(KeySet, bool), KeyError> {
        store::ensure_dir(dir)?;
        let created = store::read_manifest(dir)?.keys.is_empty();
        if created {
            generate(dir, SigningAlg::RS256, None, now)?;
        }
        Ok((Self::load(dir, now)?, created))
    }

    pub(crate) fn from_manifest(
        dir: &Path,
        manifest: &Manifest,
        now: DateTime<Utc>,
    ) -> Result<KeySet, KeyError> {
        let mut set = KeySet::default();
        for entry in &manifest.keys {
            if !still_published(entry.retired_at, now) {
                continue;
            }
            let key = load_entry(dir, entry)?;
            if entry.is_active() && manifest.active(entry.alg) == Some(entry) {
                set.active[alg_index(entry.alg)] = Some(set.keys.len());
            }
            set.keys.push(Published {
                key,
                retired_at: entry.retired_at,
            });
        }
        Ok(set)
    }

    /// An in-memory set where the first key of each alg is active (benchmarks, tests).
    pub fn from_keys(keys: Vec<SigningKey>) -> KeySet {
        let mut set = KeySet::default();
        for key in keys {
            let slot = &mut set.active[alg_index(key.alg())];
            if slot.is_none() {
                *slot = Some(set.keys.len());
            }
            set.keys.push(Published {
                key,
                retired_at: None,
            });
        }
        set
    }

    /// Signs `claims` as a compact JWS with header `{"alg","typ","kid"}` using the active key
    /// for `alg` (spec §2.4, RFC 7515 §7.1). Never produces `alg: none`.
    pub fn sign(
        &self,
        alg: SigningAlg,
        typ: TokenTyp,
        claims: &LogoutClaims,
    ) -> Result<String, SignError> {
        self.active_key(alg)
            .ok_or(SignError::NoKey(alg))?
            .sign_compact(typ, claims)
    }

    /// The active key for `alg`.
    pub fn active_key(&self, alg: SigningAlg) -> Option<&SigningKey> {
        let index = self.active[alg_index(alg)]?;
        self.keys.get(index).map(|p| &p.key)
    }

    /// The algs that have an active key, in [`SigningAlg::ALL`] order.
    pub fn active_algs(&self) -> Vec<SigningAlg> {
        SigningAlg::ALL
            .into_iter()
            .filter(|alg| self.active_key(*alg).is_some())
            .collect()
    }

    /// The kid of the active key for `alg`.
    pub fn active_kid(&self, alg: SigningAlg) -> Option<&KeyId> {
        self.active_key(alg).map(SigningKey::kid)
    }

    /// The alg to sign with when none is asked for: RS256 if active, else the first active.
    pub fn default_alg(&self) -> Option<SigningAlg> {
        self.active_algs().first().copied()
    }

    /// The public JWKS at `now`: active and standby keys, and retired keys within their grace.
    pub fn jwks(&self, now: DateTime<Utc>) -> Jwks {
        let keys = self
            .keys
            .iter()
            .filter(|p| still_published(p.retired_at, now))
            .map(|p| p.key.jwk().clone())
            .collect();
        Jwks { keys }
    }
}

/// Loads one key, checking that its file holds the key the manifest names: the thumbprint
/// of the key in the file must equal the one recorded (for a generated key, its kid).
fn load_entry(dir: &Path, entry: &KeyEntry) -> Result<SigningKey, KeyError> {
    let pem = store::read_key_file(dir, entry)?;
    let key = SigningKey::from_pkcs8_pem(entry.alg, &pem)?;
    if key.kid() != entry.thumbprint() {
        return Err(KeyError::ThumbprintMismatch {
            kid: entry.kid.clone(),
            expected: entry.thumbprint().clone(),
            actual: key.kid().clone(),
        });
    }
    Ok(if key.kid() == &entry.kid {
        key
    } else {
        key.with_kid(entry.kid.clone())
    })
}

#[cfg(test)]
mod tests;
