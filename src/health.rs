//! The operator's endpoints: `/healthz` (liveness), `/readyz` (can the gateway take an event
//! now: the store, every source, the delivery mode) and `/metrics` (Prometheus text, optionally
//! behind `metrics.token`). Readiness asks the store through its [`Monitor`] interface and its
//! [`StoreHealth`]; nothing here knows the HTTP state of the other handlers.

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::{HttpRequest, HttpResponse, web};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;
use serde_json::json;

use crate::deliver::fxiaoke::FxiaokeClient;
use crate::enqueue::Enqueuer;
use crate::reload::Catalog;
use crate::store::Monitor;
use crate::store::health::StoreHealth;
use crate::verify::Readiness;

/// What readiness looks at.
pub struct Readyz {
    /// The store's gauges and a ping.
    pub monitor: Arc<dyn Monitor>,
    /// Writes, heartbeat and integrity.
    pub health: Arc<StoreHealth>,
    /// The ingest writer (alive or not).
    pub enqueuer: Enqueuer,
    /// The vendor client in live mode (its last token error shows).
    pub delivery: Option<Arc<FxiaokeClient>>,
    /// Whether this replica sends (holds the delivery lease) or stands by.
    pub role: Arc<crate::deliver::lease::Role>,
    /// Merges of the last minute (a storm being coalesced).
    pub storm: Arc<crate::deliver::storm::StormWatch>,
    /// `store.max_bytes`.
    pub max_bytes: u64,
}

/// The Prometheus endpoint.
pub struct MetricsEndpoint {
    /// Renders the text.
    pub handle: PrometheusHandle,
    /// Bearer token of `/metrics`, when set.
    pub token: Option<SecretString>,
    /// The store, for the queue gauges.
    pub monitor: Arc<dyn Monitor>,
}

/// Registers `/healthz`, `/readyz` and `/metrics`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// 200 while the process serves.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Why the store cannot take events, if it cannot: it does not answer, its writer stopped, a
/// write failed (disk full, read-only) or it is damaged.
async fn store_problem(ready: &Readyz) -> Option<String> {
    let monitor = Arc::clone(&ready.monitor);
    let answers = matches!(web::block(move || monitor.ping()).await, Ok(Ok(())));
    if !answers || !ready.enqueuer.is_alive() {
        return Some("the store does not answer".into());
    }
    if ready.enqueuer.is_over_bounds() {
        return Some(
            "the store is over its bounds (store.max_queued or store.max_bytes): webhooks get 503 until it drains"
                .into(),
        );
    }
    ready.health.problem()
}

/// 200 when the store can take events; the detail lists every source, inactive ones included.
async fn readyz(ready: web::Data<Readyz>, catalog: web::Data<Catalog>) -> HttpResponse {
    let sources = catalog.load();
    let mut detail = serde_json::Map::new();
    for (name, source) in &sources.sources {
        let entry = match source.verifier.readiness(name) {
            Readiness::Active if source.verifier.is_unsigned() => {
                json!({"state": "active", "unsigned": true})
            }
            Readiness::Active => json!({"state": "active"}),
            Readiness::Inactive(reason) => json!({"state": "inactive", "reason": reason}),
        };
        detail.insert(name.clone(), entry);
    }
    for (name, error) in &sources.rejected {
        detail.insert(name.clone(), json!({"state": "rejected", "error": error}));
    }
    for (name, error) in &sources.stale {
        if let Some(serde_json::Value::Object(entry)) = detail.get_mut(name) {
            entry.insert("rejected_edit".into(), json!(error));
        }
    }
    let problem = store_problem(&ready).await;
    let role = ready.role.name();
    let mut delivery = match &ready.delivery {
        None => json!({"mode": "dry-run", "role": role}),
        Some(client) => match client.last_token_error() {
            None => json!({"mode": "live", "role": role, "token": "ok"}),
            Some(error) => {
                json!({"mode": "live", "role": role, "token": "failed", "error": error})
            }
        },
    };
    let merged = ready.storm.merged_last_minute();
    delivery["coalescing"] = json!(merged > 0);
    if merged > 0 {
        delivery["coalesced_last_minute"] = json!(merged);
    }
    let mut body = json!({
        "status": if problem.is_none() { "ready" } else { "not ready" },
        "store": if problem.is_none() { "open" } else { "unavailable" },
        "delivery": delivery,
        "sources": detail,
    });
    if let Some(why) = &problem {
        body["store_error"] = json!(why);
    }
    if let Some(bytes) = ready.enqueuer.store_bytes() {
        body["store_bytes"] = json!(bytes);
    }
    body["store_max_bytes"] = json!(ready.max_bytes);
    match problem {
        None => HttpResponse::Ok().json(body),
        Some(_) => HttpResponse::ServiceUnavailable().json(body),
    }
}

/// Prometheus text; the queue gauges are read from the store now.
async fn metrics(req: HttpRequest, endpoint: web::Data<MetricsEndpoint>) -> HttpResponse {
    if let Some(token) = &endpoint.token
        && !crate::verify::bearer_matches(req.headers(), token)
    {
        return HttpResponse::Unauthorized()
            .json(json!({"error": "missing or wrong bearer token"}));
    }
    let monitor = Arc::clone(&endpoint.monitor);
    match web::block(move || monitor.queue_stats()).await {
        Ok(Ok(stats)) => {
            let age = stats
                .oldest_queued
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            crate::metrics::queue(stats.queued as i64, stats.in_flight as i64, age);
        }
        _ => tracing::warn!("queue gauges not refreshed: the store did not answer"),
    }
    endpoint.handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(endpoint.handle.render())
}
