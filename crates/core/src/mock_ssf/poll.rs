//! The poll loop (RFC 8936 §2): long polls of the stream's `endpoint_url`, each carrying the
//! `ack` of the SETs the previous one brought that passed the checks, and `setErrs` for those
//! that did not.

use super::Shared;
use super::handler::{Checked, check_set, receipt, record};
use super::validate::Rejection;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest a poll may be held, beyond the transmitter's own long-poll limit.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after a failed poll.
const POLL_BACKOFF: Duration = Duration::from_secs(1);

/// What the next poll reports.
#[derive(Default)]
struct Pending {
    ack: Vec<String>,
    errs: Map<String, Value>,
}

/// Polls until `shutdown`.
pub(super) async fn run(shared: Arc<Shared>, client: reqwest::Client, shutdown: CancellationToken) {
    let Some(url) = shared.stream.endpoint_url.clone() else {
        tracing::error!("the poll stream has no endpoint_url");
        return;
    };
    let mut pending = Pending::default();
    loop {
        let body = json!({
            "ack": pending.ack, "setErrs": pending.errs,
            "maxEvents": shared.config.max_events, "returnImmediately": false,
        });
        let request = client
            .post(&url)
            .header(AUTHORIZATION, format!("Bearer {}", shared.config.token))
            .header(ACCEPT, "application/json")
            .timeout(POLL_TIMEOUT)
            .json(&body)
            .send();
        let answer = tokio::select! {
            () = shutdown.cancelled() => return,
            answer = request => answer,
        };
        let sets = match answer {
            Ok(response) if response.status().as_u16() == 200 => response.json::<Value>().await,
            Ok(response) => {
                tracing::warn!(status = response.status().as_u16(), "poll refused");
                if pause(&shutdown).await {
                    return;
                }
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err.without_url(), "poll failed");
                if pause(&shutdown).await {
                    return;
                }
                continue;
            }
        };
        // The SETs reported are those of this answer only: acknowledged ones are not resent.
        pending = Pending::default();
        match sets {
            Ok(answer) => handle_sets(&shared, &answer, &mut pending).await,
            Err(err) => tracing::warn!(error = %err.without_url(), "poll answer is not JSON"),
        }
    }
}

/// True when shutdown came during the pause.
async fn pause(shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(POLL_BACKOFF) => false,
    }
}

async fn handle_sets(shared: &Shared, answer: &Value, pending: &mut Pending) {
    let Some(sets) = answer.get("sets").and_then(Value::as_object) else {
        tracing::warn!("poll answer has no sets object");
        return;
    };
    for (jti, set) in sets {
        let now = shared.config.clock.now();
        let mut checked = match set.as_str() {
            Some(token) => check_set(shared, token, now).await,
            None => Checked {
                result: Err(Rejection::new("invalid_request", "the SET is not a string")),
                jti: None,
                claims: None,
            },
        };
        if checked.result.is_ok() && checked.jti.as_deref() != Some(jti.as_str()) {
            checked.result = Err(Rejection::new(
                "invalid_request",
                "the SET's jti is not its key in sets",
            ));
        }
        match &checked.result {
            Ok(_) => pending.ack.push(jti.clone()),
            Err(r) => {
                let error = json!({"err": r.err, "description": r.description});
                pending.errs.insert(jti.clone(), error);
            }
        }
        let receipt = receipt(now, "poll", None, checked, None);
        record(shared, &receipt).await;
    }
}
