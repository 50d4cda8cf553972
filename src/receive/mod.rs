//! Receive: the first step. `POST /hooks/{source}` takes a request off the wire with its size
//! and time bounded, has verify check it, hands the verified payload to the pipeline, commits
//! what it says to store through enqueue, and answers with the status contract of `product.md`.
//! Also the middleware that gives every request an id and an access-log line, and the body
//! deadline.
//!
//! Each handler takes what it needs as its own app data (zero2prod's habit): the catalog of
//! sources, the enqueuer, the [`Limits`], and for the middleware the [`TrustedProxies`].

pub mod client;
mod deadline;
mod errors;
mod middleware;

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::json;

pub use deadline::{BodyTimeout, body_deadline};
pub use errors::ReceiveError;
pub use middleware::{TrustedProxies, request_context};

use crate::enqueue::Enqueuer;
use crate::metrics::{self, Outcome};
use crate::pipeline::{self, Processed};
use crate::reload::Catalog;
use crate::store::{Committed, EventOutcome, NewEvent};
use crate::verify::{ContentKind, Readiness, Webhook};

/// The bounds of a webhook request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted body.
    pub max_body_bytes: usize,
}

/// Registers `POST /hooks/{source}`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/hooks/{source}", web::post().to(receive_hook));
}

fn content_kind(headers: &HeaderMap) -> Result<ContentKind, ReceiveError> {
    let raw = headers
        .get(CONTENT_TYPE)
        .ok_or_else(|| ReceiveError::UnsupportedMedia("missing Content-Type".into()))?
        .to_str()
        .unwrap_or_default();
    let essence = raw
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(ContentKind::Json)
    } else if essence == "application/x-www-form-urlencoded" {
        Ok(ContentKind::Form)
    } else {
        Err(ReceiveError::UnsupportedMedia(format!(
            "unsupported content type {raw:?}: send application/json or application/x-www-form-urlencoded"
        )))
    }
}

