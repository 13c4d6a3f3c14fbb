//! Moving keys through their lifecycle: generate, rotate and activate.
//!
//! Every operation reads the manifest, changes it in memory, writes any new key file, and
//! then replaces the manifest in one rename, so a running server sees all of a change or none.

use super::store::{self, KeyEntry, KeyState, Manifest};
use super::{KeyError, SigningKey};
use crate::alg::SigningAlg;
use crate::ids::KeyId;
use chrono::{DateTime, Utc};
use std::path::Path;

fn write_new_key(
    dir: &Path,
    alg: SigningAlg,
    rsa_bits: Option<usize>,
    now: DateTime<Utc>,
) -> Result<KeyEntry, KeyError> {
    let key = SigningKey::generate(alg, rsa_bits)?;
    let entry = KeyEntry {
        alg,
        kid: key.kid().clone(),
        thumbprint: None,
        imported: false,
        created_at: now,
        activated_at: None,
        retired_at: None,
    };
    store::write_private(&dir.join(entry.file_name()), key.to_pkcs8_pem()?.as_bytes())?;
    Ok(entry)
}

/// Generates a key for `alg` in `dir` (created 0700 if needed), file mode 0600.
///
/// The key becomes active only when `alg` has no active key. Otherwise it is a *standby*
/// key: published in the JWKS at once but not signing, and the next [`rotate`] for `alg`
/// activates it. This lets operators pre-publish a key before it is used.
pub fn generate(
    dir: &Path,
    alg: SigningAlg,
    rsa_bits: Option<usize>,
    now: DateTime<Utc>,
) -> Result<KeyId, KeyError> {
    store::ensure_dir(dir)?;
    let mut manifest = store::read_manifest(dir)?;
    let mut entry = write_new_key(dir, alg, rsa_bits, now)?;
    if manifest.active(alg).is_none() {
        entry.activated_at = Some(now);
    }
    let kid = entry.kid.clone();
    manifest.keys.push(entry);
    store::write_manifest(dir, &manifest)?;
    Ok(kid)
}

/// The newest standby key of `alg`, or `None` when a new key must be generated. Refuses
/// when that new key would replace an imported one: tokens signed with a key logoutd made up
/// would not verify against the IdP's JWKS, which is the one relying parties fetch.
fn next_key(manifest: &Manifest, alg: SigningAlg) -> Result<Option<usize>, KeyError> {
    let standby = manifest
        .keys
        .iter()
        .rposition(|e| e.alg == alg && e.is_standby());
    match (standby, manifest.active(alg)) {
        (None, Some(active)) if active.imported => Err(KeyError::ImportedActive {
            alg,
            kid: active.kid.clone(),
        }),
        (standby, _) => Ok(standby),
    }
}

/// Makes the key at `next` (or a newly generated one) the active key of `alg` in `manifest`,
/// retiring the current one. Writes the new key's file, not the manifest.
fn promote(
    dir: &Path,
    manifest: &mut Manifest,
    alg: SigningAlg,
    next: Option<usize>,
    now: DateTime<Utc>,
) -> Result<KeyId, KeyError> {
    let next = match next {
        Some(index) => index,
        None => {
            manifest.keys.push(write_new_key(dir, alg, None, now)?);
            manifest.keys.len() - 1
        }
    };
    for entry in manifest.keys.iter_mut() {
        if entry.alg == alg && entry.is_active() {
            entry.retired_at = Some(now);
        }
    }
    let Some(entry) = manifest.keys.get_mut(next) else {
        return Err(KeyError::Invalid(
            "rotation lost track of the new key".into(),
        ));
    };
    entry.activated_at = Some(now);
    Ok(entry.kid.clone())
}

