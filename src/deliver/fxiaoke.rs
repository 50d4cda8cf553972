//! The Fxiaoke OpenAPI client, as `fxiaoke-api.md` describes it: the token of the
//! client-credentials mode (cached, refreshed before it ages out, fetched by one caller at a
//! time and never more than ten times a minute), the common headers, a fresh UUID v4
//! `thirdTraceId` on every call, and `/cgi/message/send`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::policy::Answer;
use crate::config::FxiaokeSettings;

/// Refresh the token when it is this old (the vendor re-issues from 6600 s of its 7200 s).
const REFRESH_AFTER: Duration = Duration::from_secs(6600);
/// At most this many token calls per minute (the vendor's limit is 10).
const TOKEN_CALLS_PER_MINUTE: usize = 10;

/// The app credentials.
pub struct Credentials {
    app_id: String,
    app_secret: SecretString,
    permanent_code: SecretString,
    user_id: String,
}

impl Credentials {
    /// The credentials of the configuration, when all are present.
    pub fn from_settings(s: &FxiaokeSettings) -> Option<Credentials> {
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let secret = |v: &Option<SecretString>| {
            v.as_ref()
                .map(|s| s.expose_secret().trim().to_string())
                .filter(|s| !s.is_empty())
                .map(SecretString::from)
        };
        Some(Credentials {
            app_id: text(&s.app_id)?,
            app_secret: secret(&s.app_secret)?,
            permanent_code: secret(&s.permanent_code)?,
            user_id: text(&s.user_id)?,
        })
    }
}

/// A cached access token.
pub struct Token {
    access: SecretString,
    ea: String,
    fetched: Instant,
    lifetime: Duration,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(ea={}, [REDACTED])", self.ea)
    }
}

impl Token {
    fn fresh(&self, now: Instant) -> bool {
        let refresh_at = REFRESH_AFTER.min(self.lifetime.saturating_sub(Duration::from_secs(60)));
        now.duration_since(self.fetched) < refresh_at
    }
}

#[derive(Default)]
struct TokenState {
    current: Option<Arc<Token>>,
    calls: VecDeque<Instant>,
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
    token: tokio::sync::Mutex<TokenState>,
    /// The last token fetch's error, readable while a fetch holds `token` (for `/readyz`).
    last_error: std::sync::Mutex<Option<String>>,
}

impl FxiaokeClient {
    /// A client for `base_url` with these timeouts.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        base_url: &str,
        creds: Credentials,
        connect: Duration,
        request: Duration,
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
            token: tokio::sync::Mutex::new(TokenState::default()),
            last_error: std::sync::Mutex::new(None),
        })
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
        let mut state = self.token.lock().await;
        let now = Instant::now();
        if let Some(t) = state.current.as_ref().filter(|t| t.fresh(now)) {
            return Ok(Arc::clone(t));
        }
        while state
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            state.calls.pop_front();
        }
        if state.calls.len() >= TOKEN_CALLS_PER_MINUTE {
            return Err(TokenFailure {
                report: None,
                reason: "token endpoint limit: 10 calls a minute already made".into(),
            });
        }
        state.calls.push_back(now);
        let result = self.fetch_token().await;
        crate::metrics::token_fetch(result.is_ok());
        if let Ok(mut last) = self.last_error.lock() {
            *last = result.as_ref().err().map(|f| f.reason.clone());
        }
        if let Ok(t) = &result {
            state.current = Some(Arc::clone(t));
        }
        result
    }

    /// Drops the cached token if it is still `failed` (another caller may have replaced it).
    pub async fn invalidate(&self, failed: &Arc<Token>) {
        let mut state = self.token.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, failed))
        {
            state.current = None;
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
                    fetched: Instant::now(),
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
