use super::*;
use crate::ids::{DeliveryId, EventId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::outbox::{DeliveryScope, DeliveryState};

/// The example of the Standard Webhooks specification.
#[test]
fn signature_matches_the_standard_webhooks_example() {
    let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let signature = sign_webhook(
        &secret,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

#[test]
fn secret_is_refused_without_prefix_or_base64_and_never_shown() {
    assert_eq!(
        WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        Err(WebhookSecretError::Prefix)
    );
    assert_eq!(
        WebhookSecret::parse("whsec_!!!"),
        Err(WebhookSecretError::Base64)
    );
    assert_eq!(
        WebhookSecret::parse("whsec_c2hvcnQ="),
        Err(WebhookSecretError::Length)
    );
    let secret = WebhookSecret::parse(&WebhookSecret::generate()).unwrap();
    assert_eq!(format!("{secret:?}"), "WebhookSecret([redacted])");
}

#[test]
fn delivery_failed_carries_no_metadata_nor_token() {
    let now = chrono::Utc::now();
    let delivery = Delivery {
        id: DeliveryId::generate_at(now),
        event_id: EventId::generate(),
        session_id: SessionId::from("s1"),
        sid: None,
        scope: DeliveryScope::Session,
        sessions: 1,
        user_id: UserId::from("u1"),
        client_id: ClientId::from("rp"),
        initiator: Initiator::IdpLogout,
        state: DeliveryState::Failed,
        attempts: 3,
        next_attempt_at: None,
        last_status: Some(503),
        last_error: Some("gave up".into()),
        created_at: now,
        delivered_at: None,
    };
    let event = NewOperatorEvent::delivery_failed(&delivery, now);
    assert_eq!(event.kind, OperatorEventType::DeliveryFailed);
    let keys: Vec<&str> = event
        .data
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "attempts",
            "client_id",
            "delivery_id",
            "event_id",
            "initiator",
            "last_error",
            "last_status",
            "session_id",
            "user_id"
        ]
    );
    assert_eq!(event.data["initiator"], "idp-logout");
    assert!(event.id.as_str().starts_with("oev_"));
}

#[test]
fn pause_event_names_who_paused() {
    let now = chrono::Utc::now();
    let paused = NewOperatorEvent::client_paused(&"rp".into(), true, PausedBy::Operator, now);
    assert_eq!(paused.kind, OperatorEventType::ClientPaused);
    assert_eq!(
        paused.data,
        json!({"client_id": "rp", "paused_by": "operator"})
    );
    let resumed = NewOperatorEvent::client_paused(&"rp".into(), false, PausedBy::HealthPolicy, now);
    assert_eq!(resumed.kind, OperatorEventType::ClientResumed);
    assert_eq!(resumed.data["paused_by"], "health_policy");
}
