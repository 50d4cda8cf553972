//! Every answer of the HTTP contract of `product.md`, each produced by the case it names.

use crate::helpers::{
    ACCEPT_ALL, Options, TestApp, Tweak, mapping_with_secret_file, python_hmac_hex, spawn_app,
};

const SECRET: &str = "contract-secret";

async fn github_app(tweak: Tweak) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"rules:
  - when: { header: { X-GitHub-Event: ping } }
    ignore: "ping needs no card"
  - name: anything
    card:
      title: "{$.repository.full_name | default('repo')}: {$.action | default('event')}"
      link: { title: Open, url: "https://github.com/{$.repository.full_name | default('')}" }
"#;
    let yaml = mapping_with_secret_file(dir.path(), "github", "github", SECRET, rules);
    spawn_app(Options {
        mappings: vec![("github".into(), yaml)],
        tweak,
        dir: Some(dir),
    })
    .await
}

fn signed(body: &[u8], event: &str, delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "X-Hub-Signature-256",
            format!("sha256={}", python_hmac_hex("sha256", SECRET, body)),
        ),
        ("X-GitHub-Event", event.to_string()),
        ("X-GitHub-Delivery", delivery.to_string()),
    ]
}

async fn json_of(res: reqwest::Response) -> serde_json::Value {
    res.json().await.expect("a JSON body")
}

#[actix_rt::test]
async fn a_signed_event_is_accepted_with_202_and_its_id_once_stored() {
    let app = github_app(None).await;
    let body = br#"{"action":"opened","repository":{"full_name":"o/r"}}"#;
    let res = app
        .post_hook("github", &body[..], &signed(body, "issues", "d-1"))
        .await;
    assert_eq!(res.status(), 202);
    let json = json_of(res).await;
    assert_eq!(json["status"], "accepted");
    let id = json["id"].as_str().unwrap().to_string();
    let stored: String = app
        .db()
        .query_row("SELECT source FROM events WHERE id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "github");
}

#[actix_rt::test]
async fn an_event_no_rule_wants_is_answered_200_ignored_with_the_reason_and_not_stored() {
    let app = github_app(None).await;
    let body = br#"{"zen":"Keep it simple."}"#;
    let res = app
        .post_hook("github", &body[..], &signed(body, "ping", "d-ping"))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        json_of(res).await,
        serde_json::json!({"status": "ignored", "reason": "ping needs no card"})
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 0);
}

#[actix_rt::test]
async fn a_delivery_id_seen_before_is_answered_200_duplicate_with_the_first_id() {
    let app = github_app(None).await;
    let body = br#"{"action":"closed"}"#;
    let first = json_of(
        app.post_hook("github", &body[..], &signed(body, "issues", "same"))
            .await,
    )
    .await;
    let res = app
        .post_hook("github", &body[..], &signed(body, "issues", "same"))
        .await;
    assert_eq!(res.status(), 200);
    let again = json_of(res).await;
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 1);
}

#[actix_rt::test]
async fn requests_without_a_delivery_id_are_never_duplicates() {
    let app = github_app(None).await;
    let body = br#"{"action":"closed"}"#;
    let headers: Vec<_> = signed(body, "issues", "x")
        .into_iter()
        .filter(|(n, _)| *n != "X-GitHub-Delivery")
        .collect();
    for _ in 0..2 {
        assert_eq!(
            app.post_hook("github", &body[..], &headers).await.status(),
            202
        );
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 2);
}

#[actix_rt::test]
async fn a_signed_body_that_is_not_json_is_a_400() {
    let app = github_app(None).await;
    let body = b"{not json";
    let res = app
        .post_hook("github", &body[..], &signed(body, "issues", "d-bad"))
        .await;
    assert_eq!(res.status(), 400);
    assert!(
        json_of(res).await["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
}

#[actix_rt::test]
async fn a_wrong_signature_is_a_401_with_a_reason_and_nothing_is_stored() {
    let app = github_app(None).await;
    let body = br#"{"action":"opened"}"#;
    let mut headers = signed(body, "issues", "d-2");
    headers[0].1 = format!(
        "sha256={}",
        python_hmac_hex("sha256", "another secret", body)
    );
    let res = app.post_hook("github", &body[..], &headers).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        json_of(res).await,
        serde_json::json!({"error": "signature does not match"})
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 0);
}

#[actix_rt::test]
async fn an_unknown_source_is_a_404() {
    let app = github_app(None).await;
    let res = app.post_hook("nosuch", &b"{}"[..], &[]).await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        json_of(res).await,
        serde_json::json!({"error": "unknown source nosuch"})
    );
}

