//! A fake Fxiaoke (ShareCRM) OpenAPI standing in for the vendor in tests.
//!
//! It owns one HTTP server on 127.0.0.1:0, run on its own OS thread with its own actix `System`,
//! so it works under `#[actix_rt::test]`, `#[tokio::test]` and for a gateway in another process.
//! It checks every request against `shared/docs/fxiaoke-api.md` as strictly as that manual reads,
//! records what it saw (with the broken rules as `violations`), and answers as the vendor would:
//! HTTP 200 with a non-zero `errorCode` in the body. Where the manual names no code for a broken
//! rule it answers [`FAKE_REJECT_CODE`], so a bad request is never mistaken for a delivered one.
//!
//! Layout: [`FakeFxiaoke`] (start, scripting, inspection), then the handler, then the pure
//! checks (query, headers, token body, send body), then the answers.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Map, Value, json};

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
const MAX_RECIPIENTS: usize = 500;
const BODY_LIMIT: usize = 16 * 1024 * 1024;

// Vendor codes, as the manual's table names them.
const APP_SECRET_INVALID: i64 = 10006;
const RATE_LIMITED: i64 = 14001;
const TOKEN_INVALID: i64 = 20016;
const NO_AUTH: i64 = 20017;
const TO_USER_MISSING: i64 = 10015;
const TO_USER_INVALID: i64 = 11016;
const MSG_TYPE_INVALID: i64 = 11017;

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
}

