//! `backchannel_logout_user_wide: per_user` end to end: the real `logoutd serve`, on SQLite
//! and on PostgreSQL, ends a user's sessions and delivers to real `logoutd mock-rp`
//! processes. A `per_user` client gets one valid token with `sub` and neither `sid` nor
//! `session_metadata` for all of them, a `per_session` client one per session; the status API
//! and the metrics show the one delivery covering them; a failed one is re-driven; and the
//! combination with `backchannel_logout_session_required` is refused, changing nothing.

use crate::store::postgres::TestDatabase;
use crate::support::mock_rp_process::{MockRpArgs, MockRpProcess};
use crate::support::process::ServeProcess;
use logoutd_core::Receipt;
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

const ISSUER: &str = "https://op.user-wide.test";
const USER: &str = "auth0|dana";
const SESSIONS: [&str; 3] = ["s-1", "s-2", "s-3"];
/// One serve over one store, and what must live as long as it does.
struct Rig {
    serve: ServeProcess,
    dir: TempDir,
    _db: Option<TestDatabase>,
}

impl Rig {
    async fn start(dir: TempDir, store: &str, db: Option<TestDatabase>) -> Self {
        let flags = [
            "--issuer",
            ISSUER,
            "--retry-base-ms",
            "50",
            "--retry-cap-ms",
            "200",
        ];
        let serve = ServeProcess::start(dir.path(), store, &flags).await;
        Self {
            serve,
            dir,
            _db: db,
        }
    }

    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("sqlite://{}/logoutd.db", dir.path().display());
        Self::start(dir, &store, None).await
    }

    async fn postgres() -> Option<Self> {
        let db = TestDatabase::create().await?;
        let dir = tempfile::tempdir().unwrap();
        let store = db.url.clone();
        Some(Self::start(dir, &store, Some(db)).await)
    }

    async fn mock(&self, client_id: &str, extra: &[&str]) -> MockRpProcess {
        let jwks_uri = self.serve.url("/.well-known/jwks.json");
        let args = MockRpArgs {
            issuer: ISSUER,
            jwks_uri: &jwks_uri,
            client_id,
            extra,
        };
        MockRpProcess::start(self.dir.path(), &args).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.serve.call(method, path, body).await
    }

    /// Registers `client_id` at `mock`, opted in to metadata, with `user_wide`.
    async fn register(&self, client_id: &str, mock: &MockRpProcess, user_wide: &str) {
        let body = json!({ "client_id": client_id, "name": client_id, "oidc_logout": {
            "backchannel_logout_urls": [mock.url("/backchannel")],
            "backchannel_logout_session_metadata": { "include": true },
            "backchannel_logout_user_wide": user_wide } });
        let (status, reply) = self.call(Method::POST, "/api/v2/clients", Some(body)).await;
        assert_eq!(status, 201, "{reply}");
        assert_eq!(
            reply["oidc_logout"]["backchannel_logout_user_wide"],
            user_wide
        );
    }

    /// The deliveries matching `query`.
    async fn deliveries(&self, query: &str) -> Vec<Value> {
        self.serve.deliveries(query).await
    }

    /// Waits (bounded) until the deliveries matching `query` satisfy `done`.
    async fn wait_deliveries(&self, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.serve.wait_deliveries(query, done).await
    }

    /// The client as stored.
    async fn client(&self, id: &str) -> Value {
        let (status, reply) = self
            .call(Method::GET, &format!("/api/v2/clients/{id}"), None)
            .await;
        assert_eq!(status, 200, "{reply}");
        reply
    }

    /// Asserts that `method` on `path` with `body` is refused with a 400 in Auth0's shape.
    async fn refused(&self, method: Method, path: &str, body: Value) {
        let (status, reply) = self.call(method, path, Some(body)).await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["statusCode"], 400, "{reply}");
        assert_eq!(reply["error"], "Bad Request", "{reply}");
        assert_eq!(reply["errorCode"], "invalid_body", "{reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(
            message.contains("backchannel_logout_user_wide"),
            "{message}"
        );
        assert!(
            message.contains("backchannel_logout_session_required"),
            "{message}"
        );
    }
}

fn claims(receipt: &Receipt) -> &Value {
    assert!(
        receipt.valid && receipt.errors.is_empty(),
        "invalid receipt: {receipt:#?}"
    );
    receipt.claims.as_ref().unwrap()
}

