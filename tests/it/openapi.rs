//! The OpenAPI contract: `docs/openapi.json` is what the code generates, is served as is,
//! validates against the OpenAPI 3.1 meta-schema, lists the README's routes, marks exactly the
//! routes that demand the token, and describes what the routes really answer.

use crate::support::app::{API_TOKEN, TestApp};
use crate::support::fixture;
use axum::http::{Method, StatusCode, header};
use logoutd_core::{BEARER, REGENERATE, openapi_document, openapi_json};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

fn generated_text() -> String {
    format!("{}\n", openapi_json(&openapi_document()).unwrap())
}

fn generated() -> Value {
    serde_json::from_str(&generated_text()).unwrap()
}

fn meta_schema() -> Value {
    let text = std::fs::read_to_string(fixture("openapi/schema-2022-10-07.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The operations of a document as (METHOD, path) pairs.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn committed_openapi_json_is_what_the_code_generates() {
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == generated_text(),
        "docs/openapi.json differs from the document the code generates; regenerate it with\n\n    {}\n",
        REGENERATE
    );
}

#[tokio::test]
async fn logoutd_openapi_prints_the_committed_text() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .arg("openapi")
        .env("LOGOUTD_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), generated_text());
}

#[test]
fn openapi_document_validates_against_the_openapi_3_1_meta_schema() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(committed_path()).unwrap()).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&meta_schema())
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    // The validator can fail: a 3.0 version string, a missing `info`, and a Schema Object that
    // is neither an object nor a boolean. The last is only reachable through the meta-schema's
    // `$dynamicRef: "#meta"`, so it also shows that `$dynamicRef` is resolved.
    let mut old = doc.clone();
    old["openapi"] = json!("3.0.3");
    assert!(!validator.is_valid(&old));
    let mut no_info = doc.clone();
    no_info.as_object_mut().unwrap().remove("info");
    assert!(!validator.is_valid(&no_info));
    let mut bad_schema = doc.clone();
    bad_schema["paths"]["/api/v2/clients"]["get"]["parameters"][0]["schema"] = json!(5);
    assert!(!validator.is_valid(&bad_schema));
}

#[tokio::test]
async fn served_openapi_json_is_the_generated_document_without_a_token() {
    let app = TestApp::memory().await;
    for token in [None, Some("wrong"), Some(API_TOKEN)] {
        let (status, headers, body) = app
            .raw(Method::GET, "/api/v2/openapi.json", token, None, None)
            .await;
        assert_eq!(status, StatusCode::OK, "token {token:?}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let served: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(served, generated());
    }
}

/// The routes of the README's "HTTP API" table, as (METHOD, path) pairs under their full path.
fn readme_routes() -> BTreeSet<(String, String)> {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let section = readme
        .split("\n## HTTP API\n")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let mut routes = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = split_cells(row).into_iter().nth(1).unwrap();
        // Code spans are the odd pieces between backticks; routes are `METHOD[/METHOD] PATH`.
        for code in first_cell.split('`').skip(1).step_by(2) {
            let Some((methods, path)) = code.split_once(' ') else {
                continue;
            };
            if !methods.split('/').all(is_method) || !path.starts_with('/') {
                continue;
            }
            for path in expand_alternatives(path.split('?').next().unwrap()) {
                for method in methods.split('/') {
                    routes.insert((method.to_owned(), full_path(&path)));
                }
            }
        }
    }
    routes
}

fn is_method(word: &str) -> bool {
    ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&word)
}

