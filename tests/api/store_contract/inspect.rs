//! The admin API's contract: listings, details and replays (re-maps are in `remap`).

use crate::store_contract::as_is;
use std::collections::BTreeSet;

use fxhook::store::{AttemptOutcome, EventState, MessageState, NewMessage, Replay, unix_ms};
use serde_json::{Value, json};

use super::{
    after, before, card, finish, mapped, message, no_recipients, now, on_both, queued, store_event,
    unmapped, with_delivery,
};

fn ids(listed: &[Value]) -> Vec<Value> {
    listed.iter().map(|v| v["id"].clone()).collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The keys of a message as listed (`attempts` is a count) and in a detail (a list).
const MESSAGE_KEYS: &[&str] = &[
    "id",
    "event_id",
    "seq",
    "state",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
    "updated_at",
    "body",
    "digest_id",
];
const EVENT_KEYS: &[&str] = &[
    "id",
    "source",
    "event_type",
    "delivery_id",
    "received_at",
    "state",
    "rule",
    "error",
];

#[test]
fn events_and_messages_are_listed_newest_first_by_state_and_up_to_a_limit_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 60);
        store_event(&mut *store, &mapped("e-1", t0, vec![queued("a")]));
        store_event(&mut *store, &unmapped("e-2", after(t0, 1)));
        store_event(
            &mut *store,
            &with_delivery(
                mapped("e-3", after(t0, 2), vec![queued("b"), no_recipients("c")]),
                "d-3",
            ),
        );

        let all = store.list_events(None, 10).unwrap();
        let failed = store.list_events(Some(EventState::Failed), 10).unwrap();
        let mapped_ = store.list_events(Some(EventState::Mapped), 10).unwrap();
        let two = store.list_events(None, 2).unwrap();

        assert_eq!(ids(&all), [json!("e-3"), json!("e-2"), json!("e-1")]);
        assert_eq!(ids(&failed), [json!("e-2")]);
        assert_eq!(ids(&mapped_), [json!("e-3"), json!("e-1")]);
        assert_eq!(ids(&two), [json!("e-3"), json!("e-2")]);
        assert_eq!(keys(&all[0]), set(EVENT_KEYS));
        assert_eq!(
            failed[0],
            json!({
                "id": "e-2", "source": "src", "event_type": "push", "delivery_id": null,
                "received_at": unix_ms(after(t0, 1)), "state": "failed", "rule": "card",
                "error": "title rendered empty",
            })
        );
        assert_eq!(all[0]["delivery_id"], "d-3");

        let messages = store.list_messages(None, 10).unwrap();
        let titles: Vec<&Value> = messages
            .iter()
            .map(|m| &m["body"]["composite"]["head"]["title"])
            .collect();
        assert_eq!(
            titles,
            [&json!("c"), &json!("b"), &json!("a")],
            "newest first"
        );
        assert_eq!(keys(&messages[0]), set(MESSAGE_KEYS));
        let failed = store.list_messages(Some(MessageState::Failed), 10).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0]["last_error"], "no recipients");
        assert_eq!(failed[0]["seq"], 1);
        assert_eq!(
            store
                .list_messages(Some(MessageState::Queued), 10)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store
                .list_messages(Some(MessageState::Dead), 10)
                .unwrap()
                .len(),
            0
        );
        assert_eq!(store.list_messages(None, 1).unwrap().len(), 1);
    });
}

#[test]
fn an_event_detail_holds_its_payload_headers_and_messages_with_their_attempts_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 60);
        store_event(
            &mut *store,
            &mapped("e-1", t0, vec![queued("a"), queued("b")]),
        );
        let first = store.claim_next(now(), false, &mut as_is).unwrap().unwrap();
        finish(
            &*store,
            first.id,
            AttemptOutcome::Delivered,
            MessageState::Delivered,
        );

        let detail = store.event_detail("e-1").unwrap().expect("the event");

        let mut expected_keys = set(EVENT_KEYS);
        expected_keys.extend(set(&["payload", "headers", "messages"]));
        assert_eq!(keys(&detail), expected_keys);
        assert_eq!(detail["payload"], json!({"id": "e-1", "n": 1}));
        assert_eq!(detail["headers"], json!({"x-request-id": "r-1"}));
        let messages = detail["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(
            (&messages[0]["seq"], &messages[1]["seq"]),
            (&json!(0), &json!(1))
        );
        assert_eq!(messages[0]["state"], "delivered");
        assert_eq!(messages[0]["attempts"][0]["outcome"], "delivered");
        assert_eq!(messages[1]["attempts"], json!([]));
        assert_eq!(messages[1]["body"]["toUser"], json!(["1000"]));
        assert_eq!(message(&*store, first.id), messages[0]);
        assert!(store.event_detail("nope").unwrap().is_none());
        assert!(store.message_detail(987_654).unwrap().is_none());
    });
}