/// Every claim of a user-wide token but `sub`, which it carries instead of `sid`.
fn assert_user_token(claims: &Value, aud: &str) {
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], aud);
    assert_eq!(claims["sub"], USER);
    assert!(claims.get("sid").is_none(), "{claims}");
    assert!(claims.get("session_metadata").is_none(), "{claims}");
    assert_eq!(
        claims["events"],
        json!({ "http://schemas.openid.net/event/backchannel-logout": {} })
    );
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=120).contains(&lifetime), "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
}

/// The delivery of a `per_user` client, as the status API lists it and as its detail shows.
async fn assert_one_user_delivery(rig: &Rig, client: &str, state: &str, attempts: usize) -> String {
    let rows = rig.deliveries(&format!("client_id={client}")).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = &rows[0];
    assert_eq!(row["scope"], "user", "{row}");
    assert_eq!(row["sessions"], 3, "{row}");
    assert_eq!(row["session_id"], SESSIONS[0], "{row}");
    assert_eq!(row["user_id"], USER, "{row}");
    assert!(row.get("sid").is_none(), "{row}");
    assert_eq!(row["state"], state, "{row}");
    let id = row["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v2/logout-deliveries/{id}");
    let (status, detail) = rig.call(Method::GET, &path, None).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(
        (&detail["scope"], &detail["sessions"]),
        (&json!("user"), &json!(3))
    );
    assert_eq!(
        detail["attempt_history"].as_array().unwrap().len(),
        attempts
    );
    id
}

async fn per_user_clients_get_one_sub_token_for_a_user_wide_end(rig: Rig) {
    let per_user = rig.mock("rp-user", &[]).await;
    let per_session = rig.mock("rp-session", &[]).await;
    // Refuses the first token with a 400: a terminal failure, the dead letter.
    let flaky = rig
        .mock("rp-flaky", &["--fail-first", "1", "--fail-status", "400"])
        .await;
    rig.register("rp-user", &per_user, "per_user").await;
    rig.register("rp-session", &per_session, "per_session")
        .await;
    rig.register("rp-flaky", &flaky, "per_user").await;
    for (n, id) in SESSIONS.iter().enumerate() {
        let body = json!({ "id": id, "user_id": USER,
            "clients": [{ "client_id": "rp-user", "sid": format!("own-{n}") },
                { "client_id": "rp-session" }, { "client_id": "rp-flaky" }],
            "session_metadata": { "tenant": "acme", "n": n.to_string() } });
        let (status, reply) = rig.call(Method::POST, "/api/v2/sessions", Some(body)).await;
        assert_eq!(status, 201, "{reply}");
    }

    let path = format!("/api/v2/users/{}/sessions", USER.replace('|', "%7C"));
    let (status, reply) = rig.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(
        reply["deliveries"], 5,
        "one per session for rp-session, one each else"
    );

    let user_query = format!("user_id={}", USER.replace('|', "%7C"));
    rig.wait_deliveries(&user_query, |rows| {
        rows.len() == 5
            && rows
                .iter()
                .all(|r| matches!(r["state"].as_str(), Some("delivered" | "failed")))
    })
    .await;

    let receipts = per_user.receipts().await;
    assert_eq!(receipts.len(), 1, "exactly one token: {receipts:#?}");
    assert_user_token(claims(&receipts[0]), "rp-user");

    let receipts = per_session.receipts().await;
    assert_eq!(receipts.len(), 3, "{receipts:#?}");
    let mut sids: Vec<&str> = receipts
        .iter()
        .map(|r| {
            let c = claims(r);
            assert_eq!(c["sub"], USER);
            assert_eq!(c["session_metadata"]["tenant"], "acme", "{c}");
            c["sid"].as_str().unwrap()
        })
        .collect();
    sids.sort_unstable();
    assert_eq!(sids, SESSIONS);
    let rows = rig.deliveries("client_id=rp-session").await;
    assert!(
        rows.iter()
            .all(|r| r["scope"] == "session" && r["sessions"] == 1 && r["state"] == "delivered"),
        "{rows:#?}"
    );

    assert_one_user_delivery(&rig, "rp-user", "delivered", 1).await;
    let failed = assert_one_user_delivery(&rig, "rp-flaky", "failed", 1).await;

    let (status, metrics) = rig.call(Method::GET, "/metrics", None).await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("logoutd_user_wide_deliveries_enqueued_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("logoutd_user_wide_sessions_covered_total 6\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("logoutd_deliveries_enqueued_total 5\n"),
        "{metrics}"
    );

    // The dead letter, re-driven, reaches the RP once more as one sub-only token.
    let path = format!("/api/v2/logout-deliveries/{failed}/retry");
    let (status, reply) = rig.call(Method::POST, &path, None).await;
    assert!((200..300).contains(&status), "{status} {reply}");
    rig.wait_deliveries("client_id=rp-flaky", |rows| {
        rows.len() == 1 && rows[0]["state"] == "delivered"
    })
    .await;
    let receipts = flaky.receipts().await;
    assert_eq!(receipts.len(), 2, "{receipts:#?}");
    assert_eq!(receipts[0].status, Some(400));
    assert_eq!(receipts[1].status, Some(200));
    for receipt in &receipts {
        assert_user_token(claims(receipt), "rp-flaky");
    }
    assert_ne!(receipts[0].jti, receipts[1].jti, "a fresh jti per attempt");
    assert_one_user_delivery(&rig, "rp-flaky", "delivered", 2).await;

    // A single-session end still gives a per_user client a per-session token.
    let body = json!({ "id": "s-single", "user_id": USER,
        "clients": [{ "client_id": "rp-user" }], "session_metadata": { "tenant": "acme" } });
    assert_eq!(
        rig.call(Method::POST, "/api/v2/sessions", Some(body))
            .await
            .0,
        201
    );
    let body = json!({ "session_id": "s-single", "initiator": "rp-logout" });
    let (status, reply) = rig
        .call(Method::POST, "/api/v2/logout-events", Some(body))
        .await;
    assert_eq!(status, 202, "{reply}");
    let receipts = per_user.wait_receipts(2).await;
    let single = claims(&receipts[1]);
    assert_eq!(single["sid"], "s-single", "{single}");
    assert_eq!(single["session_metadata"]["tenant"], "acme", "{single}");
}

