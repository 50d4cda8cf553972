//! Readiness and gauges, and the schema: a store migrates once, however many processes open it
//! at once, and one written by a newer build is refused.

use crate::store_contract::as_is;
use std::sync::Barrier;

use fxhook::store::{QueueStats, from_unix_ms, unix_ms};

use super::{after, before, mapped, now, on_both, queued, store_event};

#[test]
fn the_monitor_pings_counts_the_queue_and_measures_the_store_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        assert_eq!(store.queue_stats().unwrap(), QueueStats::default());
        let t0 = before(now(), 600);
        store_event(
            &mut *store,
            &mapped("e-1", after(t0, 5), vec![queued("a"), queued("b")]),
        );
        store_event(&mut *store, &mapped("e-2", t0, vec![queued("c")]));
        store
            .claim_next(now(), false, &mut as_is)
            .unwrap()
            .expect("e-2's message");

        store.ping().unwrap();
        store.heartbeat(now()).unwrap();
        let stats = store.queue_stats().unwrap();

        assert_eq!(
            stats,
            QueueStats {
                queued: 2,
                in_flight: 1,
                oldest_queued: Some(from_unix_ms(unix_ms(after(t0, 5)))),
            }
        );
        assert!(store.size_bytes().unwrap() > 0);
        assert_eq!(store.integrity_check().unwrap(), None);
    });
}

#[test]
fn a_store_is_migrated_once_however_many_processes_open_it_at_once_on_both_stores() {
    on_both(|fresh| {
        let barrier = Barrier::new(4);

        let opened: Vec<Result<(), String>> = std::thread::scope(|scope| {
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        fresh.try_open().map(|_| ()).map_err(|e| format!("{e:#}"))
                    })
                })
                .collect();
            openers.into_iter().map(|o| o.join().unwrap()).collect()
        });

        assert!(opened.iter().all(Result::is_ok), "{opened:?}");
        let mut store = fresh.open();
        store_event(&mut *store, &mapped("e", now(), vec![]));
        drop(store);
        assert_eq!(
            fresh.open().list_events(None, 10).unwrap().len(),
            1,
            "reopening keeps it"
        );
    });
}

#[test]
fn a_store_stamped_with_a_newer_schema_version_is_refused_on_both_stores() {
    on_both(|fresh| {
        drop(fresh.open());
        fresh.stamp_schema_version(fresh.schema_version() + 1);

        let refused = fresh.try_open().err().expect("refused");

        let why = format!("{refused:#}");
        let newer = fresh.schema_version() + 1;
        assert!(
            why.contains(&format!("schema version {newer}, newer than this build's")),
            "{why}"
        );
        assert!(why.contains("upgrade fxhook"), "{why}");
    });
}
