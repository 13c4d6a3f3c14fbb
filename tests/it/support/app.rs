//! `TestApp`: the API router over a chosen backend, driven in-process with a manual clock.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use logoutd_core::Issuer;
use logoutd_core::KeyRing;
use logoutd_core::ManualClock;
use logoutd_core::Metrics;
use logoutd_core::NetPolicy;
use logoutd_core::Stores;
use logoutd_core::{AppState, DEFAULT_BODY_LIMIT, router};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt as _;

pub const API_TOKEN: &str = "test-api-token-0123456789abcdefghij";
pub const ISSUER: &str = "https://idp.test";

/// A key ring with the four fixture keys active.
pub fn test_keys() -> Arc<KeyRing> {
    Arc::new(KeyRing::from_set(super::fixture_keys()))
}

pub struct TestApp {
    pub router: Router,
    pub stores: Stores,
    pub clock: Arc<ManualClock>,
    pub keys: Arc<KeyRing>,
}

pub fn start_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

impl TestApp {
    pub async fn memory() -> Self {
        Self::over(logoutd_core::open_store("memory://").await.unwrap(), true)
    }

    /// The router over `stores`; `insecure` allows http loopback RP URLs.
    pub fn over(stores: Stores, insecure: bool) -> Self {
        Self::with_clock(stores, insecure, Arc::new(ManualClock::new(start_time())))
    }

    /// The router over `stores` with a given clock.
    pub fn with_clock(stores: Stores, insecure: bool, clock: Arc<ManualClock>) -> Self {
        Self::with_parts(stores, insecure, clock, Arc::new(Metrics::new()))
    }

    /// The router over `stores` with a given clock and metrics registry.
    pub fn with_parts(
        stores: Stores,
        insecure: bool,
        clock: Arc<ManualClock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::build(stores, insecure, clock, metrics, ISSUER, None)
    }

    /// The router with the SSF transmitter's routes on, over the memory store, for `issuer`.
    pub async fn ssf(issuer: &str, insecure: bool, ssf: logoutd_core::SsfApi) -> Self {
        let stores = logoutd_core::open_store("memory://").await.unwrap();
        let clock = Arc::new(ManualClock::new(start_time()));
        Self::build(
            stores,
            insecure,
            clock,
            Arc::new(Metrics::new()),
            issuer,
            Some(ssf),
        )
    }

    /// The router over the memory store, accepting [`API_TOKEN`] (admin) and the scoped
    /// tokens of the token file at `tokens`.
    pub async fn with_tokens(tokens: std::path::PathBuf) -> Self {
        let stores = logoutd_core::open_store("memory://").await.unwrap();
        let credentials = logoutd_core::Credentials::new(Some(API_TOKEN), Some(tokens)).unwrap();
        let clock = Arc::new(ManualClock::new(start_time()));
        Self::build_with(
            stores,
            true,
            clock,
            Arc::new(Metrics::new()),
            ISSUER,
            None,
            credentials,
        )
    }

    fn build(
        stores: Stores,
        insecure: bool,
        clock: Arc<ManualClock>,
        metrics: Arc<Metrics>,
        issuer: &str,
        ssf: Option<logoutd_core::SsfApi>,
    ) -> Self {
        let credentials = logoutd_core::Credentials::new(Some(API_TOKEN), None).unwrap();
        Self::build_with(stores, insecure, clock, metrics, issuer, ssf, credentials)
    }

    fn build_with(
        stores: Stores,
        insecure: bool,
        clock: Arc<ManualClock>,
        metrics: Arc<Metrics>,
        issuer: &str,
        ssf: Option<logoutd_core::SsfApi>,
        credentials: logoutd_core::Credentials,
    ) -> Self {
        let keys = test_keys();
        let state = Arc::new(AppState {
            stores: stores.clone(),
            keys: keys.clone(),
            issuer: Issuer::new(issuer),
            net: NetPolicy {
                allow_insecure: insecure,
            },
            clock: clock.clone(),
            credentials: Arc::new(credentials),
            metrics,
            body_limit: DEFAULT_BODY_LIMIT,
            waits: logoutd_core::Waits::default(),
            ssf,
            delivery_stats: logoutd_core::StatsCache::default(),
        });
        Self {
            router: router(state),
            stores,
            clock,
            keys,
        }
    }

    /// Sends a request with the API token and an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (status, _, body) = self
            .raw(
                method,
                path,
                Some(API_TOKEN),
                Some("application/json"),
                bytes,
            )
            .await;
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()))
        };
        (status, value)
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(kind) = content_type {
            req = req.header(header::CONTENT_TYPE, kind);
        }
        let req = req
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), 16 * 1024 * 1024)
            .await
            .unwrap();
        (status, headers, body)
    }
}

/// Asserts an Auth0-shaped error body with `status`.
pub fn assert_auth0_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "body: {body}");
    assert_eq!(body["statusCode"], expected.as_u16(), "body: {body}");
    assert!(body["error"].is_string(), "body: {body}");
    assert!(body["message"].is_string(), "body: {body}");
    assert!(body["errorCode"].is_string(), "body: {body}");
}
