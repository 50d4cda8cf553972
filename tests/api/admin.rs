//! The admin API: after a mapping fix, an admin reloads, re-maps the failed event and it is
//! delivered; render answers what `fxhook render` prints.

use crate::helpers::{Options, TestApp, mapping_with_secret_file, python_hmac_hex, spawn_app};

const SECRET: &str = "admin-secret";
const TOKEN: &str = "the-admin-token";

const BROKEN: &str = r#"rules:
  - name: needs-url
    card:
      title: "Build {$.build}"
      link: { title: Open, url: "{$.url_typo}" }
"#;

async fn app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let yaml = mapping_with_secret_file(dir.path(), "ci", "github", SECRET, BROKEN);
    spawn_app(Options {
        mappings: vec![("ci".into(), yaml)],
        tweak: Some(Box::new(|s| s.admin.token = Some(TOKEN.into()))),
        dir: Some(dir),
    })
    .await
}

async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let res = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

#[actix_rt::test]
async fn after_fixing_a_mapping_an_admin_reloads_and_remaps_the_failed_event_which_is_then_delivered()
 {
    let app = app().await;
    let body = r#"{"build": 42, "url": "https://ci/42"}"#;
    let sig = format!(
        "sha256={}",
        python_hmac_hex("sha256", SECRET, body.as_bytes())
    );
    let res = app
        .post_hook("ci", body, &[("X-Hub-Signature-256", sig)])
        .await;
    assert_eq!(res.status(), 202);
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, failed) =
        admin(&app, reqwest::Method::GET, "/admin/events?state=failed", "").await;
    assert_eq!(status, 200);
    assert_eq!(failed["events"][0]["id"], id.as_str());
    assert_eq!(failed["events"][0]["error"], "card link url rendered empty");

    // The admin fixes the typo and reloads.
    let file = app.dir.path().join("mappings/ci.yaml");
    let fixed = std::fs::read_to_string(&file)
        .unwrap()
        .replace("url_typo", "url");
    std::fs::write(&file, fixed).unwrap();
    let (status, reloaded) = admin(&app, reqwest::Method::POST, "/admin/reload", "").await;
    assert_eq!(status, 200, "{reloaded}");

    let (status, remapped) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/admin/events/{id}/remap"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{remapped}");
    assert_eq!(remapped["status"], "remapped");
    app.wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 1)
        .await;
    let (_, event) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/admin/events/{id}"),
        "",
    )
    .await;
    assert_eq!(event["state"], "mapped");
    assert_eq!(
        event["messages"][0]["body"]["composite"]["link"]["url"],
        "https://ci/42"
    );

    // A second re-map would send the card twice: refused.
    let (status, _) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/admin/events/{id}/remap"),
        "",
    )
    .await;
    assert_eq!(status, 409);
}

#[actix_rt::test]
async fn render_through_the_admin_api_answers_the_document_of_fxhook_render() {
    let app = app().await;
    let (status, doc) = admin(
        &app,
        reqwest::Method::POST,
        "/admin/render/ci",
        r#"{"build": 1, "url_typo": "https://x"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(doc["status"], "rendered");
    assert_eq!(doc["messages"][0]["composite"]["head"]["title"], "Build 1");
    let (status, err) = admin(
        &app,
        reqwest::Method::POST,
        "/admin/render/ci",
        r#"{"build": 1}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "rule needs-url: card link url rendered empty");
}

#[actix_rt::test]
async fn listing_by_an_unknown_state_is_a_400_naming_the_states() {
    let app = app().await;
    let (status, err) = admin(&app, reqwest::Method::GET, "/admin/messages?state=lost", "").await;
    assert_eq!(status, 400);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("queued, in-flight, delivered, failed, dead")
    );
}
