//! Durability: what a 202 promises is in the store, across restarts and under concurrency, and
//! the dry-run worker takes it from there.

use crate::helpers::{
    ACCEPT_ALL, Options, TestApp, mapping_with_secret_file, python_hmac_hex, spawn_app,
};

const SECRET: &str = "store-secret";

async fn app_in(dir: tempfile::TempDir, rules: &str) -> TestApp {
    let yaml = mapping_with_secret_file(dir.path(), "github", "github", SECRET, rules);
    spawn_app(Options {
        mappings: vec![("github".into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await
}

fn signed(body: &[u8], delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "X-Hub-Signature-256",
            format!("sha256={}", python_hmac_hex("sha256", SECRET, body)),
        ),
        ("X-GitHub-Event", "issues".into()),
        ("X-GitHub-Delivery", delivery.into()),
    ]
}

#[actix_rt::test]
async fn fifty_concurrent_requests_each_get_a_202_that_matches_a_committed_row() {
    let app = app_in(tempfile::tempdir().unwrap(), ACCEPT_ALL).await;
    let body = br#"{"action":"opened","id":7}"#;
    let headers = signed(body, "unused");
    let requests = (0..50).map(|i| {
        let mut h = headers.clone();
        h[2].1 = format!("delivery-{i}");
        let app = &app;
        async move { app.post_hook("github", &body[..], &h).await }
    });
    let responses = futures_util::future::join_all(requests).await;
    let mut ids = Vec::new();
    for res in responses {
        assert_eq!(res.status(), 202);
        let json: serde_json::Value = res.json().await.unwrap();
        ids.push(json["id"].as_str().unwrap().to_string());
    }
    let db = app.db();
    for id in &ids {
        let n: i64 = db
            .query_row("SELECT COUNT(*) FROM events WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1, "event {id} answered 202 but is not stored");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 50);
}

#[actix_rt::test]
async fn a_restart_on_the_same_store_finds_the_accepted_events_and_their_dedup_ids() {
    let app = app_in(tempfile::tempdir().unwrap(), ACCEPT_ALL).await;
    let body = br#"{"action":"opened"}"#;
    let first: serde_json::Value = app
        .post_hook("github", &body[..], &signed(body, "d-restart"))
        .await
        .json()
        .await
        .unwrap();
    let dir = app.stop().await;

    let app = app_in(dir, ACCEPT_ALL).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 1);
    let res = app
        .post_hook("github", &body[..], &signed(body, "d-restart"))
        .await;
    assert_eq!(res.status(), 200);
    let again: serde_json::Value = res.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["id"], first["id"]);
}

#[actix_rt::test]
async fn in_dry_run_the_worker_marks_each_message_delivered_and_records_the_attempt() {
    let app = app_in(tempfile::tempdir().unwrap(), ACCEPT_ALL).await;
    let body = br#"{"action":"opened"}"#;
    assert_eq!(
        app.post_hook("github", &body[..], &signed(body, "d-dry"))
            .await
            .status(),
        202
    );
    app.wait_for_count(
        "SELECT COUNT(*) FROM messages WHERE state = 'delivered' AND attempts = 1",
        1,
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM attempts WHERE outcome = 'dry-run'"),
        1
    );
    let stored = &app.message_bodies()[0];
    assert_eq!(stored["toUser"], serde_json::json!(["1000"]));
    assert_eq!(stored["msgType"], "composite");
}

#[actix_rt::test]
async fn a_message_left_in_flight_by_a_dead_process_is_delivered_after_the_next_start() {
    let app = app_in(tempfile::tempdir().unwrap(), ACCEPT_ALL).await;
    let body = br#"{"action":"opened"}"#;
    assert_eq!(
        app.post_hook("github", &body[..], &signed(body, "d-inflight"))
            .await
            .status(),
        202
    );
    app.wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 1)
        .await;
    let dir = app.stop().await;
    // What a process killed mid-send leaves behind.
    let db = rusqlite::Connection::open(dir.path().join("store/fxhook.db")).unwrap();
    db.execute("UPDATE messages SET state = 'in-flight', attempts = 0", [])
        .unwrap();
    drop(db);

    let app = app_in(dir, ACCEPT_ALL).await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM messages WHERE state = 'delivered' AND attempts = 1",
        1,
    )
    .await;
}

#[actix_rt::test]
async fn a_card_whose_required_field_renders_empty_is_kept_as_a_failed_event_with_a_202() {
    let rules = r#"rules:
  - name: needs-url
    card:
      title: "T"
      link: { title: Open, url: "{$.missing}" }
"#;
    let app = app_in(tempfile::tempdir().unwrap(), rules).await;
    let body = br#"{"action":"opened"}"#;
    assert_eq!(
        app.post_hook("github", &body[..], &signed(body, "d-fail"))
            .await
            .status(),
        202
    );
    let (state, error): (String, String) = app
        .db()
        .query_row("SELECT state, error FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(state, "failed");
    assert_eq!(error, "card link url rendered empty");
    assert_eq!(app.count("SELECT COUNT(*) FROM messages"), 0);
}

#[actix_rt::test]
async fn a_message_with_no_recipients_is_stored_as_failed_and_delivered_once_the_group_is_filled_and_its_event_remapped()
 {
    const TOKEN: &str = "store-admin";
    let dir = tempfile::tempdir().unwrap();
    let yaml = mapping_with_secret_file(dir.path(), "github", "github", SECRET, ACCEPT_ALL);
    let app = spawn_app(Options {
        mappings: vec![("github".into(), yaml)],
        tweak: Some(Box::new(|s| {
            s.groups.clear();
            s.admin.token = Some(TOKEN.into());
        })),
        dir: Some(dir),
    })
    .await;
    let body = br#"{"action":"opened"}"#;
    let res = app
        .post_hook("github", &body[..], &signed(body, "d-norcpt"))
        .await;
    assert_eq!(res.status(), 202);
    let event: serde_json::Value = res.json().await.unwrap();
    let event = event["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM messages WHERE state = 'failed' AND last_error = 'no recipients'"
        ),
        1
    );
    let admin = |app: &TestApp, path: String| {
        app.client
            .post(format!("{}{path}", app.address))
            .bearer_auth(TOKEN)
            .send()
    };
    // A replay cannot help a message with nobody to send to: the answer says what can.
    let message: i64 = app
        .db()
        .query_row("SELECT id FROM messages", [], |r| r.get(0))
        .unwrap();
    let replay = admin(&app, format!("/admin/messages/{message}/replay"))
        .await
        .unwrap();
    assert_eq!(replay.status(), 409);
    let why: serde_json::Value = replay.json().await.unwrap();
    assert!(
        why["error"]
            .as_str()
            .unwrap()
            .contains("fill the group, then re-map its event"),
        "{why}"
    );

    // The admin fills the group (groups are read at start) and re-maps the event.
    let dir = app.stop().await;
    let app = spawn_app(Options {
        tweak: Some(Box::new(|s| s.admin.token = Some(TOKEN.into()))),
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    let remap = admin(&app, format!("/admin/events/{event}/remap"))
        .await
        .unwrap();
    assert_eq!(remap.status(), 200);

    app.wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 1)
        .await;
    assert_eq!(
        app.message_bodies()[0]["toUser"],
        serde_json::json!(["1000"])
    );
}
