//! Deliveries: messages by state and source, newest first, a page at a time; a message with
//! its card, recipients and every attempt (the vendor's errorCode, message, traceId and
//! thirdTraceId); replay, re-map, replay all dead (after a confirmation that says how many);
//! and a test card to one employee, queued like any other message.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::views::{self, Frame, Nav};
use super::{Console, require_csrf, see_other};
use crate::admin::AdminError;
use crate::card::{Card, Link, Locale, Row, SendBody};
use crate::reload::Catalog;
use crate::store::{EventOutcome, MessageState, NewEvent, NewMessage};

/// Rows a page.
const PAGE: i64 = 50;

/// The states a message can be listed by.
const STATES: &[&str] = &[
    "queued",
    "in-flight",
    "delivered",
    "failed",
    "dead",
    "coalesced",
    "suppressed",
];

/// `?state=…&source=…&before=…&note=…`
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    source: Option<String>,
    before: Option<i64>,
    note: Option<String>,
}

/// A short confirmation after an action, by key (never text from the query).
fn note(frame: &Frame<'_>, key: Option<&str>) -> Markup {
    let text = match key {
        Some("replayed") => frame.t("note_replayed"),
        Some("remapped") => frame.t("note_remapped"),
        Some("replayed_all") => frame.t("note_replayed_all"),
        Some("test_queued") => frame.t("note_test_queued"),
        _ => return html! {},
    };
    html! { p.notice.ok role="status" { (text) } }
}

fn state_badge(state: &str) -> Markup {
    let class = match state {
        "delivered" => "ok",
        "failed" | "dead" => "bad",
        _ => "warn",
    };
    html! { span.badge.(class) { (state) } }
}

/// `GET /admin/ui/messages`
pub async fn list(
    req: HttpRequest,
    console: web::Data<Console>,
    catalog: web::Data<Catalog>,
    q: web::Query<ListQuery>,
) -> HttpResponse {
    let Some(frame) = Frame::of(&console, &req, Nav::Deliveries) else {
        return see_other(&console.url("/sign-in"));
    };
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<MessageState>() {
            Ok(s) => Some(s),
            Err(e) => {
                let content = html! { p.notice.error { (e) } };
                return frame.page(StatusCode::BAD_REQUEST, frame.t("deliveries"), content);
            }
        },
    };
    let source = q.source.clone().filter(|s| !s.is_empty());
    let before = q.before;
    let rows = {
        let source = source.clone();
        console
            .admin
            .store(move |s| s.message_page(state, source.as_deref(), before, PAGE))
            .await
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return store_error(&frame, &e),
    };
    let dead = console
        .admin
        .store(|s| s.count_messages(MessageState::Dead))
        .await
        .unwrap_or(0);
    let tz = catalog.options.tz;
    let names: Vec<String> = catalog.load().sources.keys().cloned().collect();
    let c = &console;
    let link = |state: Option<&str>, source: Option<&str>, before: Option<i64>| {
        let mut query = Vec::new();
        if let Some(s) = state {
            query.push(format!("state={s}"));
        }
        if let Some(s) = source {
            query.push(format!("source={}", urlencoding(s)));
        }
        if let Some(b) = before {
            query.push(format!("before={b}"));
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        c.url(&format!("/messages{query}"))
    };
    let shown_state = state.map(MessageState::as_str);
    let content = html! {
        h1 { (frame.t("deliveries")) }
        (note(&frame, q.note.as_deref()))
        nav.filters aria-label=(frame.t("state")) {
            a href=(link(None, source.as_deref(), None)) aria-current=[shown_state.is_none().then_some("page")] { (frame.t("all")) }
            @for s in STATES {
                a href=(link(Some(s), source.as_deref(), None)) aria-current=[(shown_state == Some(*s)).then_some("page")] { (s) }
            }
        }
        form.filters method="get" action=(c.url("/messages")) {
            @if let Some(s) = shown_state { input type="hidden" name="state" value=(s); }
            label for="source" { (frame.t("source")) }
            select #source name="source" {
                option value="" { (frame.t("all")) }
                @for n in &names {
                    option value=(n) selected[source.as_deref() == Some(n.as_str())] { (n) }
                }
            }
            button type="submit" { (frame.t("filter")) }
        }
        @if dead > 0 {
            p { a.button href=(c.url("/replay-all")) { (frame.t("replay_all")) " (" (dead) ")" } }
        }
        table.list.messages {
            thead { tr {
                th.num { "#" } th { (frame.t("source")) } th { (frame.t("state")) }
                th { (frame.t("title")) } th.num { (frame.t("attempts")) } th { (frame.t("updated")) }
            } }
            tbody {
                @for m in &rows {
                    @let id = m["id"].as_i64().unwrap_or(0);
                    tr {
                        td.num { a href=(c.url(&format!("/messages/{id}"))) { (id) } }
                        td { (m["source"].as_str().unwrap_or("")) }
                        td { (state_badge(m["state"].as_str().unwrap_or(""))) }
                        td.title { a href=(c.url(&format!("/messages/{id}"))) { (views::title_of(&m["body"])) } }
                        td.num { (m["attempts"].as_i64().unwrap_or(0)) }
                        td { (views::at(m["updated_at"].as_i64().unwrap_or(0), tz)) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="6" { (frame.t("none")) } } }
            }
        }
        nav.pages {
            @if before.is_some() { a href=(link(shown_state, source.as_deref(), None)) { "« " (frame.t("newest")) } }
            @if rows.len() as i64 == PAGE {
                @if let Some(last) = rows.last().and_then(|m| m["id"].as_i64()) {
                    a href=(link(shown_state, source.as_deref(), Some(last))) { (frame.t("older")) " »" }
                }
            }
        }
    };
    frame.page(StatusCode::OK, frame.t("deliveries"), content)
}

