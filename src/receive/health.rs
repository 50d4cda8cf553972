//! The operator's endpoints: `/healthz` (liveness), `/readyz` (the store and every source, in
//! detail) and `/metrics` (Prometheus text, optionally behind `metrics.token`).

use std::time::{Duration, SystemTime};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::verify::Readiness;

/// 200 while the process serves.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// True when the store answers a query.
async fn store_ok(state: &AppState) -> bool {
    let reader = std::sync::Arc::clone(&state.reader);
    let probe = web::block(move || {
        reader
            .lock()
            .map_err(|_| rusqlite::Error::InvalidQuery)
            .and_then(|c| {
                c.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
    })
    .await;
    matches!(probe, Ok(Ok(_))) && state.enqueuer.is_alive()
}

/// Why the store cannot take events, if it cannot: it does not answer, its writer stopped, a
/// write failed (disk full, read-only) or it is damaged.
async fn store_problem(state: &AppState) -> Option<String> {
    if !store_ok(state).await {
        return Some("the store does not answer".into());
    }
    state.health.problem()
}

/// 200 when the store is usable; the detail lists every source, inactive ones included.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let sources = state.catalog.load();
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
    let problem = store_problem(&state).await;
    let store_ok = problem.is_none();
    let delivery = match &state.delivery {
        None => json!({"mode": "dry-run"}),
        Some(client) => match client.last_token_error() {
            None => json!({"mode": "live", "token": "ok"}),
            Some(error) => json!({"mode": "live", "token": "failed", "error": error}),
        },
    };
    let body = json!({
        "status": if store_ok { "ready" } else { "not ready" },
        "store": match &problem {
            None => json!("open"),
            Some(why) => json!({"state": "unavailable", "error": why}),
        },
        "delivery": delivery,
        "sources": detail,
    });
    if store_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text; the queue gauges are read from the store now.
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(token) = &state.metrics_token
        && !crate::verify::bearer_matches(req.headers(), token)
    {
        return HttpResponse::Unauthorized()
            .json(json!({"error": "missing or wrong bearer token"}));
    }
    let reader = std::sync::Arc::clone(&state.reader);
    let queue = web::block(move || -> anyhow::Result<(i64, i64, Option<i64>)> {
        let conn = reader.lock().map_err(|_| anyhow::anyhow!("reader poisoned"))?;
        Ok(conn.query_row(
            "SELECT COUNT(*) FILTER (WHERE state = 'queued'), COUNT(*) FILTER (WHERE state = 'in-flight'),
                    MIN(created_at) FILTER (WHERE state = 'queued')
             FROM messages WHERE state IN ('queued', 'in-flight')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    })
    .await;
    match queue {
        Ok(Ok((queued, in_flight, oldest))) => {
            let now = crate::store::unix_ms(SystemTime::now());
            let age = oldest.map_or(0, |t| (now - t).max(0));
            crate::metrics::queue(queued, in_flight, Duration::from_millis(age as u64));
        }
        _ => tracing::warn!("queue gauges not refreshed: the store did not answer"),
    }
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
