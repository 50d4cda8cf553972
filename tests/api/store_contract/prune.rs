//! Retention on both stores: the table of `tests/api/prune.rs`, each event put in its states
//! through the worker's own calls (claim, finish) rather than by SQL.

use crate::store_contract::as_is;
use std::time::{Duration, SystemTime};

use fxhook::store::{AttemptOutcome, MessageState, Transition};

use super::{
    Fresh, Store, finish, mapped, no_recipients, now, on_both, queued, record, store_event,
    unmapped,
};

/// `delivery.keep_delivered` and `delivery.keep_dead`, the defaults.
const KEEP_DELIVERED: Duration = Duration::from_secs(7 * 24 * 3600);
const KEEP_DEAD: Duration = Duration::from_secs(30 * 24 * 3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const DELIVERED: &[&str] = &["delivered"];
const DEAD: &[&str] = &["dead"];

/// An event stored `age` before now: mapped into messages in these states, or (`None`) its
/// mapping failed.
struct Stored {
    id: &'static str,
    age: Duration,
    messages: Option<&'static [&'static str]>,
}

const fn stored(id: &'static str, days: u32, messages: &'static [&'static str]) -> Stored {
    Stored {
        id,
        age: Duration::from_secs(days as u64 * 24 * 3600),
        messages: Some(messages),
    }
}

const fn mapping_failed(id: &'static str, days: u32) -> Stored {
    Stored {
        id,
        age: Duration::from_secs(days as u64 * 24 * 3600),
        messages: None,
    }
}

/// Stores `event` and moves each of its messages to its state as the worker would. Every
/// message stored before is at rest (not due), so each claim takes this event's next one.
fn put(store: &mut dyn Store, now: SystemTime, event: &Stored) {
    let at = now - event.age;
    let Some(states) = event.messages else {
        store_event(store, &unmapped(event.id, at));
        return;
    };
    let messages = states
        .iter()
        .map(|s| match *s {
            "failed" => no_recipients(s),
            _ => queued(s),
        })
        .collect();
    store_event(store, &mapped(event.id, at, messages));
    for state in states.iter().filter(|s| **s != "failed") {
        let claimed = store
            .claim_next(now, false, &mut as_is)
            .unwrap()
            .expect("a message to claim");
        assert_eq!(claimed.event_id, event.id);
        match *state {
            "in-flight" => {}
            "delivered" => finish(
                store,
                claimed.id,
                AttemptOutcome::Delivered,
                MessageState::Delivered,
            ),
            "dead" => finish(
                store,
                claimed.id,
                AttemptOutcome::Refused,
                MessageState::Dead,
            ),
            "queued" => {
                let later = Transition {
                    state: MessageState::Queued,
                    next_attempt_at: Some(now + 365 * DAY),
                    last_error: Some("HTTP 503".into()),
                    counts: true,
                };
                store
                    .finish_attempt(claimed.id, now, &[record(AttemptOutcome::Retry)], &later)
                    .unwrap();
            }
            other => panic!("no such state {other}"),
        }
    }
}

fn event_ids(store: &dyn Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .list_events(None, 1000)
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Rows left behind by a deleted parent (none, when deletes cascade).
fn orphans(fresh: &Fresh) -> (i64, i64) {
    (
        fresh.count("SELECT COUNT(*) FROM messages WHERE event_id NOT IN (SELECT id FROM events)"),
        fresh.count(
            "SELECT COUNT(*) FROM attempts WHERE message_id NOT IN (SELECT id FROM messages)",
        ),
    )
}

#[test]
fn pruning_keeps_every_event_with_work_left_or_within_its_retention_and_drops_the_rest_on_both_stores()
 {
    on_both(|fresh| {
        let mut store = fresh.open();
        let now = now();
        // (event, kept?) with delivered events kept 7 days and dead or failed ones 30 days.
        let table = [
            (stored("delivered-6d", 6, &["delivered"]), true),
            (stored("delivered-8d", 8, &["delivered"]), false),
            (stored("queued-40d", 40, &["queued"]), true),
            (stored("in-flight-40d", 40, &["in-flight"]), true),
            (
                stored("delivered+queued-40d", 40, &["delivered", "queued"]),
                true,
            ),
            (
                stored("delivered+in-flight-8d", 8, &["delivered", "in-flight"]),
                true,
            ),
            (stored("dead+queued-40d", 40, &["dead", "queued"]), true),
            (stored("delivered+dead-8d", 8, &["delivered", "dead"]), true),
            (
                stored("delivered+dead-31d", 31, &["delivered", "dead"]),
                false,
            ),
            (stored("dead-8d", 8, &["dead"]), true),
            (stored("dead-31d", 31, &["dead"]), false),
            (stored("no-recipients-8d", 8, &["failed"]), true),
            (stored("no-recipients-31d", 31, &["failed"]), false),
            (
                stored("delivered+failed-8d", 8, &["delivered", "failed"]),
                true,
            ),
            (
                stored("delivered+failed-31d", 31, &["delivered", "failed"]),
                false,
            ),
            (mapping_failed("mapping-failed-8d", 8), true),
            (mapping_failed("mapping-failed-31d", 31), false),
        ];
        for (event, _) in &table {
            put(&mut *store, now, event);
        }
        let messages_of = |id: &str| -> Vec<i64> {
            let e = store.event_detail(id).unwrap().unwrap();
            let ids = e["messages"].as_array().unwrap().iter();
            ids.map(|m| m["id"].as_i64().unwrap()).collect()
        };
        let dropped_messages: Vec<i64> = table
            .iter()
            .filter(|(_, kept)| !kept)
            .flat_map(|(e, _)| messages_of(e.id))
            .collect();

        let pruned = store.prune(now, KEEP_DELIVERED, KEEP_DEAD).unwrap();

        let mut kept: Vec<String> = table
            .iter()
            .filter(|(_, kept)| *kept)
            .map(|(e, _)| e.id.to_string())
            .collect();
        kept.sort();
        assert_eq!(event_ids(&*store), kept);
        assert_eq!(pruned, table.len() - kept.len());
        assert!(!dropped_messages.is_empty());
        for id in dropped_messages {
            assert!(store.message_detail(id).unwrap().is_none(), "message {id}");
        }
        assert_eq!(
            orphans(fresh),
            (0, 0),
            "messages and attempts go with their event"
        );
    });
}

#[test]
fn an_event_exactly_at_its_retention_is_kept_and_one_a_second_older_is_not_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let now = now();
        let second = Duration::from_secs(1);
        for (id, age, states) in [
            ("delivered-at-7d", KEEP_DELIVERED, DELIVERED),
            ("delivered-past-7d", KEEP_DELIVERED + second, DELIVERED),
            ("dead-at-30d", KEEP_DEAD, DEAD),
            ("dead-past-30d", KEEP_DEAD + second, DEAD),
        ] {
            let event = Stored {
                id,
                age,
                messages: Some(states),
            };
            put(&mut *store, now, &event);
        }

        let pruned = store.prune(now, KEEP_DELIVERED, KEEP_DEAD).unwrap();

        assert_eq!(pruned, 2);
        assert_eq!(event_ids(&*store), ["dead-at-30d", "delivered-at-7d"]);
    });
}

