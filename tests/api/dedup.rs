//! Dedup: one delivery id is stored once, even when its two requests arrive at the same moment;
//! the id is forgotten after `store.dedup_window`; and the id may come from the payload.

use std::time::Duration;

use crate::helpers::{ACCEPT_ALL, Options, TestApp, Tweak, mapping_with_secret_file, spawn_app};

const SECRET: &str = "dedup-secret";

/// A GitHub source (dedup by `X-GitHub-Delivery`, the preset's id header).
async fn github_app(tweak: Tweak) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let yaml = mapping_with_secret_file(dir.path(), "github", "github", SECRET, ACCEPT_ALL);
    spawn_app(Options {
        mappings: vec![("github".into(), yaml)],
        tweak,
        dir: Some(dir),
    })
    .await
}

/// Posts a signed `{"action":"opened"}` with this delivery id; the status and the JSON answer.
async fn post_delivery(app: &TestApp, signature: &str, id: &str) -> (u16, serde_json::Value) {
    let headers = [
        ("X-Hub-Signature-256", signature.to_string()),
        ("X-GitHub-Event", "issues".to_string()),
        ("X-GitHub-Delivery", id.to_string()),
    ];
    let res = app.post_hook("github", BODY, &headers).await;
    (res.status().as_u16(), res.json().await.unwrap())
}

const BODY: &str = r#"{"action":"opened"}"#;

fn signature() -> String {
    let hex = crate::helpers::python_hmac_hex("sha256", SECRET, BODY.as_bytes());
    format!("sha256={hex}")
}

#[actix_rt::test]
async fn two_requests_with_one_delivery_id_at_the_same_moment_are_answered_202_and_200_duplicate_and_stored_once()
 {
    let app = github_app(None).await;
    let sig = signature();
    // Several pairs, so that some share a group commit and some do not.
    for round in 0..10 {
        let id = format!("same-moment-{round}");

        let (a, b) = tokio::join!(
            post_delivery(&app, &sig, &id),
            post_delivery(&app, &sig, &id)
        );

        let (mut accepted, mut duplicate) = (a, b);
        if accepted.0 != 202 {
            std::mem::swap(&mut accepted, &mut duplicate);
        }
        assert_eq!(accepted.0, 202, "{round}: {accepted:?} {duplicate:?}");
        assert_eq!(accepted.1["status"], "accepted");
        assert_eq!(duplicate.0, 200, "{round}: {duplicate:?}");
        assert_eq!(duplicate.1["status"], "duplicate");
        assert_eq!(duplicate.1["id"], accepted.1["id"], "the first event's id");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 10);
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT delivery_id) FROM events"),
        10
    );
}

#[actix_rt::test]
async fn a_delivery_id_is_accepted_again_once_the_dedup_window_has_passed() {
    let window = Duration::from_millis(500);
    let app = github_app(Some(Box::new(move |s| s.store.dedup_window = window))).await;
    let sig = signature();
    let (first, _) = post_delivery(&app, &sig, "windowed").await;
    let (within, _) = post_delivery(&app, &sig, "windowed").await;

    // Waiting out the window is what is tested.
    actix_rt::time::sleep(window + Duration::from_millis(100)).await;
    let (after, again) = post_delivery(&app, &sig, "windowed").await;

    assert_eq!((first, within, after), (202, 200, 202));
    assert_eq!(again["status"], "accepted");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events WHERE delivery_id = 'windowed'"),
        2
    );
    // The id now points at the new event: a repeat within the new window is its duplicate.
    let (status, repeat) = post_delivery(&app, &sig, "windowed").await;
    assert_eq!(status, 200);
    assert_eq!(repeat["id"], again["id"]);
}

#[actix_rt::test]
async fn a_delivery_id_read_from_a_payload_path_makes_duplicates_by_that_value_alone() {
    let yaml = format!("verify: {{ unsigned: true }}\ndedup: {{ path: $.order.id }}\n{ACCEPT_ALL}");
    let app = spawn_app(Options {
        mappings: vec![("shop".into(), yaml)],
        ..Options::default()
    })
    .await;
    // The same header on every request: for this source only the path counts.
    let header = [("X-GitHub-Delivery", "one-header".to_string())];
    let post = |body: &'static str| {
        let app = &app;
        let header = &header;
        async move {
            let res = app.post_hook("shop", body, header).await;
            let status = res.status().as_u16();
            let json: serde_json::Value = res.json().await.unwrap();
            (
                status,
                json["status"].as_str().unwrap_or_default().to_string(),
            )
        }
    };

    let answers = [
        post(r#"{"order":{"id":"A-1"}}"#).await,
        post(r#"{"order":{"id":"A-1"},"note":"sent again"}"#).await,
        post(r#"{"order":{"id":"A-2"}}"#).await,
        post(r#"{"order":{"id":17}}"#).await,
        post(r#"{"order":{"id":17}}"#).await,
        post(r#"{"order":{}}"#).await,
        post(r#"{"order":{}}"#).await,
    ];

    let accepted = || (202, "accepted".to_string());
    let duplicate = || (200, "duplicate".to_string());
    assert_eq!(
        answers,
        [
            accepted(),
            duplicate(),
            accepted(),
            accepted(),
            duplicate(),
            accepted(),
            accepted()
        ]
    );
    let db = app.db();
    let mut stmt = db
        .prepare("SELECT delivery_id FROM events ORDER BY received_at, rowid")
        .unwrap();
    let ids: Vec<Option<String>> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let some = |s: &str| Some(s.to_string());
    assert_eq!(ids, [some("A-1"), some("A-2"), some("17"), None, None]);
}

#[actix_rt::test]
async fn a_redelivery_of_an_id_committed_lately_is_answered_duplicate_before_its_body_is_read() {
    let app = github_app(None).await;
    let (first, accepted) = post_delivery(&app, &signature(), "redelivered").await;
    assert_eq!(first, 202);

    // Same id, a body that is not even JSON (signed, so it is verified): answered from the
    // recent ids without parsing or mapping it.
    let body = "not json at all";
    let sig = format!(
        "sha256={}",
        crate::helpers::python_hmac_hex("sha256", SECRET, body.as_bytes())
    );
    let headers = [
        ("X-Hub-Signature-256", sig),
        ("X-GitHub-Event", "issues".to_string()),
        ("X-GitHub-Delivery", "redelivered".to_string()),
    ];
    let res = app.post_hook("github", body, &headers).await;
    let status = res.status().as_u16();
    let answer: serde_json::Value = res.json().await.unwrap();

    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "duplicate");
    assert_eq!(answer["id"], accepted["id"]);
    // A new id with that body is still parsed, and refused.
    let mut headers = headers;
    headers[2].1 = "new-id".into();
    assert_eq!(app.post_hook("github", body, &headers).await.status(), 400);
    // A forged redelivery learns nothing: verification comes first.
    headers[0].1 = "sha256=00".into();
    headers[2].1 = "redelivered".into();
    assert_eq!(app.post_hook("github", body, &headers).await.status(), 401);
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 1);
}
