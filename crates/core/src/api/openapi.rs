//! The HTTP API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and response types, and served at `GET /api/v2/openapi.json`.
//!
//! The routes and the document come from the same registration (`api_routes`), so a
//! route cannot exist without its operation. `docs/openapi.json` is this document, committed;
//! `logoutd openapi` prints it.

use super::error::ErrorBody;
use super::{ApiError, DEFAULT_BODY_LIMIT};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref, RefOr};
use utoipa::{PartialSchema, ToResponse, ToSchema};

/// Name of the security scheme of the management routes.
pub const BEARER: &str = "bearer";

/// The command that rewrites the committed copy of the document.
pub const REGENERATE: &str = "cargo run --quiet -- openapi > docs/openapi.json";

/// What the annotations do not say: the document's info, the security scheme, the shared
/// error responses and the tags, in the order a reader meets them.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "logoutd",
        description = "OIDC Back-Channel Logout sender. The management API under `/api/v2` \
            follows Auth0's Management API shapes, needs `Authorization: Bearer <token>` and \
            answers every error with Auth0's body `{\"statusCode\", \"error\", \"message\", \
            \"errorCode\"}`."
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            SessionEnded,
            PayloadTooLarge,
            InternalError
        )
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "public", description = "Discovery, keys, health and metrics; no token."),
        (name = "clients", description = "Relying parties in Auth0's `oidc_logout` shape."),
        (name = "sessions", description = "Sessions, the RPs that joined them, and their metadata."),
        (name = "logout", description = "Ending sessions: 202 once the end and its deliveries are committed."),
        (name = "deliveries", description = "Delivery status, re-drive and dead-letter cleanup."),
        (name = "operator-events", description = "Operator events (client.paused, client.resumed, delivery.failed), their webhook delivery and its re-drive."),
        (name = "ssf", description = "The Shared Signals (SSF 1.0) transmitter: its receivers and their tokens, their streams, and the delivery of their SETs. The receivers' own routes (`/.well-known/ssf-configuration`, `/ssf/...`) are not part of this API."),
        (name = "tokens", description = "The calling API token: its scope and whether it may read session metadata values."),
        (name = "openapi", description = "This document; no token.")
    )
)]
struct ApiDoc;

