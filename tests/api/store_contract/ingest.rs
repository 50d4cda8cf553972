//! The ingest writer's contract: a batch commits event by event, dedup holds within the window
//! (and across two processes racing on one delivery id), and is forgotten after it.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use fxhook::store::{Committed, NewEvent};

use super::{
    WINDOW, after, before, commit, mapped, now, on_both, queued, store_event, with_delivery,
};

#[test]
fn a_delivery_id_seen_within_the_window_is_a_duplicate_of_the_first_event_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 3600);
        let first = with_delivery(mapped("e-1", t0, vec![queued("one")]), "d-1");
        store_event(&mut *store, &first);

        let again = with_delivery(mapped("e-2", after(t0, 600), vec![queued("two")]), "d-1");
        let last_moment = with_delivery(
            mapped("e-3", t0 + WINDOW - Duration::from_millis(1), vec![]),
            "d-1",
        );
        let other_source = NewEvent {
            source: "other".into(),
            ..with_delivery(mapped("e-4", after(t0, 600), vec![]), "d-1")
        };

        assert_eq!(
            commit(&mut *store, &again),
            Ok(Committed::Duplicate("e-1".into()))
        );
        assert_eq!(
            commit(&mut *store, &last_moment),
            Ok(Committed::Duplicate("e-1".into()))
        );
        assert_eq!(
            commit(&mut *store, &other_source),
            Ok(Committed::Accepted("e-4".into())),
            "delivery ids are per source"
        );
        assert!(
            store.event_detail("e-2").unwrap().is_none(),
            "nothing stored"
        );
        assert_eq!(store.list_messages(None, 10).unwrap().len(), 1);
    });
}

#[test]
fn a_delivery_id_repeated_within_one_batch_is_stored_once_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = now();
        let a = with_delivery(mapped("e-a", t0, vec![queued("a")]), "d-9");
        let b = with_delivery(mapped("e-b", t0, vec![queued("b")]), "d-9");

        let results = store.commit(&[&a, &b], WINDOW).unwrap();

        assert_eq!(
            results,
            [
                Ok(Committed::Accepted("e-a".into())),
                Ok(Committed::Duplicate("e-a".into()))
            ]
        );
        assert_eq!(store.list_events(None, 10).unwrap().len(), 1);
    });
}

#[test]
fn a_delivery_id_seen_before_the_window_is_accepted_again_and_restarts_it_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 3 * 24 * 3600);
        store_event(
            &mut *store,
            &with_delivery(mapped("e-1", t0, vec![]), "d-1"),
        );
        let at_window = with_delivery(mapped("e-2", t0 + WINDOW, vec![queued("x")]), "d-1");
        let soon_after = with_delivery(mapped("e-3", after(t0 + WINDOW, 60), vec![]), "d-1");

        assert_eq!(
            commit(&mut *store, &at_window),
            Ok(Committed::Accepted("e-2".into()))
        );
        assert_eq!(
            commit(&mut *store, &soon_after),
            Ok(Committed::Duplicate("e-2".into())),
            "the window counts from the event accepted again"
        );
        assert_eq!(store.list_events(None, 10).unwrap().len(), 2);
    });
}

#[test]
fn an_old_delivery_id_redelivered_twice_in_one_batch_is_accepted_once_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 3 * 24 * 3600);
        store_event(
            &mut *store,
            &with_delivery(mapped("e-1", t0, vec![]), "d-1"),
        );
        let a = with_delivery(mapped("e-a", now(), vec![queued("a")]), "d-1");
        let b = with_delivery(mapped("e-b", now(), vec![queued("b")]), "d-1");
        let other = with_delivery(mapped("e-c", now(), vec![queued("c")]), "d-2");

        let results = store.commit(&[&a, &other, &b], WINDOW).unwrap();

        assert_eq!(
            results,
            [
                Ok(Committed::Accepted("e-a".into())),
                Ok(Committed::Accepted("e-c".into())),
                Ok(Committed::Duplicate("e-a".into()))
            ]
        );
        assert_eq!(store.list_events(None, 10).unwrap().len(), 3);
    });
}

#[test]
fn a_batch_of_many_events_is_stored_whole_in_order_with_its_messages_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = now();
        let events: Vec<NewEvent> = (0..40)
            .map(|i| {
                with_delivery(
                    mapped(&format!("e-{i:02}"), t0, vec![queued("x"), queued("y")]),
                    &format!("d-{i}"),
                )
            })
            .collect();
        let batch: Vec<&NewEvent> = events.iter().collect();

        let results = store.commit(&batch, WINDOW).unwrap();

        let expected: Vec<Result<Committed, String>> = (0..40)
            .map(|i| Ok(Committed::Accepted(format!("e-{i:02}"))))
            .collect();
        assert_eq!(results, expected);
        assert_eq!(store.list_events(None, 100).unwrap().len(), 40);
        // Newest first: ids follow the batch, each event's messages together and in order
        // (the claim sends messages of one time in id order).
        let written: Vec<(String, i64)> = store
            .list_messages(None, 100)
            .unwrap()
            .iter()
            .rev()
            .map(|m| {
                let event = m["event_id"].as_str().unwrap_or_default().to_string();
                (event, m["seq"].as_i64().unwrap_or(-1))
            })
            .collect();
        let expected: Vec<(String, i64)> = (0..40)
            .flat_map(|i| [0, 1].map(|seq| (format!("e-{i:02}"), seq)))
            .collect();
        assert_eq!(written, expected);
    });
}