/// Makes a new key active for `alg` and retires the previous one, which stays published
/// for [`super::RETIRED_GRACE_SECS`]. The newest standby key is promoted if there is one;
/// otherwise a new key is generated (RSA: 2048 bits; pre-generate larger keys with
/// [`generate`]), unless the active key was imported ([`KeyError::ImportedActive`]).
pub fn rotate(dir: &Path, alg: SigningAlg, now: DateTime<Utc>) -> Result<KeyId, KeyError> {
    let mut manifest = store::read_manifest(dir)?;
    let next = next_key(&manifest, alg)?;
    store::ensure_dir(dir)?;
    let kid = promote(dir, &mut manifest, alg, next, now)?;
    store::write_manifest(dir, &manifest)?;
    Ok(kid)
}

/// Rotates every alg that has an active key, in [`SigningAlg::ALL`] order, with one manifest
/// write. Every alg is checked before anything is written, so a refusal changes nothing.
pub fn rotate_all(dir: &Path, now: DateTime<Utc>) -> Result<Vec<(SigningAlg, KeyId)>, KeyError> {
    let mut manifest = store::read_manifest(dir)?;
    let algs: Vec<SigningAlg> = SigningAlg::ALL
        .into_iter()
        .filter(|alg| manifest.active(*alg).is_some())
        .collect();
    if algs.is_empty() {
        return Err(KeyError::NoActiveKey(dir.to_owned()));
    }
    let plan = algs
        .into_iter()
        .map(|alg| Ok((alg, next_key(&manifest, alg)?)))
        .collect::<Result<Vec<_>, KeyError>>()?;
    let mut rotated = Vec::with_capacity(plan.len());
    for (alg, next) in plan {
        rotated.push((alg, promote(dir, &mut manifest, alg, next, now)?));
    }
    store::write_manifest(dir, &manifest)?;
    Ok(rotated)
}

/// What [`activate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activated {
    /// The alg the key signs with.
    pub alg: SigningAlg,
    /// The key that was active before, now retired.
    pub retired: Option<KeyId>,
}

/// Makes the standby key `kid` the active key of its alg, retiring the current one, which
/// stays published for [`super::RETIRED_GRACE_SECS`]. This is [`rotate`] with the key
/// chosen: for switching to an IdP's next key on the day the IdP does.
///
/// Active and retired keys are refused: a retired key may already have left relying
/// parties' caches, and its grace period must not be cut short or restarted.
pub fn activate(dir: &Path, kid: &KeyId, now: DateTime<Utc>) -> Result<Activated, KeyError> {
    let mut manifest = store::read_manifest(dir)?;
    let Some(index) = manifest.keys.iter().position(|e| &e.kid == kid) else {
        return Err(KeyError::UnknownKid(kid.clone()));
    };
    let Some(entry) = manifest.keys.get(index) else {
        return Err(KeyError::UnknownKid(kid.clone()));
    };
    let state = entry.state();
    if state != KeyState::Standby {
        return Err(KeyError::NotStandby {
            kid: kid.clone(),
            state: state.as_str(),
        });
    }
    let alg = entry.alg;
    let retired = manifest.active(alg).map(|e| e.kid.clone());
    promote(dir, &mut manifest, alg, Some(index), now)?;
    store::write_manifest(dir, &manifest)?;
    Ok(Activated { alg, retired })
}

/// Makes sure `dir` has an active RS256 key, the one SETs are signed with (SSF 1.0 §4.1.1;
/// CAEP interoperability profile §2.6: RS256 with at least 2048 bits, whatever algorithms the
/// clients use). When none is active, generates one (2048 bits, file mode 0600, the directory
/// created 0700 if needed), which becomes active at once; returns its kid. An existing
/// active RS256 key is kept: every RSA key logoutd loads has 2048 bits at least.
///
/// `serve` calls this at start-up when SSF is on, before it loads its keys.
pub fn ensure_set_signing_key(dir: &Path, now: DateTime<Utc>) -> Result<Option<KeyId>, KeyError> {
    store::ensure_dir(dir)?;
    if store::read_manifest(dir)?
        .active(SigningAlg::RS256)
        .is_some()
    {
        return Ok(None);
    }
    generate(dir, SigningAlg::RS256, None, now).map(Some)
}
