//! Alert storms (issue 19): while sending is rate-limited the queue backs up, and what is still
//! queued when the sender gets to it goes out merged — a digest per rule and recipients, a
//! firing alert folded with its resolution — repeats are held back and counted, high-priority
//! cards go first, and nothing is lost or sent twice on the way.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_fxiaoke::Scripted;
use crate::helpers::python_hmac_sha256_many;
use crate::live::{Live, SECRET, eventually, live_with};

/// One alert a webhook: coalesced per rule and recipients, folded per alert, priority from
/// the payload.
const ALERTS: &str = r#"rules:
  - name: alert
    to: [everyone]
    priority: "{$.priority | default('normal')}"
    coalesce: { window: 1m, max_rows: 5, noun: alerts }
    fold: { key: "{$.alert}", state: "{$.status}" }
    card:
      title: "[{$.status | upper}] {$.alert}"
      first: "{$.summary | default('')}"
      link: { title: Open, url: "https://alerts.example.com/{$.alert}" }
"#;

/// The same cards, each on its own (no coalesce, no fold).
const PLAIN: &str = r#"rules:
  - name: plain
    to: [everyone]
    priority: "{$.priority | default('normal')}"
    card:
      title: "[{$.status | upper}] {$.alert}"
      link: { title: Open, url: "https://alerts.example.com/{$.alert}" }
"#;

/// Repeats of one alert within 2 s are held back.
const REPEATS: &str = r#"rules:
  - name: alert-repeat
    to: [everyone]
    repeat: { key: "{$.alert}", every: 2s }
    card:
      title: "[{$.status | upper}] {$.alert}"
      link: { title: Open, url: "https://alerts.example.com/{$.alert}" }
"#;

/// One send a second: the queue backs up as soon as two cards arrive together.
async fn rate_limited(rules: &str) -> Live {
    live_with(rules, 2, |s| {
        s.delivery.rate_limit = 1;
        s.delivery.rate_window = Duration::from_secs(1);
        s.delivery.concurrency = 1;
    })
    .await
}

fn alert(name: &str, status: &str) -> Value {
    json!({"alert": name, "status": status, "summary": format!("{name} is {status}")})
}

/// Sends one card and waits for it: the next send slot is a second away, so what arrives
/// now queues behind it.
async fn fill_the_window(live: &Live) {
    let before = live.fake.sends().len();
    post_in_order(live, &[alert("Blocker", "firing")]).await;
    eventually("the blocker out", Duration::from_secs(5), || {
        live.fake.sends().len() > before
    })
    .await;
}

/// Posts each payload, signed, in order; each gets a 202.
async fn post_in_order(live: &Live, payloads: &[Value]) {
    let bodies: Vec<String> = payloads.iter().map(Value::to_string).collect();
    let sigs = python_hmac_sha256_many(SECRET, &bodies);
    for (body, sig) in bodies.into_iter().zip(sigs) {
        let res = live
            .app
            .post_hook(
                "src",
                body,
                &[("X-Hub-Signature-256", format!("sha256={sig}"))],
            )
            .await;
        assert_eq!(res.status(), 202);
    }
}

