//! The delivery worker's contract: claims in due order, attempts recorded with the move to
//! delivered, a later retry or dead; claims put back (released, after a crash, when stale);
//! concurrent claimers; and dry-run batches.

use crate::store_contract::as_is;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use fxhook::store::{AttemptOutcome, AttemptRecord, Claimed, MessageState, Transition, unix_ms};
use serde_json::json;

use super::{
    Store, after, before, finish, mapped, message, message_ids, no_recipients, now, on_both,
    queued, record, store_event,
};

fn title(body: &str) -> String {
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    body["composite"]["head"]["title"]
        .as_str()
        .unwrap()
        .to_string()
}

fn claim(store: &dyn Store, at: std::time::SystemTime) -> Option<Claimed> {
    store.claim_next(at, false, &mut as_is).unwrap()
}

#[test]
fn a_claim_takes_the_earliest_due_message_and_marks_it_in_flight_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 60);
        store_event(
            &mut *store,
            &mapped("later", after(t0, 10), vec![queued("c")]),
        );
        store_event(
            &mut *store,
            &mapped(
                "first",
                t0,
                vec![queued("a"), no_recipients("x"), queued("b")],
            ),
        );
        store_event(
            &mut *store,
            &mapped("future", after(now(), 3600), vec![queued("f")]),
        );

        let mut taken = Vec::new();
        while let Some(c) = claim(&*store, now()) {
            taken.push(c);
        }

        let events: Vec<&str> = taken.iter().map(|c| c.event_id.as_str()).collect();
        assert_eq!(
            events,
            ["first", "first", "later"],
            "due order; never failed or not yet due"
        );
        let first = &taken[0];
        assert_eq!(first.attempts, 0);
        assert_eq!(first.created_at, unix_ms(t0));
        let body: serde_json::Value = serde_json::from_str(&first.body).unwrap();
        assert_eq!(body["composite"]["head"]["title"], "a");
        assert_eq!(message(&*store, first.id)["state"], "in-flight");
        let stats = store.queue_stats().unwrap();
        assert_eq!(
            (stats.queued, stats.in_flight),
            (1, 3),
            "the future one waits"
        );
    });
}

#[test]
fn a_released_claim_is_queued_again_with_no_attempt_counted_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        store_event(
            &mut *store,
            &mapped("e", before(now(), 1), vec![queued("a")]),
        );
        let c = claim(&*store, now()).unwrap();

        store.release_claim(c.id).unwrap();

        let m = message(&*store, c.id);
        assert_eq!(m["state"], "queued");
        assert_eq!(m["attempts"], json!([]), "no attempt recorded");
        let again = claim(&*store, now()).expect("claimable again");
        assert_eq!((again.id, again.attempts), (c.id, 0));
    });
}

#[test]
fn a_delivered_attempt_records_every_call_and_ends_the_message_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        store_event(
            &mut *store,
            &mapped("e", before(now(), 1), vec![queued("a")]),
        );
        let c = claim(&*store, now()).unwrap();
        let started = before(now(), 2);
        let refresh = AttemptRecord {
            outcome: AttemptOutcome::TokenRefresh,
            http_status: Some(200),
            error_code: Some(20016),
            error_message: Some("token invalid".into()),
            trace_id: Some("E-stale".into()),
            third_trace_id: Some("fx-1".into()),
        };
        let to = Transition {
            state: MessageState::Delivered,
            next_attempt_at: None,
            last_error: None,
            counts: true,
        };

        store
            .finish_attempt(
                c.id,
                started,
                &[refresh, record(AttemptOutcome::Delivered)],
                &to,
            )
            .unwrap();

        let m = message(&*store, c.id);
        assert_eq!(m["state"], "delivered");
        assert_eq!(m["attempts"].as_array().map(Vec::len), Some(2), "{m}");
        let calls = &m["attempts"];
        assert_eq!(calls[0]["outcome"], "token-refresh");
        assert_eq!(calls[0]["error_code"], 20016);
        assert_eq!(calls[0]["error_message"], "token invalid");
        assert_eq!(calls[0]["trace_id"], "E-stale");
        assert_eq!(calls[1]["outcome"], "delivered");
        assert_eq!(calls[1]["http_status"], 200);
        assert_eq!(calls[1]["third_trace_id"], "fx-1");
        assert_eq!(calls[1]["started_at"], unix_ms(started));
        let listed = store.list_messages(None, 1).unwrap();
        assert_eq!(listed[0]["attempts"], 1, "one counted attempt");
        assert!(claim(&*store, after(now(), 86_400)).is_none());
    });
}

#[test]
fn a_retry_waits_for_its_time_and_an_uncounted_one_keeps_the_count_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        store_event(
            &mut *store,
            &mapped("e", before(now(), 1), vec![queued("a")]),
        );
        let c = claim(&*store, now()).unwrap();
        let due = after(now(), 60);
        let retry = |counts| Transition {
            state: MessageState::Queued,
            next_attempt_at: Some(due),
            last_error: Some("HTTP 503".into()),
            counts,
        };

        store
            .finish_attempt(c.id, now(), &[record(AttemptOutcome::Retry)], &retry(true))
            .unwrap();

        let m = message(&*store, c.id);
        assert_eq!(m["state"], "queued");
        assert_eq!(m["next_attempt_at"], unix_ms(due));
        assert_eq!(m["last_error"], "HTTP 503");
        assert!(
            claim(&*store, before(due, 1)).is_none(),
            "not before its time"
        );
        let again = claim(&*store, due).expect("due at its time");
        assert_eq!((again.id, again.attempts), (c.id, 1));

        store
            .finish_attempt(
                c.id,
                now(),
                &[record(AttemptOutcome::SlowDown)],
                &retry(false),
            )
            .unwrap();

        assert_eq!(
            claim(&*store, due).map(|c| c.attempts),
            Some(1),
            "not counted"
        );
    });
}

