//! The keys directory on disk: one PKCS#8 PEM file per key (mode 0600) and `manifest.json`.
//!
//! The manifest records each key's alg, kid and lifecycle times. It is replaced atomically
//! (written to a temporary file, then renamed), so a running server never reads half of it.
//! A key file is named after the key's RFC 7638 thumbprint, never after a kid an IdP chose,
//! so no kid can reach outside the directory.

use super::KeyError;
use crate::alg::SigningAlg;
use crate::ids::KeyId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// The manifest's file name inside the keys directory.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

/// One key's record in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The algorithm the key signs with.
    pub alg: SigningAlg,
    /// The kid the key is published and signs under: its RFC 7638 thumbprint, or for an
    /// imported key the kid it was given.
    pub kid: KeyId,
    /// The RFC 7638 thumbprint when it differs from `kid` or the key was imported; it names
    /// the key file and is checked against the file's key on loading. Absent for generated
    /// keys, whose kid is the thumbprint, so their entries read as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<KeyId>,
    /// True for a key brought in with `logoutd keys import` rather than generated here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub imported: bool,
    /// When the key was generated.
    pub created_at: DateTime<Utc>,
    /// When it started signing; `None` while it is only published (pre-rotation).
    #[serde(default)]
    pub activated_at: Option<DateTime<Utc>>,
    /// When it stopped signing; it stays published for a while after (see `super::RETIRED_GRACE_SECS`).
    #[serde(default)]
    pub retired_at: Option<DateTime<Utc>>,
}

impl KeyEntry {
    /// True while this key signs new tokens.
    pub fn is_active(&self) -> bool {
        self.activated_at.is_some() && self.retired_at.is_none()
    }

    /// True when published but not yet signing.
    pub fn is_standby(&self) -> bool {
        self.activated_at.is_none() && self.retired_at.is_none()
    }

    /// Where the key stands in its lifecycle.
    pub fn state(&self) -> KeyState {
        match (self.activated_at, self.retired_at) {
            (_, Some(_)) => KeyState::Retired,
            (Some(_), None) => KeyState::Active,
            (None, None) => KeyState::Standby,
        }
    }

    /// The RFC 7638 thumbprint of the key the file must hold.
    pub fn thumbprint(&self) -> &KeyId {
        self.thumbprint.as_ref().unwrap_or(&self.kid)
    }

    /// The key file's name: `<thumbprint>.pem`.
    pub fn file_name(&self) -> String {
        format!("{}.pem", self.thumbprint())
    }
}

/// A key's place in its lifecycle (see the module docs of `crate::keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not signing yet.
    Standby,
    /// Signing new tokens.
    Active,
    /// No longer signing; published for a grace period, then dropped.
    Retired,
}

impl KeyState {
    /// The lowercase name, as `keys list` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standby => "standby",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }
}

/// The manifest: every key the directory holds, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The keys.
    pub keys: Vec<KeyEntry>,
}

impl Manifest {
    /// The active entry for `alg`, newest first if several claim it.
    pub fn active(&self, alg: SigningAlg) -> Option<&KeyEntry> {
        self.keys
            .iter()
            .filter(|e| e.alg == alg && e.is_active())
            .max_by_key(|e| e.activated_at)
    }
}

/// Reads the manifest's raw bytes; `None` when the directory has no manifest yet.
pub(crate) fn read_manifest_bytes(dir: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    let path = dir.join(MANIFEST_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(KeyError::io(&path, err)),
    }
}

/// Parses manifest bytes.
pub(crate) fn parse_manifest(dir: &Path, bytes: &[u8]) -> Result<Manifest, KeyError> {
    serde_json::from_slice(bytes).map_err(|err| KeyError::Manifest {
        path: dir.join(MANIFEST_FILE),
        reason: err.to_string(),
    })
}

/// Reads and parses the manifest; an absent manifest is an empty one.
pub fn read_manifest(dir: &Path) -> Result<Manifest, KeyError> {
    match read_manifest_bytes(dir)? {
        Some(bytes) => parse_manifest(dir, &bytes),
        None => Ok(Manifest::default()),
    }
}

/// Checks that the keys directory is 0700 (or tighter) and that its manifest and key files
/// are 0600 (or tighter): private keys that other users can read are no longer private. A
/// directory that does not exist yet passes; it is created 0700.
pub fn check_permissions(dir: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode_of = |path: &Path| -> Result<Option<u32>, KeyError> {
        match fs::metadata(path) {
            Ok(meta) => Ok(Some(meta.permissions().mode() & 0o777)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(KeyError::io(path, err)),
        }
    };
    let loose = |path: &Path, mode: u32, wanted: u32| KeyError::LoosePermissions {
        path: path.to_owned(),
        mode,
        wanted,
    };
    let Some(mode) = mode_of(dir)? else {
        return Ok(());
    };
    if mode & 0o077 != 0 {
        return Err(loose(dir, mode, 0o700));
    }
    let manifest = read_manifest(dir)?;
    let files = std::iter::once(dir.join(MANIFEST_FILE)).chain(
        manifest
            .keys
            .iter()
            .map(|entry| dir.join(entry.file_name())),
    );
    for file in files {
        if let Some(mode) = mode_of(&file)?
            && mode & 0o077 != 0
        {
            return Err(loose(&file, mode, 0o600));
        }
    }
    Ok(())
}

/// Creates the keys directory (mode 0700) if it does not exist.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| KeyError::io(dir, err))
}

/// Writes `bytes` to a new file created with mode 0600; fails if the file exists.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| KeyError::io(path, err))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|err| KeyError::io(path, err))
}

/// Replaces the manifest atomically.
pub(crate) fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), KeyError> {
    let mut text = serde_json::to_vec_pretty(manifest).map_err(|err| KeyError::Manifest {
        path: dir.join(MANIFEST_FILE),
        reason: err.to_string(),
    })?;
    text.push(b'\n');
    let tmp: PathBuf = dir.join(format!(
        ".{MANIFEST_FILE}.{}.tmp",
        crate::ids::random_token()
    ));
    write_private(&tmp, &text)?;
    let target = dir.join(MANIFEST_FILE);
    fs::rename(&tmp, &target).map_err(|err| KeyError::io(&target, err))
}

/// Reads one key file.
pub(crate) fn read_key_file(
    dir: &Path,
    entry: &KeyEntry,
) -> Result<zeroize::Zeroizing<String>, KeyError> {
    let path = dir.join(entry.file_name());
    fs::read_to_string(&path)
        .map(zeroize::Zeroizing::new)
        .map_err(|err| KeyError::io(&path, err))
}
