//! A fake Fxiaoke (ShareCRM) OpenAPI standing in for the vendor in tests.
//!
//! It owns one HTTP server on 127.0.0.1:0, run on its own OS thread with its own actix `System`,
//! so it works under `#[actix_rt::test]`, `#[tokio::test]` and for a gateway in another process.
//! It checks every request against `shared/docs/fxiaoke-api.md` as strictly as that manual reads,
//! records what it saw (with the broken rules as `violations`), and answers as the vendor would:
//! HTTP 200 with a non-zero `errorCode` in the body. Where the manual names no code for a broken
//! rule it answers [`FAKE_REJECT_CODE`], so a bad request is never mistaken for a delivered one.
//!
//! Besides the manual, it holds the gateway to its own documented card limits
//! ([`DocumentedLimits`]): what docs/mapping.md promises never to send is a violation too.
//!
//! Layout: [`FakeFxiaoke`] (start, scripting, inspection), then the handler, then the answers;
//! the pure checks (query, headers, token body, send body, card limits) are in [`checks`].

mod checks;

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

pub use checks::DocumentedLimits;
use checks::{
    Outcome, RATE_LIMITED, TOKEN_INVALID, check_authorization, check_business_headers,
    check_envelope, check_query, check_send_body, check_token_body, single_header,
};

/// The `errorCode` this fake answers for a broken rule the vendor manual gives no code for.
#[allow(dead_code)]
pub const FAKE_REJECT_CODE: i64 = 99_999;

const TOKEN_PATH: &str = "/oauth2.0/token";
const SEND_PATH: &str = "/cgi/message/send";
const EA: &str = "fs-ea-1";
const OPEN_USER_ID: &str = "FSUID_FAKE_1";
/// A token lives 7200 s; a token call in its first 6600 s answers the same token.
const TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
const TOKEN_REISSUE_AFTER: Duration = Duration::from_secs(6600);
/// Each token call is held this long, so that overlapping calls can be seen.
const TOKEN_HOLD: Duration = Duration::from_millis(50);
const TOKEN_RATE: (usize, Duration) = (10, Duration::from_secs(60));
const SEND_RATE: (usize, Duration) = (100, Duration::from_secs(20));
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// A running fake; dropping it stops the server.
#[allow(dead_code)]
pub struct FakeFxiaoke {
    /// The port the server listens on.
    port: u16,
    /// State shared with the handler.
    shared: web::Data<Shared>,
    /// Stops the server.
    handle: ServerHandle,
    /// Signals when the server thread has finished.
    done: mpsc::Receiver<()>,
}

/// A scripted answer for the next /cgi/message/send calls (consumed in order; when the script is empty, answer success).
///
/// Only a send that passes every check consumes an entry: an invalid or unauthenticated one is
/// answered as such and leaves the script alone.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub enum Scripted {
    /// Answer HTTP 200 with {"errorCode": code, "errorMessage": "...", "traceId": "E-..."}.
    ErrorCode(i64),
    /// Answer with this HTTP status and a JSON error body.
    HttpStatus(u16),
    /// Do not answer for this long (then answer success). The message counts as delivered
    /// when it arrives, as the vendor may deliver a message whose answer the client never sees.
    Hang(Duration),
    /// Answer 200 with an HTML page (as www.fxiaoke.com's redirect target does).
    Html,
}

/// One request the fake received, after validation.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Received {
    /// The request path, e.g. "/oauth2.0/token" or "/cgi/message/send".
    pub path: String,
    /// The `thirdTraceId` query parameter ("" when absent).
    pub third_trace_id: String,
    /// The JSON body (`Null` when the body was not JSON).
    pub body: Value,
    /// When the request arrived.
    pub at: Instant,
    /// The `authorization` header, if any.
    pub authorization: Option<String>,
    /// The rules the request broke; empty when the request was valid.
    pub violations: Vec<String>,
    /// The `errorCode` answered (0 for success); `None` for an HTML or non-200 answer.
    pub error_code: Option<i64>,
    /// The HTTP status answered.
    pub http_status: u16,
}

/// What the gateway must be configured with: the app's credentials and the acting employee.
struct Account {
    app_id: String,
    app_secret: String,
    permanent_code: String,
    /// The `x-fs-userid` every business call must carry (the gateway's `fxiaoke.user_id`).
    user_id: String,
}

