//! The refusals of the receive step and their HTTP answers: a status and `{"error": "…"}`.
//! 5xx bodies are opaque; the cause goes to the log.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::enqueue::EnqueueError;
use crate::verify::VerifyError;

/// Why a webhook was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// No mapping file of that name.
    #[error("unknown source {0}")]
    UnknownSource(String),
    /// The source has no secret.
    #[error("{0}")]
    Inactive(String),
    /// Signature or token missing or wrong, or a stale timestamp.
    #[error("{0}")]
    Unauthorized(VerifyError),
    /// Not JSON or form-encoded.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// Over `server.max_body_bytes`.
    #[error("body over the limit of {0} bytes")]
    TooLarge(usize),
    /// Unreadable body.
    #[error("{0}")]
    Malformed(String),
    /// The body did not arrive within `server.body_timeout`.
    #[error("request body not received within server.body_timeout")]
    BodyTimeout,
    /// The source's own rate limit is exceeded.
    #[error("rate limit of source {name} exceeded")]
    RateLimited {
        /// The source.
        name: String,
        /// Seconds until a request may pass.
        retry_after: u64,
    },
    /// The store cannot take it now.
    #[error("store unavailable")]
    Store(#[from] EnqueueError),
}

impl ReceiveError {
    /// The `reason` label of `fxhook_webhooks_total{outcome="rejected"}`.
    pub fn reason(&self) -> &'static str {
        match self {
            ReceiveError::UnknownSource(_) => "unknown_source",
            ReceiveError::Inactive(_) => "inactive",
            ReceiveError::Unauthorized(_) => "signature",
            ReceiveError::UnsupportedMedia(_) => "unsupported_media",
            ReceiveError::TooLarge(_) => "too_large",
            ReceiveError::Malformed(_) => "malformed",
            ReceiveError::BodyTimeout => "body_timeout",
            ReceiveError::RateLimited { .. } => "rate_limited",
            ReceiveError::Store(_) => "store",
        }
    }
}

impl ResponseError for ReceiveError {
    fn status_code(&self) -> StatusCode {
        match self {
            ReceiveError::UnknownSource(_) => StatusCode::NOT_FOUND,
            ReceiveError::Inactive(_) | ReceiveError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ReceiveError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ReceiveError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ReceiveError::Malformed(_) => StatusCode::BAD_REQUEST,
            ReceiveError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ReceiveError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ReceiveError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        let message = match self {
            ReceiveError::Store(e) => {
                let cause = match e {
                    EnqueueError::Busy => "too many events wait for their commit".to_string(),
                    EnqueueError::Unavailable(cause) => format!("{cause:#}"),
                };
                tracing::error!(%cause, "event refused: the store cannot take it");
                res.insert_header(("Retry-After", "5"));
                "the store cannot take the event now; retry later".to_string()
            }
            ReceiveError::RateLimited { retry_after, .. } => {
                res.insert_header(("Retry-After", retry_after.to_string()));
                self.to_string()
            }
            other => other.to_string(),
        };
        res.json(serde_json::json!({ "error": message }))
    }
}
