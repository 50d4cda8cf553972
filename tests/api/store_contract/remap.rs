//! Re-mapping's side of the admin API: what a re-map needs of a stored event, when a re-map is
//! refused (a card would be sent twice) and what it replaces when it is not.

use crate::store_contract::as_is;
use fxhook::store::{AttemptOutcome, EventOutcome, EventState, MessageState, NewMessage, unix_ms};
use serde_json::{Value, json};

use super::{
    after, before, finish, mapped, message_ids, no_recipients, now, on_both, queued, store_event,
    unmapped,
};

#[test]
fn a_stored_event_gives_back_what_a_remap_needs_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 60);
        store_event(&mut *store, &unmapped("e-1", t0));

        let stored = store.stored_event("e-1").unwrap().expect("the event");

        assert_eq!(stored.source, "src");
        assert_eq!(stored.headers, r#"{"x-request-id":"r-1"}"#);
        assert_eq!(stored.payload, br#"{"id":"e-1","n":1}"#);
        assert_eq!(stored.received_at, unix_ms(t0));
        assert!(store.stored_event("nope").unwrap().is_none());
    });
}

fn remapped(rule: &str, messages: Vec<NewMessage>) -> EventOutcome {
    EventOutcome::Mapped {
        rule: rule.into(),
        messages,
    }
}

#[test]
fn a_remap_is_refused_while_a_message_is_queued_in_flight_or_delivered_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 60);
        // Claimed in this order: e-flight's, then e-done's (delivered); e-queued's stays.
        store_event(
            &mut *store,
            &mapped("e-flight", t0, vec![queued("a"), no_recipients("x")]),
        );
        store_event(
            &mut *store,
            &mapped("e-done", after(t0, 1), vec![queued("b")]),
        );
        store_event(
            &mut *store,
            &mapped("e-queued", after(t0, 2), vec![queued("c")]),
        );
        store.claim_next(now(), false, &mut as_is).unwrap().unwrap();
        let done = store.claim_next(now(), false, &mut as_is).unwrap().unwrap();
        finish(
            &*store,
            done.id,
            AttemptOutcome::Delivered,
            MessageState::Delivered,
        );
        let before_remap: Vec<Value> = ["e-flight", "e-done", "e-queued"]
            .map(|id| store.event_detail(id).unwrap().unwrap())
            .into();

        for id in ["e-flight", "e-done", "e-queued"] {
            let applied = store
                .apply_remap(id, &remapped("card-v2", vec![queued("new")]), now())
                .unwrap();
            assert!(!applied, "{id} would be sent twice");
        }

        let after_remap: Vec<Value> = ["e-flight", "e-done", "e-queued"]
            .map(|id| store.event_detail(id).unwrap().unwrap())
            .into();
        assert_eq!(after_remap, before_remap, "nothing changed");
    });
}

#[test]
fn a_remap_replaces_failed_and_dead_messages_with_new_ones_numbered_after_them_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 60);
        store_event(
            &mut *store,
            &mapped("e", t0, vec![queued("a"), no_recipients("b")]),
        );
        let dead = store.claim_next(now(), false, &mut as_is).unwrap().unwrap();
        finish(
            &*store,
            dead.id,
            AttemptOutcome::Refused,
            MessageState::Dead,
        );
        let unchanged = store.event_detail("e").unwrap().unwrap();
        let failure = EventOutcome::Failed {
            rule: None,
            reason: "still broken".into(),
        };
        assert!(
            !store.apply_remap("e", &failure, now()).unwrap(),
            "a failed re-map keeps the dead card"
        );
        assert_eq!(store.event_detail("e").unwrap().unwrap(), unchanged);
        let at = after(now(), 5);

        let applied = store
            .apply_remap(
                "e",
                &remapped("card-v2", vec![queued("c"), queued("d")]),
                at,
            )
            .unwrap();

        assert!(applied);
        let e = store.event_detail("e").unwrap().unwrap();
        assert_eq!(
            (&e["state"], &e["rule"], &e["error"]),
            (&json!("mapped"), &json!("card-v2"), &Value::Null)
        );
        let messages = e["messages"].as_array().unwrap();
        let seqs: Vec<&Value> = messages.iter().map(|m| &m["seq"]).collect();
        assert_eq!(seqs, [&json!(2), &json!(3)], "numbered after the old ones");
        for m in messages {
            assert_eq!(m["state"], "queued");
            assert_eq!(m["created_at"], unix_ms(at));
            assert_eq!(m["next_attempt_at"], unix_ms(at));
            assert_eq!(m["attempts"], json!([]));
        }
        let titles: Vec<&Value> = messages
            .iter()
            .map(|m| &m["body"]["composite"]["head"]["title"])
            .collect();
        assert_eq!(titles, [&json!("c"), &json!("d")]);
        assert_eq!(
            store.list_messages(None, 10).unwrap().len(),
            2,
            "the old ones are gone"
        );
        let next = store.claim_next(at, false, &mut as_is).unwrap().unwrap();
        assert_eq!(next.event_id, "e");
    });
}

#[test]
fn a_remap_of_an_event_whose_mapping_failed_maps_it_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        store_event(&mut *store, &unmapped("e", before(now(), 60)));

        let applied = store
            .apply_remap("e", &remapped("card", vec![queued("a")]), now())
            .unwrap();

        assert!(applied);
        let e = store.event_detail("e").unwrap().unwrap();
        assert_eq!((&e["state"], &e["error"]), (&json!("mapped"), &Value::Null));
        assert_eq!(e["messages"][0]["seq"], 0);
        assert_eq!(
            store
                .list_events(Some(EventState::Failed), 10)
                .unwrap()
                .len(),
            0
        );
    });
}

#[test]
fn a_message_id_is_never_given_to_another_message_once_its_own_is_gone_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        store_event(
            &mut *store,
            &mapped("e", before(now(), 60), vec![no_recipients("a")]),
        );
        let old = message_ids(&*store);

        let remap = remapped("card-v2", vec![queued("b")]);
        assert!(store.apply_remap("e", &remap, now()).unwrap());

        let new = message_ids(&*store);
        assert!(
            new.iter().all(|id| !old.contains(id)),
            "message id {old:?} was given again to the re-mapped message {new:?}: an admin's \
             link, a replay or a log line naming it now means another message"
        );
    });
}
