//! Head-of-line blocking across origins: a healthy RP's deliveries are not held up by RPs on
//! other origins that never answer, even when those RPs' attempts fill their per-origin caps
//! and, together, more than the global in-flight cap.

use crate::support::recording_rp::{RecordingRp, Reply};
use crate::support::serve_process::ServeProcess;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

const SESSIONS: usize = 20;
const HUNG: usize = 3;
/// Three hung origins at 4 attempts each want 12 slots of 8; the attempt timeout is far
/// beyond the test, so no timeout frees a slot.
const FLAGS: &[&str] = &[
    "--max-in-flight",
    "8",
    "--max-per-origin",
    "4",
    "--attempt-timeout-ms",
    "120000",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_origin_is_served_while_hung_origins_fill_their_caps() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = RecordingRp::start(Reply::ok()).await;
    let mut hung = Vec::new();
    for _ in 0..HUNG {
        hung.push(RecordingRp::start(Reply::never()).await);
    }
    let server = ServeProcess::start(dir.path(), FLAGS).await;
    server.client("healthy", healthy.url("/bc").as_str()).await;
    let mut clients = vec![json!({ "client_id": "healthy" })];
    for (n, rp) in hung.iter().enumerate() {
        let id = format!("hung-{n}");
        server.client(&id, rp.url("/bc").as_str()).await;
        clients.push(json!({ "client_id": id }));
    }
    for n in 0..SESSIONS {
        let body = json!({ "id": format!("s{n:02}"), "user_id": "u1", "clients": clients });
        let (status, reply) = server
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }
    let (status, reply) = server
        .call(Method::DELETE, "/api/v2/users/u1/sessions", None)
        .await;
    assert_eq!(
        (status, reply["deliveries"].as_u64()),
        (202, Some((SESSIONS * (HUNG + 1)) as u64))
    );
    // Each hung origin takes its cap of attempts, which then never end ...
    for rp in &hung {
        assert!(
            rp.wait_until(Duration::from_secs(20), |seen| seen.len() >= 4)
                .await,
            "a hung origin did not fill its cap"
        );
    }
    // ... and the healthy origin still gets every session's token, well before any timeout.
    let served = healthy
        .wait_until(Duration::from_secs(20), |seen| seen.len() >= SESSIONS)
        .await;
    assert!(
        served,
        "the healthy RP got {} of {SESSIONS} while hung origins held their attempts",
        healthy.requests().len()
    );
    for rp in &hung {
        assert!(rp.requests().len() <= 4, "a hung origin passed its cap");
    }
    // The hung attempts gave their slots back by moving to the slow lane.
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let moves: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("logoutd_delivery_slow_lane_moves_total "))
        .expect("slow lane metric")
        .trim()
        .parse()
        .unwrap();
    assert!(moves >= 1.0, "{moves} slow-lane moves");
    // Attempts to the hung origins last 120 s: the process is killed, not drained.
    drop(server);
}
