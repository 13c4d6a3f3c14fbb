//! Conformance cases for the overview's statistics: rows per state, the oldest due row, and
//! the outcomes per ten-second bucket by each row's last change.

use super::claims::{lease, result};
use super::fixtures::*;
use logoutd_core::{BucketCounts, StateCounts};
use logoutd_core::{Decision, Terminal};
use logoutd_core::{DeliveryFilter, Initiator, Stores};

pub async fn delivery_stats_count_states_and_outcomes_per_bucket(s: Stores) {
    let empty = s.deliveries.delivery_stats(t(0), t(0)).await.unwrap();
    assert_eq!(empty.counts, StateCounts::default());
    assert_eq!((empty.oldest_due_at, empty.buckets.len()), (None, 0));
    for (id, at) in [
        ("a", 1_000),
        ("b", 1_000),
        ("c", 1_000),
        ("d", 2_000),
        ("e", 3_000),
    ] {
        one_row(&s, id, t(at)).await;
    }
    let claimed = s.queue.claim_due(t(3_000), lease(), 10).await.unwrap();
    let by = |sid: &str| {
        claimed
            .iter()
            .find(|c| c.delivery.session_id.as_str() == sid)
            .unwrap()
    };
    let rejected = || Decision::GiveUp(Terminal::Rejected(None).into());
    // a and b delivered in the bucket at 60 s, c failed in the one at 130 s, d in the one at
    // 0 s (before the window asked for), e retried (pending again, due at 200 s).
    let results = [
        result(by("a"), 60_500, 204, Decision::Delivered),
        result(by("b"), 61_000, 200, Decision::Delivered),
        result(by("c"), 135_000, 400, rejected()),
        result(by("d"), 4_000, 400, rejected()),
        result(by("e"), 5_000, 503, Decision::RetryAt(t(200_000))),
    ];
    assert_eq!(s.queue.record(&results).await.unwrap(), 5);
    one_row(&s, "f", t(130_000)).await;

    let stats = s
        .deliveries
        .delivery_stats(t(210_000), t(60_000))
        .await
        .unwrap();
    let counts = StateCounts {
        pending: 2,
        delivered: 2,
        failed: 2,
        ..StateCounts::default()
    };
    assert_eq!(stats.counts, counts);
    // f has waited since 130 s, e since 200 s: f is the oldest due.
    assert_eq!(stats.oldest_due_at, Some(t(130_000)));
    assert_eq!(
        stats.buckets,
        vec![
            BucketCounts {
                start: t(60_000),
                delivered: 2,
                failed: 0
            },
            BucketCounts {
                start: t(130_000),
                delivered: 0,
                failed: 1
            },
        ]
    );
    // Nothing is due before 130 s.
    let early = s.deliveries.delivery_stats(t(100_000), t(0)).await.unwrap();
    assert_eq!(early.oldest_due_at, None);
    assert_eq!(early.buckets.len(), 3, "{:?}", early.buckets);
    assert_eq!(early.buckets[0].failed, 1);
}

pub async fn deliveries_filter_by_initiator_and_creation_time(s: Stores) {
    register(&s, &[all_mode_client("rp")]).await;
    let ends = [
        ("s1", Initiator::RpLogout, 1_000),
        ("s2", Initiator::SessionRevoked, 2_000),
        ("s3", Initiator::RpLogout, 3_000),
    ];
    for (id, initiator, at) in ends {
        create(&s, &session(id, "u", &["rp"])).await;
        end(&s, id, initiator, t(at)).await;
    }
    let sessions = |filter: DeliveryFilter| {
        let s = s.clone();
        async move {
            let page = s
                .deliveries
                .list_deliveries(&filter, None, 10)
                .await
                .unwrap();
            let mut ids: Vec<String> = page
                .items
                .iter()
                .map(|d| d.session_id.to_string())
                .collect();
            ids.sort();
            ids
        }
    };
    let rp_logout = DeliveryFilter {
        initiator: Some(Initiator::RpLogout),
        ..DeliveryFilter::default()
    };
    assert_eq!(sessions(rp_logout.clone()).await, ["s1", "s3"]);
    let since = DeliveryFilter {
        created_since: Some(t(2_000)),
        ..DeliveryFilter::default()
    };
    assert_eq!(sessions(since).await, ["s2", "s3"]);
    let early_rp = DeliveryFilter {
        created_before: Some(t(3_000)),
        ..rp_logout
    };
    assert_eq!(sessions(early_rp).await, ["s1"]);
}
