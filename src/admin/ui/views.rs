//! The console's markup (maud: escaped by default, checked at compile time): the layout, the
//! sign-in form, the overview, and the phone-card preview every page shares.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{DOCTYPE, Markup, html};

use super::text::t;
use super::{Console, session_of};
use crate::card::{Composite, Locale, SendBody};
use crate::reload::Catalog;
use crate::verify::Readiness;

/// The navigation entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/admin/ui/`
    Overview,
    /// `/admin/ui/sources/…`
    Sources,
    /// `/admin/ui/messages`
    Deliveries,
    /// `/admin/ui/send-test`
    SendTest,
}

/// What every page shows around its content.
pub struct Frame<'a> {
    /// The console.
    pub console: &'a Console,
    /// The reader's language.
    pub lang: Locale,
    /// The session's CSRF token (forms carry it; the script reads it from a meta tag).
    pub csrf: String,
    /// Which entry of the navigation is this page.
    pub nav: Nav,
}

impl<'a> Frame<'a> {
    /// The frame of a signed-in request; `None` without a session (the gate lets none through).
    pub fn of(console: &'a Console, req: &HttpRequest, nav: Nav) -> Option<Frame<'a>> {
        let session = session_of(req)?;
        Some(Frame {
            console,
            lang: console.lang(req),
            csrf: console.sessions.csrf(&session),
            nav,
        })
    }

    /// The text `key` in the reader's language.
    pub fn t(&self, key: &str) -> &'static str {
        t(self.lang, key)
    }

    /// A hidden CSRF field for a form.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// The whole page around `content`, answered with `status`.
    pub fn page(&self, status: StatusCode, title: &str, content: Markup) -> HttpResponse {
        let c = self.console;
        let link = |nav: Nav, path: &str, key: &str| {
            html! {
                a href=(c.url(path)) aria-current=[(self.nav == nav).then_some("page")] { (self.t(key)) }
            }
        };
        let markup = html! {
            (DOCTYPE)
            html lang=(self.lang.as_str()) {
                (head(c, title))
                body {
                    header.bar {
                        a.brand href=(c.url("/")) { "fxhook" }
                        nav {
                            (link(Nav::Overview, "/", "overview"))
                            (link(Nav::Deliveries, "/messages", "deliveries"))
                            (link(Nav::SendTest, "/send-test", "send_test"))
                        }
                        form.signout method="post" action=(c.url("/sign-out")) {
                            (self.csrf_field())
                            button type="submit" { (self.t("sign_out")) }
                        }
                    }
                    main { (content) }
                }
            }
        };
        HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(markup.into_string())
    }
}

fn head(c: &Console, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            // No icon to fetch (the gateway serves none at /favicon.ico).
            link rel="icon" href="data:,";
            title { (title) " · fxhook" }
            link rel="stylesheet" href=(c.url("/assets/console.css"));
            script src=(c.url("/assets/console.js")) defer {}
        }
    }
}

/// The sign-in form, with `message` after a failed try.
pub fn sign_in(console: &Console, lang: Locale, message: Option<&str>) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.as_str()) {
            (head(console, t(lang, "sign_in")))
            body.signin {
                main {
                    form.card-panel method="post" action=(console.url("/sign-in")) {
                        h1 { (t(lang, "console")) }
                        @if let Some(message) = message {
                            p.notice.error role="alert" { (message) }
                        }
                        label for="token" { (t(lang, "admin_token")) }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        button type="submit" { (t(lang, "sign_in")) }
                    }
                }
            }
        }
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

/// A time of the store (unix milliseconds) in the mappings' time zone.
pub fn at(ms: i64, tz: chrono_tz::Tz) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || "-".to_string(),
        |t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// A duration for people: `42 s`, `5 min`, `3 h`.
pub fn age(d: std::time::Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

/// The card as Fxiaoke's phone client shows a composite message: the app's name over a white
/// card with the head title, the first line, the label/value form, the remark and the link
/// row, at phone width.
pub fn phone(lang: Locale, card: &Composite) -> Markup {
    html! {
        figure.phone aria-label=(t(lang, "preview")) {
            div.phone-status { span { "9:41" } span { "Fxiaoke" } }
            div.phone-title { "fxhook" }
            div.chat {
                article.fx-card {
                    header.fx-head { (card.head.title) }
                    div.fx-body {
                        @if let Some(first) = &card.first {
                            p.fx-first { (first.content) }
                        }
                        @if !card.form.is_empty() {
                            dl.fx-form {
                                @for row in &card.form {
                                    div.fx-row { dt { (row.label) } dd { (row.value) } }
                                }
                            }
                        }
                        @if let Some(remark) = &card.remark {
                            p.fx-remark { (remark.content) }
                        }
                    }
                    a.fx-link href=(safe_href(&card.link.url)) target="_blank" rel="noopener noreferrer" title=(card.link.url) {
                        span { (card.link.title) } span.chevron { "›" }
                    }
                }
            }
        }
    }
}

/// Only http(s) links are followed from the console; anything else (`fs://…`) stays text.
fn safe_href(url: &str) -> &str {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        url
    } else {
        "#"
    }
}

