//! Retention: `store::prune` against a real store file, event by event (in-flight, failed and
//! mixed-state messages), and the worker pruning a store it starts on.

use std::time::{Duration, SystemTime};

use fxhook::store::sqlite::{self as store, queue::prune};
use fxhook::store::unix_ms;
use rusqlite::{Connection, params};

use crate::helpers::{Options, spawn_app};

/// `delivery.keep_delivered` and `delivery.keep_dead`, the defaults.
const KEEP_DELIVERED: Duration = Duration::from_secs(7 * 24 * 3600);
const KEEP_DEAD: Duration = Duration::from_secs(30 * 24 * 3600);

/// An event stored `age` before `now`, in `state`, with one message (and one attempt) per
/// message state.
struct Stored {
    id: &'static str,
    age: Duration,
    state: &'static str,
    messages: &'static [&'static str],
}

const fn stored(
    id: &'static str,
    days: u64,
    state: &'static str,
    messages: &'static [&'static str],
) -> Stored {
    Stored {
        id,
        age: Duration::from_secs(days * 24 * 3600),
        state,
        messages,
    }
}

fn insert(conn: &Connection, now: SystemTime, event: &Stored) {
    let received = unix_ms(now - event.age);
    conn.execute(
        "INSERT INTO events (id, source, received_at, headers, payload, state)
         VALUES (?1, 's', ?2, '{}', x'7b7d', ?3)",
        params![event.id, received, event.state],
    )
    .unwrap();
    for (seq, state) in event.messages.iter().enumerate() {
        let body = r#"{"toUser":["1000"],"msgType":"composite","composite":{"head":{"title":"t"},"link":{"title":"l","url":"https://x"}}}"#;
        let message: i64 = conn
            .query_row(
                "INSERT INTO messages (event_id, seq, body, state, next_attempt_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5) RETURNING id",
                params![event.id, seq as i64, body, state, received],
                |r| r.get(0),
            )
            .unwrap();
        conn.execute(
            "INSERT INTO attempts (message_id, started_at, finished_at, outcome) VALUES (?1, ?2, ?2, 'retry')",
            params![message, received],
        )
        .unwrap();
    }
}

fn event_ids(conn: &Connection) -> Vec<String> {
    let mut stmt = conn.prepare("SELECT id FROM events ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn pruning_keeps_every_event_with_work_left_or_within_its_retention_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let conn = store::open(&dir.path().join("fx.db")).unwrap();
    let now = SystemTime::now();
    // (event, kept?) with delivered events kept 7 days and dead or failed ones 30 days.
    let table = [
        (stored("delivered-6d", 6, "mapped", &["delivered"]), true),
        (stored("delivered-8d", 8, "mapped", &["delivered"]), false),
        (stored("queued-40d", 40, "mapped", &["queued"]), true),
        (stored("in-flight-40d", 40, "mapped", &["in-flight"]), true),
        (
            stored(
                "delivered+queued-40d",
                40,
                "mapped",
                &["delivered", "queued"],
            ),
            true,
        ),
        (
            stored(
                "delivered+in-flight-8d",
                8,
                "mapped",
                &["delivered", "in-flight"],
            ),
            true,
        ),
        (
            stored("dead+queued-40d", 40, "mapped", &["dead", "queued"]),
            true,
        ),
        (
            stored("delivered+dead-8d", 8, "mapped", &["delivered", "dead"]),
            true,
        ),
        (
            stored("delivered+dead-31d", 31, "mapped", &["delivered", "dead"]),
            false,
        ),
        (stored("dead-8d", 8, "mapped", &["dead"]), true),
        (stored("dead-31d", 31, "mapped", &["dead"]), false),
        (stored("no-recipients-8d", 8, "mapped", &["failed"]), true),
        (
            stored("no-recipients-31d", 31, "mapped", &["failed"]),
            false,
        ),
        (
            stored("delivered+failed-8d", 8, "mapped", &["delivered", "failed"]),
            true,
        ),
        (
            stored(
                "delivered+failed-31d",
                31,
                "mapped",
                &["delivered", "failed"],
            ),
            false,
        ),
        (stored("mapping-failed-8d", 8, "failed", &[]), true),
        (stored("mapping-failed-31d", 31, "failed", &[]), false),
    ];
    for (event, _) in &table {
        insert(&conn, now, event);
    }

    let pruned = prune(&conn, now, KEEP_DELIVERED, KEEP_DEAD).unwrap();

    let mut kept: Vec<String> = table
        .iter()
        .filter(|(_, kept)| *kept)
        .map(|(e, _)| e.id.to_string())
        .collect();
    kept.sort();
    assert_eq!(event_ids(&conn), kept);
    assert_eq!(pruned, table.len() - kept.len());
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM messages WHERE event_id NOT IN (SELECT id FROM events)"
        ),
        0,
        "messages go with their event"
    );
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM attempts WHERE message_id NOT IN (SELECT id FROM messages)"
        ),
        0,
        "attempts go with their message"
    );
}

#[test]
fn an_event_exactly_at_its_retention_is_kept_and_one_a_second_older_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let conn = store::open(&dir.path().join("fx.db")).unwrap();
    let now = SystemTime::now();
    let second = Duration::from_secs(1);
    for (id, age, messages) in [
        ("delivered-at-7d", KEEP_DELIVERED, &["delivered"]),
        ("delivered-past-7d", KEEP_DELIVERED + second, &["delivered"]),
        ("dead-at-30d", KEEP_DEAD, &["dead"]),
        ("dead-past-30d", KEEP_DEAD + second, &["dead"]),
    ] {
        let event = Stored {
            id,
            age,
            state: "mapped",
            messages,
        };
        insert(&conn, now, &event);
    }

    let pruned = prune(&conn, now, KEEP_DELIVERED, KEEP_DEAD).unwrap();

    assert_eq!(pruned, 2);
    assert_eq!(event_ids(&conn), ["dead-at-30d", "delivered-at-7d"]);
}

#[actix_rt::test]
async fn the_worker_prunes_the_store_it_starts_on_and_delivers_what_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store/fxhook.db");
    {
        let conn = store::open(&path).unwrap();
        let now = SystemTime::now();
        for event in [
            stored("delivered-8d", 8, "mapped", &["delivered"]),
            stored("delivered+dead-8d", 8, "mapped", &["delivered", "dead"]),
            stored("dead-31d", 31, "mapped", &["dead"]),
            stored(
                "delivered+queued-40d",
                40,
                "mapped",
                &["delivered", "queued"],
            ),
        ] {
            insert(&conn, now, &event);
        }
    }

    let app = spawn_app(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;

    app.wait_for_count("SELECT COUNT(*) FROM events", 2).await;
    let conn = app.db();
    assert_eq!(
        event_ids(&conn),
        ["delivered+dead-8d", "delivered+queued-40d"]
    );
    // The queued message it kept is delivered (dry run) once the prune is done.
    app.wait_for_count(
        "SELECT COUNT(*) FROM messages WHERE event_id = 'delivered+queued-40d' AND state = 'delivered'",
        2,
    )
    .await;
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 2);
}
