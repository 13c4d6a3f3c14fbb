//! Who may call the management API: the bearer token, checked in constant time, and the
//! scope a route needs. Every `/api/v2` request passes here before routing can answer 404
//! or 405, so that a caller without credentials learns nothing about the routes. A request
//! that passes carries its [`Principal`] to the handlers, which take it as [`Caller`].

use super::{ApiError, Shared};
use crate::tokens::{Scope, TokenFile, digest};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use subtle::{ConditionallySelectable as _, ConstantTimeEq as _};

/// What the token of a request may do: its scope, and whether it may read session metadata
/// values (the admin token and `admin`-scoped tokens always may; others only with the grant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The token's scope.
    pub scope: Scope,
    /// Whether metadata values are shown to it; without, every value reads as
    /// [`crate::tokens::REDACTED`].
    pub metadata: bool,
}

impl Principal {
    /// The configured admin token (and `--dev`'s): everything, metadata values included.
    const ADMIN: Self = Self {
        scope: Scope::Admin,
        metadata: true,
    };
}

/// The authenticated caller of a management route, as [`require_token`] found it. A handler
/// takes it as an argument; a request that did not pass the guard is refused with 401.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .copied()
            .map(Caller)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The accepted credentials: the single configured token (admin), and the scoped tokens of
/// the token file, reloaded when the file changes.
#[derive(Debug)]
pub struct Credentials {
    admin: Option<[u8; 32]>,
    file: Option<PathBuf>,
    scoped: RwLock<Loaded>,
}

/// One scoped token as the guard keeps it: its digest and what it may do.
type Stored = ([u8; 32], Principal);

#[derive(Debug, Default)]
struct Loaded {
    tokens: Arc<Vec<Stored>>,
    /// The file's modification time and length at the last read; `None` when it was absent.
    stamp: Option<(SystemTime, u64)>,
    /// Whether the file was read at all: an absent file is read once, not at every check.
    read: bool,
}

impl Credentials {
    /// Credentials from the configured admin token (if any) and the token file (if any),
    /// which is read now.
    pub fn new(
        admin: Option<&str>,
        file: Option<PathBuf>,
    ) -> Result<Self, crate::tokens::TokenFileError> {
        let creds = Self {
            admin: admin.map(digest),
            file,
            scoped: RwLock::new(Loaded::default()),
        };
        creds.reload()?;
        Ok(creds)
    }

    /// Whether any credential would be accepted.
    pub fn any(&self) -> bool {
        self.admin.is_some() || !self.snapshot().is_empty()
    }

    fn snapshot(&self) -> Arc<Vec<Stored>> {
        match self.scoped.read() {
            Ok(loaded) => loaded.tokens.clone(),
            Err(poisoned) => poisoned.into_inner().tokens.clone(),
        }
    }

    /// Re-reads the token file if it changed since the last read. On an error the tokens
    /// already loaded stay in force. Returns whether the set changed.
    pub fn reload(&self) -> Result<bool, crate::tokens::TokenFileError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let (current, read) = match self.scoped.read() {
            Ok(loaded) => (loaded.stamp, loaded.read),
            Err(poisoned) => {
                let loaded = poisoned.into_inner();
                (loaded.stamp, loaded.read)
            }
        };
        if read && stamp == current {
            return Ok(false);
        }
        let file = TokenFile::load(path)?;
        let tokens: Vec<Stored> = file
            .tokens
            .iter()
            .filter_map(|t| {
                let principal = Principal {
                    scope: t.scope,
                    metadata: t.may_read_metadata(),
                };
                Some((t.digest()?, principal))
            })
            .collect();
        let mut loaded = match self.scoped.write() {
            Ok(loaded) => loaded,
            Err(poisoned) => poisoned.into_inner(),
        };
        *loaded = Loaded {
            tokens: Arc::new(tokens),
            stamp,
            read: true,
        };
        Ok(true)
    }

    /// The scope of `token`, if it is one of ours.
    pub fn scope_of(&self, token: &str) -> Option<Scope> {
        self.principal_of(token).map(|p| p.scope)
    }

    /// What `token` may do, if it is one of ours. Every stored digest is compared, in
    /// constant time, whatever matches.
    pub fn principal_of(&self, token: &str) -> Option<Principal> {
        let presented = digest(token);
        let mut found = 0u8;
        let mut scope = 0u8;
        let mut metadata = 0u8;
        let mut take = |stored: &[u8; 32], principal: Principal| {
            let hit = presented.ct_eq(stored);
            found.conditional_assign(&1, hit);
            scope.conditional_assign(&(principal.scope as u8), hit);
            metadata.conditional_assign(&u8::from(principal.metadata), hit);
        };
        if let Some(admin) = &self.admin {
            take(admin, Principal::ADMIN);
        }
        for (stored, principal) in self.snapshot().iter() {
            take(stored, *principal);
        }
        let scope = match scope {
            0 => Scope::Read,
            1 => Scope::Operate,
            _ => Scope::Admin,
        };
        (found == 1).then_some(Principal {
            scope,
            metadata: metadata == 1,
        })
    }
}