/// Table cells, split on the `|` that are not escaped as `\|`.
fn split_cells(row: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

/// `/clients/{id}/pause|resume` is `/clients/{id}/pause` and `/clients/{id}/resume`.
fn expand_alternatives(path: &str) -> Vec<String> {
    match path.rsplit_once('/') {
        Some((head, last)) if last.contains('|') => {
            last.split('|').map(|alt| format!("{head}/{alt}")).collect()
        }
        _ => vec![path.to_owned()],
    }
}

/// The table writes management routes relative to `/api/v2`, as its introduction says.
fn full_path(path: &str) -> String {
    let public = ["/healthz", "/readyz", "/metrics"];
    if path.starts_with("/api/v2/") || path.starts_with("/.well-known/") || public.contains(&path) {
        path.to_owned()
    } else {
        format!("/api/v2{path}")
    }
}

/// Placeholder names differ (`{id}` in the README, `{client_id}` in the code); the route is
/// the same.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn readme_http_api_table_and_the_document_list_the_same_routes() {
    let shaped = |set: &BTreeSet<(String, String)>| -> BTreeSet<(String, String)> {
        set.iter().map(|(m, p)| (m.clone(), shape(p))).collect()
    };
    let readme = shaped(&readme_routes());
    let doc = shaped(&operations(&generated()));
    assert!(
        readme.len() >= 25,
        "the table parsed to too few routes: {readme:#?}"
    );
    let missing: Vec<_> = readme.difference(&doc).collect();
    assert!(
        missing.is_empty(),
        "README routes not in the document: {missing:#?}"
    );
    let unlisted: Vec<_> = doc.difference(&readme).collect();
    assert!(
        unlisted.is_empty(),
        "documented routes not in the README table: {unlisted:#?}"
    );
}

#[test]
fn readme_table_parsing_expands_methods_alternatives_and_prefixes() {
    let row = r"| `POST/GET /clients`, `POST /clients/{id}/pause\|resume`, `GET /healthz` | x |";
    let cell = split_cells(row).into_iter().nth(1).unwrap();
    assert_eq!(
        cell.trim(),
        "`POST/GET /clients`, `POST /clients/{id}/pause|resume`, `GET /healthz`"
    );
    assert_eq!(
        expand_alternatives("/clients/{id}/pause|resume"),
        ["/clients/{id}/pause", "/clients/{id}/resume"]
    );
    assert_eq!(full_path("/clients"), "/api/v2/clients");
    assert_eq!(full_path("/healthz"), "/healthz");
    assert_eq!(full_path("/api/v2/openapi.json"), "/api/v2/openapi.json");
    assert_eq!(shape("/api/v2/clients/{client_id}"), "/api/v2/clients/{}");
}

/// A concrete path for a template: every placeholder becomes `x`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn exactly_the_operations_marked_with_the_bearer_scheme_demand_the_token() {
    let doc = generated();
    let scheme = &doc["components"]["securitySchemes"][BEARER];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert!(
        doc.get("security").is_none(),
        "no document-wide requirement"
    );
    let app = TestApp::memory().await;
    let mut secured = 0;
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let needs_token = match op.get("security") {
            None => false,
            Some(req) => {
                assert_eq!(req, &json!([{ BEARER: [] }]), "{method} {path}");
                true
            }
        };
        assert_eq!(
            needs_token,
            path.starts_with("/api/v2/") && path != "/api/v2/openapi.json"
        );
        // Without a token, the guard answers before any extractor or store runs; a route
        // that were not registered would answer the fallback's 404 instead.
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, headers, _) = app
            .raw(method.clone(), &concrete(&path), None, None, None)
            .await;
        if needs_token {
            secured += 1;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
            assert_eq!(
                op["responses"]["401"]["$ref"], "#/components/responses/Unauthorized",
                "{method} {path}"
            );
        } else {
            assert_eq!(status, StatusCode::OK, "{method} {path}");
            assert!(op["responses"].get("401").is_none(), "{method} {path}");
        }
    }
    assert!(secured >= 20, "only {secured} secured operations");
}

#[test]
fn every_reference_resolves_and_every_4xx_carries_the_auth0_error_body() {
    let doc = generated();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for target in &refs {
        let pointer = target.strip_prefix('#').unwrap();
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
    }
    let error_ref = json!({ "$ref": "#/components/schemas/ErrorBody" });
    for (method, path) in operations(&doc) {
        let responses = &doc["paths"][&path][method.to_lowercase()]["responses"];
        for (status, response) in responses.as_object().unwrap() {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let response = resolve(&doc, response);
            assert_eq!(
                response["content"]["application/json"]["schema"], error_ref,
                "{method} {path} {status}"
            );
        }
    }
    let body = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(
        body["required"],
        json!(["statusCode", "error", "message", "errorCode"])
    );
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => collect_refs(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A response or a `$ref` to one.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(target) => doc.pointer(target.strip_prefix('#').unwrap()).unwrap(),
        None => value,
    }
}