/// The preview of a stored message body (its exact JSON when it is not a send body).
pub fn stored_card(lang: Locale, body: &serde_json::Value) -> Markup {
    match serde_json::from_value::<SendBody>(body.clone()) {
        Ok(send) => phone(lang, &send.composite),
        Err(_) => html! { pre.json { (pretty(body)) } },
    }
}

/// Pretty-printed JSON.
pub fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The title of a stored message body.
pub fn title_of(body: &serde_json::Value) -> &str {
    body.pointer("/composite/head/title")
        .and_then(|v| v.as_str())
        .unwrap_or("")
}

/// `GET /admin/ui/`: every source with its state and last hour, the queue, delivery.
pub async fn overview(
    req: HttpRequest,
    console: web::Data<Console>,
    catalog: web::Data<Catalog>,
) -> HttpResponse {
    let Some(frame) = Frame::of(&console, &req, Nav::Overview) else {
        return super::see_other(&console.url("/sign-in"));
    };
    let monitor = std::sync::Arc::clone(&console.monitor);
    let stats = web::block(move || monitor.queue_stats()).await;
    let now = SystemTime::now();
    let sources = catalog.load();
    let mut names: Vec<&String> = sources
        .sources
        .keys()
        .chain(sources.rejected.keys())
        .collect();
    names.sort();
    names.dedup();
    let c = &console;
    let content = html! {
        h1 { (frame.t("overview")) }
        section {
            h2 { (frame.t("sources")) }
            table.list {
                thead { tr {
                    th { (frame.t("source")) } th { (frame.t("state")) }
                    th.num { (frame.t("accepted")) } th.num { (frame.t("ignored")) } th.num { (frame.t("refused")) }
                } }
                tbody {
                    @for name in &names {
                        @let hour = console.hour.of(name, now);
                        tr {
                            td { a href=(c.url(&format!("/sources/{name}"))) { (name) } }
                            td { (source_state(&frame, &sources, name)) }
                            td.num { (hour.accepted) } td.num { (hour.ignored) } td.num { (hour.rejected) }
                        }
                    }
                }
            }
            p.hint { (frame.t("last_hour")) }
        }
        section.tiles {
            div.tile {
                h2 { (frame.t("queue")) }
                @match &stats {
                    Ok(Ok(s)) => {
                        p { b { (s.queued) } " " (frame.t("queued")) }
                        p { b { (s.in_flight) } " " (frame.t("in_flight")) }
                        p { (frame.t("oldest")) ": "
                            b { (s.oldest_queued.and_then(|t| now.duration_since(t).ok()).map_or_else(|| frame.t("none").to_string(), age)) } }
                    }
                    _ => { p.notice.error { (frame.t("store_down")) } }
                }
            }
            div.tile {
                h2 { (frame.t("delivery")) }
                p { (frame.t("mode")) ": " b { @if console.client.is_some() { "live" } @else { "dry-run" } } }
                p { (frame.t("role")) ": " b { (console.role.name()) } }
                @let merged = console.storm.merged_last_minute();
                @if merged > 0 {
                    p.notice.warn { (frame.t("storm")) ": " b { (merged) } }
                }
                p { (frame.t("token_error")) ": "
                    b { (console.client.as_ref().and_then(|c| c.last_token_error()).unwrap_or_else(|| frame.t("none").to_string())) } }
            }
        }
    };
    let mut res = frame.page(StatusCode::OK, frame.t("overview"), content);
    // Refreshes itself every 15 s (a header: no script needed, nothing for the CSP to allow).
    res.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("refresh"),
        actix_web::http::header::HeaderValue::from_static("15"),
    );
    res
}

fn source_state(frame: &Frame<'_>, sources: &crate::source::SourceSet, name: &str) -> Markup {
    if let Some(error) = sources.rejected.get(name) {
        return html! { span.badge.bad { (frame.t("rejected")) } " " code.err { (error) } };
    }
    let Some(source) = sources.get(name) else {
        return html! {};
    };
    let state = match source.verifier.readiness(name) {
        Readiness::Active => html! { span.badge.ok { (frame.t("active")) } },
        Readiness::Inactive(reason) => {
            html! { span.badge.warn { (frame.t("inactive")) } " " span { (reason) } }
        }
    };
    html! {
        (state)
        @if let Some(error) = sources.stale.get(name) {
            br; span.badge.bad { (frame.t("rejected_edit")) } " " code.err { (error) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{Content, Head, Link, Row};

    #[test]
    fn the_phone_preview_escapes_every_text_and_follows_only_web_links() {
        let card = Composite {
            head: Head {
                title: "<script>alert(1)</script>".into(),
            },
            first: Some(Content {
                content: "first & line".into(),
            }),
            form: vec![Row {
                label: "Branch".into(),
                value: "main".into(),
            }],
            remark: None,
            link: Link {
                title: "Open".into(),
                url: "javascript:alert(1)".into(),
            },
        };
        let html = phone(Locale::En, &card).into_string();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("first &amp; line"));
        assert!(html.contains(r##"href="#""##), "{html}");
        assert!(!html.contains("<script>"));
    }
}