/// The scope a request needs: `read` for `GET` and `HEAD`; `operate` for re-drive, pause,
/// resume, prune and an SSF stream's status; `admin` for everything else. `path` is relative to `/api/v2`.
pub(super) fn required_scope(method: &Method, path: &str) -> Scope {
    if method == Method::GET || method == Method::HEAD {
        return Scope::Read;
    }
    let operate = method == Method::POST
        && ((path.starts_with("/clients/")
            && (path.ends_with("/pause") || path.ends_with("/resume")))
            || (path.starts_with("/logout-deliveries/") && path.ends_with("/retry"))
            || (path.starts_with("/operator-events/") && path.ends_with("/retry"))
            || (path.starts_with("/ssf-deliveries/") && path.ends_with("/retry"))
            || (path.starts_with("/ssf-streams/") && path.ends_with("/status"))
            || path == "/logout-deliveries/prune-failed");
    if operate {
        Scope::Operate
    } else {
        Scope::Admin
    }
}

/// The path under `/api/v2` that needs a token, if `path` is one: everything there except
/// the public OpenAPI document.
fn guarded_path<'a>(method: &Method, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix("/api/v2")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let public = rest == "/openapi.json" && (method == Method::GET || method == Method::HEAD);
    (!public).then_some(rest)
}

