//! `POST /ssf/poll/{stream_id}`: poll delivery (RFC 8936). One request acknowledges SETs
//! (`ack`), reports the ones the receiver refused (`setErrs`) and takes the next ones, in that
//! order, in one store transaction (§2.4); the SETs handed out stay in flight under a lease
//! until acknowledged, and come back when it ends.
//!
//! When nothing is ready and `returnImmediately` is not true, the request waits (a long poll)
//! for the SET wake signal or a periodic re-check (rows another node wrote), holding no
//! transaction, until a SET is ready or the long poll ends.

use super::{
    DEFAULT_POLL_LEASE, MAX_POLL_EVENTS, SsfApi, SsfError, authenticate, own_stream, parse_body,
    store,
};
use crate::api::Shared;
use crate::ssf::{PollBatch, PollRequest, SetError, SsfReceiver, StreamDelivery};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// The poll request (RFC 8936 §2.2); an empty body is `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PollBody {
    max_events: Option<u64>,
    return_immediately: Option<bool>,
    ack: Option<Vec<String>>,
    set_errs: Option<BTreeMap<String, SetError>>,
}

/// The poll answer (RFC 8936 §2.3): `{"sets": {jti: SET}, "moreAvailable"?}`.
#[derive(Debug, Serialize)]
struct PollAnswer {
    sets: BTreeMap<String, String>,
    #[serde(rename = "moreAvailable", skip_serializing_if = "std::ops::Not::not")]
    more_available: bool,
}

impl PollBody {
    /// How many SETs to hand out: `maxEvents`, at most [`MAX_POLL_EVENTS`] (also when
    /// absent).
    fn max_events(&self) -> usize {
        self.max_events.map_or(MAX_POLL_EVENTS, |n| {
            usize::try_from(n).map_or(MAX_POLL_EVENTS, |n| n.min(MAX_POLL_EVENTS))
        })
    }
}

/// `POST /ssf/poll/{stream_id}`.
pub(super) async fn poll(
    State(state): State<Shared>,
    headers: HeaderMap,
    stream_id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, SsfError> {
    let receiver = authenticate(&state, &headers).await?;
    let body: PollBody = match &body {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => PollBody::default(),
        _ => parse_body(body)?,
    };
    let Path(stream_id) =
        stream_id.map_err(|_| SsfError::bad_request("the stream id in the path is malformed"))?;
    let stream = own_stream(&state, &receiver, &stream_id).await?;
    if !matches!(stream.delivery, StreamDelivery::Poll) {
        return Err(SsfError::bad_request(
            "this stream delivers by push; PATCH its delivery to poll first",
        ));
    }
    let Some(ssf) = state.ssf.clone() else {
        return Err(SsfError::no_stream());
    };
    let request = PollRequest {
        stream_id: stream.stream_id,
        receiver_id: receiver.id.clone(),
        ack: body.ack.clone().unwrap_or_default(),
        set_errs: body
            .set_errs
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        max_events: body.max_events(),
        lease: lease(&ssf),
        now: state.now(),
    };
    let wait = !body.return_immediately.unwrap_or(false);
    let batch = take(&state, &ssf, request, wait).await?;
    Ok((StatusCode::OK, Json(answer(&ssf, &receiver, batch))).into_response())
}

/// The lease of the SETs a poll hands out: the configured one (checked at start to be at
/// most a day), or the default should it not convert.
fn lease(ssf: &SsfApi) -> chrono::Duration {
    chrono::Duration::from_std(ssf.poll_lease)
        .or_else(|_| chrono::Duration::from_std(DEFAULT_POLL_LEASE))
        .unwrap_or(chrono::Duration::seconds(60))
}

/// Polls once (with the acks and errors), then, when `wait` and nothing is ready, again on
/// each wake signal or re-check, without the acks, until something is ready or the long poll
/// ends. The wake signal is armed before each poll, so a row written in between is not
/// missed.
async fn take(
    state: &Shared,
    ssf: &SsfApi,
    mut request: PollRequest,
    wait: bool,
) -> Result<PollBatch, SsfError> {
    let deadline = Instant::now() + ssf.long_poll;
    let signal = state.stores.ssf_wake.clone();
    loop {
        let woken = signal.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        request.now = state.now();
        let batch = store(state).poll(&request).await?;
        let ready = !batch.rows.is_empty() || batch.more_available;
        if ready || !wait || Instant::now() >= deadline {
            return Ok(batch);
        }
        request.ack.clear();
        request.set_errs.clear();
        tokio::select! {
            () = &mut woken => {}
            () = tokio::time::sleep(ssf.poll_recheck) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The answer: each row signed for the receiver. A row that cannot be signed is left out
/// (and logged); its lease brings it back.
fn answer(ssf: &SsfApi, receiver: &SsfReceiver, batch: PollBatch) -> PollAnswer {
    let mut sets = BTreeMap::new();
    for row in &batch.rows {
        match (ssf.mint)(row, &receiver.aud) {
            Ok(set) => {
                sets.insert(row.set.jti.clone(), set);
            }
            Err(err) => {
                tracing::error!(set_id = %row.set.id, error = %err, "cannot sign a SET for a poll");
            }
        }
    }
    PollAnswer {
        sets,
        more_available: batch.more_available,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_events_is_capped_and_defaults_to_the_cap() {
        let body = |n: Option<u64>| PollBody {
            max_events: n,
            ..PollBody::default()
        };
        assert_eq!(body(None).max_events(), MAX_POLL_EVENTS);
        assert_eq!(body(Some(0)).max_events(), 0);
        assert_eq!(body(Some(10)).max_events(), 10);
        assert_eq!(body(Some(u64::MAX)).max_events(), MAX_POLL_EVENTS);
    }
}
