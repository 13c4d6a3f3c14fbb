//! Conformance cases for the bulk re-drive of dead letters: its filters, its batches and its
//! idempotency keys.

use super::claims::{lease, result};
use super::fixtures::*;
use chrono::{DateTime, Utc};
use logoutd_core::{BulkRedrive, FailedFilter, IdempotentRequest, Initiator};
use logoutd_core::{ClientId, DeliveryId};
use logoutd_core::{Decision, DeliveryState, Stores, Terminal};

/// Ends a new session `id` of `client` with `initiator` at `end`, and fails its row at
/// `fail` (a 410 gives up at once). Returns the row's id.
async fn failed_row(
    s: &Stores,
    id: &str,
    client: &str,
    initiator: Initiator,
    end_ms: i64,
    fail_ms: i64,
) -> DeliveryId {
    create(s, &session(id, "u1", &[client])).await;
    assert_eq!(end(s, id, initiator, t(end_ms)).await.deliveries, 1);
    let claimed = s.queue.claim_due(t(end_ms), lease(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let give_up = Decision::GiveUp(Terminal::Refused(410).into());
    let results = [result(&claimed[0], fail_ms, 410, give_up)];
    assert_eq!(s.queue.record(&results).await.unwrap(), 1);
    claimed[0].delivery.id.clone()
}

/// The state, attempts and due time of row `id`.
async fn row(s: &Stores, id: &DeliveryId) -> (DeliveryState, u32, Option<DateTime<Utc>>) {
    let d = s
        .deliveries
        .get_delivery(id)
        .await
        .unwrap()
        .unwrap()
        .delivery;
    (d.state, d.attempts, d.next_attempt_at)
}

/// Bulk re-drive of every row matching `filter` at `now`, without a key.
async fn redrive(s: &Stores, filter: &FailedFilter, now_ms: i64) -> BulkRedrive {
    s.redrives
        .redrive_failed(filter, None, t(now_ms))
        .await
        .unwrap()
}

/// A key for `hash`, expiring at `expires_ms`.
fn key(key: &str, hash: &str, expires_ms: i64) -> IdempotentRequest {
    IdempotentRequest {
        key: key.to_owned(),
        request_hash: hash.to_owned(),
        expires_at: t(expires_ms),
    }
}

pub async fn bulk_redrive_takes_exactly_the_failed_rows_matching_every_filter(s: Stores) {
    register(&s, &[all_mode_client("c1"), all_mode_client("c2")]).await;
    let early = failed_row(&s, "s1", "c1", Initiator::RpLogout, 2_000, 3_000).await;
    let other_initiator =
        failed_row(&s, "s2", "c1", Initiator::PasswordChanged, 4_000, 5_000).await;
    let other_client = failed_row(&s, "s3", "c2", Initiator::RpLogout, 4_000, 5_000).await;
    let late = failed_row(&s, "s4", "c1", Initiator::RpLogout, 6_000, 7_000).await;
    create(&s, &session("s5", "u1", &["c1"])).await;
    end(&s, "s5", Initiator::RpLogout, t(8_000)).await;

    let filter = FailedFilter {
        client_id: Some(ClientId::new("c1")),
        initiator: Some(Initiator::RpLogout),
        failed_since: Some(t(3_000)),
        failed_before: Some(t(7_000)),
        ids: None,
    };
    let wakeup = s.queue.wakeup();
    assert_eq!(redrive(&s, &filter, 9_000).await, BulkRedrive::Redriven(1));
    tokio::time::timeout(std::time::Duration::from_secs(5), wakeup.notified())
        .await
        .unwrap();
    assert_eq!(
        row(&s, &early).await,
        (DeliveryState::Pending, 0, Some(t(9_000)))
    );
    for id in [&other_initiator, &other_client, &late] {
        assert_eq!(row(&s, id).await.0, DeliveryState::Failed, "{id}");
    }
    let again = s.queue.claim_due(t(9_000), lease(), 10).await.unwrap();
    let mine: Vec<_> = again.iter().filter(|c| c.delivery.id == early).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].budget_started_at, t(9_000), "a fresh age budget");

    assert_eq!(
        redrive(&s, &FailedFilter::default(), 9_500).await,
        BulkRedrive::Redriven(3)
    );
    for id in [&other_initiator, &other_client, &late] {
        assert_eq!(row(&s, id).await.0, DeliveryState::Pending, "{id}");
    }
    assert_eq!(
        redrive(&s, &FailedFilter::default(), 9_600).await,
        BulkRedrive::Redriven(0)
    );
}

