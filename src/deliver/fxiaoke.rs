//! The Fxiaoke OpenAPI client, as `fxiaoke-api.md` describes it: the token of the
//! client-credentials mode (cached, refreshed before it ages out, fetched by one caller at a
//! time and never more than ten times a minute), the common headers, a fresh UUID v4
//! `thirdTraceId` on every call, and `/cgi/message/send`.
//!
//! The token and the token calls are kept in the store's [`VendorLedger`], not only in memory:
//! the vendor counts calls per app, so a restarted process must not fetch again a token that is
//! still good, nor make ten more calls in a minute that already saw ten.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::policy::Answer;
use crate::config::Credentials;
use crate::store::vendor::{CallKind, StoredToken, VendorLedger};

/// Refresh the token when it is this old (the vendor re-issues from 6600 s of its 7200 s).
const REFRESH_AFTER: Duration = Duration::from_secs(6600);
/// At most this many token calls per minute (the vendor's limit is 10).
const TOKEN_CALLS_PER_MINUTE: usize = 10;

impl Credentials {
    /// A fingerprint of what a token is issued to (app, secret, enterprise), to recognise a
    /// kept token as ours. A hash: the secrets themselves are never stored.
    fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            self.app_id.as_str(),
            self.app_secret.expose_secret(),
            self.permanent_code.expose_secret(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

/// A cached access token.
pub struct Token {
    access: SecretString,
    ea: String,
    /// Wall clock, so that a token kept in the store means the same after a restart.
    fetched: SystemTime,
    lifetime: Duration,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(ea={}, [REDACTED])", self.ea)
    }
}

impl Token {
    /// Usable now: younger than the refresh age (and not from the future: a clock set back
    /// makes it stale rather than immortal).
    fn fresh(&self, now: SystemTime) -> bool {
        let refresh_at = REFRESH_AFTER.min(self.lifetime.saturating_sub(Duration::from_secs(60)));
        now.duration_since(self.fetched)
            .is_ok_and(|age| age < refresh_at)
    }

    fn stored(&self, owner: &str) -> StoredToken {
        StoredToken {
            owner: owner.to_string(),
            access: self.access.clone(),
            ea: self.ea.clone(),
            fetched_at: self.fetched,
            lifetime: self.lifetime,
        }
    }

