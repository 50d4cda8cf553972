//! The admin console under `/admin/ui/`, on only when `admin.token` is set: server-rendered
//! pages (maud), a little JavaScript of our own for the editor, everything embedded in the
//! binary. Sign-in with the admin token gives a signed session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` over HTTPS); every state-changing request carries the session's
//! CSRF token; a strict Content-Security-Policy allows nothing inline.
//!
//! Layout: [`session`] (cookies, CSRF, sign-in limits), [`text`] (the UI's words in English and
//! Chinese), `views` (the pages' markup, the phone-card preview), `editor` (the mapping
//! editor: check as you type, preview, save), `deliveries` (messages, replay, re-map, send
//! test).

mod deliveries;
mod editor;
pub mod session;
pub mod text;
mod views;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::Admin;
use crate::card::Locale;
use crate::config::IpRange;
use crate::deliver::fxiaoke::FxiaokeClient;
use crate::deliver::lease::Role;
use crate::store::Monitor;
use session::{COOKIE, Session, Sessions};

/// Sign-ins a minute one client address (an IPv6 /64) may try before it waits.
pub const SIGN_IN_FAILURES_A_MINUTE: u32 = 5;

/// What the console works with, besides the admin API's parts.
pub struct Console {
    /// Sessions and sign-in limits.
    pub sessions: Sessions,
    /// The store, mappings and worker wake-up of the admin API.
    pub admin: web::Data<Admin>,
    /// Queue gauges for the overview.
    pub monitor: Arc<dyn Monitor>,
    /// Whether this replica sends.
    pub role: Arc<Role>,
    /// Merges of the last minute (a storm being coalesced).
    pub storm: Arc<crate::deliver::storm::StormWatch>,
    /// The vendor client in live mode (send test, token state).
    pub client: Option<Arc<FxiaokeClient>>,
    /// The prefix every route is served under (`server.path_prefix`).
    pub prefix: String,
    /// The language when the browser asks for neither English nor Chinese.
    pub locale: Locale,
    /// The writer's door, for test cards.
    pub enqueuer: crate::enqueue::Enqueuer,
    /// Webhooks of the last hour, by source.
    pub hour: web::Data<crate::metrics::LastHour>,
    /// Proxies whose `X-Forwarded-Proto` is believed (for the cookie's `Secure`).
    pub trusted_proxies: Vec<IpRange>,
}

impl Console {
    /// A console URL under the prefix.
    pub fn url(&self, path: &str) -> String {
        format!("{}/admin/ui{path}", self.prefix)
    }

    /// The language of `req`.
    fn lang(&self, req: &HttpRequest) -> Locale {
        let accept = req
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        text::language(accept, self.locale)
    }

    /// True when the request came over HTTPS: from a trusted proxy that says so.
    fn over_https(&self, req: &HttpRequest) -> bool {
        let trusted = req
            .peer_addr()
            .is_some_and(|a| self.trusted_proxies.iter().any(|r| r.contains(a.ip())));
        trusted
            && req
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
    }

    /// The client's address: behind a trusted proxy, the one it forwarded for.
    fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        crate::receive::client::of_request(req, &self.trusted_proxies)
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }
}

/// The signed-in session of a request (set by the gate).
fn session_of(req: &HttpRequest) -> Option<Session> {
    req.extensions().get::<Session>().cloned()
}

/// Registers `/admin/ui/*` (before `/admin`, whose bearer check does not apply here).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin/ui")
            .wrap(from_fn(gate))
            // A mapping file (up to 1 MiB of text) in a JSON body, or URL-encoded in the
            // download form (Chinese text takes 9 bytes a character there).
            .app_data(web::PayloadConfig::new(4 * 1024 * 1024))
            .app_data(web::FormConfig::default().limit(12 * 1024 * 1024))
            .route("", web::get().to(to_overview))
            .route("/", web::get().to(views::overview))
            .route("/sign-in", web::get().to(sign_in_form))
            .route("/sign-in", web::post().to(sign_in))
            .route("/sign-out", web::post().to(sign_out))
            .route("/assets/{file}", web::get().to(asset))
            .route("/sources/{name}", web::get().to(editor::page))
            .route("/sources/{name}/check", web::post().to(editor::check))
            .route("/sources/{name}/save", web::post().to(editor::save))
            .route("/sources/{name}/download", web::post().to(editor::download))
            .route("/messages", web::get().to(deliveries::list))
            .route("/messages/{id}", web::get().to(deliveries::show))
            .route("/messages/{id}/replay", web::post().to(deliveries::replay))
            .route("/events/{id}/remap", web::post().to(deliveries::remap))
            .route("/replay-all", web::get().to(deliveries::replay_all_form))
            .route("/replay-all", web::post().to(deliveries::replay_all))
            .route("/send-test", web::get().to(deliveries::send_test_form))
            .route("/send-test", web::post().to(deliveries::send_test)),
    );
}

async fn to_overview(console: web::Data<Console>) -> HttpResponse {
    see_other(&console.url("/"))
}

/// A `303 See Other` to `location`.
fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_string()))
        .finish()
}

