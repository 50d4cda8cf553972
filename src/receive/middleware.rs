//! Every request gets an id (the caller's `X-Request-Id` when it sent a sane one), carried by
//! every log line of the request and returned in the response, and one access-log line with
//! method, path, status, latency and client IP.

use std::sync::atomic::{AtomicU64, Ordering};
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
    let client = match req.app_data::<web::Data<TrustedProxies>>() {
        Some(trusted) => super::client::of_request(req.request(), &trusted.0),
        None => super::client::of_request(req.request(), &[]),
    };
    // source, delivery_id and event_id are filled in by the handler as they become known.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        client_ip = %ClientIp(client),
        source = tracing::field::Empty,
        delivery_id = tracing::field::Empty,
        event_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
        reason = tracing::field::Empty,
    );
    // Kept for the access-log line (cheap clones of what the request holds, not copies).
    let method = req.method().clone();
    let uri = req.uri().clone();
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    // The route pattern, not the path: label values must not come from callers. Asked after
    // routing, actix-web knows it without matching the path again.
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    let status = res.status().as_u16();
    let took = started.elapsed();
    crate::metrics::http_request(&route, status, took);
    let path = uri.path();
    span.in_scope(|| {
        let latency_ms = || format!("{:.2}", took.as_secs_f64() * 1000.0);
        // Refusals (failed verifications above all) stand out at warn level, with the client IP
        // and the reason in the span; under a flood only a sample of them is written.
        if (400..600).contains(&status) && status != 404 {
            match REFUSALS.admit(unix_second()) {
                Sample::Write { left_out: 0 } => {}
                Sample::Write { left_out } => tracing::warn!(
                    left_out,
                    "refusal lines left out in the last second(s) (a flood; every refusal is \
                     counted in fxhook_webhooks_total)"
                ),
                Sample::LeaveOut => {
                    crate::metrics::refusal_line_left_out();
                    return;
                }
            }
            tracing::warn!(%method, %path, status, latency_ms = latency_ms(), "request completed");
        } else {
            tracing::info!(%method, %path, status, latency_ms = latency_ms(), "request completed");
        }
    });
    Ok(res)
}

/// The client's address in a log line, `-` when it is not known.
struct ClientIp(Option<std::net::IpAddr>);

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Refusal lines written in one second at most: a flood of forgeries must not become a flood
/// of log lines (the buffer would drop the lines that matter, and the disk fill).
const REFUSAL_LINES_PER_SECOND: u32 = 50;

static REFUSALS: RefusalSampler = RefusalSampler {
    window: AtomicU64::new(0),
    left_out: AtomicU64::new(0),
};

fn unix_second() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Lets [`REFUSAL_LINES_PER_SECOND`] refusal lines through per second and counts the rest; the
/// first line written after some were left out says how many.
struct RefusalSampler {
    /// The second being counted (high 32 bits) and the lines written in it (low 32 bits), in
    /// one word so that a new second and its count change together.
    window: AtomicU64,
    /// Lines left out since the last one written.
    left_out: AtomicU64,
}

#[derive(Debug, PartialEq)]
enum Sample {
    /// Write the line; `left_out` lines were left out before it.
    Write { left_out: u64 },
    /// Leave it out (counted).
    LeaveOut,
}

impl RefusalSampler {
    fn admit(&self, now: u64) -> Sample {
        let second = now & 0xffff_ffff;
        let previous = self
            .window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                let (at, written) = (w >> 32, w & 0xffff_ffff);
                if at != second {
                    Some(second << 32 | 1)
                } else if written < u64::from(REFUSAL_LINES_PER_SECOND) {
                    Some(w + 1)
                } else {
                    None
                }
            });
        match previous {
            Ok(_) => Sample::Write {
                left_out: self.left_out.swap(0, Ordering::Relaxed),
            },
            Err(_) => {
                self.left_out.fetch_add(1, Ordering::Relaxed);
                Sample::LeaveOut
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler() -> RefusalSampler {
        RefusalSampler {
            window: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    #[test]
    fn a_flood_of_refusals_is_sampled_and_the_next_line_says_how_many_were_left_out() {
        let s = sampler();
        let limit = REFUSAL_LINES_PER_SECOND as usize;
        let first: Vec<Sample> = (0..limit + 30).map(|_| s.admit(7)).collect();
        assert!(
            first[..limit]
                .iter()
                .all(|x| *x == Sample::Write { left_out: 0 })
        );
        assert!(first[limit..].iter().all(|x| *x == Sample::LeaveOut));
        assert_eq!(s.admit(8), Sample::Write { left_out: 30 });
        assert_eq!(s.admit(8), Sample::Write { left_out: 0 });
    }
}