/// The account and the mutable state, shared by the handler and the test.
struct Shared {
    account: Account,
    state: Mutex<State>,
}

/// Everything the fake remembers.
#[derive(Default)]
struct State {
    /// Every request in arrival order, with whether it counts as a delivered send.
    entries: Vec<(Received, bool)>,
    /// Every `thirdTraceId` seen, to catch reuse.
    trace_ids: HashSet<String>,
    /// Scripted answers for the next valid sends.
    script: VecDeque<Scripted>,
    /// Tokens issued, oldest first.
    tokens: Vec<Token>,
    /// When set, the token endpoint answers this code.
    token_error: Option<i64>,
    /// Token calls being answered now.
    token_calls_in_flight: usize,
    /// The highest `token_calls_in_flight` seen.
    max_concurrent_token_calls: usize,
    /// Numbers the answers' `traceId`s.
    next_trace: u64,
    /// The card limits sends are held to.
    limits: DocumentedLimits,
}

/// An issued access token.
struct Token {
    value: String,
    issued_at: Instant,
    /// Set by `expire_token`.
    expired: bool,
}

#[allow(dead_code)]
impl FakeFxiaoke {
    /// Starts with these credentials (app_id, app_secret, permanent_code) and the employee id
    /// every send must carry as `x-fs-userid` (the gateway's `fxiaoke.user_id`); it issues token
    /// "tok-1", "tok-2", … and ea "fs-ea-1", and holds sends to the default card limits.
    ///
    /// Panics when the port cannot be bound or the server thread cannot start (test setup only).
    pub fn start(
        app_id: &str,
        app_secret: &str,
        permanent_code: &str,
        user_id: &str,
    ) -> FakeFxiaoke {
        let shared = web::Data::new(Shared {
            account: Account {
                app_id: app_id.to_owned(),
                app_secret: app_secret.to_owned(),
                permanent_code: permanent_code.to_owned(),
                user_id: user_id.to_owned(),
            },
            state: Mutex::new(State::default()),
        });
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("the fake Fxiaoke binds a port");
        let port = listener
            .local_addr()
            .expect("the fake Fxiaoke has an address")
            .port();
        let (handle_tx, handle_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let data = shared.clone();
        std::thread::Builder::new()
            .name(format!("fake-fxiaoke-{port}"))
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .app_data(web::PayloadConfig::new(BODY_LIMIT))
                            .default_service(web::to(handle))
                    })
                    .workers(1)
                    .disable_signals()
                    .listen(listener);
                    match server {
                        Ok(server) => {
                            let server = server.run();
                            let _ = handle_tx.send(Ok(server.handle()));
                            let _ = server.await;
                        }
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                        }
                    }
                });
                let _ = done_tx.send(());
            })
            .expect("the fake Fxiaoke thread starts");
        let handle = handle_rx
            .recv()
            .expect("the fake Fxiaoke thread reports")
            .expect("the fake Fxiaoke listens");
        FakeFxiaoke {
            port,
            shared,
            handle,
            done,
        }
    }

    /// "http://127.0.0.1:PORT"
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues answers for the next valid sends, after any already queued.
    ///
    /// Panics on an `HttpStatus` that is not a valid HTTP status code.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        let answers: Vec<Scripted> = answers.into_iter().collect();
        for a in &answers {
            if let Scripted::HttpStatus(s) = a {
                assert!(StatusCode::from_u16(*s).is_ok(), "{s} is no HTTP status");
            }
        }
        self.shared.lock().script.extend(answers);
    }

    /// The current token becomes invalid: the next send with it gets errorCode 20016, and the
    /// next token call issues a new one. (Every token issued so far is invalidated.)
    pub fn expire_token(&self) {
        for t in &mut self.shared.lock().tokens {
            t.expired = true;
        }
    }

    /// Makes the token endpoint answer this errorCode (e.g. 10006) until cleared with `None`.
    pub fn set_token_error(&self, code: Option<i64>) {
        self.shared.lock().token_error = code;
    }

    /// Holds sends to these card limits instead of the documented defaults (for a gateway
    /// configured with other `cards.*`).
    pub fn set_card_limits(&self, limits: DocumentedLimits) {
        self.shared.lock().limits = limits;
    }

    /// Every request, in order.
    pub fn received(&self) -> Vec<Received> {
        let state = self.shared.lock();
        state.entries.iter().map(|(r, _)| r.clone()).collect()
    }

    /// Only valid, successful /cgi/message/send calls (including those answered after a `Hang`).
    pub fn sends(&self) -> Vec<Received> {
        let state = self.shared.lock();
        let delivered = state.entries.iter().filter(|(_, delivered)| *delivered);
        delivered.map(|(r, _)| r.clone()).collect()
    }

    /// The `toUser` ids of the delivered sends, in order (an id sent twice appears twice).
    pub fn recipients(&self) -> Vec<String> {
        let sends = self.sends();
        let ids = sends
            .iter()
            .flat_map(|s| s.body["toUser"].as_array().cloned());
        let ids = ids
            .flatten()
            .map(|id| id.as_str().unwrap_or_default().to_string());
        ids.collect()
    }

    /// Every /cgi/message/send call, valid or not, answered how it was.
    pub fn send_calls(&self) -> Vec<Received> {
        let state = self.shared.lock();
        let calls = state.entries.iter().filter(|(r, _)| r.path == SEND_PATH);
        calls.map(|(r, _)| r.clone()).collect()
    }

    /// How many requests reached /oauth2.0/token, valid or not.
    pub fn token_calls(&self) -> usize {
        let state = self.shared.lock();
        state
            .entries
            .iter()
            .filter(|(r, _)| r.path == TOKEN_PATH)
            .count()
    }

    /// The highest number of token calls in progress at the same time.
    pub fn max_concurrent_token_calls(&self) -> usize {
        self.shared.lock().max_concurrent_token_calls
    }

    /// All violations seen, in order, each prefixed with the request path ("/cgi/message/send: …").
    pub fn violations(&self) -> Vec<String> {
        let state = self.shared.lock();
        let each = state
            .entries
            .iter()
            .flat_map(|(r, _)| r.violations.iter().map(move |v| format!("{}: {v}", r.path)));
        each.collect()
    }

    /// Fails the test with every violation, when there is one.
    #[track_caller]
    pub fn assert_no_violations(&self) {
        let violations = self.violations();
        assert!(violations.is_empty(), "{violations:#?}");
    }

    /// The most /cgi/message/send calls (valid or not) within any sliding window of this length.
    pub fn max_sends_in_window(&self, window: Duration) -> usize {
        let state = self.shared.lock();
        let times: Vec<Instant> = state
            .entries
            .iter()
            .filter(|(r, _)| r.path == SEND_PATH)
            .map(|(r, _)| r.at)
            .collect();
        let (mut first, mut most) = (0, 0);
        for (last, t) in times.iter().enumerate() {
            while first <= last && t.duration_since(times[first]) >= window {
                first += 1;
            }
            most = most.max(last + 1 - first);
        }
        most
    }
}

