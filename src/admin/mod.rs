//! The admin API under `/admin`, protected by the bearer token `admin.token` (off when unset):
//! list and inspect events and messages, replay dead messages, re-map a stored event after a
//! fix, reload the mappings, and render a payload through a mapping.

pub mod ui;

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use bytes::Bytes;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;

use crate::pipeline;
use crate::reload::Catalog;
use crate::store::health::StoreHealth;
use crate::store::{EventState, Inspect, MessageState, Replay};
use crate::verify;

/// What the admin API works with; registered as app data only when `admin.token` is set.
pub struct Admin {
    /// The bearer token.
    pub token: SecretString,
    /// The store, as the admin API sees it.
    pub store: Arc<dyn Inspect>,
    /// Told of store errors (a damaged store makes `/readyz` fail).
    pub health: Arc<StoreHealth>,
    /// The mappings (re-map, render, reload).
    pub catalog: Arc<Catalog>,
    /// Wakes the delivery worker after a replay or a re-map.
    pub queued: Arc<Notify>,
}

/// Registers `/admin/*`, every route behind [`require_token`].
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(from_fn(require_token))
            .route("/events", web::get().to(list_events))
            .route("/events/{id}", web::get().to(show_event))
            .route("/events/{id}/remap", web::post().to(remap_event))
            .route("/messages", web::get().to(list_messages))
            .route("/messages/{id}", web::get().to(show_message))
            .route("/messages/{id}/replay", web::post().to(replay_message))
            .route("/replay", web::post().to(replay_dead))
            .route("/reload", web::post().to(reload))
            .route("/render/{source}", web::post().to(render)),
    );
}

/// Refusals of the admin API.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// `admin.token` is not set.
    #[error("the admin API is off: set admin.token")]
    Off,
    /// Missing or wrong bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// Bad query or body.
    #[error("{0}")]
    BadRequest(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// Not possible in the current state.
    #[error("{0}")]
    Conflict(String),
    /// Store or task failure (logged; the body stays opaque).
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::Off | AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AdminError::Internal(e) = self {
            tracing::error!(error = format!("{e:#}"), "admin request failed");
        }
        HttpResponse::build(self.status_code()).json(json!({ "error": self.to_string() }))
    }
}

/// The middleware of the `/admin` scope: the token is checked before anything else of the
/// request (its path, query or body) is read, so an unauthenticated caller only ever gets a 401
/// (or the 404 of an admin API that is off), whatever it sends.
///
/// # Errors
/// Only those of the wrapped service.
pub async fn require_token<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let refusal = match req.app_data::<web::Data<Admin>>() {
        None => Some(AdminError::Off),
        Some(admin) if !verify::bearer_matches(req.headers(), &admin.token) => {
            Some(AdminError::Unauthorized)
        }
        Some(_) => None,
    };
    match refusal {
        // An answer, not an error: the request-id middleware still logs it and tags it.
        Some(refusal) => Ok(req
            .into_response(refusal.error_response())
            .map_into_right_body()),
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

impl Admin {
    /// Runs a store call off the async threads; a store error is reported to the store's
    /// health (a damaged store makes `/readyz` fail) and answered with an opaque 500.
    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Inspect) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, AdminError> {
        let store = Arc::clone(&self.store);
        let result = web::block(move || f(store.as_ref()))
            .await
            .map_err(|e| AdminError::Internal(anyhow::anyhow!("admin task failed: {e}")))?;
        result.map_err(|e| {
            self.health.report(&e);
            AdminError::Internal(e)
        })
    }
}

/// `?state=…&limit=…`
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
}

impl ListQuery {
    /// The state filter parsed as `S`, and the limit within 1..=1000.
    fn checked<S: std::str::FromStr<Err = String>>(&self) -> Result<(Option<S>, i64), AdminError> {
        let state = self
            .state
            .as_deref()
            .map(str::parse::<S>)
            .transpose()
            .map_err(AdminError::BadRequest)?;
        Ok((state, self.limit.unwrap_or(100).clamp(1, 1000)))
    }
}

async fn list_events(
    admin: web::Data<Admin>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AdminError> {
    let (filter, limit) = q.checked::<EventState>()?;
    let events = admin.store(move |s| s.list_events(filter, limit)).await?;
    Ok(HttpResponse::Ok().json(json!({ "events": events })))
}

async fn list_messages(
    admin: web::Data<Admin>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AdminError> {
    let (filter, limit) = q.checked::<MessageState>()?;
    let messages = admin.store(move |s| s.list_messages(filter, limit)).await?;
    Ok(HttpResponse::Ok().json(json!({ "messages": messages })))
}

async fn show_event(
    admin: web::Data<Admin>,
    id: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = id.into_inner();
    let shown = id.clone();
    admin
        .store(move |s| s.event_detail(&id))
        .await?
        .map(|e| HttpResponse::Ok().json(e))
        .ok_or_else(|| AdminError::NotFound(format!("no event {shown}")))
}

fn message_id(text: &str) -> Result<i64, AdminError> {
    text.parse()
        .map_err(|_| AdminError::BadRequest(format!("{text:?} is not a message id")))
}

async fn show_message(
    admin: web::Data<Admin>,
    id: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = message_id(&id)?;
    admin
        .store(move |s| s.message_detail(id))
        .await?
        .map(|m| HttpResponse::Ok().json(m))
        .ok_or_else(|| AdminError::NotFound(format!("no message {id}")))
}

async fn replay_message(
    admin: web::Data<Admin>,
    id: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = message_id(&id)?;
    admin.replay(id).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "queued", "id": id})))
}

