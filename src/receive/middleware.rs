//! Every request gets an id (the caller's `X-Request-Id` when it sent a sane one), carried by
//! every log line of the request and returned in the response, and one access-log line with
//! method, path, status, latency and client IP.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use crate::config::IpRange;

/// The reverse proxies whose `X-Forwarded-For` (or `Forwarded`) is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpRange>);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn caller_id(req: &ServiceRequest) -> Option<String> {
    let v = req.headers().get(&REQUEST_ID)?.to_str().ok()?.trim();
    let sane = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    sane.then(|| v.to_string())
}

/// The request-id and access-log middleware.
///
/// # Errors
/// Only those of the wrapped service.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = caller_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let trusted = req
        .app_data::<web::Data<TrustedProxies>>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    let client = super::client::of_request(req.request(), &trusted)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "-".into());
    // source, delivery_id and event_id are filled in by the handler as they become known.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        client_ip = %client,
        source = tracing::field::Empty,
        delivery_id = tracing::field::Empty,
        event_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
        reason = tracing::field::Empty,
    );
    let method = req.method().to_string();
    let path = req.path().to_string();
    // The route pattern, not the path: label values must not come from callers.
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    let status = res.status().as_u16();
    let took = started.elapsed();
    crate::metrics::http_request(&route, status, took);
    let latency_ms = took.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        let latency_ms = format!("{latency_ms:.2}");
        // Refusals (failed verifications above all) stand out at warn level, with the client IP
        // and the reason in the span.
        if (400..600).contains(&status) && status != 404 {
            tracing::warn!(%method, %path, status, latency_ms, "request completed");
        } else {
            tracing::info!(%method, %path, status, latency_ms, "request completed");
        }
    });
    Ok(res)
}