/// The middleware, around the whole router: under `/api/v2`, 401 without a token we know
/// (whether or not the route exists) and 403 when its scope is too small. A request that
/// passes carries the token's [`Principal`] in its extensions, for [`Caller`].
pub(super) async fn require_token(
    State(state): State<Shared>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(path) = guarded_path(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let needed = required_scope(req.method(), path);
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(principal) = presented.and_then(|token| state.credentials.principal_of(token)) else {
        return ApiError::unauthorized().into_response();
    };
    let scope = principal.scope;
    if scope < needed {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this token's scope is {scope}; the request needs {needed}"),
        )
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::TokenFile;

    #[test]
    fn routes_need_the_scopes_the_docs_name() {
        let cases = [
            (Method::GET, "/logout-deliveries", Scope::Read),
            (Method::POST, "/logout-deliveries/d1/retry", Scope::Operate),
            (Method::GET, "/operator-events", Scope::Read),
            (Method::POST, "/operator-events/oev_1/retry", Scope::Operate),
            (Method::POST, "/operator-events/oev_1", Scope::Admin),
            (Method::POST, "/logout-deliveries/retry", Scope::Operate),
            (
                Method::POST,
                "/logout-deliveries/prune-failed",
                Scope::Operate,
            ),
            (Method::POST, "/clients/a/pause", Scope::Operate),
            (Method::POST, "/clients/a/resume", Scope::Operate),
            (Method::POST, "/clients", Scope::Admin),
            (Method::PATCH, "/clients/pause", Scope::Admin),
            (Method::DELETE, "/clients/a", Scope::Admin),
            (Method::POST, "/logout-events", Scope::Admin),
            (Method::DELETE, "/clients/a/pause", Scope::Admin),
            (Method::POST, "/ssf-receivers", Scope::Admin),
            (Method::POST, "/ssf-receivers/r/rotate-token", Scope::Admin),
            (Method::DELETE, "/ssf-receivers/r", Scope::Admin),
            (Method::POST, "/ssf-streams/s/status", Scope::Operate),
            (Method::POST, "/ssf-deliveries/d/retry", Scope::Operate),
            (Method::POST, "/ssf-deliveries/retry", Scope::Operate),
            (Method::GET, "/ssf-deliveries", Scope::Read),
        ];
        for (method, path, scope) in cases {
            assert_eq!(required_scope(&method, path), scope, "{method} {path}");
        }
    }

    #[test]
    fn every_api_v2_path_but_the_openapi_document_is_guarded() {
        assert_eq!(
            guarded_path(&Method::GET, "/api/v2/clients"),
            Some("/clients")
        );
        assert_eq!(guarded_path(&Method::PUT, "/api/v2/nope"), Some("/nope"));
        assert_eq!(guarded_path(&Method::GET, "/api/v2"), Some(""));
        assert_eq!(guarded_path(&Method::GET, "/api/v2/openapi.json"), None);
        assert_eq!(
            guarded_path(&Method::POST, "/api/v2/openapi.json"),
            Some("/openapi.json")
        );
        assert_eq!(guarded_path(&Method::GET, "/api/v2x"), None);
        assert_eq!(guarded_path(&Method::GET, "/healthz"), None);
    }

    #[test]
    fn each_token_has_its_scope_and_revocation_takes_effect_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut file = TokenFile::default();
        let now = chrono::Utc::now();
        let read = file.add("r", Scope::Read, false, now);
        let operate = file.add("o", Scope::Operate, false, now);
        file.save(&path).unwrap();
        let admin = "a-configured-admin-token-0123456789";
        let creds = Credentials::new(Some(admin), Some(path.clone())).unwrap();
        assert_eq!(creds.scope_of(&read), Some(Scope::Read));
        assert_eq!(creds.scope_of(&operate), Some(Scope::Operate));
        assert_eq!(creds.scope_of(admin), Some(Scope::Admin));
        assert_eq!(creds.scope_of("nope"), None);
        let id = file.tokens[0].id.clone();
        assert!(file.revoke(&id));
        file.save(&path).unwrap();
        // The stamp is the mtime and length; the length changed, so the reload sees it.
        assert!(creds.reload().unwrap());
        assert_eq!(creds.scope_of(&read), None);
        assert_eq!(creds.scope_of(&operate), Some(Scope::Operate));
    }

    /// A token file that does not exist is read once: checking it again reports no change
    /// (and so logs no reload) until it appears, and again once it is gone.
    #[test]
    fn an_absent_token_file_is_not_reloaded_at_every_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let creds = Credentials::new(None, Some(path.clone())).unwrap();
        assert!(!creds.reload().unwrap());
        assert!(!creds.reload().unwrap());
        let mut file = TokenFile::default();
        let read = file.add("r", Scope::Read, false, chrono::Utc::now());
        file.save(&path).unwrap();
        assert!(creds.reload().unwrap());
        assert_eq!(creds.scope_of(&read), Some(Scope::Read));
        assert!(!creds.reload().unwrap());
        std::fs::remove_file(&path).unwrap();
        assert!(creds.reload().unwrap());
        assert_eq!(creds.scope_of(&read), None);
        assert!(!creds.reload().unwrap());
    }

    #[test]
    fn the_metadata_grant_is_carried_and_admin_always_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut file = TokenFile::default();
        let now = chrono::Utc::now();
        let plain = file.add("plain", Scope::Read, false, now);
        let granted = file.add("granted", Scope::Read, true, now);
        let operate = file.add("operate", Scope::Operate, true, now);
        let scoped_admin = file.add("admin", Scope::Admin, false, now);
        file.save(&path).unwrap();
        let admin = "a-configured-admin-token-0123456789";
        let creds = Credentials::new(Some(admin), Some(path)).unwrap();
        let principal = |token: &str| creds.principal_of(token).unwrap();
        let expect = |scope, metadata| Principal { scope, metadata };
        assert_eq!(principal(&plain), expect(Scope::Read, false));
        assert_eq!(principal(&granted), expect(Scope::Read, true));
        assert_eq!(principal(&operate), expect(Scope::Operate, true));
        assert_eq!(principal(&scoped_admin), expect(Scope::Admin, true));
        assert_eq!(principal(admin), expect(Scope::Admin, true));
        assert_eq!(creds.principal_of("nope"), None);
    }
}