/// Adds the `bearer` HTTP security scheme to the components.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut OpenApi) {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "An API token: `LOGOUTD_API_TOKEN` (admin) or a scoped token from `logoutd tokens \
             add` (read, operate or admin), compared in constant time. A missing or wrong token \
             is 401 `invalid_token` on every path under `/api/v2`; a token whose scope is too \
             small is 403 `insufficient_scope`."
                .to_owned(),
        );
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(http));
    }
}

/// The document before any route is added.
pub(super) fn base() -> OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// Marks every operation of `doc` as needing the bearer token and as answering 401 without
/// it, and every write as answering 403 to a token whose scope is too small: the guard in
/// [`super::auth`] does this for every path under `/api/v2`. Every valid token may read.
pub(super) fn require_bearer(doc: &mut OpenApi) {
    let bearer = || Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    for item in doc.paths.paths.values_mut() {
        let reads = [&mut item.get, &mut item.head];
        for operation in reads.into_iter().flatten() {
            operation.security = bearer();
            let answers = &mut operation.responses.responses;
            answers.insert(
                "401".to_owned(),
                Ref::from_response_name("Unauthorized").into(),
            );
        }
        let writes = [
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in writes.into_iter().flatten() {
            operation.security = bearer();
            let answers = &mut operation.responses.responses;
            answers.insert(
                "401".to_owned(),
                Ref::from_response_name("Unauthorized").into(),
            );
            answers.insert(
                "403".to_owned(),
                Ref::from_response_name("Forbidden").into(),
            );
        }
    }
}

/// The whole document, as every router built by [`super::router`] serves it.
pub fn document() -> OpenApi {
    super::api_routes(super::management_routes()).into_openapi()
}

/// The document as pretty-printed JSON: `docs/openapi.json` is this text and a newline.
/// Paths, schemas and properties are kept in sorted maps, so the text is stable.
pub fn to_json(doc: &OpenApi) -> Result<String, serde_json::Error> {
    doc.to_pretty_json()
}

/// The served text, rendered once: the document depends on the code only, not on the state.
static RENDERED: LazyLock<Result<String, String>> =
    LazyLock::new(|| to_json(&document()).map_err(|err| err.to_string()));

/// `GET /api/v2/openapi.json`: this document. Public, like discovery: it describes the API,
/// not its data.
#[utoipa::path(
    get,
    path = "/api/v2/openapi.json",
    tag = "openapi",
    operation_id = "get_openapi",
    summary = "This OpenAPI 3.1 document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API",
            content_type = "application/json", body = Object),
        (status = 500, response = InternalError),
    )
)]
pub(crate) async fn serve() -> Response {
    match &*RENDERED {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text.clone()).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "rendering the OpenAPI document failed");
            ApiError::internal().into_response()
        }
    }
}

/// The JWK Set of `/.well-known/jwks.json` (RFC 7517 §5). Described by hand because the key
/// types belong to the key store, which keeps no schema of its own.
pub(crate) struct JwkSet;

impl PartialSchema for JwkSet {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        let text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        let key = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("One public key; private members are never published."))
            .property("kty", text("Key type: `RSA`, `EC` or `OKP`."))
            .required("kty")
            .property("kid", text("Key id: the RFC 7638 thumbprint."))
            .property("alg", text("The one algorithm the key signs with."))
            .property("use", text("`sig`."))
            .property("n", text("RSA modulus, base64url."))
            .property("e", text("RSA public exponent, base64url."))
            .property("crv", text("Curve: `P-256` or `Ed25519`."))
            .property(
                "x",
                text("EC x coordinate or Ed25519 public key, base64url."),
            )
            .property("y", text("EC y coordinate, base64url."));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The signing keys, including retired keys still within a token lifetime of \
                 their last use.",
            ))
            .property(
                "keys",
                utoipa::openapi::schema::ArrayBuilder::new().items(key),
            )
            .required("keys")
            .into()
    }
}

impl ToSchema for JwkSet {}

/// An error response whose body is [`ErrorBody`].
fn error_response(description: String) -> utoipa::openapi::Response {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build()
}

/// Declares a reusable error response, referenced from the operations that can answer it.
macro_rules! error_response {
    ($(#[$doc:meta])* $name:ident, $description:expr) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                (stringify!($name), error_response($description).into())
            }
        }
    };
}

error_response!(
    /// 400: a body, query string or path parameter that breaks a rule.
    BadRequest,
    "The request breaks a rule and changed nothing: `invalid_body` (the JSON body, including \
     a Content-Type other than JSON), `invalid_query_string`, `invalid_path`, or \
     `invalid_uri` (an RP URL the URL policy refuses)."
        .to_owned()
);

error_response!(
    /// 404: an unknown object.
    NotFound,
    "The object does not exist (`not_found`).".to_owned()
);

error_response!(
    /// 409: a change to a session that has ended.
    SessionEnded,
    "The session has ended and can no longer change (`session_ended`).".to_owned()
);

error_response!(
    /// 413: a body over the cap.
    PayloadTooLarge,
    format!(
        "The body is larger than the cap, {DEFAULT_BODY_LIMIT} bytes unless the operator \
         changed it (`payload_too_large`)."
    )
);

error_response!(
    /// 403: a valid token whose scope does not reach the request.
    Forbidden,
    "The token is valid but its scope does not allow this request (`insufficient_scope`): \
     `read` tokens may only `GET`; `operate` tokens may also re-drive, prune, pause and \
     resume, and set an SSF stream's status; `admin` tokens may do everything."
        .to_owned()
);

error_response!(
    /// 500: a store failure, logged but not described to the caller.
    InternalError,
    "The store failed; the cause is logged, not returned (`internal_error`).".to_owned()
);

/// 401: no bearer token, or the wrong one.
pub(crate) struct Unauthorized;

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
        let mut response =
            error_response("The bearer token is missing or wrong (`invalid_token`).".to_owned());
        let challenge = HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["Bearer"])),
            ))
            .description(Some("Always `Bearer`."))
            .build();
        response
            .headers
            .insert("WWW-Authenticate".to_owned(), challenge.into());
        ("Unauthorized", response.into())
    }
}
