//! The SSF transmitter end to end, on real processes: `logoutd serve --ssf true` and
//! `logoutd mock-ssf`, the strict receiver, which creates its own stream, checks every SET and
//! records it. A session end reaches the receiver as signed `session-revoked` SETs sharing the
//! end's `txn`; a verification request reaches it with its `state`; a stream's backlog goes
//! out as fast as its receiver answers.

use crate::support::serve_process::ServeProcess;
use crate::support::ssf::{MockSsfProcess, Receiver as SsfReceiver, session};
use logoutd_core::{SESSION_REVOKED, VERIFICATION};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_wide_end_reaches_the_receiver_as_one_valid_set_per_session() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(dir.path(), &["--ssf", "true"]).await;
    serve.client("crm", "http://127.0.0.1:9/backchannel").await;
    serve
        .client("other", "http://127.0.0.1:9/backchannel")
        .await;
    let body = json!({"name": "siem", "client_id": "crm", "include_session_metadata": true});
    let (siem, created) = SsfReceiver::register_with(&serve, body).await;
    assert_eq!(created["scope"], "participating");
    let mock = MockSsfProcess::start(dir.path(), &serve.base, &siem, &[]).await;

    for (sid, client) in [("s1", "crm"), ("s2", "crm"), ("s3", "other")] {
        let body = json!({"id": sid, "user_id": "u1", "clients": [{"client_id": client}],
                          "session_metadata": {"tenant": "acme"}});
        let (status, session) = serve
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, 201, "{session}");
    }
    let (status, ended) = serve
        .call(Method::DELETE, "/api/v2/users/u1/sessions", None)
        .await;
    assert_eq!(status, 202, "{ended}");
    let event_id = ended["event_id"].as_str().unwrap().to_owned();

    let got = mock.receipts(2).await;
    let mut sids: Vec<&str> = got
        .iter()
        .map(|r| {
            assert!(r.valid, "{r:?}");
            assert_eq!(r.status, Some(202));
            assert_eq!(r.event.as_deref(), Some(SESSION_REVOKED));
            let claims = r.claims.as_ref().unwrap();
            assert_eq!(claims["iss"], serve.base.as_str());
            assert_eq!(claims["aud"], created["aud"]);
            assert_eq!(claims["txn"], event_id.as_str());
            assert_eq!(claims["sub_id"]["user"]["sub"], "u1");
            let event = &claims["events"][SESSION_REVOKED];
            assert_eq!(event["initiating_entity"], "admin");
            assert_eq!(event["session_metadata"]["tenant"], "acme");
            claims["sub_id"]["session"]["id"].as_str().unwrap()
        })
        .collect();
    sids.sort_unstable();
    assert_eq!(sids, ["s1", "s2"], "s3 never had the receiver's client");

    let (status, listed) = serve
        .call(Method::GET, "/api/v2/ssf-deliveries?state=delivered", None)
        .await;
    assert_eq!(status, 200, "{listed}");
    let rows = listed["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{listed}");
    assert!(
        rows.iter()
            .all(|r| r["kind"] == "session_revoked" && r["attempts"] == 1)
    );
    assert!(
        !listed.to_string().contains("acme"),
        "the operator's view never shows metadata"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_request_is_pushed_with_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(dir.path(), &["--ssf", "true"]).await;
    let (audit, _) = SsfReceiver::register_with(&serve, json!({"name": "audit"})).await;
    let mock = MockSsfProcess::start(dir.path(), &serve.base, &audit, &[]).await;

    let stream_id = audit.stream_id(&serve.base).await;
    let verify = reqwest::Client::new()
        .post(format!("{}/ssf/verify", serve.base))
        .bearer_auth(&audit.token)
        .json(&json!({"stream_id": stream_id, "state": "e2e-check"}))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), 204);

    let got = mock.receipts(1).await;
    let verification = got
        .iter()
        .find(|r| r.event.as_deref() == Some(VERIFICATION))
        .expect("a verification SET");
    assert!(verification.valid, "{verification:?}");
    let claims = verification.claims.as_ref().unwrap();
    assert_eq!(claims["events"][VERIFICATION]["state"], "e2e-check");
    assert_eq!(
        claims["sub_id"],
        json!({"format": "opaque", "id": stream_id})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_backlog_goes_out_as_fast_as_its_receiver_answers() {
    const BACKLOG: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(dir.path(), &["--ssf", "true"]).await;
    let siem = SsfReceiver::register(&serve, "siem").await;
    let mock = MockSsfProcess::start(dir.path(), &serve.base, &siem, &[]).await;
    let stream = siem.stream_id(&serve.base).await;
    siem.set_status(&serve.base, &stream, "paused").await;
    for i in 0..BACKLOG {
        session(&serve, &format!("s-{i}"), "u-1").await;
    }
    let (status, ended) = serve
        .call(Method::DELETE, "/api/v2/users/u-1/sessions", None)
        .await;
    assert_eq!(status, 202, "{ended}");
    let released = std::time::Instant::now();
    siem.set_status(&serve.base, &stream, "enabled").await;
    let got = mock.receipts(BACKLOG).await;
    let took = released.elapsed();
    eprintln!("a backlog of {BACKLOG} SETs pushed in {took:?}");
    assert_eq!(got.len(), BACKLOG);
    assert!(got.iter().all(|r| r.valid && r.status == Some(202)));
    // Four at a time, each slot taken again as soon as it frees: not four per claim interval.
    assert!(took < Duration::from_secs(4), "{took:?}");
}