/// The SSF enums are documented by the names they travel as, not their Rust names.
#[test]
fn ssf_enums_are_documented_by_their_wire_names() {
    use logoutd_core::{InitiatingEntity, ReceiverScope, SetKind, SetState, StreamStatus};
    let doc = generated();
    let wire = |names: Vec<&str>| json!(names);
    let cases = [
        (
            "SetKind",
            wire(SetKind::ALL.iter().map(|v| v.as_str()).collect()),
        ),
        (
            "SetState",
            wire(SetState::ALL.iter().map(|v| v.as_str()).collect()),
        ),
        (
            "StreamStatus",
            wire(StreamStatus::ALL.iter().map(|v| v.as_str()).collect()),
        ),
        (
            "ReceiverScope",
            wire(ReceiverScope::ALL.iter().map(|v| v.as_str()).collect()),
        ),
        (
            "InitiatingEntity",
            wire(InitiatingEntity::ALL.iter().map(|v| v.as_str()).collect()),
        ),
    ];
    for (name, names) in cases {
        assert_eq!(doc["components"]["schemas"][name]["enum"], names, "{name}");
    }
    assert_eq!(
        doc["components"]["schemas"]["SetKind"]["enum"][0],
        "session_revoked"
    );
}

#[test]
fn list_routes_document_from_take_and_next() {
    let doc = generated();
    let lists = [
        ("/api/v2/clients", "ClientPage", "clients"),
        (
            "/api/v2/users/{user_id}/sessions",
            "SessionPage",
            "sessions",
        ),
        ("/api/v2/logout-deliveries", "DeliveryPage", "deliveries"),
    ];
    for (path, page, items) in lists {
        let op = &doc["paths"][path]["get"];
        let params = op["parameters"].as_array().unwrap();
        let param = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name && p["in"] == "query")
                .unwrap_or_else(|| panic!("{path} has no {name}"))
        };
        assert!(
            param("from")["description"]
                .as_str()
                .unwrap()
                .contains("`next`")
        );
        let take = param("take");
        assert!(!take["description"].as_str().unwrap().is_empty());
        assert_eq!(take["schema"]["minimum"], 1);
        assert_eq!(take["schema"]["maximum"], logoutd_core::MAX_PAGE_TAKE);
        assert_eq!(take["schema"]["default"], logoutd_core::DEFAULT_PAGE_TAKE);
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{page}")
        );
        let schema = &doc["components"]["schemas"][page];
        assert_eq!(schema["required"], json!([items, "next"]), "{page}");
        let next = &schema["properties"]["next"];
        assert_eq!(next["type"], json!(["string", "null"]));
        assert!(next["description"].as_str().unwrap().contains("`from`"));
    }
}

/// Checks real requests and responses against the document's schemas.
struct Contract {
    doc: Value,
}

impl Contract {
    fn new() -> Self {
        Self { doc: generated() }
    }

    fn operation(&self, method: &Method, template: &str) -> &Value {
        let op = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        op
    }

    /// How `instance` breaks `schema`, whose `$ref`s point into the components.
    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap();
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// How `body` breaks the documented request body of the operation.
    fn request_errors(&self, method: &Method, template: &str, body: &Value) -> Vec<String> {
        let op = self.operation(method, template);
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} documents no JSON body"
        );
        self.errors(schema, body)
    }

    /// How `body` breaks the documented response of the operation for `status`.
    fn response_errors(
        &self,
        method: &Method,
        template: &str,
        status: StatusCode,
        body: &Value,
    ) -> Vec<String> {
        let op = self.operation(method, template);
        let Some(documented) = op["responses"].get(status.as_str()) else {
            return vec![format!("{status} is not documented")];
        };
        match resolve(&self.doc, documented).get("content") {
            None if body.is_null() => vec![],
            None => vec!["a body where none is documented".to_owned()],
            Some(content) => {
                let (_, media) = content.as_object().unwrap().iter().next().unwrap();
                self.errors(&media["schema"], body)
            }
        }
    }

    fn response(&self, method: &Method, template: &str, status: StatusCode, body: &Value) {
        let errors = self.response_errors(method, template, status, body);
        assert!(
            errors.is_empty(),
            "response {status} of {method} {template}: {errors:#?}\n{body:#}"
        );
    }
}

