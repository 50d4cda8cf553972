//! Every class of vendor error, end to end: the gateway runs in-process with live credentials
//! pointing at the strict fake, which answers as scripted, and the tests read what the gateway
//! did from the fake (what was sent, and when) and from the store (what it holds now).

use std::collections::HashSet;
use std::time::Duration;

use crate::fake_fxiaoke::{Received, Scripted};
use crate::live::{Live, eventually, live, now_ms};

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Asia/Shanghai is UTC+8 all year (no daylight saving time).
const SHANGHAI_MS: i64 = 8 * 3600 * 1000;

/// The next midnight in Shanghai after `now` (unix ms), computed without the gateway's code.
fn next_shanghai_midnight(now: i64) -> i64 {
    ((now + SHANGHAI_MS) / DAY_MS + 1) * DAY_MS - SHANGHAI_MS
}

fn recipients(send: &serde_json::Value) -> Vec<String> {
    let ids = send["toUser"].as_array().expect("a toUser list");
    ids.iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect()
}

impl Live {
    /// Polls until a recorded call has this outcome.
    async fn wait_for_outcome(&self, outcome: &str) {
        eventually(outcome, Duration::from_secs(10), || {
            self.attempts().iter().any(|a| a.0 == outcome)
        })
        .await;
    }

    /// The states of every message, by id.
    fn states(&self) -> Vec<String> {
        self.messages().into_iter().map(|m| m.state).collect()
    }
}

#[actix_rt::test]
async fn a_30002_answer_holds_every_send_until_the_vendors_midnight() {
    let live = live(1, |_| {}).await;
    live.fake.script(vec![Scripted::ErrorCode(30002); 10]);
    let before = now_ms();
    assert_eq!(live.post(0).await.status(), 202);
    live.wait_for_outcome("quota").await;
    let after = now_ms();

    live.post_all(1..4).await;
    // What is tested is that nothing is sent: watch for a second, fifty worker polls long.
    actix_rt::time::sleep(Duration::from_secs(1)).await;

    let calls = live.fake.send_calls();
    assert_eq!(calls.len(), 1, "sent after the 30002: {calls:#?}");
    assert_eq!(calls[0].error_code, Some(30002));
    let messages = live.messages();
    assert_eq!(live.states(), ["queued"; 4], "{messages:#?}");
    let refused = &messages[0];
    let midnight = [before, after].map(next_shanghai_midnight);
    assert!(
        midnight.contains(&refused.next_attempt_at),
        "next attempt at {} instead of the vendor's midnight {midnight:?}",
        refused.next_attempt_at
    );
    assert_eq!(refused.attempts, 1);
    assert!(
        refused
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("errorCode 30002")),
        "{refused:?}"
    );
    assert!(messages[1..].iter().all(|m| m.attempts == 0));
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn a_30002_answer_also_holds_the_sends_already_waiting_for_a_rate_slot() {
    // A backlog paced at one send a second by four loops: when the quota answer comes, the
    // other loops are already waiting for their slot (or about to claim). None may send after
    // the answer, and none may hold its message in flight until midnight.
    let live = live(1, |s| {
        s.delivery.rate_limit = 1;
        s.delivery.rate_window = Duration::from_secs(1);
        s.delivery.concurrency = 4;
    })
    .await;
    live.fake.script(vec![Scripted::ErrorCode(30002); 10]);
    live.post_all(0..4).await;
    live.wait_for_outcome("quota").await;

    // What is tested is that nothing more is sent: watch for two more rate windows, in which
    // each waiting loop has its slot.
    actix_rt::time::sleep(Duration::from_millis(2500)).await;

    let calls = live.fake.send_calls();
    assert_eq!(calls.len(), 1, "sent after the 30002: {calls:#?}");
    assert_eq!(
        live.states(),
        ["queued"; 4],
        "every message waits in the queue, none in flight: {:#?}",
        live.messages()
    );
    live.fake.assert_no_violations();
}

