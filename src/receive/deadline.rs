//! The body deadline: once a request's headers are in, its body must arrive within
//! `server.body_timeout`. A client that sends headers and then stalls (or trickles) would
//! otherwise hold its connection, a file descriptor and a worker slot forever; past the deadline
//! the body stream fails, the answer is `408 {"error": …}` and the connection is closed.
//!
//! It wraps every route's payload, so no handler or extractor can forget it.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::Sleep;

/// The deadline of one server, read by the middleware from app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// True when a payload error is the body deadline passing.
pub fn is_timeout(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

/// A payload that fails with `TimedOut` when it has not ended by the deadline.
struct Deadline {
    inner: Payload,
    sleep: Pin<Box<Sleep>>,
    fired: Rc<Cell<bool>>,
    done: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // Data already there wins over a deadline passing in the same instant.
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
            Poll::Pending => {}
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.done = true;
                self.fired.set(true);
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request body not received within server.body_timeout",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The middleware: wraps the payload; when the deadline fired, whatever the handler made of
/// the failed read is replaced by a `408` that closes the connection.
///
/// # Errors
/// Only those of the wrapped service.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(BodyTimeout(limit)) = req.app_data::<BodyTimeout>().copied() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let fired = Rc::new(Cell::new(false));
    let stream = Deadline {
        inner: req.parts_mut().1.take(),
        sleep: Box::pin(tokio::time::sleep(limit)),
        fired: Rc::clone(&fired),
        done: false,
    };
    let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(stream);
    req.set_payload(Payload::from(boxed));
    let res = next.call(req).await?;
    if !fired.get() {
        return Ok(res.map_into_left_body());
    }
    let (req, _) = res.into_parts();
    let secs = humantime::format_duration(limit);
    let answer = HttpResponse::RequestTimeout()
        .force_close()
        .json(serde_json::json!({
            "error": format!("request body not received within {secs} (server.body_timeout)")
        }));
    Ok(ServiceResponse::new(req, answer).map_into_right_body())
}