/// Configured credentials and the mutable state, shared by the handler and the test.
struct Shared {
    app_id: String,
    app_secret: String,
    permanent_code: String,
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
    /// Starts with these credentials: app_id, app_secret, permanent_code; it issues token "tok-1", "tok-2", … and ea "fs-ea-1".
    ///
    /// Panics when the port cannot be bound or the server thread cannot start (test setup only).
    pub fn start(app_id: &str, app_secret: &str, permanent_code: &str) -> FakeFxiaoke {
        let shared = web::Data::new(Shared {
            app_id: app_id.to_owned(),
            app_secret: app_secret.to_owned(),
            permanent_code: permanent_code.to_owned(),
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

/// The broken rules of one request and the codes to answer with, in the order they were checked.
#[derive(Default)]
struct Outcome {
    violations: Vec<String>,
    codes: Vec<i64>,
}

impl Outcome {
    /// A broken rule, answered with `code`.
    fn reject(&mut self, code: i64, why: impl Into<String>) {
        self.violations.push(why.into());
        self.codes.push(code);
    }

    /// An error answer that breaks no rule (an expired token).
    fn answer(&mut self, code: i64) {
        self.codes.push(code);
    }

    fn extend(&mut self, other: Outcome) {
        self.violations.extend(other.violations);
        self.codes.extend(other.codes);
    }

    /// The first code the manual names, else the first code at all.
    fn error_code(&self) -> Option<i64> {
        let named = self.codes.iter().find(|c| **c != FAKE_REJECT_CODE);
        named.or(self.codes.first()).copied()
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
            record(&mut state, incoming, out, false);
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
        check_token_body(&incoming.body, &shared, &mut out);
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
        let answer = match (out.error_code(), state.token_error) {
            (Some(code), _) => vendor_error(code, &out, &trace),
            (None, Some(code)) => vendor_error(code, &out, &trace),
            (None, None) => HttpResponse::Ok().json(json!({
                "accessToken": state.token_for_call(),
                "expiresIn": TOKEN_LIFETIME.as_secs(),
                "ea": EA,
                "appId": shared.app_id,
                "openUserId": OPEN_USER_ID,
                "errorCode": 0,
                "errorMessage": "success",
                "traceId": trace,
            })),
        };
        record(&mut state, incoming, out, false);
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
    match single_header(req, "x-fs-ea", &mut rest) {
        None => rest.reject(FAKE_REJECT_CODE, "missing header x-fs-ea"),
        Some(ea) if ea != EA => {
            rest.reject(FAKE_REJECT_CODE, format!("x-fs-ea is {ea:?}, not {EA:?}"))
        }
        Some(_) => {}
    }
    match single_header(req, "x-fs-userid", &mut rest) {
        None => rest.reject(FAKE_REJECT_CODE, "missing header x-fs-userid"),
        Some(id) if id.trim().is_empty() => rest.reject(FAKE_REJECT_CODE, "x-fs-userid is empty"),
        Some(_) => {}
    }
    if !incoming.body.is_null() {
        check_send_body(&incoming.body, &mut rest);
    }
    let (answer, trace) = {
        let mut state = shared.lock();
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
        record(&mut state, incoming, out, delivered);
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

fn record(state: &mut State, incoming: Incoming, out: Outcome, delivered: bool) {
    let received = Received {
        path: incoming.path,
        third_trace_id: incoming.trace,
        body: incoming.body,
        at: Instant::now(),
        authorization: incoming.authorization,
        violations: out.violations,
    };
    state.entries.push((received, delivered));
}

/// The `thirdTraceId` ("" when absent), checked to be one hyphenated RFC 4122 UUID v4.
fn check_query(req: &HttpRequest, out: &mut Outcome) -> String {
    let Ok(pairs) = web::Query::<Vec<(String, String)>>::from_query(req.query_string()) else {
        out.reject(FAKE_REJECT_CODE, "the query string does not parse");
        return String::new();
    };
    let ids: Vec<&String> = pairs
        .iter()
        .filter(|(k, _)| k == "thirdTraceId")
        .map(|(_, v)| v)
        .collect();
    let Some(id) = ids.first() else {
        out.reject(FAKE_REJECT_CODE, "missing query parameter thirdTraceId");
        return String::new();
    };
    if ids.len() > 1 {
        out.reject(FAKE_REJECT_CODE, "thirdTraceId is given more than once");
    }
    if let Some(problem) = uuid_v4_problem(id) {
        out.reject(FAKE_REJECT_CODE, format!("thirdTraceId {id:?} {problem}"));
    }
    (*id).clone()
}

fn uuid_v4_problem(s: &str) -> Option<&'static str> {
    let shaped = s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if !shaped {
        return Some("is not a hyphenated UUID");
    }
    match uuid::Uuid::try_parse(s) {
        Err(_) => Some("is not a UUID"),
        Ok(u) if u.get_version_num() != 4 => Some("is not a version 4 UUID"),
        Ok(u) if u.get_variant() != uuid::Variant::RFC4122 => Some("is not an RFC 4122 variant"),
        Ok(_) => None,
    }
}

/// Checks method, content type and encoding; the body as JSON, or `Null` when it is not JSON.
fn check_envelope(req: &HttpRequest, body: &[u8], out: &mut Outcome) -> Value {
    if req.method() != actix_web::http::Method::POST {
        out.reject(
            FAKE_REJECT_CODE,
            format!("method {} (only POST)", req.method()),
        );
    }
    match single_header(req, "content-type", out) {
        None => out.reject(FAKE_REJECT_CODE, "missing header content-type"),
        Some(ct) => {
            let mut parts = ct.split(';').map(str::trim);
            let essence = parts.next().unwrap_or_default();
            let bad_charset = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("charset")
                        && !v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
                })
            });
            if !essence.eq_ignore_ascii_case("application/json") || bad_charset {
                out.reject(
                    FAKE_REJECT_CODE,
                    format!("content-type {ct:?} (only application/json, UTF-8)"),
                );
            }
        }
    }
    let Ok(text) = std::str::from_utf8(body) else {
        out.reject(FAKE_REJECT_CODE, "the body is not UTF-8");
        return Value::Null;
    };
    match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            out.reject(FAKE_REJECT_CODE, format!("the body is not JSON: {e}"));
            Value::Null
        }
    }
}

