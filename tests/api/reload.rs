//! Living mappings: edits are picked up without a restart, a broken edit never replaces the last
//! good version, added and removed files add and remove sources; SIGHUP reloads too.

use std::time::{Duration, Instant};

use crate::helpers::{ACCEPT_ALL, Options, TestApp, mapping_with_secret_file, spawn_app};

const TOKEN: &str = "reload-admin";

async fn watched_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let yaml = mapping_with_secret_file(dir.path(), "src", "github", "s", &card_titled("first"));
    spawn_app(Options {
        mappings: vec![("src".into(), yaml)],
        tweak: Some(Box::new(|s| {
            s.mappings.watch = true;
            s.admin.token = Some(TOKEN.into());
        })),
        dir: Some(dir),
    })
    .await
}

fn card_titled(title: &str) -> String {
    format!(
        "rules:\n  - card:\n      title: \"{title} {{$.n}}\"\n      link: {{ title: Open, url: \"https://x\" }}\n"
    )
}

/// The title the source renders now, or the HTTP status when it cannot.
async fn title(app: &TestApp, source: &str) -> Result<String, u16> {
    let res = app
        .client
        .post(format!("{}/admin/render/{source}", app.address))
        .bearer_auth(TOKEN)
        .body(r#"{"n": 1}"#)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let doc: serde_json::Value = res.json().await.unwrap_or_default();
    doc["messages"][0]["composite"]["head"]["title"]
        .as_str()
        .map(str::to_string)
        .ok_or(status)
}

async fn eventually(app: &TestApp, source: &str, want: Result<&str, u16>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = title(app, source).await;
        if got.as_deref().map_err(|s| *s) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{source}: still {got:?}, wanted {want:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn write(app: &TestApp, name: &str, text: &str) {
    // Editors and ConfigMaps replace files by rename: do the same.
    let dir = app.dir.path().join("mappings");
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn secret_line(app: &TestApp) -> String {
    format!(
        "verify:\n  preset: github\n  secrets: [{{file: {}}}]\n",
        app.dir.path().join("src.secret").display()
    )
}

#[actix_rt::test]
async fn an_edited_mapping_is_used_by_the_next_request_without_a_restart() {
    let app = watched_app().await;
    eventually(&app, "src", Ok("first 1")).await;
    write(
        &app,
        "src.yaml",
        &format!("{}{}", secret_line(&app), card_titled("second")),
    );
    eventually(&app, "src", Ok("second 1")).await;

    let body = br#"{"n":1}"#;
    let sig = format!(
        "sha256={}",
        crate::helpers::python_hmac_hex("sha256", "s", body)
    );
    let res = app
        .post_hook("src", &body[..], &[("X-Hub-Signature-256", sig)])
        .await;

    assert_eq!(res.status(), 202);
    let stored = app.message_bodies();
    assert_eq!(stored[0]["composite"]["head"]["title"], "second 1");
}

#[actix_rt::test]
async fn a_broken_edit_keeps_the_last_good_version_serving_and_shows_its_error() {
    let app = watched_app().await;
    write(
        &app,
        "src.yaml",
        &format!(
            "{}rules:\n  - card:\n      title: \"{{$.n | nope}}\"\n",
            secret_line(&app)
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready: serde_json::Value = app
            .client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(error) = ready["sources"]["src"]["rejected_edit"].as_str() {
            assert!(error.contains("src.yaml:"), "{error}");
            assert_eq!(ready["sources"]["src"]["state"], "active");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rejected edit never showed: {ready}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(title(&app, "src").await, Ok("first 1".to_string()));
}

#[actix_rt::test]
async fn an_added_file_adds_a_source_and_a_removed_one_answers_404() {
    let app = watched_app().await;
    assert_eq!(app.post_hook("extra", &b"{}"[..], &[]).await.status(), 404);
    write(
        &app,
        "extra.yaml",
        &format!("verify: {{ unsigned: true }}\n{ACCEPT_ALL}"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.post_hook("extra", &b"{}"[..], &[]).await.status() != 202 {
        assert!(Instant::now() < deadline, "the new source never answered");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_file(app.dir.path().join("mappings/extra.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.post_hook("extra", &b"{}"[..], &[]).await.status() != 404 {
        assert!(
            Instant::now() < deadline,
            "the removed source still answers"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn a_new_secret_is_picked_up_by_a_reload() {
    let app = watched_app().await;
    let body = br#"{"n":1}"#;
    let sign = |key: &str| {
        format!(
            "sha256={}",
            crate::helpers::python_hmac_hex("sha256", key, body)
        )
    };
    assert_eq!(
        app.post_hook("src", &body[..], &[("X-Hub-Signature-256", sign("s"))])
            .await
            .status(),
        202
    );
    std::fs::write(app.dir.path().join("src.secret"), "rotated").unwrap();
    let res = app
        .client
        .post(format!("{}/admin/reload", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.post_hook(
            "src",
            &body[..],
            &[("X-Hub-Signature-256", sign("rotated"))]
        )
        .await
        .status(),
        202
    );
    assert_eq!(
        app.post_hook("src", &body[..], &[("X-Hub-Signature-256", sign("s"))])
            .await
            .status(),
        401
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events"),
        2,
        "the refused one is not stored"
    );
}