/// Percent-encodes a query value.
fn urlencoding(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)])
        .map(|q| q.trim_start_matches("v=").to_string())
        .unwrap_or_default()
}

fn store_error(frame: &Frame<'_>, e: &AdminError) -> HttpResponse {
    let (status, text) = match e {
        AdminError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
        AdminError::Conflict(m) | AdminError::BadRequest(m) => (StatusCode::CONFLICT, m.clone()),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            frame.t("store_down").to_string(),
        ),
    };
    frame.page(
        status,
        frame.t("deliveries"),
        html! { p.notice.error { (text) } },
    )
}

/// `?note=…`
#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    note: Option<String>,
}

/// `GET /admin/ui/messages/{id}`
pub async fn show(
    req: HttpRequest,
    console: web::Data<Console>,
    catalog: web::Data<Catalog>,
    id: web::Path<i64>,
    q: web::Query<ShowQuery>,
) -> HttpResponse {
    let Some(frame) = Frame::of(&console, &req, Nav::Deliveries) else {
        return see_other(&console.url("/sign-in"));
    };
    message_page(&frame, &catalog, *id, q.note.as_deref(), None).await
}

async fn message_page(
    frame: &Frame<'_>,
    catalog: &Catalog,
    id: i64,
    note_key: Option<&str>,
    refusal: Option<String>,
) -> HttpResponse {
    let c = frame.console;
    let found = c.admin.store(move |s| s.message_detail(id)).await;
    let m = match found {
        Ok(Some(m)) => m,
        Ok(None) => return store_error(frame, &AdminError::NotFound(format!("no message {id}"))),
        Err(e) => return store_error(frame, &e),
    };
    let tz = catalog.options.tz;
    let state = m["state"].as_str().unwrap_or("");
    let event = m["event_id"].as_str().unwrap_or("").to_string();
    let recipients: Vec<&str> = m["body"]["toUser"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let attempts = m["attempts"].as_array().cloned().unwrap_or_default();
    let status = if refusal.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let content = html! {
        p { a href=(c.url("/messages")) { "‹ " (frame.t("deliveries")) } }
        h1 { (frame.t("message")) " " (id) " " (state_badge(state)) }
        (note(frame, note_key))
        @if let Some(refusal) = &refusal { p.notice.error role="alert" { (refusal) } }
        div.split {
            section {
                (views::stored_card(frame.lang, &m["body"]))
            }
            section {
                dl.facts {
                    dt { (frame.t("event")) } dd { code { (event) } }
                    dt { (frame.t("recipients")) } dd { (recipients.len()) ": " (recipients.join(", ")) }
                    dt { (frame.t("attempts")) } dd { (m["attempts"].as_i64().unwrap_or(0)) }
                    dt { (frame.t("updated")) } dd { (views::at(m["updated_at"].as_i64().unwrap_or(0), tz)) }
                    @if let Some(e) = m["last_error"].as_str() { dt { (frame.t("last_error")) } dd.err { (e) } }
                    @if let Some(d) = m["digest_id"].as_i64() {
                        dt { (frame.t("went_out_in")) } dd { a href=(c.url(&format!("/messages/{d}"))) { "#" (d) } }
                    }
                    @if let Some(merged) = m["merged"].as_array().filter(|a| !a.is_empty()) {
                        dt { (frame.t("digest_of")) }
                        dd {
                            @for (i, id) in merged.iter().filter_map(|v| v.as_i64()).enumerate() {
                                @if i > 0 { ", " }
                                a href=(c.url(&format!("/messages/{id}"))) { "#" (id) }
                            }
                        }
                    }
                }
                div.actions {
                    @if matches!(state, "dead" | "failed") {
                        form method="post" action=(c.url(&format!("/messages/{id}/replay"))) {
                            (frame.csrf_field())
                            button type="submit" { (frame.t("replay")) }
                        }
                    }
                    @if state == "failed" {
                        form method="post" action=(c.url(&format!("/events/{event}/remap"))) {
                            (frame.csrf_field())
                            input type="hidden" name="message" value=(id);
                            button.secondary type="submit" { (frame.t("remap")) }
                        }
                    }
                }
            }
        }
        h2 { (frame.t("attempts")) }
        div.scroll {
            table.list.attempts {
                thead { tr {
                    th { (frame.t("started")) } th { (frame.t("outcome")) } th.num { "HTTP" }
                    th.num { "errorCode" } th { (frame.t("vendor_message")) } th { "traceId" } th { "thirdTraceId" }
                } }
                tbody {
                    @for a in &attempts {
                        tr {
                            td { (views::at(a["started_at"].as_i64().unwrap_or(0), tz)) }
                            td { (a["outcome"].as_str().unwrap_or("")) }
                            td.num { (opt(&a["http_status"])) }
                            td.num { (opt(&a["error_code"])) }
                            td { (opt(&a["error_message"])) }
                            td { code { (opt(&a["trace_id"])) } }
                            td { code { (opt(&a["third_trace_id"])) } }
                        }
                    }
                    @if attempts.is_empty() { tr { td colspan="7" { (frame.t("none")) } } }
                }
            }
        }
        details.body {
            summary { (frame.t("send_body")) }
            pre.json { (views::pretty(&m["body"])) }
        }
    };
    frame.page(status, &format!("{} {id}", frame.t("message")), content)
}

fn opt(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A form with only its CSRF token (and, for a re-map, the message to come back to).
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    message: Option<i64>,
}

/// `POST /admin/ui/messages/{id}/replay`
pub async fn replay(
    req: HttpRequest,
    console: web::Data<Console>,
    catalog: web::Data<Catalog>,
    id: web::Path<i64>,
    form: web::Form<ActionForm>,
) -> HttpResponse {
    if let Err(refused) = require_csrf(&console, &req, form.csrf.as_deref()) {
        return *refused;
    }
    let id = *id;
    match console.admin.replay(id).await {
        Ok(()) => see_other(&console.url(&format!("/messages/{id}?note=replayed"))),
        Err(e) => match Frame::of(&console, &req, Nav::Deliveries) {
            Some(frame) => message_page(&frame, &catalog, id, None, Some(e.to_string())).await,
            None => see_other(&console.url("/sign-in")),
        },
    }
}

/// `POST /admin/ui/events/{id}/remap`
pub async fn remap(
    req: HttpRequest,
    console: web::Data<Console>,
    catalog: web::Data<Catalog>,
    id: web::Path<String>,
    form: web::Form<ActionForm>,
) -> HttpResponse {
    if let Err(refused) = require_csrf(&console, &req, form.csrf.as_deref()) {
        return *refused;
    }
    let outcome = console.admin.remap(id.into_inner()).await;
    let back = form.message;
    match (outcome, back) {
        (Ok(_), Some(m)) => see_other(&console.url(&format!("/messages/{m}?note=remapped"))),
        (Ok(_), None) => see_other(&console.url("/messages?note=remapped")),
        (Err(e), Some(m)) => match Frame::of(&console, &req, Nav::Deliveries) {
            Some(frame) => message_page(&frame, &catalog, m, None, Some(e.to_string())).await,
            None => see_other(&console.url("/sign-in")),
        },
        (Err(e), None) => {
            HttpResponse::Conflict().json(serde_json::json!({"error": e.to_string()}))
        }
    }
}

/// `GET /admin/ui/replay-all`: how many dead messages a replay would queue, and the button.
pub async fn replay_all_form(req: HttpRequest, console: web::Data<Console>) -> HttpResponse {
    let Some(frame) = Frame::of(&console, &req, Nav::Deliveries) else {
        return see_other(&console.url("/sign-in"));
    };
    let dead = match console
        .admin
        .store(|s| s.count_messages(MessageState::Dead))
        .await
    {
        Ok(n) => n,
        Err(e) => return store_error(&frame, &e),
    };
    let content = html! {
        h1 { (frame.t("replay_all")) }
        @if dead == 0 {
            p { (frame.t("no_dead")) }
        } @else {
            form.card-panel method="post" action=(console.url("/replay-all")) {
                (frame.csrf_field())
                input type="hidden" name="expected" value=(dead);
                p.confirm { (frame.t("replay_all_confirm")) ": " b #dead-count { (dead) } }
                button type="submit" { (frame.t("replay_all")) " (" (dead) ")" }
                " "
                a.button.secondary href=(console.url("/messages?state=dead")) { (frame.t("cancel")) }
            }
        }
    };
    frame.page(StatusCode::OK, frame.t("replay_all"), content)
}

/// The confirmation of a replay of every dead message.
#[derive(Debug, Deserialize)]
pub struct ReplayAllForm {
    csrf: Option<String>,
}

/// `POST /admin/ui/replay-all`
pub async fn replay_all(
    req: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<ReplayAllForm>,
) -> HttpResponse {
    if let Err(refused) = require_csrf(&console, &req, form.csrf.as_deref()) {
        return *refused;
    }
    match console.admin.replay_all_dead().await {
        Ok(_) => see_other(&console.url("/messages?state=queued&note=replayed_all")),
        Err(e) => {
            HttpResponse::InternalServerError().json(serde_json::json!({"error": e.to_string()}))
        }
    }
}

/// `GET /admin/ui/send-test`
pub async fn send_test_form(req: HttpRequest, console: web::Data<Console>) -> HttpResponse {
    let Some(frame) = Frame::of(&console, &req, Nav::SendTest) else {
        return see_other(&console.url("/sign-in"));
    };
    send_test_page(&frame, StatusCode::OK, None, "")
}

fn send_test_page(
    frame: &Frame<'_>,
    status: StatusCode,
    error: Option<&str>,
    to: &str,
) -> HttpResponse {
    let c = frame.console;
    let sample = test_card(frame.lang);
    let content = html! {
        h1 { (frame.t("send_test")) }
        @if c.client.is_none() { p.notice.warn { (frame.t("dry_run_note")) } }
        @if let Some(e) = error { p.notice.error role="alert" { (e) } }
        div.split {
            form.card-panel method="post" action=(c.url("/send-test")) {
                (frame.csrf_field())
                label for="to" { (frame.t("employee")) }
                input #to name="to" required value=(to) placeholder="1000";
                p.hint { (frame.t("send_test_hint")) }
                button type="submit" { (frame.t("send")) }
            }
            @if let Ok(card) = &sample { section { (views::phone(frame.lang, &card.composite())) } }
        }
    };
    frame.page(status, frame.t("send_test"), content)
}

fn test_card(lang: Locale) -> Result<Card, String> {
    let zh = lang == Locale::ZhCn;
    Card::new(
        if zh {
            "fxhook 测试卡片"
        } else {
            "fxhook test card"
        }
        .into(),
        Some(
            if zh {
                "看到这条消息，说明投递正常。"
            } else {
                "If you can read this, delivery works."
            }
            .into(),
        ),
        vec![Row {
            label: if zh { "发送方" } else { "Sent by" }.into(),
            value: if zh {
                "fxhook 控制台"
            } else {
                "fxhook console"
            }
            .into(),
        }],
        None,
        Link {
            title: if zh {
                "纷享销客开放平台"
            } else {
                "Fxiaoke OpenAPI"
            }
            .into(),
            url: "https://open.fxiaoke.com".into(),
        },
    )
    .map_err(|e| e.to_string())
}

/// The send-test form.
#[derive(Debug, Deserialize)]
pub struct SendTestForm {
    csrf: Option<String>,
    to: String,
}

/// `POST /admin/ui/send-test`: queues a test card to one employee as an event of the source
/// `console`; its message page shows the attempt (in a dry run: logged, marked delivered).
pub async fn send_test(
    req: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<SendTestForm>,
) -> HttpResponse {
    if let Err(refused) = require_csrf(&console, &req, form.csrf.as_deref()) {
        return *refused;
    }
    let Some(frame) = Frame::of(&console, &req, Nav::SendTest) else {
        return see_other(&console.url("/sign-in"));
    };
    let to = match crate::route::RecipientId::try_from(form.to.trim().to_string()) {
        Ok(to) => to,
        Err(e) => return send_test_page(&frame, StatusCode::BAD_REQUEST, Some(&e), &form.to),
    };
    let card = match test_card(frame.lang) {
        Ok(c) => c,
        Err(e) => {
            return send_test_page(
                &frame,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&e),
                &form.to,
            );
        }
    };
    let body = SendBody::new(vec![to.as_str().to_string()], &card);
    let id = uuid::Uuid::now_v7().to_string();
    let event = NewEvent {
        id: id.clone(),
        source: "console".into(),
        event_type: Some("send-test".into()),
        delivery_id: None,
        received_at: SystemTime::now(),
        headers: "{}".into(),
        payload: bytes::Bytes::from(serde_json::json!({"send_test": to.as_str()}).to_string()),
        stored_payload: None,
        outcome: EventOutcome::Mapped {
            rule: "send-test".into(),
            messages: vec![NewMessage {
                body: serde_json::to_string(&body).unwrap_or_default(),
                failed: None,
                storm: Default::default(),
            }],
        },
    };
    if let Err(e) = console.enqueuer.commit(event).await {
        return send_test_page(
            &frame,
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&e.to_string()),
            &form.to,
        );
    }
    tracing::info!(event_id = %id, "test card queued from the console");
    let message = console
        .admin
        .store(move |s| s.event_detail(&id))
        .await
        .ok()
        .flatten()
        .and_then(|e| e["messages"].get(0).and_then(|m| m["id"].as_i64()));
    match message {
        Some(m) => see_other(&console.url(&format!("/messages/{m}?note=test_queued"))),
        None => see_other(&console.url("/messages?note=test_queued")),
    }
}