/// One message meets `answer`; three more come after it. Every send after the answer waits out
/// the pause (`delivery.rate_window`), whichever worker loop makes it, and all are delivered.
async fn assert_the_whole_sender_backs_off(answer: Scripted) {
    let pause = Duration::from_secs(1);
    let live = live(1, move |s| {
        s.delivery.rate_window = pause;
        s.delivery.rate_limit = 100;
        s.delivery.concurrency = 4;
    })
    .await;
    live.fake.script([answer.clone()]);
    assert_eq!(live.post(0).await.status(), 202);
    live.wait_for_outcome("slow-down").await;

    live.post_all(1..4).await;
    live.wait_for_delivered(4).await;

    let calls = live.fake.send_calls();
    assert_eq!(calls.len(), 5, "{answer:?}: {calls:#?}");
    let refused = &calls[0];
    let early: Vec<&Received> = calls[1..]
        .iter()
        .filter(|c| c.at.duration_since(refused.at) < pause)
        .collect();
    assert!(
        early.is_empty(),
        "{answer:?}: sent during the pause: {early:#?}"
    );
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn a_30004_answer_backs_the_whole_sender_off_for_the_rate_window() {
    assert_the_whole_sender_backs_off(Scripted::ErrorCode(30004)).await;
}

#[actix_rt::test]
async fn a_14001_answer_backs_the_whole_sender_off_for_the_rate_window() {
    assert_the_whole_sender_backs_off(Scripted::ErrorCode(14001)).await;
}

#[actix_rt::test]
async fn an_http_429_answer_backs_the_whole_sender_off_for_the_rate_window() {
    assert_the_whole_sender_backs_off(Scripted::HttpStatus(429)).await;
}

#[actix_rt::test]
async fn an_html_answer_is_retried_and_its_error_names_fxiaoke_base_url() {
    let live = live(1, |_| {}).await;
    live.fake.script([Scripted::Html]);
    assert_eq!(live.post(0).await.status(), 202);
    live.wait_for_delivered(1).await;

    let attempts = live.attempts();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    let (outcome, code, status, error) = &attempts[0];
    assert_eq!(
        (outcome.as_str(), *code, *status),
        ("retry", None, Some(200))
    );
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("fxiaoke.base_url")),
        "{error:?}"
    );
    assert_eq!(attempts[1].0, "delivered");
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn a_refused_connection_is_retried_and_the_last_error_says_so() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // dropped: nothing listens there now
    let base = format!("http://127.0.0.1:{closed}");
    let live = live(1, move |s| {
        s.fxiaoke.base_url = base;
        s.delivery.rate_window = Duration::from_millis(300);
    })
    .await;
    assert_eq!(live.post(0).await.status(), 202);

    eventually("a second try", Duration::from_secs(10), || {
        live.attempts().len() >= 2
    })
    .await;

    let message = &live.messages()[0];
    assert_eq!(message.state, "queued", "{message:?}");
    assert_eq!(
        message.attempts, 0,
        "no send was made: the schedule is intact"
    );
    let error = message.last_error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("cannot reach http://127.0.0.1:{closed}"))
            && error.to_lowercase().contains("connection refused"),
        "{error}"
    );
    assert!(live.attempts().iter().all(|a| a.0 == "token-failed"));
    assert!(live.fake.received().is_empty());
}