#[test]
fn only_dead_and_failed_messages_are_replayed_and_one_without_recipients_waits_for_a_remap_on_both_stores()
 {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 60);
        let failed_with_recipients = NewMessage {
            body: card(&["1000"], "y"),
            failed: Some("refused by a filter".into()),
            storm: Default::default(),
        };
        let messages = vec![
            queued("dead"),
            no_recipients("x"),
            failed_with_recipients,
            queued("delivered"),
            queued("in-flight"),
            queued("queued"),
        ];
        store_event(&mut *store, &mapped("e", t0, messages));
        let id: Vec<i64> = store.event_detail("e").unwrap().unwrap()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect();
        let dead = store.claim_next(now(), false, &mut as_is).unwrap().unwrap();
        finish(
            &*store,
            dead.id,
            AttemptOutcome::Refused,
            MessageState::Dead,
        );
        let delivered = store.claim_next(now(), false, &mut as_is).unwrap().unwrap();
        finish(
            &*store,
            delivered.id,
            AttemptOutcome::Delivered,
            MessageState::Delivered,
        );
        store.claim_next(now(), false, &mut as_is).unwrap().unwrap();
        let at = after(now(), 5);

        let answers: Vec<Replay> = id
            .iter()
            .chain([&987_654])
            .map(|id| store.replay_message(*id, at).unwrap())
            .collect();

        assert_eq!(
            answers,
            [
                Replay::Queued,
                Replay::NoRecipients,
                Replay::Queued,
                Replay::WrongState(MessageState::Delivered),
                Replay::WrongState(MessageState::InFlight),
                Replay::WrongState(MessageState::Queued),
                Replay::NotFound,
            ]
        );
        let replayed = message(&*store, id[0]);
        assert_eq!(replayed["state"], "queued");
        assert_eq!(
            replayed["attempts"].as_array().map(Vec::len),
            Some(1),
            "kept"
        );
        assert_eq!(
            store.list_messages(None, 10).unwrap()[5]["attempts"],
            0,
            "a fresh count"
        );
        assert_eq!(replayed["next_attempt_at"], unix_ms(at));
        assert_eq!(replayed["created_at"], unix_ms(at), "a fresh age");
        assert_eq!(message(&*store, id[1])["state"], "failed");
        assert_eq!(message(&*store, id[2])["state"], "queued");
        assert!(
            store
                .claim_next(before(at, 1), false, &mut as_is)
                .unwrap()
                .is_some(),
            "the last queued one"
        );
        assert!(
            store
                .claim_next(before(at, 1), false, &mut as_is)
                .unwrap()
                .is_none(),
            "replayed wait for `at`"
        );
        assert_eq!(
            store
                .claim_next(at, false, &mut as_is)
                .unwrap()
                .map(|c| c.id),
            Some(id[0])
        );
    });
}

#[test]
fn replaying_every_dead_message_queues_them_and_nothing_else_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 60);
        store_event(
            &mut *store,
            &mapped("e-1", t0, vec![queued("a"), queued("b")]),
        );
        store_event(
            &mut *store,
            &mapped("e-2", t0, vec![queued("c"), no_recipients("d")]),
        );
        for state in [
            MessageState::Dead,
            MessageState::Delivered,
            MessageState::Dead,
        ] {
            let c = store.claim_next(now(), false, &mut as_is).unwrap().unwrap();
            finish(&*store, c.id, AttemptOutcome::Refused, state);
        }

        let replayed = store.replay_all_dead(now()).unwrap();

        assert_eq!(replayed, 2);
        let count = |state| store.list_messages(Some(state), 10).unwrap().len();
        assert_eq!(
            [
                MessageState::Queued,
                MessageState::Delivered,
                MessageState::Failed,
                MessageState::Dead
            ]
            .map(count),
            [2, 1, 1, 0]
        );
        let queued = store.list_messages(Some(MessageState::Queued), 10).unwrap();
        assert!(queued.iter().all(|m| m["attempts"] == 0), "{queued:?}");
    });
}
