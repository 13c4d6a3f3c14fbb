//! The operator console: a static single-page app under `/console`, embedded in the binary at
//! compile time from the repository's `console/` folder. The page holds no data and needs no
//! token; everything it shows it reads from `/api/v2` with the token the operator pastes in.
//! Every answer carries a policy that allows only this origin's scripts, styles and API, and
//! forbids framing.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The Content-Security-Policy of every console answer: nothing inline, nothing from another
/// origin, no framing, no form posts.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// One embedded file: its name under `/console/`, its media type and its bytes.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    body: &'static str,
}

/// `include_str!` of a file of the repository's `console/` folder.
macro_rules! asset {
    ($name:literal, $media_type:expr) => {
        Asset {
            name: $name,
            media_type: $media_type,
            body: include_str!(concat!("../../../../console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The bundle: the committed files themselves, nothing built.
const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("chart.js", JS),
    asset!("overview.js", JS),
    asset!("deliveries.js", JS),
    asset!("sessions.js", JS),
    asset!("clients.js", JS),
];

const INDEX: &str = include_str!("../../../../console/index.html");

/// The console's routes: the page at `/console` and `/console/`, its assets below.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/{name}", get(asset))
}

async fn index() -> Response {
    secured(
        "text/html; charset=utf-8",
        INDEX,
        HeaderValue::from_static("no-store"),
    )
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => secured(a.media_type, a.body, HeaderValue::from_static("no-cache")),
        None => {
            let mut response = super::ApiError::not_found("console file").into_response();
            add_policy(&mut response);
            response
        }
    }
}

fn secured(media_type: &'static str, body: &'static str, cache: HeaderValue) -> Response {
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(media_type)),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response();
    add_policy(&mut response);
    response
}

/// The security headers of every console answer.
fn add_policy(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_console_file_holds_inline_script_or_style() {
        let files = ASSETS.iter().map(|a| (a.name, a.body));
        for (name, body) in files.chain([("index.html", INDEX)]) {
            for banned in [
                ".innerHTML",
                ".outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "style=",
                "localStorage.",
                "document.cookie",
            ] {
                assert!(!body.contains(banned), "{name} has {banned}");
            }
        }
        assert!(
            !INDEX.contains("<script>"),
            "index.html has an inline script"
        );
        assert!(!INDEX.contains("<style"), "index.html has an inline style");
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
    }
}