/// Calls the API like a client would, and checks the exchange against the contract.
async fn exchange(
    app: &TestApp,
    contract: &Contract,
    method: Method,
    template: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    if let Some(body) = &body {
        let errors = contract.request_errors(&method, template, body);
        assert!(
            errors.is_empty(),
            "request of {method} {template}: {errors:#?}\n{body:#}"
        );
    }
    let (status, reply) = app.call(method.clone(), path, body).await;
    contract.response(&method, template, status, &reply);
    (status, reply)
}

#[tokio::test]
async fn what_the_routes_answer_matches_the_documented_schemas() {
    let app = TestApp::memory().await;
    let c = Contract::new();
    let ok = |(status, reply): (StatusCode, Value), want: StatusCode| {
        assert_eq!(status, want, "{reply}");
        reply
    };

    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
        "/healthz",
        "/readyz",
    ] {
        let (status, _, body) = app.raw(Method::GET, path, None, None, None).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        c.response(&Method::GET, path, status, &body);
    }

    let client = json!({
        "client_id": "rp1",
        "name": "RP one",
        "oidc_logout": {
            "backchannel_logout_urls": ["https://rp.example.test/backchannel"],
            "backchannel_logout_initiators": { "mode": "custom", "selected_initiators": ["password-changed"] },
            "backchannel_logout_session_metadata": { "include": true }
        },
        "backchannel_logout_session_required": true,
        "logout_token_typ": "JWT",
        "id_token_signed_response_alg": "ES256"
    });
    let clients = "/api/v2/clients";
    ok(
        exchange(
            &app,
            &c,
            Method::POST,
            clients,
            clients,
            Some(client.clone()),
        )
        .await,
        StatusCode::CREATED,
    );
    ok(
        exchange(&app, &c, Method::POST, clients, clients, Some(client)).await,
        StatusCode::CONFLICT,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::POST,
            clients,
            clients,
            Some(json!({ "name": "RP two" })),
        )
        .await,
        StatusCode::CREATED,
    );
    ok(
        exchange(&app, &c, Method::POST, clients, clients, Some(json!({}))).await,
        StatusCode::BAD_REQUEST,
    );
    let page = ok(
        exchange(
            &app,
            &c,
            Method::GET,
            clients,
            "/api/v2/clients?take=1",
            None,
        )
        .await,
        StatusCode::OK,
    );
    assert!(page["next"].is_string());
    let last = format!(
        "/api/v2/clients?take=1&from={}",
        page["next"].as_str().unwrap()
    );
    let page = ok(
        exchange(&app, &c, Method::GET, clients, &last, None).await,
        StatusCode::OK,
    );
    assert!(page["next"].is_null());
    ok(
        exchange(
            &app,
            &c,
            Method::GET,
            clients,
            "/api/v2/clients?take=0",
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
    );

    let one = "/api/v2/clients/{client_id}";
    ok(
        exchange(&app, &c, Method::GET, one, "/api/v2/clients/rp1", None).await,
        StatusCode::OK,
    );
    ok(
        exchange(&app, &c, Method::GET, one, "/api/v2/clients/nobody", None).await,
        StatusCode::NOT_FOUND,
    );
    let patch = json!({ "name": "RP 1", "oidc_logout": { "backchannel_logout_initiators": { "mode": "all" } } });
    ok(
        exchange(
            &app,
            &c,
            Method::PATCH,
            one,
            "/api/v2/clients/rp1",
            Some(patch),
        )
        .await,
        StatusCode::OK,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::POST,
            "/api/v2/clients/{client_id}/pause",
            "/api/v2/clients/rp1/pause",
            None,
        )
        .await,
        StatusCode::OK,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::POST,
            "/api/v2/clients/{client_id}/resume",
            "/api/v2/clients/rp1/resume",
            None,
        )
        .await,
        StatusCode::OK,
    );

    let sessions = "/api/v2/sessions";
    let session = json!({
        "id": "s1",
        "user_id": "auth0|u1",
        "clients": [{ "client_id": "rp1" }],
        "session_metadata": { "tenant": "acme" },
        "expires_at": "2026-01-03T03:04:05Z",
        "authenticated_at": "2026-01-02T03:04:05.123Z",
        "device": { "initial_ip": "192.0.2.1", "initial_user_agent": "agent" }
    });
    ok(
        exchange(&app, &c, Method::POST, sessions, sessions, Some(session)).await,
        StatusCode::CREATED,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::POST,
            sessions,
            sessions,
            Some(json!({ "user_id": "auth0|u1" })),
        )
        .await,
        StatusCode::CREATED,
    );
    let s = "/api/v2/sessions/{id}";
    ok(
        exchange(&app, &c, Method::GET, s, "/api/v2/sessions/s1", None).await,
        StatusCode::OK,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::POST,
            "/api/v2/sessions/{id}/clients",
            "/api/v2/sessions/s1/clients",
            Some(json!({ "client_id": "rp2" })),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    let key = "/api/v2/sessions/{id}/metadata/{key}";
    ok(
        exchange(
            &app,
            &c,
            Method::PUT,
            key,
            "/api/v2/sessions/s1/metadata/lang",
            Some(json!({ "value": "日本語" })),
        )
        .await,
        StatusCode::OK,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::DELETE,
            key,
            "/api/v2/sessions/s1/metadata/lang",
            None,
        )
        .await,
        StatusCode::OK,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::PATCH,
            s,
            "/api/v2/sessions/s1",
            Some(json!({ "session_metadata": null })),
        )
        .await,
        StatusCode::OK,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::PATCH,
            s,
            "/api/v2/sessions/s1",
            Some(json!({ "session_metadata": { "a": "b" } })),
        )
        .await,
        StatusCode::OK,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::DELETE,
            "/api/v2/sessions/{id}/metadata",
            "/api/v2/sessions/s1/metadata",
            None,
        )
        .await,
        StatusCode::OK,
    );
    let user = "/api/v2/users/{user_id}/sessions";
    let listed = ok(
        exchange(
            &app,
            &c,
            Method::GET,
            user,
            "/api/v2/users/auth0%7Cu1/sessions?take=1",
            None,
        )
        .await,
        StatusCode::OK,
    );
    assert!(listed["next"].is_string());

    ok(
        exchange(
            &app,
            &c,
            Method::POST,
            "/api/v2/logout-events",
            "/api/v2/logout-events",
            Some(json!({ "session_id": "s1", "initiator": "idp-logout" })),
        )
        .await,
        StatusCode::ACCEPTED,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::PUT,
            key,
            "/api/v2/sessions/s1/metadata/lang",
            Some(json!({ "value": "en" })),
        )
        .await,
        StatusCode::CONFLICT,
    );
    ok(
        exchange(&app, &c, Method::DELETE, s, "/api/v2/sessions/s1", None).await,
        StatusCode::ACCEPTED,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::POST,
            "/api/v2/sessions/{id}/revoke",
            "/api/v2/sessions/nothing/revoke",
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::DELETE,
            user,
            "/api/v2/users/auth0%7Cu1/sessions",
            None,
        )
        .await,
        StatusCode::ACCEPTED,
    );

    let deliveries = "/api/v2/logout-deliveries";
    let listed = ok(
        exchange(
            &app,
            &c,
            Method::GET,
            deliveries,
            "/api/v2/logout-deliveries?state=pending&client_id=rp1",
            None,
        )
        .await,
        StatusCode::OK,
    );
    let id = listed["deliveries"][0]["id"].as_str().unwrap().to_owned();
    ok(
        exchange(
            &app,
            &c,
            Method::GET,
            deliveries,
            "/api/v2/logout-deliveries?state=lost",
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::GET,
            "/api/v2/logout-deliveries/{id}",
            &format!("/api/v2/logout-deliveries/{id}"),
            None,
        )
        .await,
        StatusCode::OK,
    );
    ok(
        exchange(
            &app,
            &c,
            Method::POST,
            "/api/v2/logout-deliveries/{id}/retry",
            &format!("/api/v2/logout-deliveries/{id}/retry"),
            None,
        )
        .await,
        StatusCode::CONFLICT,
    );
    let bulk = "/api/v2/logout-deliveries/retry";
    let filters = json!({ "client_id": "rp1", "initiator": "rp-logout",
        "failed_since": "2026-01-01T00:00:00Z", "failed_before": "2026-01-03T00:00:00Z" });
    let reply = ok(
        exchange(&app, &c, Method::POST, bulk, bulk, Some(filters)).await,
        StatusCode::OK,
    );
    assert_eq!(reply, json!({ "redriven": 0 }));
    let (status, reply) = app
        .call(Method::POST, bulk, Some(json!({ "state": "failed" })))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    c.response(&Method::POST, bulk, status, &reply);
    let sets = "/api/v2/ssf-deliveries/retry";
    let filters = json!({ "stream_id": "st1", "receiver_id": "ssr1", "kind": "verification",
        "failed_since": "2026-01-01T00:00:00Z", "failed_before": "2026-01-03T00:00:00Z" });
    let reply = ok(
        exchange(&app, &c, Method::POST, sets, sets, Some(filters)).await,
        StatusCode::OK,
    );
    assert_eq!(reply, json!({ "redriven": 0 }));
    let (status, reply) = app
        .call(Method::POST, sets, Some(json!({ "kind": "nope" })))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    c.response(&Method::POST, sets, status, &reply);
    let prune = "/api/v2/logout-deliveries/prune-failed";
    ok(
        exchange(
            &app,
            &c,
            Method::POST,
            prune,
            "/api/v2/logout-deliveries/prune-failed?older_than_days=0",
            None,
        )
        .await,
        StatusCode::OK,
    );
    ok(
        exchange(&app, &c, Method::DELETE, one, "/api/v2/clients/rp1", None).await,
        StatusCode::NO_CONTENT,
    );

    let big = json!({ "user_id": "u", "session_metadata": { "k": "v".repeat(70 * 1024) } });
    let (status, reply) = app.call(Method::POST, sessions, Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    c.response(&Method::POST, sessions, status, &reply);
}