#[test]
fn payloads_of_delivered_events_go_before_their_rows_and_nothing_else_loses_its_payload_on_both_stores()
 {
    on_both(|fresh| {
        let mut store = fresh.open();
        let now = now();
        // (event, payload kept?) with payloads of delivered events kept 1 day.
        let table = [
            (stored("delivered-2d", 2, &["delivered"]), false),
            (stored("delivered-12h", 0, &["delivered"]), true),
            (stored("queued-2d", 2, &["queued"]), true),
            (stored("delivered+dead-2d", 2, &["delivered", "dead"]), true),
            (mapping_failed("failed-mapping-2d", 2), true),
        ];
        for (event, _) in &table {
            put(&mut *store, now, event);
        }
        let dropped = store.drop_payloads(now, DAY).unwrap();
        assert_eq!(dropped, 1, "{:?}", fresh.backend);
        for (event, kept) in &table {
            let stored = store
                .stored_event(event.id)
                .unwrap()
                .expect("the row stays");
            assert_eq!(
                !stored.payload.is_empty(),
                *kept,
                "{:?}: {}",
                fresh.backend,
                event.id
            );
        }
        let detail = store.event_detail("delivered-2d").unwrap().unwrap();
        assert_eq!(detail["messages"][0]["state"], "delivered");
        assert_eq!(store.drop_payloads(now, DAY).unwrap(), 0, "once");
    });
}
