//! `GET /.well-known/ssf-configuration`: the transmitter's metadata (SSF 1.0 §7.1), every URL
//! built from the configured issuer. No claim is an empty array (§7.2.3), and
//! `critical_subject_members` is left out on purpose: a receiver that cannot match sessions
//! then ends all of the user's sessions instead of dropping the event.

use super::{SsfError, issuer_url};
use crate::api::Shared;
use crate::ssf::{POLL_METHOD, PUSH_METHOD};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The `spec_version` logoutd implements (CAEP interoperability profile §2.3.1).
const SPEC_VERSION: &str = "1_0";
/// The authorization scheme of the receivers' bearer tokens: OAuth 2.0, provisioned out of
/// band (SSF §7.1.1; CAEP interoperability profile §2.3.7).
const OAUTH_SPEC_URN: &str = "urn:ietf:rfc:6749";

/// The metadata document.
#[derive(Debug, Serialize, PartialEq)]
pub(super) struct Metadata {
    spec_version: &'static str,
    issuer: String,
    jwks_uri: String,
    delivery_methods_supported: [&'static str; 2],
    configuration_endpoint: String,
    status_endpoint: String,
    add_subject_endpoint: String,
    remove_subject_endpoint: String,
    verification_endpoint: String,
    authorization_schemes: [AuthorizationScheme; 1],
    default_subjects: &'static str,
}

#[derive(Debug, Serialize, PartialEq)]
struct AuthorizationScheme {
    spec_urn: &'static str,
}

/// The document for `state`'s issuer.
pub(super) fn document(state: &Shared) -> Metadata {
    Metadata {
        spec_version: SPEC_VERSION,
        issuer: state.issuer.as_str().to_owned(),
        jwks_uri: issuer_url(state, "/.well-known/jwks.json"),
        delivery_methods_supported: [PUSH_METHOD, POLL_METHOD],
        configuration_endpoint: issuer_url(state, "/ssf/stream"),
        status_endpoint: issuer_url(state, "/ssf/status"),
        add_subject_endpoint: issuer_url(state, "/ssf/subjects/add"),
        remove_subject_endpoint: issuer_url(state, "/ssf/subjects/remove"),
        verification_endpoint: issuer_url(state, "/ssf/verify"),
        authorization_schemes: [AuthorizationScheme {
            spec_urn: OAUTH_SPEC_URN,
        }],
        default_subjects: "ALL",
    }
}

/// `GET /.well-known/ssf-configuration`.
pub(super) async fn serve(State(state): State<Shared>) -> Response {
    Json(document(&state)).into_response()
}

/// `GET /.well-known/ssf-configuration/{path}`: the document when `{path}` is the issuer's
/// path (SSF §7.2.1 inserts it after the well-known string), else 404.
pub(super) async fn serve_path(State(state): State<Shared>, Path(path): Path<String>) -> Response {
    if issuer_path(state.issuer.as_str()).is_some_and(|own| own == path.trim_matches('/')) {
        return Json(document(&state)).into_response();
    }
    SsfError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        "no transmitter metadata at this path",
    )
    .into_response()
}

/// The issuer's path without its slashes, if it has one.
fn issuer_path(issuer: &str) -> Option<String> {
    let url = url::Url::parse(issuer).ok()?;
    let path = url.path().trim_matches('/');
    (!path.is_empty()).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::issuer_path;

    #[test]
    fn the_issuer_path_goes_after_the_well_known_string() {
        assert_eq!(issuer_path("https://h/t1").as_deref(), Some("t1"));
        assert_eq!(issuer_path("https://h/a/b/").as_deref(), Some("a/b"));
        assert_eq!(issuer_path("https://h"), None);
        assert_eq!(issuer_path("https://h/"), None);
    }
}
