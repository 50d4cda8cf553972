//! Delivery against the fake Fxiaoke server, which checks every request as strictly as the
//! vendor's manual: tokens, pacing, retries, dead letters and replays.

use std::time::Duration;

use crate::fake_fxiaoke::Scripted;
use crate::helpers::{Options, spawn_app};
use crate::live::{eventually, live, live_with};

#[actix_rt::test]
async fn a_card_is_delivered_end_to_end_with_the_headers_and_body_the_manual_requires() {
    let live = live(2, |_| {}).await;
    assert_eq!(live.post(1).await.status(), 202);
    live.wait_for_delivered(1).await;
    let sends = live.fake.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].body["toUser"], serde_json::json!(["5000", "5001"]));
    assert_eq!(sends[0].body["composite"]["head"]["title"], "Event 1");
    assert_eq!(sends[0].authorization.as_deref(), Some("Bearer tok-1"));
    live.fake.assert_no_violations();
    let (trace, third): (String, String) = live
        .app
        .db()
        .query_row("SELECT trace_id, third_trace_id FROM attempts", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(trace.starts_with("E-"));
    assert_eq!(third, sends[0].third_trace_id);
}

#[actix_rt::test]
async fn twelve_hundred_recipients_are_sent_as_three_requests_with_no_id_twice() {
    let live = live(1200, |_| {}).await;
    assert_eq!(live.post(1).await.status(), 202);
    live.wait_for_delivered(3).await;
    assert_eq!(live.fake.sends().len(), 3);
    let sent = live.fake.recipients();
    let unique: std::collections::HashSet<&String> = sent.iter().collect();
    assert_eq!((sent.len(), unique.len()), (1200, 1200), "no id twice");
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn fifty_webhooks_at_once_share_one_token_fetched_once() {
    let live = live(1, |s| s.delivery.concurrency = 8).await;
    live.post_all(0..50).await;
    live.wait_for_delivered(50).await;
    assert_eq!(live.fake.token_calls(), 1);
    assert_eq!(live.fake.max_concurrent_token_calls(), 1);
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn an_expired_token_is_refreshed_once_and_the_send_succeeds() {
    let live = live(1, |_| {}).await;
    assert_eq!(live.post(1).await.status(), 202);
    live.wait_for_delivered(1).await;
    live.fake.expire_token();
    assert_eq!(live.post(2).await.status(), 202);
    live.wait_for_delivered(2).await;
    assert_eq!(live.fake.token_calls(), 2);
    let outcomes: Vec<String> = live.attempts().into_iter().map(|a| a.0).collect();
    assert_eq!(outcomes, ["delivered", "token-refresh", "delivered"]);
    assert_eq!(
        live.app.count("SELECT MAX(attempts) FROM messages"),
        1,
        "the refresh is part of one attempt"
    );
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn busy_errors_server_errors_and_a_hung_request_are_retried_until_delivered() {
    let live = live(1, |_| {}).await;
    live.fake.script([
        Scripted::ErrorCode(-1),
        Scripted::ErrorCode(50009),
        Scripted::HttpStatus(500),
        Scripted::Hang(Duration::from_secs(2)),
    ]);
    assert_eq!(live.post(1).await.status(), 202);
    live.app
        .wait_for_count(
            "SELECT COUNT(*) FROM messages WHERE state = 'delivered' AND attempts = 5",
            1,
        )
        .await;
    let outcomes: Vec<(String, Option<i64>, Option<i64>)> = live
        .attempts()
        .into_iter()
        .map(|(outcome, code, status, _)| (outcome, code, status))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("retry".to_string(), Some(-1), Some(200)),
            ("retry".to_string(), Some(50009), Some(200)),
            ("retry".to_string(), None, Some(500)),
            ("retry".to_string(), None, None),
            ("delivered".to_string(), Some(0), Some(200)),
        ]
    );
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn a_permanent_error_makes_the_message_dead_visible_to_admins_and_a_replay_delivers_it() {
    let live = live(1, |_| {}).await;
    live.fake.script([Scripted::ErrorCode(30003)]);
    assert_eq!(live.post(7).await.status(), 202);
    live.app
        .wait_for_count(
            "SELECT COUNT(*) FROM messages WHERE state = 'dead' AND attempts = 1",
            1,
        )
        .await;

    let (status, dead) = live
        .admin(reqwest::Method::GET, "/admin/messages?state=dead")
        .await;
    assert_eq!(status, 200);
    let message = &dead["messages"][0];
    assert!(
        message["last_error"]
            .as_str()
            .unwrap()
            .starts_with("errorCode 30003"),
        "{message}"
    );
    let id = message["id"].as_i64().unwrap();
    let (status, detail) = live
        .admin(reqwest::Method::GET, &format!("/admin/messages/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["attempts"][0]["error_code"], 30003);

    let (status, _) = live
        .admin(
            reqwest::Method::POST,
            &format!("/admin/messages/{id}/replay"),
        )
        .await;
    assert_eq!(status, 200);
    live.wait_for_delivered(1).await;
    assert_eq!(live.fake.sends().len(), 1);
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn a_burst_of_300_webhooks_never_exceeds_the_configured_rate_in_any_window() {
    // The default rate (90 per 20 s, under the vendor's 100): the first 90 go at once, the rest
    // wait for the window to slide, and none is refused or given up meanwhile.
    let live = live(1, |s| s.delivery.concurrency = 8).await;
    live.post_all(0..300).await;
    live.wait_for_delivered(90).await;
    // What is tested is that nothing more goes for a while: the 91st send may not leave before
    // the first one is 20 s old. Three seconds of watching is many worker polls (20 ms) long.
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        live.app
            .count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'"),
        90
    );
    assert_eq!(
        live.app
            .count("SELECT COUNT(*) FROM messages WHERE state IN ('queued', 'in-flight')"),
        210
    );
    assert!(live.fake.max_sends_in_window(Duration::from_secs(20)) <= 90);
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn a_wrong_app_secret_keeps_messages_queued_and_readyz_says_why() {
    let live = live(1, |s| s.fxiaoke.app_secret = Some("wrong".into())).await;
    assert_eq!(live.post(1).await.status(), 202);
    live.app
        .wait_for_count(
            "SELECT COUNT(*) FROM attempts WHERE outcome = 'token-failed' AND error_code = 10006",
            1,
        )
        .await;
    let ready: serde_json::Value = live
        .app
        .client
        .get(format!("{}/readyz", live.app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["delivery"]["token"], "failed");
    assert!(
        ready["delivery"]["error"]
            .as_str()
            .unwrap()
            .contains("10006")
    );
    assert_eq!(live.fake.sends().len(), 0);
    let message = &live.messages()[0];
    assert_eq!(message.state, "queued");
    assert_eq!(
        message.attempts, 0,
        "no send was made: the retry schedule is not used up"
    );
    // The one rule broken is the one this test breaks on purpose.
    let violations = live.fake.violations();
    assert!(!violations.is_empty());
    assert!(
        violations
            .iter()
            .all(|v| v.ends_with("appSecret is not the configured value")),
        "{violations:?}"
    );
}

#[actix_rt::test]
async fn readyz_answers_at_once_while_a_token_fetch_hangs() {
    // A vendor that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    silent.set_nonblocking(true).unwrap();
    let base = format!("http://{}", silent.local_addr().unwrap());
    let live = live(1, move |s| {
        s.fxiaoke.base_url = base;
        s.delivery.request_timeout = Duration::from_secs(60);
    })
    .await;
    assert_eq!(live.post(1).await.status(), 202);
    let mut token_call = None;
    eventually("the token call to connect", Duration::from_secs(10), || {
        token_call = silent.accept().ok();
        token_call.is_some()
    })
    .await;

    // The token call hangs for 60 s; an answer well before that did not wait for it.
    let res = live
        .app
        .client
        .get(format!("{}/readyz", live.app.address))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("readyz answers while the token call hangs");

    assert_eq!(res.status(), 200);
    let ready: serde_json::Value = res.json().await.unwrap();
    assert_eq!(ready["delivery"]["mode"], "live");
    assert_eq!(
        live.messages()[0].state,
        "in-flight",
        "the token call is still going"
    );
    drop(token_call);
}

#[actix_rt::test]
async fn the_admin_api_refuses_a_wrong_token_and_is_off_without_one() {
    let live = live(1, |_| {}).await;
    let res = live
        .app
        .client
        .get(format!("{}/admin/events", live.app.address))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let off = spawn_app(Options::default()).await;
    let res = off
        .client
        .get(format!("{}/admin/events", off.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn sends_paced_at_five_a_second_keep_the_limit_in_every_window_and_all_go_out() {
    // Several short windows: a pacer that let a window hold six fails the count per window, and
    // one that kept the limit by stalling after the first window fails the delivered count.
    let window = Duration::from_secs(1);
    let live = live(1, move |s| {
        s.delivery.rate_limit = 5;
        s.delivery.rate_window = window;
        s.delivery.concurrency = 4;
    })
    .await;

    live.post_all(0..23).await;

    live.wait_for_delivered(23).await;
    // The pacer counts a send when it leaves, the fake when it arrives: allow those two clocks
    // 100 ms of disagreement within one window.
    let jitter = Duration::from_millis(100);
    let most = live.fake.max_sends_in_window(window - jitter);
    assert!(most <= 5, "{most} sends within one window");
    let calls = live.fake.send_calls();
    assert_eq!(calls.len(), 23, "each message sent once");
    let spread = calls[22].at.duration_since(calls[0].at);
    assert!(spread >= 4 * window - jitter, "23 sends in {spread:?}");
    live.fake.assert_no_violations();
}

/// One row per alert, its description as the value.
const ALERT_ROWS: &str = r#"rules:
  - name: alerts
    to: [everyone]
    card:
      title: "{$.title}"
      rows:
        - each: $.alerts[*]
          max: 20
          label: "{@.name}"
          value: "{@.description}"
      link: { title: Open, url: "https://example.com/alerts" }
"#;

#[actix_rt::test]
async fn a_card_of_quoted_text_is_sent_within_the_documented_byte_budget() {
    let live = live_with(ALERT_ROWS, 1, |_| {}).await;
    // Descriptions that quote JSON, as alert annotations often do: every `"` is two bytes once
    // the card is serialised, and `cards.body_max_bytes` counts the serialised card.
    let description = r#"{"error":"timeout","path":"/api/v1/orders","status":"503"}"#.repeat(4);
    let alerts: Vec<serde_json::Value> = (0..20)
        .map(|i| serde_json::json!({"name": format!("alert {i}"), "description": description}))
        .collect();
    let payload = serde_json::json!({"title": "20 alerts firing", "alerts": alerts});

    assert_eq!(live.post_json(&payload).await.status(), 202);

    live.app
        .wait_for_count(
            "SELECT COUNT(*) FROM messages WHERE state IN ('delivered', 'dead')",
            1,
        )
        .await;
    live.fake.assert_no_violations();
    assert_eq!(live.fake.sends().len(), 1);
}