fn title(send: &crate::fake_fxiaoke::Received) -> String {
    send.body["composite"]["head"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn count(live: &Live, sql: &str) -> i64 {
    live.app.count(sql)
}

/// Every message is delivered, or merged into a delivered one.
fn every_event_is_represented(live: &Live) {
    let orphans = count(
        live,
        "SELECT COUNT(*) FROM messages m WHERE NOT (m.state = 'delivered'
             OR (m.state = 'coalesced' AND EXISTS (SELECT 1 FROM messages d
                 WHERE d.id = m.digest_id AND d.state = 'delivered')))",
    );
    assert_eq!(
        orphans, 0,
        "messages neither delivered nor in a delivered card"
    );
}

#[actix_rt::test]
async fn cards_queued_while_sending_is_rate_limited_go_out_as_one_digest() {
    let live = rate_limited(ALERTS).await;
    fill_the_window(&live).await;
    let alerts: Vec<Value> = (0..10)
        .map(|i| alert(&format!("Alert{i}"), "firing"))
        .collect();
    post_in_order(&live, &alerts).await;
    eventually("every card out", Duration::from_secs(10), || {
        count(
            &live,
            "SELECT COUNT(*) FROM messages WHERE state IN ('delivered', 'coalesced')",
        ) == 11
    })
    .await;
    let sends = live.fake.sends();
    assert_eq!(
        sends.len(),
        2,
        "the blocker, then the ten queued behind it in one digest"
    );
    let digest = &sends[1].body["composite"];
    assert!(
        title(&sends[1]).starts_with("10 alerts: [FIRING] Alert0, [FIRING] Alert1"),
        "{digest}"
    );
    let rows = digest["form"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "five rows, then +5 more: {digest}");
    assert_eq!(rows[0]["value"], "[FIRING] Alert0");
    assert_eq!(rows[5]["value"], "+5 more");
    assert_eq!(
        digest["link"]["url"], "https://alerts.example.com/Alert9",
        "the newest's link"
    );
    assert_eq!(sends[1].body["toUser"], json!(["5000", "5001"]));
    assert_eq!(
        count(
            &live,
            "SELECT COUNT(*) FROM messages WHERE state = 'coalesced'"
        ),
        9
    );
    every_event_is_represented(&live);
    live.fake.assert_no_violations();
    // The admin API says where each merged message went.
    let carrier = count(&live, "SELECT id FROM messages WHERE own_body IS NOT NULL");
    let merged = count(
        &live,
        "SELECT MIN(id) FROM messages WHERE state = 'coalesced'",
    );
    let (_, shown) = live
        .admin(reqwest::Method::GET, &format!("/admin/messages/{merged}"))
        .await;
    assert_eq!(shown["digest_id"], json!(carrier));
    let (_, digest) = live
        .admin(reqwest::Method::GET, &format!("/admin/messages/{carrier}"))
        .await;
    assert_eq!(digest["merged"].as_array().unwrap().len(), 9);
    let (_, ready) = live.admin(reqwest::Method::GET, "/readyz").await;
    assert_eq!(ready["delivery"]["coalescing"], json!(true), "{ready}");
    assert_eq!(
        ready["delivery"]["coalesced_last_minute"],
        json!(9),
        "{ready}"
    );
}

#[actix_rt::test]
async fn outside_a_storm_every_card_goes_out_at_once_as_it_is() {
    let live = rate_limited(ALERTS).await;
    post_in_order(&live, &[alert("Disk", "firing")]).await;
    live.wait_for_delivered(1).await;
    // The next slot is free again before the second card arrives.
    actix_rt::time::sleep(Duration::from_millis(1300)).await;
    post_in_order(&live, &[alert("CPU", "firing")]).await;
    live.wait_for_delivered(2).await;
    let sends = live.fake.sends();
    let stored: Vec<Value> = live.messages().into_iter().map(|m| m.body).collect();
    assert_eq!(sends.len(), 2);
    for (send, body) in sends.iter().zip(&stored) {
        assert_eq!(&send.body, body, "sent exactly as rendered");
    }
    assert_eq!(
        count(
            &live,
            "SELECT COUNT(*) FROM messages WHERE own_body IS NOT NULL"
        ),
        0
    );
}

#[actix_rt::test]
async fn a_firing_alert_resolved_before_it_went_out_wakes_nobody_twice() {
    let live = rate_limited(ALERTS).await;
    fill_the_window(&live).await;
    post_in_order(&live, &[alert("Disk", "firing"), alert("Disk", "resolved")]).await;
    eventually("both out", Duration::from_secs(10), || {
        live.fake.sends().len() == 2
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(1300)).await;
    let sends = live.fake.sends();
    assert_eq!(sends.len(), 2, "the blocker, then one card for Disk");
    let folded = &sends[1].body["composite"];
    assert_eq!(title(&sends[1]), "[RESOLVED] Disk");
    let first = folded["first"]["content"].as_str().unwrap();
    assert!(
        first.starts_with("fired at ") && first.contains(", resolved at "),
        "{first}"
    );
    assert!(first.ends_with("Disk is resolved"), "{first}");
    every_event_is_represented(&live);
}

#[actix_rt::test]
async fn a_repeat_within_its_period_is_held_back_and_the_next_card_counts_it() {
    let live = live_with(REPEATS, 1, |_| {}).await;
    post_in_order(&live, &[alert("Disk", "firing")]).await;
    live.wait_for_delivered(1).await;
    post_in_order(&live, &[alert("Disk", "firing"), alert("Disk", "firing")]).await;
    assert_eq!(
        count(
            &live,
            "SELECT COUNT(*) FROM messages WHERE state = 'suppressed'"
        ),
        2
    );
    assert_eq!(
        count(&live, "SELECT COUNT(*) FROM events"),
        3,
        "stored, not lost"
    );
    actix_rt::time::sleep(Duration::from_millis(2100)).await;
    post_in_order(&live, &[alert("Disk", "firing")]).await;
    live.wait_for_delivered(2).await;
    let sends = live.fake.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(
        sends[1].body["composite"]["remark"]["content"],
        "2 repeat(s) held back since the previous card"
    );
    let metrics = reqwest::get(format!("{}/metrics", live.app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"fxhook_messages_suppressed_total{source="src",rule="alert-repeat"} 2"#),
        "{metrics}"
    );
}

#[actix_rt::test]
async fn high_priority_cards_go_out_before_older_normal_ones() {
    let live = rate_limited(PLAIN).await;
    let mut urgent = alert("Deploy", "failed");
    urgent["priority"] = json!("high");
    fill_the_window(&live).await;
    post_in_order(
        &live,
        &[alert("Old", "firing"), alert("Older", "firing"), urgent],
    )
    .await;
    eventually("all four out", Duration::from_secs(10), || {
        live.fake.sends().len() == 4
    })
    .await;
    let titles: Vec<String> = live.fake.sends().iter().map(title).collect();
    assert_eq!(
        titles,
        [
            "[FIRING] Blocker",
            "[FAILED] Deploy",
            "[FIRING] Old",
            "[FIRING] Older"
        ]
    );
}

#[actix_rt::test]
async fn a_digest_that_fails_is_retried_whole_and_its_cards_are_never_sent_twice() {
    let live = rate_limited(ALERTS).await;
    fill_the_window(&live).await;
    live.fake.script([Scripted::ErrorCode(-1)]);
    let alerts: Vec<Value> = (0..3)
        .map(|i| alert(&format!("Alert{i}"), "firing"))
        .collect();
    post_in_order(&live, &alerts).await;
    eventually("every card out", Duration::from_secs(10), || {
        count(
            &live,
            "SELECT COUNT(*) FROM messages WHERE state IN ('delivered', 'coalesced')",
        ) == 4
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(1300)).await;
    let sends = live.fake.send_calls();
    assert_eq!(
        sends.len(),
        3,
        "the blocker, the digest refused with -1, the digest again"
    );
    assert_eq!(sends[1].body, sends[2].body, "the same digest");
    assert!(title(&sends[2]).starts_with("3 alerts:"));
    every_event_is_represented(&live);
    let carrier = live
        .messages()
        .into_iter()
        .find(|m| m.attempts == 2)
        .expect("the digest, tried twice");
    assert_eq!(carrier.state, "delivered");
}

/// The real binary killed while its digest is on the wire: after the restart the digest goes
/// out again, whole, and every alert is in a delivered card.
#[test]
fn a_sigkill_during_a_digest_send_loses_nothing() {
    use crate::fake_fxiaoke::FakeFxiaoke;
    use crate::hardening::wait_for;
    use crate::process::{post, serve, workdir};

    let fake = FakeFxiaoke::start("app", "secret", "perm", "1000");
    let dir = workdir();
    std::fs::write(
        dir.path().join("mappings/storm.yaml"),
        ALERTS
            .replace("    to: [everyone]\n", "")
            .replace("rules:", "verify: { unsigned: true }\nrules:"),
    )
    .unwrap();
    let base = fake.base_url();
    let env: Vec<(&str, &str)> = vec![
        ("FXHOOK__FXIAOKE__BASE_URL", base.as_str()),
        ("FXHOOK__FXIAOKE__APP_ID", "app"),
        ("FXHOOK__FXIAOKE__APP_SECRET", "secret"),
        ("FXHOOK__FXIAOKE__PERMANENT_CODE", "perm"),
        ("FXHOOK__FXIAOKE__USER_ID", "1000"),
        ("FXHOOK__GROUPS__DEFAULT", "1000"),
        ("FXHOOK__DELIVERY__POLL_INTERVAL", "20ms"),
        ("FXHOOK__DELIVERY__RATE_LIMIT", "1"),
        ("FXHOOK__DELIVERY__RATE_WINDOW", "1s"),
        ("FXHOOK__DELIVERY__CONCURRENCY", "1"),
        ("FXHOOK__DELIVERY__REQUEST_TIMEOUT", "30s"),
    ];
    let post_alert = |port: u16, name: &str| {
        let body = alert(name, "firing").to_string();
        let (status, json) = post(port, "/hooks/storm", body.as_bytes(), &[]);
        assert_eq!(status, 202, "{json}");
    };
    let db = dir.path().join("data/fxhook.db");
    let count = |sql: &str| -> i64 {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    };

    let first = serve(dir.path(), &env);
    post_alert(first.port, "Blocker");
    wait_for(Duration::from_secs(10), "the blocker out", || {
        fake.sends().len() == 1
    });
    // The digest's send hangs at the vendor; the process dies while it waits.
    fake.script([Scripted::Hang(Duration::from_secs(20))]);
    for name in ["Disk", "CPU", "Net"] {
        post_alert(first.port, name);
    }
    wait_for(Duration::from_secs(10), "the digest on the wire", || {
        fake.send_calls().len() == 2
    });
    assert_eq!(
        count("SELECT COUNT(*) FROM messages WHERE state = 'coalesced'"),
        2
    );
    drop(first); // SIGKILL

    let second = serve(dir.path(), &env);
    wait_for(
        Duration::from_secs(15),
        "the digest delivered after the restart",
        || count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'") == 2,
    );
    let calls = fake.send_calls();
    let digest = |i: usize| calls[i].body["composite"].clone();
    assert!(calls.len() >= 3, "{calls:?}");
    assert_eq!(digest(calls.len() - 1), digest(1), "the same digest, whole");
    assert!(
        digest(1)["head"]["title"]
            .as_str()
            .unwrap()
            .starts_with("3 alerts: [FIRING] Disk, [FIRING] CPU, [FIRING] Net")
    );
    let orphans = count(
        "SELECT COUNT(*) FROM messages m WHERE NOT (m.state = 'delivered'
             OR (m.state = 'coalesced' AND EXISTS (SELECT 1 FROM messages d
                 WHERE d.id = m.digest_id AND d.state = 'delivered')))",
    );
    assert_eq!(orphans, 0, "every alert in a delivered card");
    drop(second);
}
