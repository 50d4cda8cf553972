//! How payloads are kept (issue 20): compressed, and read back whole by every reader; a row as
//! the previous schema wrote it (uncompressed) still reads, before and after the migration;
//! `fxhook store copy` keeps them; dropping one after its retention still reads as gone; a
//! damaged one is an error naming its event, never a panic.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fxhook::config::StoreSettings;
use fxhook::store::{AttemptOutcome, MessageState, NewEvent, NewMessage, postgres, sqlite};
use serde_json::Value;

use super::{Backend, as_is, before, finish, mapped, now, on_both, queued, store_event};
use crate::pg::TestDb;

/// bench/run's 7.5 KB GitHub push.
const PUSH: &[u8] = include_bytes!("../../fixtures/github/push.4.json");

fn push(id: &str, at: SystemTime, messages: Vec<NewMessage>) -> NewEvent {
    NewEvent {
        payload: Bytes::from_static(PUSH),
        ..mapped(id, at, messages)
    }
}

fn push_json() -> Value {
    serde_json::from_slice(PUSH).unwrap()
}

/// `bytes` as a blob literal of `backend`'s SQL.
fn blob(backend: Backend, bytes: &[u8]) -> String {
    match backend {
        Backend::Sqlite => format!("X'{}'", hex::encode(bytes)),
        Backend::Postgres => format!("'\\x{}'::BYTEA", hex::encode(bytes)),
    }
}

/// The row the previous schema wrote for event `id`: no codec column, the payload as received.
fn uncompressed_row(backend: Backend, id: &str) -> String {
    format!(
        "INSERT INTO events (id, source, received_at, headers, payload, state)
         VALUES ('{id}', 'src', 1, '{{}}', {}, 'mapped')",
        blob(backend, PUSH)
    )
}

#[test]
fn a_payload_is_stored_compressed_and_every_reader_gets_it_back_whole_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();

        store_event(&mut *store, &push("e-1", now(), vec![queued("a")]));

        let stored = fresh.count("SELECT octet_length(payload) FROM events WHERE id = 'e-1'");
        assert!(
            stored * 3 < PUSH.len() as i64,
            "{stored} bytes stored for {}",
            PUSH.len()
        );
        assert_eq!(
            fresh.count("SELECT COUNT(*) FROM events WHERE payload_codec = 'zstd'"),
            1
        );
        let remap = store.stored_event("e-1").unwrap().unwrap();
        assert_eq!(remap.payload, PUSH, "re-map and the console's previews");
        let detail = store.event_detail("e-1").unwrap().unwrap();
        assert_eq!(detail["payload"], push_json(), "the admin API's event view");
    });
}

#[test]
fn a_row_written_uncompressed_by_the_previous_schema_still_reads_on_both_stores() {
    on_both(|fresh| {
        let store = fresh.open();

        fresh.execute(&uncompressed_row(fresh.backend, "old"));

        assert_eq!(store.stored_event("old").unwrap().unwrap().payload, PUSH);
        let detail = store.event_detail("old").unwrap().unwrap();
        assert_eq!(detail["payload"], push_json());
    });
}

#[test]
fn a_store_of_the_previous_schema_migrates_and_its_uncompressed_payloads_still_read_on_both_stores()
{
    on_both(|fresh| {
        let previous = fresh.schema_version() - 1;
        let (migrations, stamp): (Vec<&str>, String) = match fresh.backend {
            Backend::Sqlite => (
                sqlite::MIGRATIONS[..previous as usize].to_vec(),
                format!("PRAGMA user_version = {previous}"),
            ),
            Backend::Postgres => (
                postgres::schema::MIGRATIONS[..previous as usize].to_vec(),
                format!(
                    "CREATE TABLE fxhook_schema (version INTEGER NOT NULL);
                     INSERT INTO fxhook_schema (version) VALUES ({previous})"
                ),
            ),
        };
        fresh.execute(&migrations.join(";\n"));
        fresh.execute(&stamp);
        fresh.execute(&uncompressed_row(fresh.backend, "old"));

        let mut store = fresh.open();
        store_event(&mut *store, &push("new", now(), vec![]));

        for id in ["old", "new"] {
            assert_eq!(
                store.stored_event(id).unwrap().unwrap().payload,
                PUSH,
                "{id}"
            );
        }
        assert_eq!(
            fresh.count("SELECT COUNT(*) FROM events WHERE payload_codec = 'identity'"),
            1,
            "the old row is left as it was"
        );
    });
}

#[test]
fn a_dropped_compressed_payload_reads_as_gone_and_its_row_stays_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        let day = Duration::from_secs(24 * 3600);
        store_event(
            &mut *store,
            &push("e-1", before(now(), 2 * 24 * 3600), vec![queued("a")]),
        );
        let claimed = store.claim_next(now(), false, &mut as_is).unwrap().unwrap();
        finish(
            &*store,
            claimed.id,
            AttemptOutcome::Delivered,
            MessageState::Delivered,
        );

        assert_eq!(store.drop_payloads(now(), day).unwrap(), 1);

        assert!(
            store
                .stored_event("e-1")
                .unwrap()
                .unwrap()
                .payload
                .is_empty()
        );
        let detail = store.event_detail("e-1").unwrap().unwrap();
        assert_eq!(detail["payload"], Value::Null);
        assert_eq!(detail["messages"][0]["state"], "delivered");
        assert_eq!(
            fresh.count(
                "SELECT COUNT(*) FROM events WHERE payload_codec = 'identity' AND octet_length(payload) = 0"
            ),
            1
        );
        assert_eq!(store.drop_payloads(now(), day).unwrap(), 0, "once");
    });
}

#[test]
fn a_damaged_compressed_payload_is_an_error_naming_its_event_on_both_stores() {
    on_both(|fresh| {
        let mut store = fresh.open();
        store_event(&mut *store, &push("e-1", now(), vec![]));
        // A zstd frame's magic number, then nothing whole.
        let damaged = blob(fresh.backend, &[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x01]);
        fresh.execute(&format!(
            "UPDATE events SET payload = {damaged} WHERE id = 'e-1'"
        ));

        for error in [
            store.stored_event("e-1").map(|_| ()).unwrap_err(),
            store.event_detail("e-1").map(|_| ()).unwrap_err(),
        ] {
            let error = format!("{error:#}");
            assert!(error.contains("event e-1"), "{error}");
            assert!(error.contains("not a zstd frame"), "{error}");
        }
    });
}

#[test]
fn a_copy_to_postgres_keeps_compressed_and_uncompressed_payloads_as_they_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut from = sqlite::Sqlite::open(&dir.path().join("fxhook.db")).unwrap();
    store_event(&mut from, &push("new", now(), vec![queued("a")]));
    from.conn()
        .unwrap()
        .execute_batch(&uncompressed_row(Backend::Sqlite, "old"))
        .unwrap();
    let db = TestDb::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = secrecy::SecretString::from(db.url.clone());
    let to = rt
        .block_on(postgres::open_unlocked(&url, &StoreSettings::default()))
        .unwrap();

    fxhook::store::copy::sqlite_to_postgres(&from, &to).unwrap();

    for id in ["new", "old"] {
        let copied = fxhook::store::Inspect::stored_event(&to, id)
            .unwrap()
            .unwrap();
        assert_eq!(copied.payload, PUSH, "{id}");
    }
    assert_eq!(
        db.query_strings("SELECT payload_codec FROM events ORDER BY id"),
        ["zstd", "identity"]
    );
}