/// The console's Content-Security-Policy: nothing inline, nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The gate of every console route: off without `admin.token` (404); a page without a session
/// goes to the sign-in form (`303`), a state-changing request without one gets `401`, with one
/// but without its CSRF token `403`. Every answer carries the CSP and no-store.
///
/// # Errors
/// Only those of the wrapped service.
pub async fn gate<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(console) = req.app_data::<web::Data<Console>>().cloned() else {
        let off = HttpResponse::NotFound()
            .json(serde_json::json!({"error": "the console is off: set admin.token"}));
        return Ok(req.into_response(off).map_into_right_body());
    };
    let path = req.path().to_string();
    // The sign-in form, the assets, and `/admin/ui` itself (it only redirects to `/admin/ui/`,
    // where the cookie's path starts).
    let open = path.ends_with("/sign-in")
        || path.contains("/admin/ui/assets/")
        || path.ends_with("/admin/ui");
    let session = req
        .cookie(COOKIE)
        .and_then(|c| console.sessions.check(c.value(), SystemTime::now()));
    let reading = matches!(
        *req.method(),
        actix_web::http::Method::GET | actix_web::http::Method::HEAD
    );
    let refusal = match (&session, open, reading) {
        (_, true, _) => None,
        (None, false, true) => Some(see_other(&console.url("/sign-in"))),
        (None, false, false) => {
            Some(HttpResponse::Unauthorized().json(serde_json::json!({"error": "sign in first"})))
        }
        // A form carries the token as a field, a script as a header: checked where the body
        // is read (see `require_csrf`); here only the header form can be checked.
        (Some(_), false, _) => None,
    };
    if let Some(refusal) = refusal {
        return Ok(req.into_response(harden(refusal)).map_into_right_body());
    }
    if let Some(session) = session {
        req.extensions_mut().insert(session);
    }
    let mut res = next.call(req).await?;
    secure(res.headers_mut());
    Ok(res.map_into_left_body())
}

fn harden(mut res: HttpResponse) -> HttpResponse {
    secure(res.headers_mut());
    res
}

/// The headers of every console answer: the CSP, never cached, never framed, no sniffing, no
/// referrer outside.
fn secure(headers: &mut header::HeaderMap) {
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, header::HeaderValue::from_static(value));
    }
}

/// Refuses a state-changing request whose CSRF token (form field `csrf`, or header
/// `X-CSRF-Token`) is not its session's.
fn require_csrf(
    console: &Console,
    req: &HttpRequest,
    form_value: Option<&str>,
) -> Result<Session, Box<HttpResponse>> {
    let Some(session) = session_of(req) else {
        return Err(Box::new(
            HttpResponse::Unauthorized().json(serde_json::json!({"error": "sign in first"})),
        ));
    };
    let presented = form_value.map(str::to_string).or_else(|| {
        req.headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    match presented {
        Some(token) if console.sessions.csrf_matches(&session, &token) => Ok(session),
        _ => Err(Box::new(HttpResponse::Forbidden().json(
            serde_json::json!({"error": "missing or wrong CSRF token: reload the page"}),
        ))),
    }
}

async fn sign_in_form(req: HttpRequest, console: web::Data<Console>) -> HttpResponse {
    views::sign_in(&console, console.lang(&req), None)
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

async fn sign_in(
    req: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<SignIn>,
) -> HttpResponse {
    let lang = console.lang(&req);
    let client = console.client_ip(&req);
    // Every try counts, and the limit is checked before the token: over it, even the right
    // token waits (a guess that lands is not let in at network speed).
    if !console.sessions.may_try(client) {
        tracing::warn!(client_ip = %client, "console sign-in refused: too many tries from this address");
        let mut res = views::sign_in(&console, lang, Some(text::t(lang, "too_many")));
        *res.status_mut() = actix_web::http::StatusCode::TOO_MANY_REQUESTS;
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        return res;
    }
    if console.sessions.token_matches(&form.token) {
        let value = console.sessions.issue(SystemTime::now());
        let cookie = Cookie::build(COOKIE, value)
            .path(console.url("/"))
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(console.over_https(&req))
            .max_age(actix_web::cookie::time::Duration::seconds(
                console.sessions.ttl().as_secs() as i64,
            ))
            .finish();
        tracing::info!(client_ip = %client, "console sign-in");
        let mut res = see_other(&console.url("/"));
        let _ = res.add_cookie(&cookie);
        return res;
    }
    tracing::warn!(client_ip = %client, "console sign-in with a wrong token");
    let mut res = views::sign_in(&console, lang, Some(text::t(lang, "wrong_token")));
    *res.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
    res
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: Option<String>,
}

async fn sign_out(
    req: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<CsrfOnly>,
) -> HttpResponse {
    if let Err(refused) = require_csrf(&console, &req, form.csrf.as_deref()) {
        return *refused;
    }
    let mut cookie = Cookie::build(COOKIE, "").path(console.url("/")).finish();
    cookie.make_removal();
    let mut res = see_other(&console.url("/sign-in"));
    let _ = res.add_cookie(&cookie);
    res
}

/// The embedded stylesheet and script.
async fn asset(file: web::Path<String>) -> HttpResponse {
    let (body, kind): (&'static str, &str) = match file.as_str() {
        "console.css" => (
            include_str!("assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_str!("assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}
