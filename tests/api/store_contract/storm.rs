//! The storm contract (issue 19) on both stores: a claim shows the composer the queued
//! companions of its coalesce key within the window and of its alert, stores the body it
//! writes and marks the companions it takes `coalesced` into it, in one transaction; a digest
//! is retried as written; high priority is claimed first; a repeat within its period is held
//! back and the next card learns how many were.

use std::time::Duration;

use fxhook::store::{Committed, Composed, MessageState, MessageStorm, NewMessage, Queued};

use super::{Store, after, before, commit, mapped, now, on_both, queued, store_event};

fn storm(message: NewMessage, storm: MessageStorm) -> NewMessage {
    NewMessage { storm, ..message }
}

fn coalescing(window: u64) -> MessageStorm {
    MessageStorm {
        coalesce: Some(("src\u{1f}card\u{1f}r".into(), Duration::from_secs(window))),
        merge: Some(r#"{"max_rows":20}"#.into()),
        ..MessageStorm::default()
    }
}

/// Claims with a composer that takes every companion and names them in the body.
fn claim_taking_all(store: &dyn Store, at: std::time::SystemTime) -> (i64, String, Vec<Queued>) {
    let mut seen = Vec::new();
    let claimed = store
        .claim_next(at, true, &mut |carrier: &Queued, with: &[Queued]| {
            seen = with.to_vec();
            Composed {
                body: Some(format!("digest of {} and {}", carrier.id, with.len())),
                merged: with.iter().map(|q| q.id).collect(),
            }
        })
        .unwrap()
        .expect("a due message");
    (claimed.id, claimed.body, seen)
}

fn state(store: &dyn Store, id: i64) -> (String, Option<i64>) {
    let m = store.message_detail(id).unwrap().unwrap();
    (
        m["state"].as_str().unwrap().to_string(),
        m["digest_id"].as_i64(),
    )
}

#[test]
fn a_claim_takes_its_queued_companions_within_the_window_into_one_digest_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 600);
        for (i, secs) in [0u64, 10, 20, 200].iter().enumerate() {
            let event = mapped(
                &format!("e{i}"),
                after(t0, *secs),
                vec![storm(queued(&format!("t{i}")), coalescing(60))],
            );
            store_event(&mut *store, &event);
        }
        // Another rule's card never joins.
        store_event(
            &mut *store,
            &mapped("other", after(t0, 5), vec![queued("other")]),
        );
        let (carrier, body, seen) = claim_taking_all(&*store, now());
        assert_eq!(
            seen.len(),
            2,
            "{:?}: the two within 60 s of the oldest",
            fresh.backend
        );
        assert_eq!(body, format!("digest of {carrier} and 2"));
        for q in &seen {
            assert_eq!(state(&*store, q.id), ("coalesced".into(), Some(carrier)));
            assert_eq!(q.rule, "card");
            assert_eq!(q.source, "src");
        }
        let shown = store.message_detail(carrier).unwrap().unwrap();
        assert_eq!(shown["state"], "in-flight");
        assert_eq!(shown["merged"].as_array().unwrap().len(), 2);
        // Neither a merged card's event nor the digest's own may be re-mapped: a card would go
        // out twice, or the merged ones would be lost.
        let remapped = fxhook::store::EventOutcome::Mapped {
            rule: "card".into(),
            messages: vec![queued("again")],
        };
        for event in ["e0", "e1", "e2"] {
            assert!(
                !store.apply_remap(event, &remapped, now()).unwrap(),
                "{:?}: {event}",
                fresh.backend
            );
        }
        // Put back (a failed send): it is retried as written, taking nobody else along.
        store.release_claim(carrier).unwrap();
        let again = store
            .claim_next(now(), true, &mut |_: &Queued, _: &[Queued]| {
                panic!("a digest is not composed again")
            })
            .unwrap()
            .unwrap();
        assert_eq!((again.id, again.body), (carrier, body));
    });
}

#[test]
fn a_firing_card_is_shown_its_queued_resolution_whatever_the_window_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 600);
        let alert = |state: &str| MessageStorm {
            fold: Some(("src\u{1f}r\u{1f}Disk".into(), state.into())),
            merge: Some("{}".into()),
            ..MessageStorm::default()
        };
        store_event(
            &mut *store,
            &mapped("fire", t0, vec![storm(queued("fire"), alert("firing"))]),
        );
        store_event(
            &mut *store,
            &mapped(
                "ok",
                after(t0, 500),
                vec![storm(queued("ok"), alert("resolved"))],
            ),
        );
        let (_, _, seen) = claim_taking_all(&*store, now());
        assert_eq!(seen.len(), 1, "{:?}", fresh.backend);
        assert_eq!(seen[0].fold_state.as_deref(), Some("resolved"));
    });
}

#[test]
fn high_priority_is_claimed_before_older_normal_messages_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let t0 = before(now(), 60);
        store_event(&mut *store, &mapped("old", t0, vec![queued("old")]));
        let high = MessageStorm {
            high_priority: true,
            ..MessageStorm::default()
        };
        store_event(
            &mut *store,
            &mapped("urgent", after(t0, 30), vec![storm(queued("urgent"), high)]),
        );
        let first = store
            .claim_next(now(), true, &mut super::as_is)
            .unwrap()
            .unwrap();
        assert!(first.body.contains("urgent"), "{:?}", fresh.backend);
    });
}

#[test]
fn a_repeat_within_its_period_is_held_back_and_counted_for_the_next_card_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let repeat = || MessageStorm {
            repeat: Some(("Disk".into(), Duration::from_secs(60))),
            ..MessageStorm::default()
        };
        let t0 = before(now(), 600);
        let at = |i: u64| after(t0, i);
        let mut results = Vec::new();
        for (i, secs) in [0u64, 10, 20, 30, 100].iter().enumerate() {
            let event = mapped(
                &format!("r{i}"),
                at(*secs),
                vec![storm(queued("Disk"), repeat())],
            );
            results.push(commit(&mut *store, &event).unwrap());
        }
        let held: Vec<bool> = results
            .iter()
            .map(|r| matches!(r, Committed::Suppressed(_)))
            .collect();
        assert_eq!(
            held,
            [false, true, true, true, false],
            "{:?}",
            fresh.backend
        );
        assert_eq!(
            store.count_messages(MessageState::Suppressed).unwrap(),
            3,
            "{:?}",
            fresh.backend
        );
        // The card that opens the next window learns of the three held back.
        let mut befores = Vec::new();
        while let Some(c) = store
            .claim_next(now(), true, &mut |q: &Queued, _: &[Queued]| {
                befores.push(q.suppressed_before);
                Composed::default()
            })
            .unwrap()
        {
            let _ = c;
        }
        assert_eq!(befores, [0, 3], "{:?}", fresh.backend);
    });
}