#[test]
fn forgotten_delivery_ids_are_new_again_and_the_others_are_kept_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 3600);
        store_event(
            &mut *store,
            &with_delivery(mapped("e-1", t0, vec![]), "old"),
        );
        store_event(
            &mut *store,
            &with_delivery(mapped("e-2", after(t0, 1800), vec![]), "recent"),
        );

        let forgotten = store.forget_delivery_ids(after(t0, 60)).unwrap();

        assert_eq!(forgotten, 1);
        let t1 = after(t0, 1900);
        assert_eq!(
            commit(
                &mut *store,
                &with_delivery(mapped("e-3", t1, vec![]), "old")
            ),
            Ok(Committed::Accepted("e-3".into()))
        );
        assert_eq!(
            commit(
                &mut *store,
                &with_delivery(mapped("e-4", t1, vec![]), "recent")
            ),
            Ok(Committed::Duplicate("e-2".into()))
        );
    });
}

#[test]
fn an_event_that_cannot_be_stored_is_refused_alone_and_the_rest_of_its_batch_is_stored_on_both_stores()
 {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = now();
        store_event(&mut *store, &mapped("e-taken", t0, vec![]));
        let before_it = with_delivery(mapped("e-1", t0, vec![queued("one")]), "d-1");
        // Its id is taken: the insert fails after its delivery id was claimed.
        let refused = with_delivery(mapped("e-taken", t0, vec![queued("lost")]), "d-2");
        let after_it = with_delivery(mapped("e-3", t0, vec![queued("three")]), "d-3");

        let results = store
            .commit(&[&before_it, &refused, &after_it], WINDOW)
            .unwrap();

        assert_eq!(results[0], Ok(Committed::Accepted("e-1".into())));
        assert!(results[1].is_err(), "{:?}", results[1]);
        assert_eq!(results[2], Ok(Committed::Accepted("e-3".into())));
        let titles: Vec<String> = store
            .list_messages(None, 10)
            .unwrap()
            .iter()
            .map(|m| m["body"]["composite"]["head"]["title"].to_string())
            .collect();
        assert_eq!(
            titles,
            [r#""three""#, r#""one""#],
            "nothing of the refused event"
        );
        assert_eq!(
            commit(
                &mut *store,
                &with_delivery(mapped("e-4", t0, vec![]), "d-2")
            ),
            Ok(Committed::Accepted("e-4".into())),
            "the refused event's delivery id was not kept"
        );
    });
}

#[test]
fn two_processes_committing_one_delivery_id_at_once_accept_it_exactly_once_on_both_stores() {
    on_both(|fresh| {
        let rounds = 20;
        let barrier = Arc::new(Barrier::new(2));
        let t0 = now();
        let racers: Vec<_> = (0..2)
            .map(|p| {
                let mut store = fresh.open();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    (0..rounds)
                        .map(|round| {
                            let event = with_delivery(
                                mapped(&format!("e-{round}-{p}"), t0, vec![queued("x")]),
                                &format!("d-{round}"),
                            );
                            barrier.wait();
                            store.commit(&[&event], WINDOW).unwrap().remove(0).unwrap()
                        })
                        .collect::<Vec<Committed>>()
                })
            })
            .collect();
        let results: Vec<Vec<Committed>> = racers.into_iter().map(|r| r.join().unwrap()).collect();

        for (round, (a, b)) in results[0].iter().zip(&results[1]).enumerate() {
            let pair = [a, b];
            let accepted: Vec<&String> = pair
                .iter()
                .filter_map(|c| match c {
                    Committed::Accepted(id) | Committed::Suppressed(id) => Some(id),
                    Committed::Duplicate(_) => None,
                })
                .collect();
            assert_eq!(accepted.len(), 1, "round {round}: {pair:?}");
            for c in pair {
                if let Committed::Duplicate(first) = c {
                    assert_eq!(first, accepted[0], "round {round}: names the accepted one");
                }
            }
        }
        let store = fresh.open();
        assert_eq!(store.list_events(None, 1000).unwrap().len(), rounds);
        assert_eq!(store.list_messages(None, 1000).unwrap().len(), rounds);
    });
}