impl Drop for FakeFxiaoke {
    fn drop(&mut self) {
        // `stop` sends its command at once; the future it returns only waits for the outcome.
        drop(self.handle.stop(false));
        let _ = self.done.recv_timeout(Duration::from_secs(5));
    }
}

impl Shared {
    /// The state, even if a test panicked while holding it.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn trace_id(&mut self) -> String {
        self.next_trace += 1;
        format!("E-O.{}", self.next_trace)
    }

    /// Records a reused `thirdTraceId` and a call rate over the endpoint's limit.
    fn check_reuse_and_rate(&mut self, req: &Incoming, now: Instant, out: &mut Outcome) {
        if !req.trace.is_empty() && !self.trace_ids.insert(req.trace.clone()) {
            out.reject(
                FAKE_REJECT_CODE,
                format!("thirdTraceId {} was already used", req.trace),
            );
        }
        let (limit, window) = match req.path.as_str() {
            TOKEN_PATH => TOKEN_RATE,
            SEND_PATH => SEND_RATE,
            _ => return,
        };
        let recent = self.entries.iter().rev();
        let recent = recent.take_while(|(r, _)| now.duration_since(r.at) < window);
        let calls = 1 + recent.filter(|(r, _)| r.path == req.path).count();
        if calls > limit {
            out.reject(
                RATE_LIMITED,
                format!("{calls} calls within {window:?} (the limit is {limit})"),
            );
        }
    }

    /// The current token, or a new one when there is none or it is past its reissue age.
    fn token_for_call(&mut self) -> String {
        if let Some(t) = self.tokens.last()
            && !t.expired
            && t.issued_at.elapsed() < TOKEN_REISSUE_AFTER
        {
            return t.value.clone();
        }
        let value = format!("tok-{}", self.tokens.len() + 1);
        self.tokens.push(Token {
            value: value.clone(),
            issued_at: Instant::now(),
            expired: false,
        });
        value
    }

    /// Checks a bearer token: unknown is a violation; issued-then-expired is answered 20016 but is
    /// no violation, since the manual expects clients to meet it and refresh.
    fn check_token(&self, token: &str, out: &mut Outcome) {
        match self.tokens.iter().find(|t| t.value == token) {
            None => out.reject(TOKEN_INVALID, "authorization carries a token never issued"),
            Some(t) if t.expired || t.issued_at.elapsed() >= TOKEN_LIFETIME => {
                out.answer(TOKEN_INVALID)
            }
            Some(_) => {}
        }
    }
}