#[actix_rt::test]
async fn a_body_declared_over_the_limit_is_a_413_before_it_is_read() {
    let app = github_app(Some(Box::new(|s| s.server.max_body_bytes = 1024))).await;
    let body = vec![b' '; 4096];
    let res = app
        .post_hook("github", body.clone(), &signed(&body, "issues", "big"))
        .await;
    assert_eq!(res.status(), 413);
    assert_eq!(
        json_of(res).await,
        serde_json::json!({"error": "body over the limit of 1024 bytes"})
    );
}

#[actix_rt::test]
async fn a_streamed_body_without_a_length_is_cut_off_at_the_limit_with_a_413() {
    let app = github_app(Some(Box::new(|s| s.server.max_body_bytes = 1024))).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b' '; 512])).collect();
    let res = app
        .client
        .post(format!("{}/hooks/github", app.address))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        json_of(res).await,
        serde_json::json!({"error": "body over the limit of 1024 bytes"})
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 0);
}

#[actix_rt::test]
async fn a_content_type_other_than_json_or_form_is_a_415() {
    let app = github_app(None).await;
    let body = b"hello";
    let mut headers = signed(body, "issues", "t");
    headers.push(("content-type", "text/plain".into()));
    let res = app.post_hook("github", &body[..], &headers).await;
    assert_eq!(res.status(), 415);
    assert!(
        json_of(res).await["error"]
            .as_str()
            .unwrap()
            .contains("text/plain")
    );
}

#[actix_rt::test]
async fn a_form_encoded_payload_is_verified_over_the_raw_body_and_accepted() {
    let app = github_app(None).await;
    let json = r#"{"action":"opened","repository":{"full_name":"o/form"}}"#;
    let body = serde_urlencoded::to_string([("payload", json)]).unwrap();
    let mut headers = signed(body.as_bytes(), "issues", "form-1");
    headers.push(("content-type", "application/x-www-form-urlencoded".into()));
    let res = app.post_hook("github", body.clone(), &headers).await;
    assert_eq!(res.status(), 202);
    let (codec, stored): (String, Vec<u8>) = app
        .db()
        .query_row("SELECT payload_codec, payload FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let stored = fxhook::store::payload::decode(&codec, stored).unwrap();
    assert_eq!(stored, json.as_bytes());
}

#[actix_rt::test]
async fn when_the_store_cannot_take_the_event_the_answer_is_503_with_retry_after() {
    let app = github_app(None).await;
    app.db()
        .execute_batch("DROP TABLE messages; DROP TABLE events;")
        .unwrap();
    let body = br#"{"action":"opened"}"#;
    let res = app
        .post_hook("github", &body[..], &signed(body, "issues", "d-503"))
        .await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        json_of(res).await,
        serde_json::json!({"error": "the store cannot take the event now; retry later"})
    );
}

#[actix_rt::test]
async fn every_response_carries_the_callers_request_id_or_a_new_one() {
    let app = github_app(None).await;
    let res = app
        .post_hook("nosuch", &b"{}"[..], &[("X-Request-Id", "abc-123".into())])
        .await;
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"].len(), 36);
}

#[actix_rt::test]
async fn readyz_details_each_source_active_inactive_or_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let good = mapping_with_secret_file(dir.path(), "github", "github", SECRET, ACCEPT_ALL);
    let app = spawn_app(Options {
        mappings: vec![
            ("github".into(), good),
            ("nosecret".into(), format!("verify: {{ preset: github, secrets: [{{env: FXHOOK_TEST_UNSET_VAR}}] }}\n{ACCEPT_ALL}")),
            ("broken".into(), "verify: { preset: github }\nrules: [ { nme: x } ]\n".into()),
        ],
        tweak: None,
        dir: Some(dir),
    })
    .await;
    let res = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = json_of(res).await;
    assert_eq!(body["sources"]["github"]["state"], "active");
    assert_eq!(body["sources"]["nosecret"]["state"], "inactive");
    assert_eq!(
        body["sources"]["nosecret"]["reason"],
        "source nosecret has no secret configured"
    );
    assert_eq!(body["sources"]["broken"]["state"], "rejected");
    assert!(
        body["sources"]["broken"]["error"]
            .as_str()
            .unwrap()
            .contains("broken.yaml:2:")
    );
}

