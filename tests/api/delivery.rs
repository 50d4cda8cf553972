//! Delivery against the fake Fxiaoke server, which checks every request as strictly as the
//! vendor's manual: tokens, pacing, retries, dead letters and replays.

use std::time::Duration;

use crate::fake_fxiaoke::{FakeFxiaoke, Scripted};
use crate::helpers::{
    Options, TestApp, mapping_with_secret_file, python_hmac_hex, python_hmac_sha256_many, spawn_app,
};

const SECRET: &str = "delivery-secret";
const ADMIN: &str = "admin-token";

/// A card per event; `{$.n}` makes each card distinct.
const RULES: &str = r#"rules:
  - name: card
    to: [everyone]
    card:
      title: "Event {$.n}"
      rows: [{ label: N, value: "{$.n}" }]
      link: { title: Open, url: "https://example.com/{$.n}" }
"#;

fn signed(n: usize) -> (String, String) {
    let body = format!(r#"{{"n":{n}}}"#);
    let sig = format!(
        "sha256={}",
        python_hmac_hex("sha256", SECRET, body.as_bytes())
    );
    (body, sig)
}

struct Live {
    app: TestApp,
    fake: FakeFxiaoke,
}

async fn live(
    recipients: usize,
    tweak: impl FnOnce(&mut fxhook::config::Settings) + 'static,
) -> Live {
    let fake = FakeFxiaoke::start("app-1", "app-secret", "perm-code");
    let base = fake.base_url();
    let dir = tempfile::tempdir().unwrap();
    let yaml = mapping_with_secret_file(dir.path(), "src", "github", SECRET, RULES);
    let app = spawn_app(Options {
        mappings: vec![("src".into(), yaml)],
        tweak: Some(Box::new(move |s| {
            s.fxiaoke.dry_run = false;
            s.fxiaoke.base_url = base;
            s.fxiaoke.app_id = Some("app-1".into());
            s.fxiaoke.app_secret = Some("app-secret".into());
            s.fxiaoke.permanent_code = Some("perm-code".into());
            s.fxiaoke.user_id = Some("1000".into());
            s.delivery.retry_schedule = [10, 20, 40, 80, 160].map(Duration::from_millis).to_vec();
            s.delivery.request_timeout = Duration::from_millis(500);
            s.admin.token = Some(ADMIN.into());
            s.groups.insert(
                "everyone".into(),
                (0..recipients).map(|i| format!("{}", 5000 + i)).collect(),
            );
            tweak(s);
        })),
        dir: Some(dir),
    })
    .await;
    Live { app, fake }
}

impl Live {
    async fn post(&self, n: usize) -> reqwest::Response {
        let (body, sig) = signed(n);
        self.app
            .post_hook("src", body, &[("X-Hub-Signature-256", sig)])
            .await
    }

    /// Posts many events at once (signed beforehand: signing runs a process).
    async fn post_all(&self, ns: impl Iterator<Item = usize>) {
        let bodies: Vec<String> = ns.map(|n| format!(r#"{{"n":{n}}}"#)).collect();
        let sigs = python_hmac_sha256_many(SECRET, &bodies);
        let signed = bodies
            .into_iter()
            .zip(sigs.into_iter().map(|s| format!("sha256={s}")));
        let posts = signed.into_iter().map(|(body, sig)| async move {
            self.app
                .post_hook("src", body, &[("X-Hub-Signature-256", sig)])
                .await
        });
        for res in futures_util::future::join_all(posts).await {
            assert_eq!(res.status(), 202);
        }
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
        let res = self
            .app
            .client
            .request(method, format!("{}{path}", self.app.address))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or_default())
    }

    fn assert_no_violations(&self) {
        assert_eq!(self.fake.violations(), Vec::<String>::new());
    }
}

#[actix_rt::test]
async fn a_card_is_delivered_end_to_end_with_the_headers_and_body_the_manual_requires() {
    let live = live(2, |_| {}).await;
    assert_eq!(live.post(1).await.status(), 202);
    live.app
        .wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 1)
        .await;
    let sends = live.fake.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].body["toUser"], serde_json::json!(["5000", "5001"]));
    assert_eq!(sends[0].body["composite"]["head"]["title"], "Event 1");
    assert_eq!(sends[0].authorization.as_deref(), Some("Bearer tok-1"));
    live.assert_no_violations();
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
    live.app
        .wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 3)
        .await;
    let sends = live.fake.sends();
    assert_eq!(sends.len(), 3);
    let mut all = std::collections::HashSet::new();
    for s in &sends {
        for id in s.body["toUser"].as_array().unwrap() {
            assert!(
                all.insert(id.as_str().unwrap().to_string()),
                "{id} sent twice"
            );
        }
    }
    assert_eq!(all.len(), 1200);
    live.assert_no_violations();
}