/// What a request carried, read once.
struct Incoming {
    path: String,
    trace: String,
    body: Value,
    authorization: Option<String>,
}

/// Decrements the in-flight token calls however the call ends (answered or dropped).
struct InFlight(web::Data<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.token_calls_in_flight = state.token_calls_in_flight.saturating_sub(1);
    }
}

/// Every request lands here: check, record, then answer.
async fn handle(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let mut out = Outcome::default();
    let incoming = Incoming {
        path: req.path().to_owned(),
        trace: check_query(&req, &mut out),
        body: check_envelope(&req, &body, &mut out),
        authorization: single_header(&req, "authorization", &mut Outcome::default()),
    };
    match incoming.path.as_str() {
        TOKEN_PATH => token_call(&req, incoming, out, shared).await,
        SEND_PATH => send_call(&req, incoming, out, shared).await,
        _ => {
            out.reject(FAKE_REJECT_CODE, "no such endpoint");
            let mut state = shared.lock();
            state.check_reuse_and_rate(&incoming, Instant::now(), &mut out);
            let trace = state.trace_id();
            record(&mut state, incoming, out, false, (None, 404));
            HttpResponse::NotFound().json(json!({"error": "not found", "traceId": trace}))
        }
    }
}

async fn token_call(
    req: &HttpRequest,
    incoming: Incoming,
    mut out: Outcome,
    shared: web::Data<Shared>,
) -> HttpResponse {
    for name in ["authorization", "x-fs-ea", "x-fs-userid"] {
        if req.headers().contains_key(name) {
            out.reject(
                FAKE_REJECT_CODE,
                format!("the token call carries a {name} header"),
            );
        }
    }
    if !incoming.body.is_null() {
        check_token_body(&incoming.body, &shared.account, &mut out);
    }
    let (answer, _in_flight) = {
        let mut state = shared.lock();
        let mut stateful = Outcome::default();
        if state.token_calls_in_flight > 0 {
            let n = state.token_calls_in_flight;
            stateful.reject(
                FAKE_REJECT_CODE,
                format!("token call while {n} other token call(s) were in progress"),
            );
        }
        state.token_calls_in_flight += 1;
        state.max_concurrent_token_calls = state
            .max_concurrent_token_calls
            .max(state.token_calls_in_flight);
        let in_flight = InFlight(shared.clone());
        state.check_reuse_and_rate(&incoming, Instant::now(), &mut stateful);
        // Rate and concurrency come first, the body checks after.
        stateful.extend(out);
        let out = stateful;
        let trace = state.trace_id();
        let code = out.error_code().or(state.token_error);
        let answer = match code {
            Some(code) => vendor_error(code, &out, &trace),
            None => HttpResponse::Ok().json(json!({
                "accessToken": state.token_for_call(),
                "expiresIn": TOKEN_LIFETIME.as_secs(),
                "ea": EA,
                "appId": shared.account.app_id,
                "openUserId": OPEN_USER_ID,
                "errorCode": 0,
                "errorMessage": "success",
                "traceId": trace,
            })),
        };
        record(
            &mut state,
            incoming,
            out,
            false,
            (Some(code.unwrap_or(0)), 200),
        );
        (answer, in_flight)
    };
    actix_rt::time::sleep(TOKEN_HOLD).await;
    answer
}