/// Reads the body, refusing it as soon as it is known to be over the limit: from
/// `Content-Length` before reading anything, else while streaming.
async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ReceiveError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ReceiveError::TooLarge(limit));
    }
    let mut body = BytesMut::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            if deadline::is_timeout(&e) {
                ReceiveError::BodyTimeout
            } else {
                ReceiveError::Malformed(format!("cannot read body: {e}"))
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ReceiveError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `POST /hooks/{source}`: answers, and counts the answer by source and outcome.
async fn receive_hook(
    req: HttpRequest,
    source: web::Path<String>,
    payload: web::Payload,
    catalog: web::Data<Catalog>,
    enqueuer: web::Data<Enqueuer>,
    limits: web::Data<Limits>,
    hour: web::Data<metrics::LastHour>,
) -> Result<HttpResponse, ReceiveError> {
    let name = source.into_inner();
    let result = receive(&req, &name, payload, &catalog, &enqueuer, &limits).await;
    // Unknown names are chosen by whoever calls: never a label value.
    let label = if matches!(result, Err(ReceiveError::UnknownSource(_))) {
        "-"
    } else {
        name.as_str()
    };
    let span = tracing::Span::current();
    let now = std::time::SystemTime::now();
    match &result {
        Ok((_, outcome)) => {
            metrics::webhook(label, *outcome);
            hour.record(label, *outcome, now);
        }
        Err(e) => {
            metrics::webhook(label, Outcome::Rejected(e.reason()));
            if label != "-" {
                hour.record(label, Outcome::Rejected(e.reason()), now);
            }
            // One line per request: the access-log line carries the refusal (at warn level).
            span.record("outcome", tracing::field::display(e.reason()));
            span.record("reason", tracing::field::display(e));
        }
    }
    result.map(|(response, _)| response)
}

async fn receive(
    req: &HttpRequest,
    name: &str,
    payload: web::Payload,
    catalog: &Catalog,
    enqueuer: &Enqueuer,
    limits: &Limits,
) -> Result<(HttpResponse, Outcome), ReceiveError> {
    let sources = catalog.load();
    let source = Arc::clone(
        sources
            .get(name)
            .ok_or_else(|| ReceiveError::UnknownSource(name.to_string()))?,
    );
    let span = tracing::Span::current();
    span.record("source", tracing::field::display(name));
    if let Readiness::Inactive(reason) = source.verifier.readiness(name) {
        return Err(ReceiveError::Inactive(reason));
    }
    let content = content_kind(req.headers())?;
    let body = read_body(req.headers(), payload, limits.max_body_bytes).await?;
    let webhook = Webhook {
        headers: req.headers().clone(),
        body,
        content,
        query: req.query_string().to_string(),
        received_at: SystemTime::now(),
    };
    let verified = source
        .verifier
        .verify(webhook)
        .map_err(ReceiveError::Unauthorized)?;
    // Only verified requests spend the source's budget: forgeries cannot lock a sender out.
    if let Some(limiter) = &source.limiter
        && let Err(not_until) = limiter.check()
    {
        use governor::clock::Clock;
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        return Err(ReceiveError::RateLimited {
            name: name.to_string(),
            retry_after: wait.as_secs().max(1),
        });
    }
    // A redelivery of an id this process committed lately is answered before any parsing;
    // an id read from a header is remembered once its event is committed (below).
    let header_id =
        pipeline::header_delivery_id(&source.dedup, verified.inner()).map(str::to_string);
    if let Some(delivery_id) = header_id.as_deref()
        && let Some(id) = enqueuer.recent_duplicate(name, delivery_id)
    {
        span.record("delivery_id", tracing::field::display(delivery_id));
        span.record("outcome", tracing::field::display("duplicate"));
        let body = json!({"status": "duplicate", "id": &*id});
        return Ok((HttpResponse::Ok().json(body), Outcome::Duplicate));
    }
    let payload = verified
        .parse_with(|bytes| source.footprint.parse(bytes))
        .map_err(|e| ReceiveError::Malformed(e.to_string()))?;
    let event = match pipeline::process(&source, &payload, &catalog.groups, catalog.options.tz) {
        Processed::Ignored(reason) => {
            span.record("outcome", tracing::field::display("ignored"));
            span.record("reason", tracing::field::display(reason.as_str()));
            let body = json!({"status": "ignored", "reason": reason});
            return Ok((HttpResponse::Ok().json(body), Outcome::Ignored));
        }
        Processed::Store(event) => *event,
    };
    note_event(name, &event);
    let (failed_messages, rule) = match &event.outcome {
        EventOutcome::Mapped { messages, rule } => (
            messages.iter().filter(|m| m.failed.is_some()).count(),
            rule.clone(),
        ),
        EventOutcome::Failed { rule, .. } => (0, rule.clone().unwrap_or_default()),
    };
    let received_at = event.received_at;
    let committed = enqueuer.commit(event).await?;
    if let (Some(delivery_id), Committed::Accepted(id) | Committed::Suppressed(id)) =
        (&header_id, &committed)
    {
        enqueuer.remember(name, delivery_id, id, received_at);
    }
    match committed {
        Committed::Accepted(id) => {
            span.record("outcome", tracing::field::display("accepted"));
            (0..failed_messages).for_each(|_| metrics::message("failed"));
            let body = json!({"status": "accepted", "id": id});
            Ok((HttpResponse::Accepted().json(body), Outcome::Accepted))
        }
        Committed::Suppressed(id) => {
            span.record("outcome", tracing::field::display("suppressed"));
            metrics::message_suppressed(name, &rule);
            let body = json!({"status": "accepted", "id": id});
            Ok((HttpResponse::Accepted().json(body), Outcome::Accepted))
        }
        Committed::Duplicate(id) => {
            span.record("outcome", tracing::field::display("duplicate"));
            let body = json!({"status": "duplicate", "id": id});
            Ok((HttpResponse::Ok().json(body), Outcome::Duplicate))
        }
    }
}

/// Puts the event's ids in the request's span, and counts a mapping failure (the event is
/// still stored and answered 202: the sender's retry would not help).
fn note_event(source: &str, event: &NewEvent) {
    let span = tracing::Span::current();
    if let Some(d) = &event.delivery_id {
        span.record("delivery_id", tracing::field::display(d.as_str()));
    }
    span.record("event_id", tracing::field::display(event.id.as_str()));
    if let EventOutcome::Failed { rule, reason } = &event.outcome {
        let rule = rule.as_deref().unwrap_or("-");
        tracing::warn!(source, rule, %reason, "mapping failed; the event is kept as failed");
        metrics::mapping_failed(source, rule);
    }
}
