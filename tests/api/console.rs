//! The admin console's security and its actions over HTTP (the browser tests in
//! `tests/console/` drive the same pages in Chromium): nothing without a session, a CSRF token
//! on every POST, the cookie's attributes, a save that does not compile leaves the file alone,
//! two saves of one file never overwrite each other silently.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, mapping_with_secret_file, python_hmac_hex, spawn_app};

const TOKEN: &str = "console-admin-token-0123456789";
const SECRET: &str = "console-secret";

const RULES: &str = r#"rules:
  - name: build
    card:
      title: "Build {$.build}"
      link: { title: Open, url: "https://ci.example.com/{$.build}" }
"#;

async fn app_with(tweak: impl FnOnce(&mut fxhook::config::Settings) + 'static) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let yaml = mapping_with_secret_file(dir.path(), "ci", "github", SECRET, RULES);
    spawn_app(Options {
        mappings: vec![("ci".into(), yaml)],
        tweak: Some(Box::new(move |s| {
            s.admin.token = Some(TOKEN.into());
            tweak(s);
        })),
        dir: Some(dir),
    })
    .await
}

async fn app() -> TestApp {
    app_with(|_| {}).await
}

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A signed-in session: its cookie header and its CSRF token (read from a page's form).
struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_in(app: &TestApp) -> Session {
    let res = browser()
        .post(format!("{}/admin/ui/sign-in", app.address))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let page = browser()
        .get(format!("{}/admin/ui/send-test", app.address))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form with the CSRF token")
        .to_string();
    Session { cookie, csrf }
}

async fn signed_hook(app: &TestApp, body: &str) {
    let sig = format!(
        "sha256={}",
        python_hmac_hex("sha256", SECRET, body.as_bytes())
    );
    let res = app
        .post_hook("ci", body, &[("X-Hub-Signature-256", sig)])
        .await;
    assert_eq!(res.status(), 202);
}

const PAGES: &[&str] = &[
    "/admin/ui/",
    "/admin/ui/sources/ci",
    "/admin/ui/messages",
    "/admin/ui/messages/1",
    "/admin/ui/replay-all",
    "/admin/ui/send-test",
];

const ACTIONS: &[&str] = &[
    "/admin/ui/sign-out",
    "/admin/ui/sources/ci/check",
    "/admin/ui/sources/ci/save",
    "/admin/ui/sources/ci/download",
    "/admin/ui/messages/1/replay",
    "/admin/ui/events/x/remap",
    "/admin/ui/replay-all",
    "/admin/ui/send-test",
];

#[actix_rt::test]
async fn without_a_session_every_page_goes_to_sign_in_and_every_action_is_refused() {
    let app = app().await;
    for page in PAGES {
        let res = browser()
            .get(format!("{}{page}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{page}");
        assert_eq!(res.headers()[LOCATION], "/admin/ui/sign-in", "{page}");
    }
    for action in ACTIONS {
        let res = browser()
            .post(format!("{}{action}", app.address))
            .form(&[("csrf", "x"), ("to", "1000"), ("text", "rules: []")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{action}");
    }
    // The admin token as a bearer opens the JSON API, not the console.
    let res = browser()
        .get(format!("{}/admin/ui/", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = browser()
        .get(format!("{}/admin/messages", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the bearer API works as documented"
    );
}

#[actix_rt::test]
async fn with_a_session_every_action_needs_its_csrf_token() {
    let app = app().await;
    let session = sign_in(&app).await;
    for action in ACTIONS {
        for csrf in [None, Some("0123456789abcdef")] {
            let mut form = vec![("to", "1000"), ("text", "rules: []")];
            if let Some(csrf) = csrf {
                form.push(("csrf", csrf));
            }
            let res = browser()
                .post(format!("{}{action}", app.address))
                .header(COOKIE, &session.cookie)
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.status(),
                StatusCode::FORBIDDEN,
                "{action} with csrf {csrf:?}"
            );
        }
    }
    // The token of another session does not do either.
    let other = sign_in(&app).await;
    let res = browser()
        .post(format!("{}/admin/ui/send-test", app.address))
        .header(COOKIE, &session.cookie)
        .form(&[("to", "1000"), ("csrf", other.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[actix_rt::test]
async fn the_session_cookie_is_http_only_strict_and_lives_as_long_as_admin_session_ttl() {
    let app = app_with(|s| {
        s.admin.session_ttl = std::time::Duration::from_secs(3600);
        s.server.trusted_proxies = vec![fxhook::config::parse_ip_range("127.0.0.1/32").unwrap()];
    })
    .await;
    let res = browser()
        .post(format!("{}/admin/ui/sign-in", app.address))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = res.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.starts_with("fxhook_session="), "{cookie}");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin/ui/",
        "Max-Age=3600",
    ] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    // Over HTTPS, as the trusted proxy says: Secure.
    let res = browser()
        .post(format!("{}/admin/ui/sign-in", app.address))
        .header("X-Forwarded-Proto", "https")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = res.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.contains("Secure"), "{cookie}");
    // Every console answer carries a CSP that allows nothing inline, and pages have no inline
    // script or style.
    let session = sign_in(&app).await;
    for page in PAGES.iter().filter(|p| !p.ends_with("/1")) {
        let res = browser()
            .get(format!("{}{page}", app.address))
            .header(COOKIE, &session.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{page}");
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let html = res.text().await.unwrap();
        assert!(
            !html.contains("<script>") && !html.contains(" style="),
            "{page}: inline code"
        );
    }
}

#[actix_rt::test]
async fn a_wrong_token_is_refused_and_after_five_a_minute_the_address_waits() {
    let app = app().await;
    for _ in 0..5 {
        let res = browser()
            .post(format!("{}/admin/ui/sign-in", app.address))
            .form(&[("token", "guess")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().get(SET_COOKIE).is_none());
    }
    let res = browser()
        .post(format!("{}/admin/ui/sign-in", app.address))
        .form(&[("token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "60");
}

#[actix_rt::test]
async fn a_session_signed_by_one_replica_is_honoured_by_another_with_the_same_token() {
    let first = app().await;
    let second = app().await;
    let session = sign_in(&first).await;
    let res = browser()
        .get(format!("{}/admin/ui/messages", second.address))
        .header(COOKIE, &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = browser()
        .post(format!("{}/admin/ui/send-test", second.address))
        .header(COOKIE, &session.cookie)
        .form(&[("to", "1000"), ("csrf", session.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "its CSRF token too");
}

#[actix_rt::test]
async fn the_console_is_off_without_an_admin_token() {
    let app = spawn_app(Options::default()).await;
    let res = browser()
        .get(format!("{}/admin/ui/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

async fn json_post(
    app: &TestApp,
    session: &Session,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let res = browser()
        .post(format!("{}{path}", app.address))
        .header(COOKIE, &session.cookie)
        .header("X-CSRF-Token", &session.csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap_or_default())
}

async fn editor_etag(app: &TestApp, session: &Session) -> String {
    let page = browser()
        .get(format!("{}/admin/ui/sources/ci", app.address))
        .header(COOKIE, &session.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.split(r#"data-etag=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

#[actix_rt::test]
async fn a_save_that_does_not_compile_is_refused_with_its_errors_and_the_file_stays() {
    let app = app().await;
    let session = sign_in(&app).await;
    let file = app.dir.path().join("mappings/ci.yaml");
    let before = std::fs::read_to_string(&file).unwrap();
    let etag = editor_etag(&app, &session).await;
    let broken = before.replace("{$.build}\"", "{$.build | nope}\"");
    let (status, body) = json_post(
        &app,
        &session,
        "/admin/ui/sources/ci/save",
        json!({"text": broken, "etag": etag, "confirm": true}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let problem = &body["problems"][0];
    assert!(
        problem["message"].as_str().unwrap().contains("nope"),
        "{body}"
    );
    let line = broken.lines().position(|l| l.contains("nope")).unwrap() + 1;
    assert_eq!(problem["line"], json!(line), "{body}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    assert!(!app.dir.path().join("mappings/.backup").exists());
}

#[actix_rt::test]
async fn a_save_shows_the_diff_then_writes_keeps_a_backup_and_the_gateway_uses_it() {
    let app = app().await;
    let session = sign_in(&app).await;
    let file = app.dir.path().join("mappings/ci.yaml");
    let before = std::fs::read_to_string(&file).unwrap();
    let etag = editor_etag(&app, &session).await;
    let edited = before.replace("Build {$.build}", "Nightly {$.build}");
    let (status, review) = json_post(
        &app,
        &session,
        "/admin/ui/sources/ci/save",
        json!({"text": edited, "etag": etag}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{review}");
    let diff = review["diff"].as_str().unwrap();
    assert!(diff.contains("-      title: \"Build {$.build}\""), "{diff}");
    assert!(
        diff.contains("+      title: \"Nightly {$.build}\""),
        "{diff}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        before,
        "reviewing writes nothing"
    );

    let (status, saved) = json_post(
        &app,
        &session,
        "/admin/ui/sources/ci/save",
        json!({"text": edited, "etag": etag, "confirm": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), edited);
    let backups: Vec<_> = std::fs::read_dir(app.dir.path().join("mappings/.backup"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), before);

    // mappings.watch is off in tests: the save itself reloaded.
    signed_hook(&app, r#"{"build": 7}"#).await;
    app.wait_for_count("SELECT COUNT(*) FROM messages", 1).await;
    assert_eq!(
        app.message_bodies()[0]["composite"]["head"]["title"],
        "Nightly 7"
    );

    // A second admin who opened the file before that save gets a conflict.
    let (status, conflict) = json_post(
        &app,
        &session,
        "/admin/ui/sources/ci/save",
        json!({"text": before, "etag": etag, "confirm": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["conflict"], json!(true));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        edited,
        "never overwritten"
    );
}

/// Makes a folder read-only for this process until dropped: by its mode, and for root (whom
/// modes do not stop) by the immutable attribute, as a read-only ConfigMap mount would.
struct ReadOnly(std::path::PathBuf, bool);

impl ReadOnly {
    fn new(dir: &std::path::Path) -> ReadOnly {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let mut immutable = false;
        if tempfile::tempfile_in(dir).is_ok() {
            let done = std::process::Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status();
            assert!(
                done.is_ok_and(|s| s.success()),
                "running as root, this test needs chattr (e2fsprogs) to make a folder read-only"
            );
            immutable = true;
        }
        assert!(
            tempfile::tempfile_in(dir).is_err(),
            "the folder is still writable"
        );
        ReadOnly(dir.to_path_buf(), immutable)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.1 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        }
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[actix_rt::test]
async fn a_read_only_mappings_folder_says_so_and_offers_the_file_to_download() {
    let app = app().await;
    let session = sign_in(&app).await;
    let dir = app.dir.path().join("mappings");
    let etag = editor_etag(&app, &session).await;
    let before = std::fs::read_to_string(dir.join("ci.yaml")).unwrap();
    let text = before.replace("Build", "Built");
    let read_only = ReadOnly::new(&dir);
    let (status, body) = json_post(
        &app,
        &session,
        "/admin/ui/sources/ci/save",
        json!({"text": text, "etag": etag, "confirm": true}),
    )
    .await;
    drop(read_only);
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["read_only"], json!(true), "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("read-only"),
        "{body}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("ci.yaml")).unwrap(),
        before
    );
    let res = browser()
        .post(format!("{}/admin/ui/sources/ci/download", app.address))
        .header(COOKIE, &session.cookie)
        .form(&[("csrf", session.csrf.as_str()), ("text", text.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-disposition"],
        "attachment; filename=\"ci.yaml\""
    );
    assert_eq!(res.text().await.unwrap(), text);
}

#[actix_rt::test]
async fn the_editor_checks_as_you_type_and_previews_the_newest_event() {
    let app = app().await;
    signed_hook(&app, r#"{"build": 41}"#).await;
    signed_hook(&app, r#"{"build": 42}"#).await;
    let session = sign_in(&app).await;
    let page = browser()
        .get(format!("{}/admin/ui/sources/ci", app.address))
        .header(COOKIE, &session.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<header class="fx-head">Build 42</header>"#),
        "newest event previewed"
    );
    let text = std::fs::read_to_string(app.dir.path().join("mappings/ci.yaml")).unwrap();
    let (status, checked) = json_post(
        &app,
        &session,
        "/admin/ui/sources/ci/check",
        json!({"text": text.replace("Build {$.build}", "CI #{$.build}")}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(checked["problems"], json!([]));
    assert!(
        checked["result"].as_str().unwrap().contains("CI #42"),
        "{checked}"
    );
    let (_, pasted) = json_post(
        &app,
        &session,
        "/admin/ui/sources/ci/check",
        json!({"text": text, "payload": "{\"build\": 9}", "headers": "X-Anything: 1"}),
    )
    .await;
    assert!(
        pasted["result"].as_str().unwrap().contains("Build 9"),
        "{pasted}"
    );
}

#[actix_rt::test]
async fn a_test_card_is_queued_like_any_message_and_its_page_shows_it_delivered() {
    let app = app().await;
    let session = sign_in(&app).await;
    let res = browser()
        .post(format!("{}/admin/ui/send-test", app.address))
        .header(COOKIE, &session.cookie)
        .form(&[("to", "1000"), ("csrf", session.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with("/admin/ui/messages/"), "{location}");
    app.wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 1)
        .await;
    let page = browser()
        .get(format!("{}{location}", app.address))
        .header(COOKIE, &session.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("fxhook test card") && page.contains("dry-run"),
        "{page}"
    );
    let res = browser()
        .post(format!("{}/admin/ui/send-test", app.address))
        .header(COOKIE, &session.cookie)
        .form(&[("to", "   "), ("csrf", session.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}