#[actix_rt::test]
async fn a_source_without_a_secret_answers_401_with_the_reason_and_never_accepts() {
    let app = spawn_app(Options {
        mappings: vec![(
            "gh".into(),
            format!("verify: {{ preset: github }}\n{ACCEPT_ALL}"),
        )],
        ..Options::default()
    })
    .await;
    let res = app.post_hook("gh", &b"{}"[..], &[]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        json_of(res).await,
        serde_json::json!({"error": "source gh has no secret configured"})
    );
}

#[actix_rt::test]
async fn an_unsigned_source_must_say_so_and_then_accepts_plain_requests() {
    let app = spawn_app(Options {
        mappings: vec![(
            "open".into(),
            format!("verify: {{ unsigned: true }}\n{ACCEPT_ALL}"),
        )],
        ..Options::default()
    })
    .await;
    assert_eq!(app.post_hook("open", &b"{}"[..], &[]).await.status(), 202);
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 1);
    // It says so to operators too.
    let ready = json_of(
        app.client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        ready["sources"]["open"],
        serde_json::json!({"state": "active", "unsigned": true})
    );
}

#[actix_rt::test]
async fn a_source_over_its_own_rate_limit_is_answered_429_with_retry_after() {
    let app = spawn_app(Options {
        mappings: vec![(
            "limited".into(),
            format!(
                "verify: {{ unsigned: true }}\nrate_limit: {{ requests: 2, per: 1m }}\n{ACCEPT_ALL}"
            ),
        )],
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            app.post_hook("limited", &b"{}"[..], &[]).await.status(),
            202
        );
    }
    let res = app.post_hook("limited", &b"{}"[..], &[]).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        json_of(res).await,
        serde_json::json!({"error": "rate limit of source limited exceeded"})
    );
}

#[actix_rt::test]
async fn forged_requests_do_not_spend_a_sources_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let rules = format!("rate_limit: {{ requests: 1, per: 1m }}\n{ACCEPT_ALL}");
    let yaml = mapping_with_secret_file(dir.path(), "github", "github", SECRET, &rules);
    let app = spawn_app(Options {
        mappings: vec![("github".into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await;
    let body = br#"{"action":"opened"}"#;
    for _ in 0..3 {
        let forged = [("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))];
        assert_eq!(
            app.post_hook("github", &body[..], &forged).await.status(),
            401
        );
    }
    assert_eq!(
        app.post_hook("github", &body[..], &signed(body, "issues", "real"))
            .await
            .status(),
        202
    );
}

#[actix_rt::test]
async fn a_request_with_too_many_headers_is_refused_before_any_work_and_the_server_goes_on() {
    let app = github_app(None).await;
    let mut req = app
        .client
        .post(format!("{}/hooks/github", app.address))
        .header("content-type", "application/json");
    for i in 0..120 {
        req = req.header(format!("x-filler-{i}"), "x");
    }
    let refused = req
        .body("{}")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert!(
        refused == 0 || (400..500).contains(&refused),
        "answered {refused}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 0);
    let res = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[actix_rt::test]
async fn a_store_over_its_bounds_answers_503_with_retry_after() {
    let app = github_app(Some(Box::new(|s| s.store.max_bytes = 1))).await;
    let body = br#"{"action":"opened"}"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut tries = 0;
    let res = loop {
        // A new delivery id each time: a redelivery of one already stored is no new event.
        tries += 1;
        let delivery = format!("bounded-{tries}");
        let res = app
            .post_hook("github", &body[..], &signed(body, "issues", &delivery))
            .await;
        if res.status() == 503 {
            break res;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never refused: {}",
            res.status()
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        json_of(res).await,
        serde_json::json!({"error": "the store cannot take the event now; retry later"})
    );
}
