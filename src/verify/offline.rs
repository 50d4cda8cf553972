//! The only doors to [`Verified`] besides [`super::Verifier::verify`]: payloads that no signature
//! can vouch for, because they did not arrive as a sender's request, and whose trust was settled
//! elsewhere. Each door is named after the reason it may be trusted, so the decision shows at the
//! call site, and both are crate-only. Integration tests and benchmarks that want a verified
//! payload go through the public door like everyone else: `Verifier::unsigned().verify(…)`.
//!
//! Both read the payload as JSON, as a stored event or an admin's file is.

use std::time::SystemTime;

use actix_web::http::header::HeaderMap;
use bytes::Bytes;

use super::{ContentKind, Payload, PayloadError, Verified, Webhook};

/// A payload an admin supplies to see what it would render, never stored nor sent: the admin
/// API's `render` (behind the admin token), `fxhook render` (run by whoever holds the mapping
/// files), and a mapping file's `examples:` (written by its author). Only these callers may use
/// it: the person who supplies the payload is the one who configures the gateway.
///
/// # Errors
/// A body that is not JSON.
pub(crate) fn trust_admin_supplied(
    headers: HeaderMap,
    body: Bytes,
    received_at: SystemTime,
) -> Result<Verified<Payload>, PayloadError> {
    trusted(headers, body, received_at)
}

/// An event restored from the store for the admin API's re-map: the store only holds payloads
/// that [`super::Verifier::verify`] let through when they were received, so it was verified
/// then. Only callers that read a payload back from the store may use it.
///
/// # Errors
/// A stored payload that is not JSON.
pub(crate) fn trust_stored(
    headers: HeaderMap,
    payload: Bytes,
    received_at: SystemTime,
) -> Result<Verified<Payload>, PayloadError> {
    trusted(headers, payload, received_at)
}

fn trusted(
    headers: HeaderMap,
    body: Bytes,
    received_at: SystemTime,
) -> Result<Verified<Payload>, PayloadError> {
    Verified(Webhook {
        headers,
        body,
        content: ContentKind::Json,
        query: String::new(),
        received_at,
    })
    .parse()
}