pub async fn bulk_redrive_by_ids_takes_only_the_named_failed_rows(s: Stores) {
    register(&s, &[all_mode_client("c1")]).await;
    let first = failed_row(&s, "s1", "c1", Initiator::RpLogout, 2_000, 3_000).await;
    let second = failed_row(&s, "s2", "c1", Initiator::RpLogout, 4_000, 5_000).await;
    let unnamed = failed_row(&s, "s3", "c1", Initiator::RpLogout, 6_000, 7_000).await;
    create(&s, &session("s4", "u1", &["c1"])).await;
    end(&s, "s4", Initiator::RpLogout, t(8_000)).await;
    let pending = s
        .deliveries
        .list_deliveries(&Default::default(), None, 10)
        .await
        .unwrap();
    let pending = pending
        .items
        .iter()
        .find(|d| d.session_id.as_str() == "s4")
        .unwrap()
        .id
        .clone();
    let by_ids = |ids: Vec<DeliveryId>| FailedFilter {
        ids: Some(ids),
        ..FailedFilter::default()
    };
    let named = by_ids(vec![
        first.clone(),
        second.clone(),
        pending.clone(),
        DeliveryId::new("dlv_absent"),
    ]);
    assert_eq!(redrive(&s, &named, 9_000).await, BulkRedrive::Redriven(2));
    for id in [&first, &second] {
        assert_eq!(
            row(&s, id).await,
            (DeliveryState::Pending, 0, Some(t(9_000)))
        );
    }
    assert_eq!(row(&s, &unnamed).await.0, DeliveryState::Failed);
    assert_eq!(row(&s, &pending).await.0, DeliveryState::Pending);
    assert_eq!(redrive(&s, &named, 9_100).await, BulkRedrive::Redriven(0));
    assert_eq!(
        redrive(&s, &by_ids(Vec::new()), 9_200).await,
        BulkRedrive::Redriven(0),
        "no id names no row"
    );
    assert_eq!(row(&s, &unnamed).await.0, DeliveryState::Failed);
}

pub async fn bulk_redrive_pages_through_more_than_one_batch_once_each(s: Stores) {
    register(&s, &[client("c1")]).await;
    let n = 1_001;
    for i in 0..n {
        create(&s, &session(&format!("s{i:04}"), "u1", &["c1"])).await;
    }
    end_user(&s, "u1", Initiator::RpLogout, t(2_000)).await;
    let claimed = s.queue.claim_due(t(2_000), lease(), 2_000).await.unwrap();
    assert_eq!(claimed.len(), n);
    let give_up = || Decision::GiveUp(Terminal::Refused(410).into());
    let results: Vec<_> = claimed
        .iter()
        .map(|c| result(c, 2_100, 410, give_up()))
        .collect();
    assert_eq!(s.queue.record(&results).await.unwrap(), n as u64);

    let all = FailedFilter::default();
    assert_eq!(
        redrive(&s, &all, 3_000).await,
        BulkRedrive::Redriven(n as u64)
    );
    let rows = all_deliveries(&s, 100).await;
    assert_eq!(rows.len(), n);
    assert!(
        rows.iter()
            .all(|d| d.state == DeliveryState::Pending && d.attempts == 0)
    );
    assert_eq!(s.deliveries.stats(t(3_000)).await.unwrap().failed, 0);
}