#[actix_rt::test]
async fn fifty_webhooks_at_once_share_one_token_fetched_once() {
    let live = live(1, |s| s.delivery.concurrency = 8).await;
    live.post_all(0..50).await;
    live.app
        .wait_for_count(
            "SELECT COUNT(*) FROM messages WHERE state = 'delivered'",
            50,
        )
        .await;
    assert_eq!(live.fake.token_calls(), 1);
    assert_eq!(live.fake.max_concurrent_token_calls(), 1);
    live.assert_no_violations();
}

#[actix_rt::test]
async fn an_expired_token_is_refreshed_once_and_the_send_succeeds() {
    let live = live(1, |_| {}).await;
    assert_eq!(live.post(1).await.status(), 202);
    live.app
        .wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 1)
        .await;
    live.fake.expire_token();
    assert_eq!(live.post(2).await.status(), 202);
    live.app
        .wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 2)
        .await;
    assert_eq!(live.fake.token_calls(), 2);
    let outcomes: Vec<String> = {
        let db = live.app.db();
        let mut stmt = db
            .prepare("SELECT outcome FROM attempts ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(outcomes, ["delivered", "token-refresh", "delivered"]);
    assert_eq!(
        live.app.count("SELECT MAX(attempts) FROM messages"),
        1,
        "the refresh is part of one attempt"
    );
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
    let outcomes: Vec<(String, Option<i64>, Option<i64>)> = {
        let db = live.app.db();
        let mut stmt = db
            .prepare("SELECT outcome, error_code, http_status FROM attempts ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
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
    live.app
        .wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 1)
        .await;
    assert_eq!(live.fake.sends().len(), 1);
}

#[actix_rt::test]
async fn a_burst_of_300_webhooks_never_exceeds_the_configured_rate_in_any_window() {
    // The default rate (90 per 20 s, under the vendor's 100): the first 90 go at once, the rest
    // wait for the window to slide, and none is refused or given up meanwhile.
    let live = live(1, |s| s.delivery.concurrency = 8).await;
    live.post_all(0..300).await;
    live.app
        .wait_for_count(
            "SELECT COUNT(*) FROM messages WHERE state = 'delivered'",
            90,
        )
        .await;
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
    live.assert_no_violations();
}

#[actix_rt::test]
async fn a_slow_down_answer_backs_the_whole_sender_off() {
    let live = live(1, |s| s.delivery.rate_window = Duration::from_millis(300)).await;
    live.fake.script([Scripted::ErrorCode(14001)]);
    assert_eq!(live.post(1).await.status(), 202);
    live.app
        .wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 1)
        .await;
    let received = live.fake.received();
    let sends: Vec<_> = received
        .iter()
        .filter(|r| r.path == "/cgi/message/send")
        .collect();
    assert_eq!(sends.len(), 2);
    assert!(sends[1].at.duration_since(sends[0].at) >= Duration::from_millis(300));
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
    assert_eq!(
        live.app.count("SELECT MAX(attempts) FROM messages"),
        0,
        "no send was made: the retry schedule is not used up"
    );
}

#[actix_rt::test]
async fn readyz_answers_at_once_while_a_token_fetch_hangs() {
    // A vendor that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", silent.local_addr().unwrap());
    let live = live(1, move |s| {
        s.fxiaoke.base_url = base;
        s.delivery.request_timeout = Duration::from_secs(10);
    })
    .await;
    assert_eq!(live.post(1).await.status(), 202);
    actix_rt::time::sleep(Duration::from_millis(300)).await; // the worker is now inside the token call
    let started = std::time::Instant::now();
    let res = live
        .app
        .client
        .get(format!("{}/readyz", live.app.address))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect("readyz answers while the token call hangs");
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(silent);
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
}