/// The header's value when it appears once; a repeat or a non-text value is a violation.
fn single_header(req: &HttpRequest, name: &str, out: &mut Outcome) -> Option<String> {
    let values: Vec<_> = req.headers().get_all(name).collect();
    if values.len() > 1 {
        out.reject(
            FAKE_REJECT_CODE,
            format!("header {name} is given more than once"),
        );
    }
    let value = values.first()?;
    let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
    if value.to_str().is_err() {
        out.reject(
            FAKE_REJECT_CODE,
            format!("header {name} is not visible ASCII"),
        );
    }
    Some(text)
}

/// The bearer token, when the header has exactly the shape `Bearer <token>`.
fn check_authorization(req: &HttpRequest, out: &mut Outcome) -> Option<String> {
    let Some(value) = single_header(req, "authorization", &mut Outcome::default()) else {
        out.reject(NO_AUTH, "missing header authorization");
        return None;
    };
    if req.headers().get_all("authorization").count() > 1 {
        out.reject(
            TOKEN_INVALID,
            "header authorization is given more than once",
        );
    }
    match value.strip_prefix("Bearer ") {
        Some(token) if !token.is_empty() && !token.contains(char::is_whitespace) => {
            Some(token.to_owned())
        }
        _ => {
            out.reject(
                TOKEN_INVALID,
                "authorization is not exactly \"Bearer <token>\" (one space)",
            );
            None
        }
    }
}

fn check_token_body(body: &Value, shared: &Shared, out: &mut Outcome) {
    let Some(obj) = body.as_object() else {
        out.reject(
            APP_SECRET_INVALID,
            format!("the body is {}, not an object", kind(body)),
        );
        return;
    };
    for key in obj.keys() {
        if !["appId", "appSecret", "permanentCode", "grantType"].contains(&key.as_str()) {
            out.reject(
                FAKE_REJECT_CODE,
                format!("unknown key {key:?} in the token body"),
            );
        }
    }
    // Values are compared, never printed: they are secrets.
    let fields = [
        ("appId", shared.app_id.as_str(), FAKE_REJECT_CODE),
        ("appSecret", shared.app_secret.as_str(), APP_SECRET_INVALID),
        (
            "permanentCode",
            shared.permanent_code.as_str(),
            FAKE_REJECT_CODE,
        ),
        ("grantType", "app_secret", FAKE_REJECT_CODE),
    ];
    for (key, want, code) in fields {
        match obj.get(key) {
            None => out.reject(code, format!("{key} is missing")),
            Some(Value::String(s)) if s == want => {}
            Some(Value::String(_)) => {
                out.reject(code, format!("{key} is not the configured value"))
            }
            Some(v) => out.reject(code, format!("{key} is {}, not a string", kind(v))),
        }
    }
}

fn check_send_body(body: &Value, out: &mut Outcome) {
    let Some(obj) = body.as_object() else {
        out.reject(
            TO_USER_MISSING,
            format!("the body is {}, not an object", kind(body)),
        );
        return;
    };
    check_to_user(obj.get("toUser"), out);
    match obj.get("msgType") {
        Some(Value::String(s)) if s == "composite" => {}
        None => out.reject(MSG_TYPE_INVALID, "msgType is missing"),
        Some(v) => out.reject(
            MSG_TYPE_INVALID,
            format!("msgType is {v}, not \"composite\""),
        ),
    }
    for key in obj.keys() {
        if !["toUser", "msgType", "composite"].contains(&key.as_str()) {
            out.reject(FAKE_REJECT_CODE, format!("unknown top-level key {key:?}"));
        }
    }
    match obj.get("composite") {
        Some(Value::Object(c)) => check_composite(c, out),
        None => out.reject(FAKE_REJECT_CODE, "composite is missing"),
        Some(v) => out.reject(
            FAKE_REJECT_CODE,
            format!("composite is {}, not an object", kind(v)),
        ),
    }
}

