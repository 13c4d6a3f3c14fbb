//! The request side of one API connection: counts requests in and responses out for the
//! [`Guard`](super::guard::Guard), and bounds the time a request's body may take to arrive.
//! A body still incomplete `body_read_timeout` after its headers ends with an error (the
//! handler sees an unreadable body), and the answer becomes 408 in Auth0's shape with
//! `Connection: close`, whatever the handler made of it.

use crate::api::ApiError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse as _;
use hyper::body::{Frame, Incoming, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower::ServiceExt as _;

/// What one connection's requests are doing.
#[derive(Debug, Default)]
pub(super) struct Exchange {
    /// Requests handed to the router.
    pub started: AtomicU64,
    /// Responses the router has produced (or requests abandoned).
    pub finished: AtomicU64,
    /// The current request's body ran out of time.
    body_timed_out: AtomicBool,
}

/// Counts a request as finished when dropped, whether it completed or was abandoned.
struct Finish(Arc<Exchange>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::AcqRel);
    }
}

/// The hyper service of one connection: the router, with counting and the body timeout.
pub(super) fn service(
    router: Router,
    exchange: Arc<Exchange>,
    body_timeout: Duration,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: Request<Incoming>| {
        exchange.started.fetch_add(1, Ordering::AcqRel);
        let finish = Finish(exchange.clone());
        let router = router.clone();
        let request = with_body_deadline(request, &exchange, body_timeout);
        async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let response = if finish.0.body_timed_out.swap(false, Ordering::AcqRel) {
                body_timeout_response()
            } else {
                response
            };
            drop(finish);
            Ok(response)
        }
    })
}

/// The request with its body bounded in time, when it has one.
fn with_body_deadline(
    request: Request<Incoming>,
    exchange: &Arc<Exchange>,
    timeout: Duration,
) -> Request<Body> {
    use hyper::body::Body as _;
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return Request::from_parts(parts, Body::new(body));
    }
    let timed = TimedBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        exchange: exchange.clone(),
    };
    Request::from_parts(parts, Body::new(timed))
}

fn body_timeout_response() -> Response<Body> {
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request body did not arrive in time",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline passes.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    exchange: Arc<Exchange>,
}

/// The error a late body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.exchange.body_timed_out.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