pub async fn a_repeated_key_replays_the_first_count_and_redrives_nothing(s: Stores) {
    register(&s, &[client("c1")]).await;
    let first = failed_row(&s, "s1", "c1", Initiator::RpLogout, 2_000, 3_000).await;
    let all = FailedFilter::default();
    let k = key("key-1", "hash-a", 100_000);
    let outcome = s.redrives.redrive_failed(&all, Some(&k), t(4_000)).await;
    assert_eq!(outcome.unwrap(), BulkRedrive::Redriven(1));
    assert_eq!(row(&s, &first).await.0, DeliveryState::Pending);

    let claimed = s.queue.claim_due(t(4_000), lease(), 10).await.unwrap();
    let give_up = Decision::GiveUp(Terminal::Refused(410).into());
    s.queue
        .record(&[result(&claimed[0], 4_100, 410, give_up)])
        .await
        .unwrap();
    let second = failed_row(&s, "s2", "c1", Initiator::RpLogout, 5_000, 5_100).await;

    let replay = s.redrives.redrive_failed(&all, Some(&k), t(6_000)).await;
    assert_eq!(replay.unwrap(), BulkRedrive::Replayed(1));
    for id in [&first, &second] {
        assert_eq!(row(&s, id).await.0, DeliveryState::Failed, "{id}");
    }
    let other = key("key-1", "hash-b", 100_000);
    let reused = s
        .redrives
        .redrive_failed(&all, Some(&other), t(6_000))
        .await;
    assert_eq!(reused.unwrap(), BulkRedrive::KeyReused);
    for id in [&first, &second] {
        assert_eq!(row(&s, id).await.0, DeliveryState::Failed, "{id}");
    }

    let fresh = key("key-2", "hash-a", 100_000);
    let outcome = s
        .redrives
        .redrive_failed(&all, Some(&fresh), t(6_000))
        .await;
    assert_eq!(outcome.unwrap(), BulkRedrive::Redriven(2));
}

pub async fn an_expired_key_is_forgotten_and_pruned(s: Stores) {
    register(&s, &[client("c1")]).await;
    failed_row(&s, "s1", "c1", Initiator::RpLogout, 2_000, 3_000).await;
    let all = FailedFilter::default();
    let short = key("key-1", "hash-a", 10_000);
    let first = s
        .redrives
        .redrive_failed(&all, Some(&short), t(4_000))
        .await;
    assert_eq!(first.unwrap(), BulkRedrive::Redriven(1));
    let long = key("key-2", "hash-a", 90_000);
    let kept = s.redrives.redrive_failed(&all, Some(&long), t(4_000)).await;
    assert_eq!(kept.unwrap(), BulkRedrive::Redriven(0));

    assert_eq!(s.housekeeping.prune_keys(t(9_999), 100).await.unwrap(), 0);
    let reused = key("key-1", "hash-b", 200_000);
    let after_expiry = s
        .redrives
        .redrive_failed(&all, Some(&reused), t(10_000))
        .await;
    assert_eq!(
        after_expiry.unwrap(),
        BulkRedrive::Redriven(0),
        "an expired key is free"
    );

    assert_eq!(s.housekeeping.prune_keys(t(95_000), 100).await.unwrap(), 1);
    let gone = key("key-2", "hash-b", 300_000);
    let outcome = s
        .redrives
        .redrive_failed(&all, Some(&gone), t(96_000))
        .await;
    assert_eq!(
        outcome.unwrap(),
        BulkRedrive::Redriven(0),
        "a pruned key is free"
    );
    let replay = s
        .redrives
        .redrive_failed(&all, Some(&reused), t(96_000))
        .await;
    assert_eq!(
        replay.unwrap(),
        BulkRedrive::Replayed(0),
        "an unexpired key still replays"
    );
}