fn check_to_user(to_user: Option<&Value>, out: &mut Outcome) {
    let users = match to_user {
        None | Some(Value::Null) => return out.reject(TO_USER_MISSING, "toUser is missing"),
        Some(Value::Array(a)) if a.is_empty() => {
            return out.reject(TO_USER_MISSING, "toUser is empty");
        }
        Some(Value::Array(a)) => a,
        Some(v) => {
            return out.reject(
                TO_USER_INVALID,
                format!("toUser is {}, not an array", kind(v)),
            );
        }
    };
    if users.len() > MAX_RECIPIENTS {
        out.reject(
            TO_USER_INVALID,
            format!(
                "toUser has {} recipients (at most {MAX_RECIPIENTS})",
                users.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    // One message per kind of fault, naming its first occurrence, keeps 500 bad ids readable.
    let mut faults: Vec<(&str, String)> = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let fault = match user {
            Value::String(s) if s.trim().is_empty() => {
                Some(("empty", format!("toUser[{i}] is empty")))
            }
            Value::String(s) if !seen.insert(s) => Some((
                "dup",
                format!("toUser[{i}] {s:?} repeats an earlier recipient"),
            )),
            Value::String(_) => None,
            v => Some(("type", format!("toUser[{i}] is {}, not a string", kind(v)))),
        };
        if let Some((tag, why)) = fault
            && !faults.iter().any(|(t, _)| *t == tag)
        {
            faults.push((tag, why));
        }
    }
    for (_, why) in faults {
        out.reject(TO_USER_INVALID, why);
    }
}

fn check_composite(c: &Map<String, Value>, out: &mut Outcome) {
    required_text(c, "head", "title", out);
    required_text(c, "link", "title", out);
    required_text(c, "link", "url", out);
    optional_text(c, "first", "content", out);
    optional_text(c, "remark", "content", out);
    let rows = match c.get("form") {
        None => return,
        Some(Value::Array(rows)) => rows,
        Some(v) => {
            let why = format!("composite.form is {}, not an array", kind(v));
            return out.reject(FAKE_REJECT_CODE, why);
        }
    };
    for (i, row) in rows.iter().enumerate() {
        let Some(row) = row.as_object() else {
            let why = format!("composite.form[{i}] is {}, not an object", kind(row));
            out.reject(FAKE_REJECT_CODE, why);
            continue;
        };
        for key in ["label", "value"] {
            match row.get(key) {
                Some(Value::String(_)) => {}
                None => out.reject(
                    FAKE_REJECT_CODE,
                    format!("composite.form[{i}].{key} is missing"),
                ),
                Some(v) => out.reject(
                    FAKE_REJECT_CODE,
                    format!("composite.form[{i}].{key} is {}, not a string", kind(v)),
                ),
            }
        }
    }
}

/// `composite.<part>.<field>` must be a non-blank string.
fn required_text(c: &Map<String, Value>, part: &str, field: &str, out: &mut Outcome) {
    let why = match c.get(part) {
        None => format!("composite.{part} is missing"),
        Some(Value::Object(o)) => match o.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => return,
            Some(Value::String(_)) => format!("composite.{part}.{field} is empty"),
            None => format!("composite.{part}.{field} is missing"),
            Some(v) => format!("composite.{part}.{field} is {}, not a string", kind(v)),
        },
        Some(v) => format!("composite.{part} is {}, not an object", kind(v)),
    };
    out.reject(FAKE_REJECT_CODE, why);
}

/// `composite.<part>` may be absent; when present it is an object whose `<field>`, if any, is a string.
fn optional_text(c: &Map<String, Value>, part: &str, field: &str, out: &mut Outcome) {
    let why = match c.get(part) {
        None => return,
        Some(Value::Object(o)) => match o.get(field) {
            None | Some(Value::String(_)) => return,
            Some(v) => format!("composite.{part}.{field} is {}, not a string", kind(v)),
        },
        Some(v) => format!(
            "composite.{part} is {}, not an object (omit it instead)",
            kind(v)
        ),
    };
    out.reject(FAKE_REJECT_CODE, why);
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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