impl Admin {
    /// Queues dead or failed message `id` again and wakes the worker.
    ///
    /// # Errors
    /// No such message, one in another state or without recipients, a store error.
    pub async fn replay(&self, id: i64) -> Result<(), AdminError> {
        match self
            .store(move |s| s.replay_message(id, SystemTime::now()))
            .await?
        {
            Replay::Queued => {
                self.queued.notify_one();
                tracing::info!(message_id = id, "message replayed by an admin");
                Ok(())
            }
            Replay::NotFound => Err(AdminError::NotFound(format!("no message {id}"))),
            Replay::WrongState(s) => Err(AdminError::Conflict(format!(
                "message {id} is {s}: only dead or failed messages are replayed"
            ))),
            Replay::NoRecipients => Err(AdminError::Conflict(format!(
                "message {id} has no recipients: fill the group, then re-map its event (POST /admin/events/<id>/remap)"
            ))),
        }
    }

    /// Queues every dead message again; how many.
    ///
    /// # Errors
    /// A store error.
    pub async fn replay_all_dead(&self) -> Result<usize, AdminError> {
        let n = self.store(|s| s.replay_all_dead(SystemTime::now())).await?;
        self.queued.notify_one();
        tracing::info!(messages = n, "dead messages replayed by an admin");
        Ok(n)
    }
}

async fn replay_dead(admin: web::Data<Admin>) -> Result<HttpResponse, AdminError> {
    let n = admin.replay_all_dead().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "queued", "replayed": n})))
}

/// Rebuilds a header map from the stored JSON object.
fn stored_headers(json: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_str(json) {
        for (k, v) in obj {
            if let (Ok(name), Some(Ok(value))) = (
                actix_web::http::header::HeaderName::from_bytes(k.as_bytes()),
                v.as_str()
                    .map(actix_web::http::header::HeaderValue::from_str),
            ) {
                map.insert(name, value);
            }
        }
    }
    map
}

async fn remap_event(
    admin: web::Data<Admin>,
    id: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = id.into_inner();
    let result = admin.remap(id.clone()).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "remapped", "id": id, "result": result})))
}

impl Admin {
    /// Maps stored event `id` again with its source's current mapping, replacing its failed
    /// messages; the rendered document.
    ///
    /// # Errors
    /// No such event, no mapping, a mapping that ignores or still fails it, messages already
    /// queued or sent, a store error.
    pub async fn remap(&self, id: String) -> Result<serde_json::Value, AdminError> {
        let lookup = id.clone();
        let stored = self
            .store(move |s| s.stored_event(&lookup))
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no event {id}")))?;
        if stored.payload.is_empty() {
            return Err(AdminError::Conflict(format!(
                "the payload of event {id} was dropped after delivery.keep_payloads: it cannot be re-mapped"
            )));
        }
        let catalog = &self.catalog;
        let sources = catalog.load();
        let source = sources.get(&stored.source).ok_or_else(|| {
            AdminError::Conflict(format!("source {} has no loaded mapping", stored.source))
        })?;
        let received = crate::store::from_unix_ms(stored.received_at);
        let payload = verify::offline::trust_stored(
            stored_headers(&stored.headers),
            Bytes::from(stored.payload),
            received,
        )
        .map_err(|e| AdminError::Conflict(format!("stored payload: {e}")))?;
        let routed = pipeline::render(
            &source.mapping,
            &payload,
            &catalog.groups,
            catalog.options.tz,
        );
        let document = routed.document();
        let outcome = routed.outcome(&stored.source).map_err(|reason| {
            AdminError::Conflict(format!("the mapping now ignores this event: {reason}"))
        })?;
        let target = id.clone();
        let applied = self
            .store(move |s| s.apply_remap(&target, &outcome, SystemTime::now()))
            .await?;
        if !applied {
            return Err(AdminError::Conflict(match document {
                Err(reason) => format!("the mapping still fails ({reason}): nothing changed"),
                Ok(_) => format!(
                    "event {id} has messages queued, in flight, delivered or sent inside a digest, or carries a digest of other cards: re-mapping would send a card twice or lose one"
                ),
            }));
        }
        self.queued.notify_one();
        tracing::info!(event_id = %id, "event re-mapped by an admin");
        // A failing mapping was refused above, so the document is the rendered result.
        let result = document.unwrap_or_default();
        Ok(result)
    }
}

async fn reload(admin: web::Data<Admin>) -> Result<HttpResponse, AdminError> {
    let catalog = Arc::clone(&admin.catalog);
    let report = web::block(move || catalog.reload())
        .await
        .map_err(|e| AdminError::Internal(anyhow::anyhow!("reload task failed: {e}")))??;
    Ok(HttpResponse::Ok()
        .json(json!({"status": "reloaded", "sources": report.sources, "errors": report.errors})))
}

async fn render(
    req: HttpRequest,
    admin: web::Data<Admin>,
    source: web::Path<String>,
    body: Bytes,
) -> Result<HttpResponse, AdminError> {
    let catalog = &admin.catalog;
    let sources = catalog.load();
    let source = sources
        .get(source.as_str())
        .ok_or_else(|| AdminError::NotFound(format!("unknown source {source}")))?;
    let payload = verify::offline::trust_admin_supplied(
        req.headers().clone(),
        body,
        std::time::SystemTime::now(),
    )
    .map_err(|e| AdminError::BadRequest(e.to_string()))?;
    match pipeline::render(
        &source.mapping,
        &payload,
        &catalog.groups,
        catalog.options.tz,
    )
    .document()
    {
        Ok(doc) => Ok(HttpResponse::Ok().json(doc)),
        Err(reason) => Err(AdminError::BadRequest(reason)),
    }
}