async fn per_user_with_session_required_is_refused_and_changes_nothing(rig: Rig) {
    let mock = rig.mock("rp-a", &[]).await;
    let urls = json!([mock.url("/backchannel")]);
    rig.refused(
        Method::POST,
        "/api/v2/clients",
        json!({ "client_id": "rp-bad", "name": "bad", "backchannel_logout_session_required": true,
            "oidc_logout": { "backchannel_logout_urls": urls,
                "backchannel_logout_user_wide": "per_user" } }),
    )
    .await;
    let (status, _) = rig.call(Method::GET, "/api/v2/clients/rp-bad", None).await;
    assert_eq!(status, 404, "the refused create stored nothing");

    rig.register("rp-user", &mock, "per_user").await;
    let before = rig.client("rp-user").await;
    rig.refused(
        Method::PATCH,
        "/api/v2/clients/rp-user",
        json!({ "name": "renamed", "backchannel_logout_session_required": true }),
    )
    .await;
    assert_eq!(rig.client("rp-user").await, before);

    let body = json!({ "client_id": "rp-sid", "name": "sid",
        "backchannel_logout_session_required": true,
        "oidc_logout": { "backchannel_logout_urls": urls } });
    let (status, reply) = rig.call(Method::POST, "/api/v2/clients", Some(body)).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(
        reply["oidc_logout"]["backchannel_logout_user_wide"],
        "per_session"
    );
    let before = rig.client("rp-sid").await;
    rig.refused(
        Method::PATCH,
        "/api/v2/clients/rp-sid",
        json!({ "oidc_logout": { "backchannel_logout_user_wide": "per_user" } }),
    )
    .await;
    assert_eq!(rig.client("rp-sid").await, before);

    // Leaving the conflict in one PATCH is accepted.
    let body = json!({ "backchannel_logout_session_required": false,
        "oidc_logout": { "backchannel_logout_user_wide": "per_user" } });
    let (status, reply) = rig
        .call(Method::PATCH, "/api/v2/clients/rp-sid", Some(body))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["oidc_logout"]["backchannel_logout_user_wide"],
        "per_user"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_per_user_clients_get_one_sub_token_for_a_user_wide_end() {
    per_user_clients_get_one_sub_token_for_a_user_wide_end(Rig::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_per_user_clients_get_one_sub_token_for_a_user_wide_end() {
    let Some(rig) = Rig::postgres().await else {
        return;
    };
    per_user_clients_get_one_sub_token_for_a_user_wide_end(rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_per_user_with_session_required_is_refused_and_changes_nothing() {
    per_user_with_session_required_is_refused_and_changes_nothing(Rig::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_per_user_with_session_required_is_refused_and_changes_nothing() {
    let Some(rig) = Rig::postgres().await else {
        return;
    };
    per_user_with_session_required_is_refused_and_changes_nothing(rig).await;
}