async fn send_call(
    req: &HttpRequest,
    incoming: Incoming,
    mut out: Outcome,
    shared: web::Data<Shared>,
) -> HttpResponse {
    // The answer takes the first code the manual names, so the order here is auth, rate, body.
    let token = check_authorization(req, &mut out);
    let mut rest = Outcome::default();
    check_business_headers(req, EA, &shared.account.user_id, &mut rest);
    let (answer, trace) = {
        let mut state = shared.lock();
        if !incoming.body.is_null() {
            check_send_body(&incoming.body, &state.limits, &mut rest);
        }
        if let Some(token) = &token {
            state.check_token(token, &mut out);
        }
        state.check_reuse_and_rate(&incoming, Instant::now(), &mut out);
        out.extend(rest);
        let trace = state.trace_id();
        let scripted = if out.codes.is_empty() {
            state.script.pop_front()
        } else {
            None
        };
        let answer = match out.error_code() {
            Some(code) => Err(vendor_error(code, &out, &trace)),
            None => Ok(scripted),
        };
        let delivered = matches!(answer, Ok(None | Some(Scripted::Hang(_))));
        let answered = match &answer {
            Err(_) => (out.error_code(), 200),
            Ok(None | Some(Scripted::Hang(_))) => (Some(0), 200),
            Ok(Some(Scripted::ErrorCode(code))) => (Some(*code), 200),
            Ok(Some(Scripted::HttpStatus(status))) => (None, *status),
            Ok(Some(Scripted::Html)) => (None, 200),
        };
        record(&mut state, incoming, out, delivered, answered);
        (answer, trace)
    };
    match answer {
        Err(response) => response,
        Ok(None) => send_success(&trace),
        Ok(Some(Scripted::Hang(d))) => {
            actix_rt::time::sleep(d).await;
            send_success(&trace)
        }
        Ok(Some(Scripted::ErrorCode(code))) => vendor_error(code, &Outcome::default(), &trace),
        Ok(Some(Scripted::HttpStatus(status))) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            HttpResponse::build(status).json(json!({
                "error": status.canonical_reason().unwrap_or("error"),
                "error_description": format!("scripted HTTP {}", status.as_u16()),
                "traceId": trace,
            }))
        }
        Ok(Some(Scripted::Html)) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body("<!DOCTYPE html><html><head><title>纷享销客</title></head><body>login</body></html>"),
    }
}

/// Keeps a request with its violations and its answer: (`errorCode`, HTTP status).
fn record(
    state: &mut State,
    incoming: Incoming,
    out: Outcome,
    delivered: bool,
    (error_code, http_status): (Option<i64>, u16),
) {
    let received = Received {
        path: incoming.path,
        third_trace_id: incoming.trace,
        body: incoming.body,
        at: Instant::now(),
        authorization: incoming.authorization,
        violations: out.violations,
        error_code,
        http_status,
    };
    state.entries.push((received, delivered));
}

fn send_success(trace: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "traceId": trace,
        "errorDescription": "success",
        "errorMessage": "OK",
        "errorCode": 0,
    }))
}

/// HTTP 200 with a non-zero `errorCode`, as the vendor reports every failure.
fn vendor_error(code: i64, out: &Outcome, trace: &str) -> HttpResponse {
    let message = match (code, out.violations.first()) {
        (FAKE_REJECT_CODE, Some(why)) => format!("fake Fxiaoke rejected the request: {why}"),
        (_, Some(why)) => why.clone(),
        (_, None) => describe(code).to_owned(),
    };
    HttpResponse::Ok().json(json!({
        "errorCode": code,
        "errorMessage": message,
        "errorDescription": message,
        "traceId": trace,
    }))
}

/// The manual's meaning of a code, for the answer's text (which clients must not branch on).
fn describe(code: i64) -> &'static str {
    match code {
        -1 => "system busy",
        -2 => "system error",
        50009 => "service error",
        14001 | 30004 => "call-rate limit exceeded",
        20016 => "token invalid or expired",
        20017 => "no authorization",
        30002 => "daily quota used up",
        30003 => "no OpenAPI quota",
        10006 => "the parameter appSecret is missing or illegal",
        _ => "scripted error",
    }
}