#[test]
fn the_contract_refuses_what_the_routes_do_not_answer() {
    let c = Contract::new();
    let no_code = json!({ "statusCode": 404, "error": "Not Found", "message": "gone" });
    let errors = c.response_errors(
        &Method::GET,
        "/api/v2/clients/{client_id}",
        StatusCode::NOT_FOUND,
        &no_code,
    );
    assert!(
        !errors.is_empty(),
        "an error body without errorCode must not pass"
    );
    let undocumented = c.response_errors(
        &Method::GET,
        "/api/v2/clients",
        StatusCode::CONFLICT,
        &no_code,
    );
    assert!(!undocumented.is_empty(), "GET /clients never answers 409");
    let unknown_alg = json!({ "name": "x", "id_token_signed_response_alg": "HS256" });
    let errors = c.request_errors(&Method::POST, "/api/v2/clients", &unknown_alg);
    assert!(!errors.is_empty(), "an alg the API refuses must not pass");
    let extra = json!({ "session_metadata": {}, "user_id": "u" });
    let errors = c.request_errors(&Method::PATCH, "/api/v2/sessions/{id}", &extra);
    assert!(
        !errors.is_empty(),
        "PATCH refuses members other than session_metadata"
    );
    let value = &c.doc["components"]["schemas"]["ValueBody"]["properties"]["value"];
    assert_eq!(value["maxLength"], logoutd_core::MAX_METADATA_VALUE_CHARS);
    let bad_key = json!({ "session_metadata": { "no spaces": "v" } });
    let errors = c.request_errors(&Method::PATCH, "/api/v2/sessions/{id}", &bad_key);
    assert!(
        !errors.is_empty(),
        "metadata keys match [A-Za-z0-9_-]{{1,255}}"
    );
}
