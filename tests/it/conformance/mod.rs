//! End-to-end conformance: the real `logoutd serve` delivers to real `logoutd mock-rp`
//! processes on 127.0.0.1, and every test judges by the mock's receipts (OIDC Back-Channel
//! Logout 1.0 §2.4-§2.8, design §3).

mod claims;
mod initiators;
mod keys;
mod retry;
mod typ;

use crate::support::mock_rp_process::{MockRpArgs, MockRpProcess};
use crate::support::process::ServeProcess;
use logoutd_core::Receipt;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use tempfile::TempDir;

/// The issuer of every token in this suite.
pub const ISSUER: &str = "https://op.conformance.test";

/// Fast retries, so that retry classes settle in well under a second.
pub const FAST_RETRY: [&str; 4] = ["--retry-base-ms", "50", "--retry-cap-ms", "200"];

/// One `logoutd serve` over SQLite in a temporary directory, and the mocks started for it.
pub struct Rig {
    pub serve: ServeProcess,
    dir: TempDir,
}

impl Rig {
    /// Serve with [`FAST_RETRY`].
    pub async fn start() -> Self {
        Self::start_with(&FAST_RETRY).await
    }

    /// Serve with exactly `flags` besides the issuer, store and keys.
    pub async fn start_with(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("sqlite://{}/logoutd.db", dir.path().display());
        let mut all = vec!["--issuer", ISSUER];
        all.extend_from_slice(flags);
        let serve = ServeProcess::start(dir.path(), &store, &all).await;
        Self { serve, dir }
    }

    /// Serve's `jwks_uri`.
    pub fn jwks_uri(&self) -> String {
        self.serve.url("/.well-known/jwks.json")
    }

    /// Serve's signing keys directory.
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// A mock RP for `client_id` that trusts this serve, with `extra` flags.
    pub async fn mock(&self, client_id: &str, extra: &[&str]) -> MockRpProcess {
        let jwks_uri = self.jwks_uri();
        let args = MockRpArgs {
            issuer: ISSUER,
            jwks_uri: &jwks_uri,
            client_id,
            extra,
        };
        MockRpProcess::start(self.dir.path(), &args).await
    }

    /// Registers `body`, as built by [`client_body`] and adjusted by the test.
    pub async fn register(&self, body: Value) {
        let (status, reply) = self
            .serve
            .call(Method::POST, "/api/v2/clients", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }

    /// Registers `client_id` with `mock`'s `/backchannel` and nothing else set.
    pub async fn register_plain(&self, client_id: &str, mock: &MockRpProcess) {
        self.register(client_body(client_id, mock)).await;
    }

    /// Creates session `id` of `user` with `clients` and `metadata`.
    pub async fn session(&self, id: &str, user: &str, clients: &[&str], metadata: Value) {
        let clients: Vec<Value> = clients.iter().map(|c| json!({ "client_id": c })).collect();
        let mut body = json!({ "id": id, "user_id": user, "clients": clients });
        if !metadata.is_null() {
            body["session_metadata"] = metadata;
        }
        let (status, reply) = self
            .serve
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }

    /// Ends session `id` with `initiator`; returns how many deliveries it created.
    pub async fn end(&self, id: &str, initiator: &str) -> u64 {
        let body = json!({ "session_id": id, "initiator": initiator });
        let (status, reply) = self
            .serve
            .call(Method::POST, "/api/v2/logout-events", Some(body))
            .await;
        assert_eq!(status, 202, "{reply}");
        reply["deliveries"].as_u64().unwrap()
    }

    /// The deliveries of session `id`.
    pub async fn deliveries(&self, id: &str) -> Vec<Value> {
        self.serve.deliveries(&format!("session_id={id}")).await
    }

    /// Waits until the deliveries of session `id` satisfy `done`.
    pub async fn wait_deliveries(&self, id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.serve
            .wait_deliveries(&format!("session_id={id}"), done)
            .await
    }

    /// Waits until session `id`'s only delivery is in a final state, and returns its
    /// detail with the attempt history.
    pub async fn settled(&self, id: &str) -> Value {
        let rows = self
            .wait_deliveries(id, |d| {
                d.len() == 1 && matches!(d[0]["state"].as_str(), Some("delivered" | "failed"))
            })
            .await;
        let path = format!(
            "/api/v2/logout-deliveries/{}",
            rows[0]["id"].as_str().unwrap()
        );
        let (status, detail) = self.serve.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{detail}");
        detail
    }
}

/// A client `client_id` delivering to `mock`'s `/backchannel`, in Auth0's shape.
pub fn client_body(client_id: &str, mock: &MockRpProcess) -> Value {
    json!({
        "client_id": client_id,
        "name": client_id,
        "oidc_logout": { "backchannel_logout_urls": [mock.url("/backchannel")] },
    })
}

/// A receipt of a token that passed every §2.6 check.
pub fn assert_valid(receipt: &Receipt) {
    assert!(
        receipt.valid && receipt.errors.is_empty(),
        "invalid receipt: {receipt:#?}"
    );
}

/// The claims of a receipt.
pub fn claims(receipt: &Receipt) -> &Value {
    receipt.claims.as_ref().expect("the receipt has claims")
}
