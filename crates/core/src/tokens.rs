//! Scoped management-API tokens: the file that holds them (hashes only) and the scopes.
//!
//! `logoutd tokens add|list|revoke` edits the file; `serve` reads it at start and again
//! whenever it changes, so a token is added or revoked with no restart. A token is 256 random
//! bits shown once; the file keeps its SHA-256, which is enough for a secret of that
//! strength (no password-hashing work factor is needed to resist guessing it back).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where `serve` and `logoutd tokens` look for the token file unless told otherwise.
pub const DEFAULT_TOKENS_FILE: &str = "data/api-tokens.json";
/// The prefix of every generated token, so that secret scanners can recognise one.
pub(crate) const TOKEN_PREFIX: &str = "ldt_";
/// What a metadata value reads as to a token without the metadata grant.
pub(crate) const REDACTED: &str = "[redacted]";
/// The fewest characters a configured (not generated) API token may have outside `--dev`.
pub(crate) const MIN_TOKEN_CHARS: usize = 32;

/// What a token may do. Each scope includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every `GET` route.
    Read,
    /// `read`, plus re-drive, pause, resume and prune.
    Operate,
    /// Everything.
    Admin,
}

impl Scope {
    /// The scope's name as written in the file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Self::Read),
            "operate" => Ok(Self::Operate),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "unknown scope {other:?}: use read, operate or admin"
            )),
        }
    }
}

/// One token as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// A public handle, for `list` and `revoke`.
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// Whether it may read session metadata values (`tokens add --metadata`). Without it a
    /// `read` or `operate` token sees metadata keys with every value replaced by
    /// [`REDACTED`]. Files written before the grant existed read as `false`.
    #[serde(default)]
    pub metadata: bool,
    /// The SHA-256 of the token, base64url without padding.
    pub sha256: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// Every token, in the order added.
    pub tokens: Vec<TokenEntry>,
}

/// A token file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a token file.
    #[error("{path}: not a logoutd token file: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The file can be read by other users.
    #[error("{path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Open {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The SHA-256 of a presented or generated token.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TokenEntry {
    /// Whether a request with this token may read metadata values: with the grant, or with
    /// the `admin` scope, which may change metadata and RPs' metadata opt-ins anyway.
    pub fn may_read_metadata(&self) -> bool {
        self.metadata || self.scope == Scope::Admin
    }

    /// The stored digest, decoded; `None` when the file holds something else there.
    pub fn digest(&self) -> Option<[u8; 32]> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&self.sha256)
            .ok()?;
        bytes.try_into().ok()
    }
}

impl TokenFile {
    /// Reads `path`; an absent file is an empty one. A file other users can read is refused.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        use std::os::unix::fs::PermissionsExt as _;
        let io = |source| TokenFileError::Io {
            path: path.to_owned(),
            source,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io(e)),
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenFileError::Open {
                path: path.to_owned(),
                mode,
            });
        }
        let file: Self = serde_json::from_str(&text).map_err(|e| TokenFileError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if let Some(bad) = file.tokens.iter().find(|t| t.digest().is_none()) {
            return Err(TokenFileError::Parse {
                path: path.to_owned(),
                reason: format!("token {} has no valid sha256", bad.id),
            });
        }
        Ok(file)
    }

    /// Writes the file atomically (a 0600 temporary file renamed over it), creating its
    /// directory 0700.
    pub fn save(&self, path: &Path) -> Result<(), TokenFileError> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let io = |source| TokenFileError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| TokenFileError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Adds a new token and returns it: the only time the token itself exists. `metadata`
    /// grants it the reading of metadata values.
    pub fn add(&mut self, name: &str, scope: Scope, metadata: bool, now: DateTime<Utc>) -> String {
        let mut secret = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut secret).is_err() {
            use rand::RngCore as _;
            rand::rng().fill_bytes(&mut secret);
        }
        let token = format!("{TOKEN_PREFIX}{}", b64(&secret));
        self.tokens.push(TokenEntry {
            id: format!("tok_{}", crate::ids::random_token()),
            name: name.to_owned(),
            scope,
            metadata,
            sha256: b64(&digest(&token)),
            created_at: now,
        });
        token
    }

    /// Removes the token with `id`; false when there was none.
    pub fn revoke(&mut self, id: &str) -> bool {
        let before = self.tokens.len();
        self.tokens.retain(|t| t.id != id);
        self.tokens.len() != before
    }
}

/// Whether a configured token is strong enough to guard the API outside `--dev`.
pub(crate) fn check_strength(token: &str) -> Result<(), String> {
    let chars = token.chars().count();
    if chars < MIN_TOKEN_CHARS {
        return Err(format!(
            "the API token has {chars} characters; use at least {MIN_TOKEN_CHARS} random ones (for example `openssl rand -base64 32`), or `logoutd tokens add`"
        ));
    }
    let distinct: std::collections::BTreeSet<char> = token.chars().collect();
    if distinct.len() < 8 {
        return Err(format!(
            "the API token uses only {} distinct characters; use a random one",
            distinct.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_tokens_are_stored_as_hashes_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/api-tokens.json");
        let mut file = TokenFile::default();
        let token = file.add("grafana", Scope::Read, false, Utc::now());
        assert!(
            token.starts_with(TOKEN_PREFIX) && token.len() >= 40,
            "{token}"
        );
        file.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token[TOKEN_PREFIX.len()..]));
        let loaded = TokenFile::load(&path).unwrap();
        assert_eq!(loaded, file);
        assert_eq!(loaded.tokens[0].digest(), Some(digest(&token)));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_open_token_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        TokenFile::default().save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            TokenFile::load(&path),
            Err(TokenFileError::Open { .. })
        ));
    }

    #[test]
    fn a_file_written_before_the_metadata_grant_reads_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let mut file = TokenFile::default();
        file.add("old", Scope::Operate, false, Utc::now());
        file.add("old-admin", Scope::Admin, false, Utc::now());
        file.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"metadata\": false"), "{text}");
        std::fs::write(&path, text.replace("\"metadata\": false,", "")).unwrap();
        let loaded = TokenFile::load(&path).unwrap();
        assert_eq!(loaded, file);
        assert!(!loaded.tokens[0].may_read_metadata());
        assert!(loaded.tokens[1].may_read_metadata(), "admin always may");
    }

    #[test]
    fn weak_tokens_are_refused() {
        assert!(check_strength("x").is_err());
        assert!(check_strength(&"ab".repeat(20)).is_err());
        assert!(check_strength("0123456789abcdefghijklmnopqrstuv").is_ok());
    }
}
