//! Conformance cases for what an end reports about the clients it tells nothing (skipped)
//! and those whose rows wait while they are paused (held).

use super::fixtures::*;
use logoutd_core::ClientId;
use logoutd_core::EndReport;
use logoutd_core::Initiator;
use logoutd_core::Stores;
use logoutd_core::{ClientNote, SkipReason};

/// `(client_id, reason, first session, sessions)` of each note.
fn summary(notes: &[ClientNote]) -> Vec<(String, SkipReason, String, usize)> {
    notes
        .iter()
        .map(|n| {
            let (client, session) = (n.client_id.to_string(), n.session_id.to_string());
            (client, n.reason, session, n.sessions)
        })
        .collect()
}

fn note(
    client: &str,
    reason: SkipReason,
    session: &str,
    n: usize,
) -> (String, SkipReason, String, usize) {
    (client.to_owned(), reason, session.to_owned(), n)
}

/// Registers `plain` (Auth0's default), `nourl`, `all`, `paused` (all mode, paused) and
/// `gone` (deleted at once).
async fn five_clients(s: &Stores) {
    let mut paused = all_mode_client("paused");
    paused.paused = true;
    let clients = [
        client("plain"),
        urlless_client("nourl"),
        all_mode_client("all"),
        paused,
        all_mode_client("gone"),
    ];
    register(s, &clients).await;
}

const JOINED: [&str; 5] = ["plain", "nourl", "gone", "all", "paused"];

pub async fn an_end_reports_each_client_it_skips_or_holds_with_the_reason(s: Stores) {
    five_clients(&s).await;
    create(&s, &session("s1", "u1", &JOINED)).await;
    s.clients
        .delete_client(&ClientId::new("gone"), t(1_500))
        .await
        .unwrap();
    let report = end(&s, "s1", Initiator::SessionRevoked, t(2_000)).await;
    assert_eq!(report.deliveries, 2, "all, and paused (held)");
    assert_eq!(
        summary(&report.notes.skipped),
        [
            note("plain", SkipReason::NotSubscribed, "s1", 1),
            note("nourl", SkipReason::NoUrl, "s1", 1),
            note("gone", SkipReason::UnknownClient, "s1", 1),
        ]
    );
    assert_eq!(
        summary(&report.notes.held),
        [note("paused", SkipReason::Paused, "s1", 1)]
    );
    let again = end(&s, "s1", Initiator::SessionRevoked, t(3_000)).await;
    assert_eq!(again, EndReport::nothing(&again.event_id), "already ended");
}

pub async fn a_user_wide_end_reports_each_client_and_reason_once(s: Stores) {
    five_clients(&s).await;
    // More sessions than a backend ends in one transaction, so the notes of several chunks
    // are merged.
    let ids: Vec<String> = (0..70).map(|n| format!("s{n:02}")).collect();
    for id in &ids {
        create(&s, &session(id, "u1", &JOINED)).await;
    }
    create(&s, &session("other", "u2", &JOINED)).await;
    s.clients
        .delete_client(&ClientId::new("gone"), t(1_500))
        .await
        .unwrap();
    let report = end_user(&s, "u1", Initiator::PasswordChanged, t(2_000)).await;
    assert_eq!((report.sessions_ended, report.deliveries), (70, 140));
    assert_eq!(
        summary(&report.notes.skipped),
        [
            note("plain", SkipReason::NotSubscribed, "s00", 70),
            note("nourl", SkipReason::NoUrl, "s00", 70),
            note("gone", SkipReason::UnknownClient, "s00", 70),
        ]
    );
    assert_eq!(
        summary(&report.notes.held),
        [note("paused", SkipReason::Paused, "s00", 70)]
    );
    let rp = end(&s, "other", Initiator::RpLogout, t(3_000)).await;
    assert_eq!(
        summary(&rp.notes.skipped),
        [
            note("nourl", SkipReason::NoUrl, "other", 1),
            note("gone", SkipReason::UnknownClient, "other", 1),
        ],
        "rp-logout reaches a custom-mode client"
    );
}

pub async fn the_expiry_sweep_reports_what_it_skipped(s: Stores) {
    five_clients(&s).await;
    let mut expiring = session("s1", "u1", &["plain", "all"]);
    expiring.expires_at = Some(t(1_500));
    create(&s, &expiring).await;
    let report = s
        .sessions
        .end_expired(t(2_000), 10, &logoutd_core::EventId::generate())
        .await
        .unwrap();
    assert_eq!((report.sessions_ended, report.deliveries), (1, 1));
    assert_eq!(
        summary(&report.notes.skipped),
        [note("plain", SkipReason::NotSubscribed, "s1", 1)]
    );
}
