//! Receive: the first step. `POST /hooks/{source}` takes a request off the wire with its size
//! bounded, hands it to verify, map and route, commits it through enqueue, and answers with the
//! status contract of `product.md`. Also `/healthz` and `/readyz`, and the middleware that gives
//! every request an id and an access-log line.

pub mod client;
mod deadline;
mod errors;
mod health;
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
pub use middleware::request_context;

use crate::config::IpRange;
use crate::enqueue::{Committed, Enqueuer, EventOutcome, NewEvent};
use crate::map::jsonpath::Scope;
use crate::metrics::{self, Outcome};
use crate::source::{Dedup, Source};
use crate::verify::{ContentKind, Payload, Readiness, Verified, Verifier, Webhook};

/// What every handler shares.
pub struct AppState {
    /// The mapping files, compiled (swapped whole on reload), and the recipient groups.
    pub catalog: Arc<crate::reload::Catalog>,
    /// Time zone of the `date` filter.
    pub tz: chrono_tz::Tz,
    /// The store writer.
    pub enqueuer: Enqueuer,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpRange>,
    /// Wakes the delivery worker (after an admin replay).
    pub queued: Arc<tokio::sync::Notify>,
    /// The admin API, when `admin.token` is set.
    pub admin: Option<crate::admin::Admin>,
    /// The vendor client in live mode (its last token error shows in `/readyz`).
    pub delivery: Option<Arc<crate::deliver::fxiaoke::FxiaokeClient>>,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Bearer token of `/metrics`, when set.
    pub metrics_token: Option<secrecy::SecretString>,
    /// A read connection for `/readyz` and the queue gauges.
    pub reader: Arc<std::sync::Mutex<rusqlite::Connection>>,
    /// Whether the store can take events (writes, heartbeat, integrity).
    pub health: Arc<crate::store::health::StoreHealth>,
}

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/hooks/{source}", web::post().to(receive_hook))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics));
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
    state: web::Data<AppState>,
) -> Result<HttpResponse, ReceiveError> {
    let name = source.into_inner();
    let result = receive(&req, &name, payload, &state).await;
    // Unknown names are chosen by whoever calls: never a label value.
    let label = if matches!(result, Err(ReceiveError::UnknownSource(_))) {
        "-"
    } else {
        name.as_str()
    };
    match &result {
        Ok((_, outcome)) => metrics::webhook(label, *outcome),
        Err(e) => {
            metrics::webhook(label, Outcome::Rejected(e.reason()));
            // One line per request: the access-log line carries the refusal (at warn level).
            let span = tracing::Span::current();
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
    state: &AppState,
) -> Result<(HttpResponse, Outcome), ReceiveError> {
    let sources = state.catalog.load();
    let source = sources
        .get(name)
        .cloned()
        .ok_or_else(|| ReceiveError::UnknownSource(name.to_string()))?;
    tracing::Span::current().record("source", tracing::field::display(name));
    if let Readiness::Inactive(reason) = source.verifier.readiness(name) {
        return Err(ReceiveError::Inactive(reason));
    }
    let content = content_kind(req.headers())?;
    let body = read_body(req.headers(), payload, state.max_body_bytes).await?;
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
    let payload = verified
        .parse()
        .map_err(|e| ReceiveError::Malformed(e.to_string()))?;
    let mapped = source
        .mapping
        .map(&payload, &state.catalog.groups, state.tz);
    let outcome = match EventOutcome::from_mapped(mapped) {
        Err(reason) => {
            let span = tracing::Span::current();
            span.record("outcome", tracing::field::display("ignored"));
            span.record("reason", tracing::field::display(reason.as_str()));
            let body = json!({"status": "ignored", "reason": reason});
            return Ok((HttpResponse::Ok().json(body), Outcome::Ignored));
        }
        Ok(outcome) => {
            if let EventOutcome::Failed { rule, reason } = &outcome {
                let rule = rule.as_deref().unwrap_or("-");
                tracing::warn!(source = %name, rule, %reason, "mapping failed; the event is kept as failed");
                metrics::mapping_failed(name, rule);
            }
            outcome
        }
    };
    let failed_messages = match &outcome {
        EventOutcome::Mapped { messages, .. } => {
            messages.iter().filter(|m| m.failed.is_some()).count()
        }
        EventOutcome::Failed { .. } => 0,
    };
    let event = new_event(&source, &payload, state.tz, outcome);
    let span = tracing::Span::current();
    if let Some(d) = &event.delivery_id {
        span.record("delivery_id", tracing::field::display(d.as_str()));
    }
    span.record("event_id", tracing::field::display(event.id.as_str()));
    match state.enqueuer.commit(event).await? {
        Committed::Accepted(id) => {
            tracing::Span::current().record("outcome", tracing::field::display("accepted"));
            (0..failed_messages).for_each(|_| metrics::message("failed"));
            let body = json!({"status": "accepted", "id": id});
            Ok((HttpResponse::Accepted().json(body), Outcome::Accepted))
        }
        Committed::Duplicate(id) => {
            tracing::Span::current().record("outcome", tracing::field::display("duplicate"));
            let body = json!({"status": "duplicate", "id": id});
            Ok((HttpResponse::Ok().json(body), Outcome::Duplicate))
        }
    }
}

/// Headers whose names say they carry credentials (whatever the source's scheme). Not `key`
/// alone: Bitbucket names its event `X-Event-Key`, which re-mapping needs.
fn is_sensitive(name: &str) -> bool {
    matches!(name, "authorization" | "proxy-authorization" | "cookie")
        || [
            "token",
            "signature",
            "secret",
            "hmac",
            "auth",
            "password",
            "credential",
            "api-key",
            "apikey",
        ]
        .iter()
        .any(|w| name.contains(w))
}

/// The headers worth keeping with an event (for re-mapping and inspection), as a JSON object:
/// never one that carries the source's signature or token (the scheme names them, whatever they
/// are called), never one whose value contains a secret of the source, and none whose name
/// says it holds credentials.
pub fn headers_json(headers: &HeaderMap, verifier: &Verifier) -> String {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        if !keeps_header(name, value.as_bytes(), Some(verifier)) {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match map.get_mut(name) {
            Some(serde_json::Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                map.insert(name.to_string(), value.into());
            }
        }
    }
    serde_json::Value::Object(map).to_string()
}

/// True when a header may be stored: see [`headers_json`]. Without a verifier (the source's
/// mapping is not loaded) only the names are judged.
fn keeps_header(name: &str, value: &[u8], verifier: Option<&Verifier>) -> bool {
    !is_sensitive(name) && !verifier.is_some_and(|v| v.is_credential(name, value))
}

/// The stored headers of an event (a JSON object) with what [`headers_json`] would not keep
/// removed; `None` when nothing is removed. For stores written by versions that kept more.
pub fn scrub_stored_headers(json: &str, verifier: Option<&Verifier>) -> Option<String> {
    let serde_json::Value::Object(mut map) = serde_json::from_str(json).ok()? else {
        return None;
    };
    let before = map.len();
    map.retain(|name, value| {
        let text = value.as_str().unwrap_or_default();
        keeps_header(&name.to_ascii_lowercase(), text.as_bytes(), verifier)
    });
    (map.len() != before).then(|| serde_json::Value::Object(map).to_string())
}

/// The delivery id of a payload, per the source's dedup setting.
pub fn delivery_id(source: &Source, payload: &Payload, tz: chrono_tz::Tz) -> Option<String> {
    let id = match &source.dedup {
        Dedup::Off => None,
        Dedup::Headers(names) => names
            .iter()
            .find_map(|h| payload.webhook.header(h))
            .map(str::to_string),
        Dedup::Path(path) => {
            let scope = Scope {
                root: &payload.json,
                element: None,
                tz,
            };
            path.query(&scope).first().and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        }
    };
    id.filter(|s| !s.trim().is_empty())
}

fn new_event(
    source: &Source,
    payload: &Verified<Payload>,
    tz: chrono_tz::Tz,
    outcome: EventOutcome,
) -> NewEvent {
    let p = payload.inner();
    NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        source: source.name.to_string(),
        event_type: source
            .event_header
            .as_deref()
            .and_then(|h| p.webhook.header(h))
            .map(str::to_string),
        delivery_id: delivery_id(source, p, tz),
        received_at: p.webhook.received_at,
        headers: headers_json(&p.webhook.headers, &source.verifier),
        payload: p.bytes.clone(),
        outcome,
    }
}
