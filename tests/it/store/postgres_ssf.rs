//! PostgreSQL-only cases of the SSF store: several nodes on one database never hand one SET
//! row out twice, keep one verification interval, and wake each other's SET workers and long
//! polls (`NOTIFY logoutd_ssf`), a bulk re-drive included.

use super::claims::lease;
use super::fixtures::*;
use super::postgres::{WAKE_BOUND, listening, two_nodes};
use super::ssf::{new_set, push, receiver_with_stream};
use super::ssf_delivery::poll_of;
use chrono::Duration;
use futures_util::FutureExt;
use logoutd_core::{
    BulkRedrive, FailedSetFilter, Initiator, PushRoom, SetError, SetKind, Stores, StreamDelivery,
    VerifyOutcome,
};
use std::collections::HashSet;

/// Ends `n` sessions of user `u1` (client `c1`) on `node`.
async fn end_many(node: &Stores, n: i64) {
    register(node, &[client("c1")]).await;
    for i in 0..n {
        let id = format!("s{i:03}");
        create(node, &session(&id, "u1", &["c1"])).await;
        end(node, &id, Initiator::RpLogout, t(2_000 + i)).await;
    }
}

/// Waits for the SET wake-up the listener gives once it listens, and takes its permit.
async fn sets_listening(stores: &Stores) {
    listening(stores).await;
    let _ = stores.ssf_wake.notified().now_or_never();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_polling_one_stream_never_hand_out_one_row_twice() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    receiver_with_stream(&a, "q", StreamDelivery::Poll).await;
    end_many(&a, 60).await;
    let drain = |node: Stores| async move {
        let mut mine = Vec::new();
        loop {
            let batch = node.ssf.poll(&poll_of("q", 7, t(10_000))).await.unwrap();
            if batch.rows.is_empty() {
                return mine;
            }
            mine.extend(batch.rows.into_iter().map(|r| r.set.jti));
        }
    };
    let tasks: Vec<_> = [&a, &b, &a, &b, &a, &b]
        .into_iter()
        .map(|node| tokio::spawn(drain(node.clone())))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 60, "every row handed out once");
    assert_eq!(unique.len(), 60, "no row handed out twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claim_each_push_set_once() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    receiver_with_stream(&a, "p", push("p")).await;
    end_many(&a, 60).await;
    let drain = |node: Stores| async move {
        let mut mine = Vec::new();
        loop {
            let batch = node
                .ssf
                .claim_push(t(10_000), lease(), 7, &PushRoom::unlimited())
                .await
                .unwrap();
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch.into_iter().map(|c| c.row.set.id));
        }
    };
    let tasks: Vec<_> = [&a, &b, &a, &b]
        .into_iter()
        .map(|node| tokio::spawn(drain(node.clone())))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!((all.len(), unique.len()), (60, 60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_verifying_at_once_accept_one_request() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    receiver_with_stream(&a, "v", StreamDelivery::Poll).await;
    for round in 0..10 {
        let at = t(100_000 * (round + 1));
        let tasks = [&a, &b].map(|node| {
            let node = node.clone();
            tokio::spawn(async move {
                let row = new_set("v", SetKind::Verification, at);
                node.ssf
                    .request_verification("v", "st-v", &row, Duration::seconds(10), at)
                    .await
                    .unwrap()
            })
        });
        let mut accepted = 0;
        for task in tasks {
            match task.await.unwrap() {
                VerifyOutcome::Accepted => accepted += 1,
                VerifyOutcome::TooSoon { retry_after_secs } => assert_eq!(retry_after_secs, 10),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(accepted, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_written_on_one_node_wake_the_other() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    receiver_with_stream(&a, "q", StreamDelivery::Poll).await;
    register(&a, &[client("c1")]).await;
    create(&a, &session("s1", "u1", &["c1"])).await;
    sets_listening(&b).await;
    // A session end's SET rows.
    let waiting = b.ssf_wake.notified();
    end(&a, "s1", Initiator::RpLogout, t(2_000)).await;
    tokio::time::timeout(WAKE_BOUND, waiting)
        .await
        .expect("node B is woken by node A's SET rows");
    let polled = b.ssf.poll(&poll_of("q", 10, t(2_000))).await.unwrap();
    assert_eq!(polled.rows.len(), 1);
    // A verification's row.
    b.health.ping().await.unwrap();
    let _ = b.ssf_wake.notified().now_or_never();
    let waiting = b.ssf_wake.notified();
    let row = new_set("q", SetKind::Verification, t(3_000));
    let outcome = a
        .ssf
        .request_verification("q", "st-q", &row, Duration::seconds(10), t(3_000))
        .await
        .unwrap();
    assert_eq!(outcome, VerifyOutcome::Accepted);
    tokio::time::timeout(WAKE_BOUND, waiting)
        .await
        .expect("node B is woken by node A's verification");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_set_redrive_on_one_node_wakes_the_other() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    receiver_with_stream(&a, "q", StreamDelivery::Poll).await;
    end_many(&a, 3).await;
    let handed = a.ssf.poll(&poll_of("q", 10, t(3_000))).await.unwrap();
    let mut errors = poll_of("q", 0, t(3_100));
    errors.set_errs = handed
        .rows
        .iter()
        .map(|r| {
            let error = SetError {
                err: "invalid_key".to_owned(),
                description: "unknown key".to_owned(),
            };
            (r.set.jti.clone(), error)
        })
        .collect();
    a.ssf.poll(&errors).await.unwrap();
    sets_listening(&b).await;
    let waiting = b.ssf_wake.notified();
    let redriven = a
        .redrives
        .redrive_failed_sets(&FailedSetFilter::default(), None, t(4_000))
        .await
        .unwrap();
    assert_eq!(redriven, BulkRedrive::Redriven(3));
    tokio::time::timeout(WAKE_BOUND, waiting)
        .await
        .expect("node B is woken by node A's re-drive");
    let polled = b.ssf.poll(&poll_of("q", 10, t(4_000))).await.unwrap();
    assert_eq!(polled.rows.len(), 3);
}
