//! Session expiry, retention and metrics end to end, in process: the expiry sweeper on a
//! manual clock, pruning through the store and the operator route, and `/metrics` moving as
//! deliveries happen.

use crate::support::app::start_time;
use crate::support::delivery::{Harness, NowUtc};
use crate::support::recording_rp::{RecordingRp, Reply};
use axum::http::{Method, StatusCode};
use chrono::Duration;
use logoutd_core::ExpirySweeper;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Registers `opted` (custom + session-expired), `plain` (Auth0's default: custom with only
/// the always-on initiators) and `all`.
async fn three_clients(h: &Harness, url: &str) {
    h.client(
        "plain",
        url,
        json!({ "oidc_logout": { "backchannel_logout_urls": [url],
        "backchannel_logout_initiators": { "mode": "custom" } } }),
    )
    .await;
    h.client("opted", url, json!({ "oidc_logout": { "backchannel_logout_urls": [url],
        "backchannel_logout_initiators": { "mode": "custom", "selected_initiators": ["session-expired"] } } })).await;
    h.client(
        "all",
        url,
        json!({ "oidc_logout": { "backchannel_logout_urls": [url],
        "backchannel_logout_initiators": { "mode": "all" } } }),
    )
    .await;
}

async fn expiring_session(h: &Harness, id: &str, expiry: Value) {
    let mut body = json!({ "id": id, "user_id": "u1",
        "clients": [{ "client_id": "plain" }, { "client_id": "opted" }, { "client_id": "all" }] });
    for (k, v) in expiry.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    let (status, reply) = h
        .app
        .call(Method::POST, "/api/v2/sessions", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}

fn spawn_sweeper(h: &Harness) -> CancellationToken {
    let shutdown = CancellationToken::new();
    let sweeper = ExpirySweeper::new(
        &h.app.stores,
        h.clock.clone(),
        Arc::new(logoutd_core::Metrics::new()),
        shutdown.clone(),
    );
    tokio::spawn(sweeper.run());
    shutdown
}

#[tokio::test]
async fn idle_and_absolute_expiry_send_session_expired_to_subscribed_clients_only() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let url = rp.url("/bc");
    three_clients(&h, url.as_str()).await;
    let t0 = start_time();
    expiring_session(
        &h,
        "absolute",
        json!({ "expires_at": t0 + Duration::seconds(60) }),
    )
    .await;
    expiring_session(
        &h,
        "idle",
        json!({ "expires_at": t0 + Duration::hours(8),
        "idle_expires_at": t0 + Duration::seconds(90) }),
    )
    .await;
    expiring_session(
        &h,
        "later",
        json!({ "expires_at": t0 + Duration::hours(1) }),
    )
    .await;
    let stop = spawn_sweeper(&h);
    h.clock.set(t0 + Duration::seconds(120));
    h.app.stores.housekeeping.expiry_wakeup().notify_one();
    h.outbox.wait_recorded(4).await;
    for sid in ["absolute", "idle"] {
        let rows = h.deliveries(&format!("session_id={sid}")).await;
        let clients: HashSet<&str> = rows
            .iter()
            .map(|d| d["client_id"].as_str().unwrap())
            .collect();
        assert_eq!(clients, HashSet::from(["opted", "all"]), "{sid}");
        assert!(
            rows.iter()
                .all(|d| d["initiator"] == "session-expired" && d["state"] == "delivered")
        );
        let (_, session) = h
            .app
            .call(Method::GET, &format!("/api/v2/sessions/{sid}"), None)
            .await;
        assert_eq!(session["end_initiator"], "session-expired");
    }
    assert!(h.deliveries("session_id=later").await.is_empty());
    assert_eq!(rp.requests().len(), 4);
    stop.cancel();
    h.stop().await;
}

#[tokio::test]
async fn pruning_removes_old_finished_rows_and_keeps_failed_and_young_ones() {
    let h = Harness::memory().await;
    let ok = RecordingRp::start(Reply::ok()).await;
    let bad = RecordingRp::start(Reply::status(400)).await;
    h.client("ok", ok.url("/bc").as_str(), json!({})).await;
    h.client("bad", bad.url("/bc").as_str(), json!({})).await;
    h.session("old", "u1", &["ok", "bad"], json!({})).await;
    h.end(json!({ "session_id": "old" }), "rp-logout").await;
    h.outbox.wait_recorded(2).await;
    h.clock.set(start_time() + Duration::days(8));
    h.session("young", "u1", &["ok"], json!({})).await;
    h.end(json!({ "session_id": "young" }), "rp-logout").await;
    h.outbox.wait_recorded(3).await;
    let before = h.clock.now_utc() - Duration::days(7);
    let report = logoutd_core::prune(&h.app.stores, before).await.unwrap();
    assert_eq!((report.deliveries, report.sessions), (1, 0));
    // Listings are ordered by (random) delivery id, so compare sorted.
    let mut left: Vec<(String, String)> = h
        .deliveries("")
        .await
        .iter()
        .map(|d| {
            (
                d["session_id"].as_str().unwrap().into(),
                d["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ("old".into(), "failed".into()),
            ("young".into(), "delivered".into())
        ]
    );
    let (status, reply) = h
        .app
        .call(
            Method::POST,
            "/api/v2/logout-deliveries/prune-failed?older_than_days=7",
            None,
        )
        .await;
    assert_eq!(
        (status, reply["deleted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{reply}"
    );
    let report = logoutd_core::prune(&h.app.stores, before).await.unwrap();
    assert_eq!(
        report.sessions, 1,
        "the old session goes once its failed row is gone"
    );
    h.stop().await;
}

/// The value of the sample line `name` (with its labels, if any) in a Prometheus text body,
/// if there is one.
fn sample_opt(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The value of the sample line `name`; a missing sample fails the test (a renamed or
/// unregistered metric must not read as 0).
fn sample(body: &str, name: &str) -> f64 {
    sample_opt(body, name).unwrap_or_else(|| panic!("no sample {name} in the scrape:\n{body}"))
}

async fn scrape(h: &Harness) -> String {
    let (status, _, body) = h.app.raw(Method::GET, "/metrics", None, None, None).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn metrics_move_as_deliveries_happen() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    h.client("c1", rp.url("/bc").as_str(), json!({})).await;
    h.client("c2", rp.url("/bc").as_str(), json!({})).await;
    let (status, _) = h
        .app
        .call(Method::POST, "/api/v2/clients/c2/pause", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    h.session("s1", "u1", &["c1", "c2"], json!({})).await;
    let before = scrape(&h).await;
    assert_eq!(sample(&before, "logoutd_deliveries_pending"), 0.0);
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    h.outbox.wait_recorded(1).await;
    h.clock.set(start_time() + Duration::seconds(30));
    let after = scrape(&h).await;
    let delivered = "logoutd_delivery_attempts_total{outcome=\"delivered\",client_id=\"c1\"}";
    // A label set is exported from its first count on: before any attempt there is none.
    assert_eq!(sample_opt(&before, delivered), None, "{before}");
    assert_eq!(sample(&after, delivered), 1.0, "{after}");
    assert_eq!(
        sample(&after, "logoutd_deliveries_pending"),
        1.0,
        "the paused client's row"
    );
    assert_eq!(sample(&after, "logoutd_deliveries_in_flight"), 0.0);
    assert_eq!(sample(&after, "logoutd_deliveries_dead_letter"), 0.0);
    assert_eq!(sample(&after, "logoutd_oldest_due_age_seconds"), 30.0);
    assert!(sample(&after, "logoutd_delivery_attempt_duration_seconds_count") >= 1.0);
    assert!(after.contains("logoutd_lease_reclaims_total"));
    h.stop().await;
}

/// Reads the `logoutd_delivery_attempts` counter for `client_id` and `outcome` from a scrape,
/// parsed by the independent `openmetrics-parser` crate as the OpenMetrics text `/metrics`
/// serves.
fn parsed_attempts(body: &str, client_id: &str, outcome: &str) -> f64 {
    use openmetrics_parser::{OpenMetricsValue, openmetrics};
    let parsed = openmetrics::parse_openmetrics(body)
        .unwrap_or_else(|e| panic!("the OpenMetrics parser refused the scrape: {e}\n{body}"));
    let family = &parsed.families["logoutd_delivery_attempts"];
    let matching: Vec<f64> = family
        .iter_samples()
        .filter(|sample| {
            let labels = sample.get_labelset().unwrap();
            labels.get_label_value("client_id") == Some(client_id)
                && labels.get_label_value("outcome") == Some(outcome)
        })
        .map(|sample| match &sample.value {
            OpenMetricsValue::Counter(counter) => counter.value.as_f64(),
            other => panic!("not a counter: {other:?}"),
        })
        .collect();
    assert!(matching.len() <= 1, "{matching:?}");
    *matching
        .first()
        .unwrap_or_else(|| panic!("no {outcome} sample for client {client_id:?}:\n{body}"))
}

#[tokio::test]
async fn a_hostile_client_id_cannot_break_the_scrape() {
    use logoutd_core::{LogoutInitiators, OidcLogout, RelyingParty};
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let hostile = r#"x",outcome="delivered"} 1e+99\"#;
    let url = rp.url("/bc");
    let body = json!({ "client_id": hostile, "name": "hostile",
        "oidc_logout": { "backchannel_logout_urls": [url.as_str()] } });
    let (status, reply) = h
        .app
        .call(Method::POST, "/api/v2/clients", Some(body))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("client_id must be")
    );

    // Stored directly, as an older release or a direct database write could have done.
    let client = RelyingParty {
        client_id: logoutd_core::ClientId::new(hostile),
        name: "hostile".into(),
        oidc_logout: OidcLogout {
            backchannel_logout_urls: vec![url.clone()],
            backchannel_logout_initiators: LogoutInitiators::default(),
            backchannel_logout_session_metadata: Default::default(),
            backchannel_logout_rate_limit: None,
            backchannel_logout_user_wide: Default::default(),
        },
        backchannel_logout_session_required: false,
        logout_token_typ: logoutd_core::TokenTyp::LogoutJwt,
        id_token_signed_response_alg: logoutd_core::SigningAlg::ES256,
        encryption: Default::default(),
        paused: false,
        paused_by: None,
        paused_at: None,
        created_at: start_time(),
        updated_at: start_time(),
    };
    h.app.stores.clients.create_client(&client).await.unwrap();
    h.client("c1", url.as_str(), json!({})).await;
    h.session("s1", "u1", &[hostile, "c1"], json!({})).await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    h.outbox.wait_recorded(2).await;
    let body = scrape(&h).await;
    assert_eq!(parsed_attempts(&body, hostile, "delivered"), 1.0, "{body}");
    assert_eq!(parsed_attempts(&body, "c1", "delivered"), 1.0, "{body}");
    h.stop().await;
}