#[actix_rt::test]
async fn two_20016_answers_in_a_row_refresh_the_token_once_then_retry_later_instead_of_dying() {
    let live = live(1, |_| {}).await;
    live.fake
        .script([Scripted::ErrorCode(20016), Scripted::ErrorCode(20016)]);
    assert_eq!(live.post(0).await.status(), 202);
    live.wait_for_delivered(1).await;

    let calls: Vec<(String, Option<i64>)> = live
        .attempts()
        .into_iter()
        .map(|(outcome, code, _, _)| (outcome, code))
        .collect();
    assert_eq!(
        calls,
        [
            ("token-refresh".to_string(), Some(20016)),
            ("retry".to_string(), Some(20016)),
            ("delivered".to_string(), Some(0)),
        ]
    );
    assert_eq!(
        live.fake.token_calls(),
        2,
        "one refresh, not one per answer"
    );
    assert_eq!(live.messages()[0].attempts, 2);
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn a_message_whose_retries_are_used_up_is_dead_with_the_reason() {
    let live = live(1, |s| {
        s.delivery.retry_schedule = vec![Duration::from_millis(10), Duration::from_millis(20)];
    })
    .await;
    live.fake.script([
        Scripted::ErrorCode(-1),
        Scripted::ErrorCode(-2),
        Scripted::ErrorCode(50009),
        Scripted::ErrorCode(-1),
    ]);
    assert_eq!(live.post(0).await.status(), 202);
    live.app
        .wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'dead'", 1)
        .await;

    let message = &live.messages()[0];
    assert_eq!(message.attempts, 3);
    let error = message.last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with("errorCode 50009")
            && error.ends_with("retry schedule exhausted after 3 attempts"),
        "{error}"
    );
    assert_eq!(live.fake.send_calls().len(), 3);
    assert!(live.fake.sends().is_empty());
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn a_message_older_than_delivery_max_age_is_dead_instead_of_retried() {
    let live = live(1, |s| {
        s.delivery.max_age = Duration::from_millis(500);
        s.delivery.retry_schedule = vec![Duration::from_millis(300); 20];
    })
    .await;
    live.fake.script(vec![Scripted::ErrorCode(-1); 20]);
    assert_eq!(live.post(0).await.status(), 202);
    live.app
        .wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'dead'", 1)
        .await;

    let message = &live.messages()[0];
    let error = message.last_error.clone().unwrap_or_default();
    assert!(
        error.ends_with("older than delivery.max_age (500ms)"),
        "{error}"
    );
    assert!(message.attempts < 20, "the age ended it, not the schedule");
    assert_eq!(live.fake.send_calls().len() as i64, message.attempts);
    live.fake.assert_no_violations();
}

#[actix_rt::test]
async fn a_failed_chunk_of_a_1200_recipient_card_is_dead_alone_and_a_replay_sends_only_it() {
    let live = live(1200, |_| {}).await;
    live.fake.script([Scripted::ErrorCode(30003)]);
    assert_eq!(live.post(0).await.status(), 202);
    live.app
        .wait_for_count(
            "SELECT COUNT(*) FROM messages WHERE state IN ('delivered', 'dead')",
            3,
        )
        .await;

    let messages = live.messages();
    let dead: Vec<_> = messages.iter().filter(|m| m.state == "dead").collect();
    assert_eq!(dead.len(), 1, "{:?}", live.states());
    let dead = dead[0];
    let dead_ids: HashSet<String> = recipients(&dead.body).into_iter().collect();
    let delivered = live.fake.recipients();
    assert_eq!(delivered.len() + dead_ids.len(), 1200);
    assert!(delivered.iter().all(|id| !dead_ids.contains(id)));

    let (status, _) = live
        .admin(
            reqwest::Method::POST,
            &format!("/admin/messages/{}/replay", dead.id),
        )
        .await;
    assert_eq!(status, 200);
    live.wait_for_delivered(3).await;

    let sent = live.fake.recipients();
    let unique: HashSet<&String> = sent.iter().collect();
    assert_eq!((sent.len(), unique.len()), (1200, 1200), "no id twice");
    let calls = live.fake.send_calls();
    assert_eq!(calls.len(), 4, "three chunks and the one replay");
    let replayed: HashSet<String> = recipients(&calls[3].body).into_iter().collect();
    assert_eq!(replayed, dead_ids);
    live.fake.assert_no_violations();
}