    fn from_stored(t: StoredToken) -> Token {
        Token {
            access: t.access,
            ea: t.ea,
            fetched: t.fetched_at,
            lifetime: t.lifetime,
        }
    }
}

/// What one HTTP call came back with, for the attempt record.
#[derive(Debug, Clone)]
pub struct CallReport {
    /// The classified answer.
    pub answer: Answer,
    /// HTTP status, when there was an answer.
    pub http_status: Option<u16>,
    /// The vendor's `traceId`.
    pub trace_id: Option<String>,
    /// Our `thirdTraceId`.
    pub third_trace_id: String,
    /// A short description for admins (never a secret).
    pub message: Option<String>,
}

/// Why no token could be had.
#[derive(Debug, Clone)]
pub struct TokenFailure {
    /// The call's report, when a call was made.
    pub report: Option<CallReport>,
    /// What went wrong.
    pub reason: String,
}

/// The client.
pub struct FxiaokeClient {
    http: reqwest::Client,
    base: String,
    creds: Credentials,
    /// The cached token; the lock makes fetching single-flight.
    token: tokio::sync::Mutex<Option<Arc<Token>>>,
    /// Token calls and the kept token, shared with the next process.
    ledger: Arc<dyn VendorLedger>,
    /// The last token fetch's error, readable while a fetch holds `token` (for `/readyz`).
    last_error: std::sync::Mutex<Option<String>>,
}

impl FxiaokeClient {
    /// A client for `base_url` with these timeouts, keeping its token and token calls in
    /// `ledger`.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        base_url: &str,
        creds: Credentials,
        connect: Duration,
        request: Duration,
        ledger: Arc<dyn VendorLedger>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fxhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(FxiaokeClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            creds,
            token: tokio::sync::Mutex::new(None),
            ledger,
            last_error: std::sync::Mutex::new(None),
        })
    }

    /// Runs a ledger call off the async threads.
    async fn ledger<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn VendorLedger) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        crate::store::vendor::off_thread(&self.ledger, f).await
    }

    /// The error of the last token fetch, if it failed (for `/readyz`).
    pub fn last_token_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// A usable token: the cached one, or a new one. Holding the lock during the fetch makes
    /// it single-flight: concurrent callers wait and share the result.
    ///
    /// # Errors
    /// The call failed, the vendor refused the credentials, or ten calls were made this minute.
    pub async fn token(&self) -> Result<Arc<Token>, TokenFailure> {
        let mut current = self.token.lock().await;
        let now = SystemTime::now();
        if let Some(t) = current.as_ref().filter(|t| t.fresh(now)) {
            return Ok(Arc::clone(t));
        }
        let unusable = |e: anyhow::Error| TokenFailure {
            report: None,
            reason: format!("the store cannot tell the token state: {e:#}"),
        };
        // A previous process (or `fxhook send-test`) may have fetched one that is still good.
        let owner = self.creds.fingerprint();
        let kept = self
            .ledger(move |l| l.load_token(&owner))
            .await
            .map_err(unusable)?;
        if let Some(t) = kept.map(Token::from_stored).filter(|t| t.fresh(now)) {
            let t = Arc::new(t);
            *current = Some(Arc::clone(&t));
            return Ok(t);
        }
        let minute_ago = now - Duration::from_secs(60);
        let recent = self
            .ledger(move |l| l.calls_since(CallKind::Token, minute_ago))
            .await
            .map_err(unusable)?;
        if recent.len() >= TOKEN_CALLS_PER_MINUTE {
            let reason = "token endpoint limit: 10 calls a minute already made".to_string();
            tracing::warn!(calls = recent.len(), "{reason}; waiting");
            return Err(TokenFailure {
                report: None,
                reason,
            });
        }
        tracing::debug!(
            endpoint = "/oauth2.0/token",
            calls_this_minute = recent.len(),
            "fetching an access token"
        );
        // Written before the call: a process killed during it has still spent the call.
        self.ledger(move |l| l.record_call(CallKind::Token, now))
            .await
            .map_err(unusable)?;
        let result = self.fetch_token().await;
        match &result {
            Ok(t) => {
                tracing::debug!(endpoint = "/oauth2.0/token", ea = %t.ea, lifetime_s = t.lifetime.as_secs(), "access token fetched")
            }
            Err(f) => {
                tracing::debug!(endpoint = "/oauth2.0/token", reason = %f.reason, "access token refused")
            }
        }
        crate::metrics::token_fetch(result.is_ok());
        if let Ok(mut last) = self.last_error.lock() {
            *last = result.as_ref().err().map(|f| f.reason.clone());
        }
        if let Ok(t) = &result {
            *current = Some(Arc::clone(t));
            let stored = t.stored(&self.creds.fingerprint());
            if let Err(e) = self.ledger(move |l| l.save_token(&stored)).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot keep the token in the store: a restart will fetch a new one"
                );
            }
        }
        result
    }

    /// Forgets the token cached in memory: the next call reads the one kept in the store (a
    /// replica taking over delivery uses the token its predecessor kept).
    pub async fn forget_cached_token(&self) {
        *self.token.lock().await = None;
    }

    /// Drops the cached token if it is still `failed` (another caller may have replaced it),
    /// in memory and in the store.
    pub async fn invalidate(&self, failed: &Arc<Token>) {
        tracing::debug!("the vendor refused the access token (20016): dropping it");
        let mut current = self.token.lock().await;
        if current.as_ref().is_some_and(|t| Arc::ptr_eq(t, failed)) {
            *current = None;
        }
        let access = failed.access.clone();
        if let Err(e) = self.ledger(move |l| l.forget_token(&access)).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot drop the stale token from the store"
            );
        }
    }

    async fn fetch_token(&self) -> Result<Arc<Token>, TokenFailure> {
        let body = json!({
            "appId": self.creds.app_id,
            "appSecret": self.creds.app_secret.expose_secret(),
            "permanentCode": self.creds.permanent_code.expose_secret(),
            "grantType": "app_secret",
        });
        let (report, json) = self.call("/oauth2.0/token", None, body.to_string()).await;
        let fail = |reason: String, report: CallReport| TokenFailure {
            report: Some(report),
            reason,
        };
        let Some(json) = json else {
            let reason = format!(
                "token call failed: {}",
                report.message.clone().unwrap_or_default()
            );
            return Err(fail(reason, report));
        };
        match (
            &report.answer,
            json.get("accessToken").and_then(Value::as_str),
        ) {
            (Answer::Code(0), Some(access)) if !access.is_empty() => {
                let lifetime = json
                    .get("expiresIn")
                    .and_then(Value::as_u64)
                    .unwrap_or(7200);
                Ok(Arc::new(Token {
                    access: SecretString::from(access.to_string()),
                    ea: json
                        .get("ea")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    fetched: SystemTime::now(),
                    lifetime: Duration::from_secs(lifetime),
                }))
            }
            (Answer::Code(code), _) => {
                let reason = format!(
                    "token refused: errorCode {code} {} (check fxiaoke.app_id, app_secret, permanent_code)",
                    report.message.clone().unwrap_or_default()
                );
                Err(fail(reason, report))
            }
            _ => Err(fail("token answer without accessToken".into(), report)),
        }
    }

    /// Sends one `/cgi/message/send` body with `token`.
    pub async fn send(&self, token: &Token, body: &str) -> CallReport {
        self.call("/cgi/message/send", Some(token), body.to_string())
            .await
            .0
    }

    /// One POST with a fresh `thirdTraceId`, classified; the JSON answer when there was one.
    async fn call(
        &self,
        path: &str,
        token: Option<&Token>,
        body: String,
    ) -> (CallReport, Option<Value>) {
        let third_trace_id = uuid::Uuid::new_v4().to_string();
        let mut req = self
            .http
            // A UUID needs no URL encoding.
            .post(format!("{}{path}?thirdTraceId={third_trace_id}", self.base))
            .header("content-type", "application/json; charset=utf-8")
            .body(body);
        if let Some(t) = token {
            req = req
                .header(
                    "authorization",
                    format!("Bearer {}", t.access.expose_secret()),
                )
                .header("x-fs-ea", t.ea.as_str())
                .header("x-fs-userid", self.creds.user_id.as_str());
        }
        let mut report = CallReport {
            answer: Answer::Connect,
            http_status: None,
            trace_id: None,
            third_trace_id,
            message: None,
        };
        let res = match req.send().await {
            Ok(res) => res,
            Err(e) => {
                report.answer = if e.is_timeout() {
                    Answer::Timeout
                } else {
                    Answer::Connect
                };
                report.message = Some(if e.is_timeout() {
                    "no answer within delivery.request_timeout".into()
                } else {
                    format!("cannot reach {}: {}", self.base, error_chain(&e))
                });
                return (report, None);
            }
        };
        let status = res.status();
        report.http_status = Some(status.as_u16());
        let bytes = res.bytes().await.unwrap_or_default();
        let json: Option<Value> = serde_json::from_slice(&bytes).ok().filter(Value::is_object);
        if let Some(j) = &json {
            report.trace_id = j.get("traceId").and_then(Value::as_str).map(str::to_string);
            report.message = j
                .get("errorMessage")
                .or_else(|| j.get("errorDescription"))
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        report.answer = if status.is_redirection() {
            report.message = Some(format!(
                "HTTP {status}: redirected, fxiaoke.base_url is probably wrong (the API host is https://open.fxiaoke.com, not www.fxiaoke.com)"
            ));
            Answer::NotJson
        } else if status != reqwest::StatusCode::OK {
            report.message = Some(format!("HTTP {status}"));
            Answer::Http(status.as_u16())
        } else {
            match json
                .as_ref()
                .map(|j| j.get("errorCode").and_then(Value::as_i64))
            {
                Some(Some(code)) => Answer::Code(code),
                // A token answer may omit errorCode on success.
                Some(None)
                    if json
                        .as_ref()
                        .is_some_and(|j| j.get("accessToken").is_some()) =>
                {
                    Answer::Code(0)
                }
                Some(None) => {
                    report.message = Some("JSON answer without errorCode".into());
                    Answer::Code(-2)
                }
                None => {
                    report.message = Some(
                        "the answer is not JSON: fxiaoke.base_url is probably wrong (the API host is https://open.fxiaoke.com)".into(),
                    );
                    Answer::NotJson
                }
            }
        };
        (report, json)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