#[test]
fn a_dead_message_is_never_claimed_again_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        store_event(
            &mut *store,
            &mapped("e", before(now(), 1), vec![queued("a")]),
        );
        let c = claim(&*store, now()).unwrap();

        finish(&*store, c.id, AttemptOutcome::Refused, MessageState::Dead);

        let m = message(&*store, c.id);
        assert_eq!(
            (m["state"].as_str(), m["last_error"].as_str()),
            (Some("dead"), Some("refused"))
        );
        assert!(claim(&*store, after(now(), 365 * 86_400)).is_none());
        assert_eq!(store.queue_stats().unwrap(), Default::default());
    });
}

#[test]
fn every_claim_of_a_process_that_died_is_queued_again_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        store_event(
            &mut *store,
            &mapped(
                "e",
                before(now(), 1),
                vec![queued("a"), queued("b"), queued("c")],
            ),
        );
        let dead_process = fresh.open();
        claim(&*dead_process, now()).unwrap();
        claim(&*dead_process, now()).unwrap();
        drop(dead_process);

        let requeued = store.requeue_in_flight(now()).unwrap();

        assert_eq!(requeued, 2);
        let stats = store.queue_stats().unwrap();
        assert_eq!((stats.queued, stats.in_flight), (3, 0));
    });
}

#[test]
fn only_claims_older_than_the_cutoff_are_stale_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 3600);
        store_event(
            &mut *store,
            &mapped("e", t0, vec![queued("old"), queued("new")]),
        );
        let old = claim(&*store, after(t0, 60)).unwrap();
        let new = claim(&*store, after(t0, 1800)).unwrap();

        let requeued = store.requeue_stale(after(t0, 600)).unwrap();

        assert_eq!(requeued, 1);
        assert_eq!(message(&*store, old.id)["state"], "queued");
        assert_eq!(message(&*store, new.id)["state"], "in-flight");
    });
}

#[test]
fn two_claimers_at_once_never_take_the_same_message_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let messages = (0..40).map(|i| queued(&format!("m{i}"))).collect();
        store_event(&mut *store, &mapped("e", before(now(), 1), messages));
        let barrier = Arc::new(Barrier::new(2));
        let claimers: Vec<_> = (0..2)
            .map(|_| {
                let store = fresh.open();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut ids = Vec::new();
                    while let Some(c) = store.claim_next(now(), false, &mut as_is).unwrap() {
                        ids.push(c.id);
                    }
                    ids
                })
            })
            .collect();

        let taken: Vec<Vec<i64>> = claimers.into_iter().map(|c| c.join().unwrap()).collect();

        let all: Vec<i64> = taken.concat();
        let unique: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(
            all.len(),
            unique.len(),
            "a message claimed twice: {taken:?}"
        );
        assert_eq!(unique.len(), 40);
        assert_eq!(store.queue_stats().unwrap().in_flight, 40);
    });
}

#[test]
fn a_dry_run_batch_delivers_the_earliest_due_messages_with_a_dry_run_attempt_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 60);
        let messages = (0..5).map(|i| queued(&format!("m{i}"))).collect();
        store_event(&mut *store, &mapped("due", t0, messages));
        store_event(
            &mut *store,
            &mapped("due-later", after(t0, 1), vec![queued("m5")]),
        );
        store_event(
            &mut *store,
            &mapped("future", after(now(), 3600), vec![queued("f")]),
        );
        let mut logged = Vec::new();

        let first = store
            .deliver_dry_run(now(), 3, &mut |c| logged.push((title(&c.body), c.attempts)))
            .unwrap();
        let second = store.deliver_dry_run(now(), 3, &mut |_| {}).unwrap();
        let third = store.deliver_dry_run(now(), 3, &mut |_| {}).unwrap();

        assert_eq!((first, second, third), (3, 3, 0));
        logged.sort();
        let expected: Vec<(String, i64)> = (0..3).map(|i| (format!("m{i}"), 0)).collect();
        assert_eq!(
            logged, expected,
            "the earliest due, each with the attempts made before"
        );
        let ids = message_ids(&*store);
        for id in &ids[..6] {
            let m = message(&*store, *id);
            assert_eq!(m["state"], "delivered", "{m}");
            assert_eq!(m["attempts"][0]["outcome"], "dry-run");
            assert_eq!(m["attempts"].as_array().map(Vec::len), Some(1));
        }
        assert_eq!(message(&*store, ids[6])["state"], "queued", "not due yet");
        assert_eq!(store.list_messages(None, 1).unwrap()[0]["attempts"], 0);
        let delivered = store
            .list_messages(Some(MessageState::Delivered), 10)
            .unwrap();
        assert!(
            delivered
                .iter()
                .all(|m| m["attempts"] == 1 && m["last_error"].is_null())
        );
    });
}
