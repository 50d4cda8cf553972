//! The store's contract: what the gateway relies on from `Ingest`, `Queue`, `Inspect`,
//! `Monitor` and `VendorLedger`, each behaviour one test body run against both backends — a
//! fresh SQLite file and a fresh Postgres database — through the traits alone (raw SQL only to
//! stamp a schema version and to look for orphaned rows). A test that fails names the backend
//! it failed on.
//!
//! Layout: this file holds the harness ([`Fresh`], [`on_both`]) and the fixtures; `ingest`
//! (commit, dedup, concurrency), `queue` (claims and attempts), `prune`, `inspect` (the admin
//! queries), `remap`, `ledger` (the vendor ledger), `monitor` (readiness, gauges, migrations),
//! `payload` (compressed payloads, old rows, copy) and `same_json` (both backends' admin JSON,
//! side by side).

mod ingest;
mod inspect;
mod ledger;
mod monitor;
mod payload;
mod prune;
mod queue;
mod remap;
mod same_json;
mod storm;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use fxhook::config::StoreSettings;
use fxhook::store::sqlite::Sqlite;
use fxhook::store::vendor::VendorLedger;
use fxhook::store::{
    AttemptOutcome, AttemptRecord, Committed, EventOutcome, Ingest, Inspect, MessageState, Monitor,
    NewEvent, NewMessage, Queue, Transition, from_unix_ms, postgres, unix_ms,
};
use serde_json::{Value, json};

use crate::pg::TestDb;

/// Every trait of the store at once: what a backend is.
pub trait Store: Ingest + Queue + Inspect + Monitor + VendorLedger {}
impl<T: Ingest + Queue + Inspect + Monitor + VendorLedger> Store for T {}

/// One of the two backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded file.
    Sqlite,
    /// A Postgres database.
    Postgres,
}

/// Where a fresh store lives; removed with it.
enum Place {
    File(#[allow(dead_code)] tempfile::TempDir, PathBuf),
    Database(TestDb),
}

/// A new, empty store of one backend. Each [`Fresh::open`] is another handle on it, as another
/// process (or another user in one process) opens it.
pub struct Fresh {
    /// Which backend.
    pub backend: Backend,
    place: Place,
}

impl Fresh {
    /// A new store of `backend` (nothing opened yet).
    pub fn new(backend: Backend) -> Fresh {
        let place = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("store/fxhook.db");
                Place::File(dir, path)
            }
            Backend::Postgres => Place::Database(TestDb::new()),
        };
        Fresh { backend, place }
    }

    /// Opens a handle, migrating the store when needed.
    pub fn try_open(&self) -> anyhow::Result<Box<dyn Store>> {
        Ok(match &self.place {
            Place::File(_, path) => Box::new(Sqlite::open(path)?),
            Place::Database(db) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let url = secrecy::SecretString::from(db.url.clone());
                Box::new(rt.block_on(postgres::open_unlocked(&url, &StoreSettings::default()))?)
            }
        })
    }

    /// Opens a handle.
    pub fn open(&self) -> Box<dyn Store> {
        self.try_open()
            .unwrap_or_else(|e| panic!("the {:?} store opens: {e:#}", self.backend))
    }

    /// The schema version this build writes.
    pub fn schema_version(&self) -> i64 {
        match self.backend {
            Backend::Sqlite => fxhook::store::sqlite::schema_version(),
            Backend::Postgres => i64::from(postgres::schema::schema_version()),
        }
    }

    /// The single integer `sql` (the same text on both backends) answers.
    pub fn count(&self, sql: &str) -> i64 {
        match &self.place {
            Place::File(_, path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap(),
            Place::Database(db) => db.query_i64(sql),
        }
    }

    /// Runs `sql` (one or more statements) on the store as it is, as an older build or a
    /// damaged disk would have left it.
    pub fn execute(&self, sql: &str) {
        match &self.place {
            Place::File(_, path) => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Place::Database(db) => db.execute(sql),
        }
    }

    /// Stamps the store with schema `version`, as a newer build would leave it.
    pub fn stamp_schema_version(&self, version: i64) {
        match &self.place {
            Place::File(_, path) => rusqlite::Connection::open(path)
                .unwrap()
                .pragma_update(None, "user_version", version)
                .unwrap(),
            Place::Database(db) => {
                db.execute(&format!("UPDATE fxhook_schema SET version = {version}"))
            }
        }
    }
}

/// Runs `contract` on a fresh SQLite store and on a fresh Postgres store; fails naming each
/// backend it broke on.
pub fn on_both(contract: impl Fn(&Fresh)) {
    let mut broken = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let fresh = Fresh::new(backend);
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| contract(&fresh))) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            broken.push(format!("on the {backend:?} store: {why}"));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}

/// The dedup window the tests commit with.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Now, to the millisecond (as the store keeps times).
pub fn now() -> SystemTime {
    from_unix_ms(unix_ms(SystemTime::now()))
}

/// `secs` seconds after `t`.
pub fn after(t: SystemTime, secs: u64) -> SystemTime {
    t + Duration::from_secs(secs)
}

/// `secs` seconds before `t`.
pub fn before(t: SystemTime, secs: u64) -> SystemTime {
    t - Duration::from_secs(secs)
}

/// A `/cgi/message/send` body for `to`.
pub fn card(to: &[&str], title: &str) -> String {
    json!({
        "toUser": to,
        "msgType": "composite",
        "composite": {
            "head": { "title": title },
            "link": { "title": "Open", "url": "https://example.com" },
        },
    })
    .to_string()
}

/// A message to employee 1000, queued for delivery.
/// A composer that sends every claimed message as it is (no merging).
pub fn as_is(_: &fxhook::store::Queued, _: &[fxhook::store::Queued]) -> fxhook::store::Composed {
    fxhook::store::Composed::default()
}

pub fn queued(title: &str) -> NewMessage {
    NewMessage {
        body: card(&["1000"], title),
        failed: None,
        storm: Default::default(),
    }
}

/// A message stored as failed because its groups were empty.
pub fn no_recipients(title: &str) -> NewMessage {
    NewMessage {
        body: card(&[], title),
        failed: Some("no recipients".into()),
        storm: Default::default(),
    }
}

/// An event of source `src` received at `at`, mapped by rule `card` into `messages`.
pub fn mapped(id: &str, at: SystemTime, messages: Vec<NewMessage>) -> NewEvent {
    NewEvent {
        id: id.into(),
        source: "src".into(),
        event_type: Some("push".into()),
        delivery_id: None,
        received_at: at,
        headers: r#"{"x-request-id":"r-1"}"#.into(),
        payload: format!(r#"{{"id":"{id}","n":1}}"#).into_bytes().into(),
        stored_payload: None,
        outcome: EventOutcome::Mapped {
            rule: "card".into(),
            messages,
        },
    }
}

/// An event whose mapping failed.
pub fn unmapped(id: &str, at: SystemTime) -> NewEvent {
    NewEvent {
        outcome: EventOutcome::Failed {
            rule: Some("card".into()),
            reason: "title rendered empty".into(),
        },
        ..mapped(id, at, vec![])
    }
}

/// `event` carrying delivery id `delivery`.
pub fn with_delivery(event: NewEvent, delivery: &str) -> NewEvent {
    NewEvent {
        delivery_id: Some(delivery.into()),
        ..event
    }
}

/// Commits one event alone and gives what the store made of it.
pub fn commit(store: &mut dyn Store, event: &NewEvent) -> Result<Committed, String> {
    store
        .commit(&[event], WINDOW)
        .expect("the batch commits")
        .remove(0)
}

/// Commits one event that must be stored.
pub fn store_event(store: &mut dyn Store, event: &NewEvent) {
    assert_eq!(
        commit(store, event),
        Ok(Committed::Accepted(event.id.clone()))
    );
}

/// A call that came to `outcome`.
pub fn record(outcome: AttemptOutcome) -> AttemptRecord {
    AttemptRecord {
        outcome,
        http_status: Some(200),
        error_code: Some(0),
        error_message: None,
        trace_id: Some("E-1".into()),
        third_trace_id: Some("fx-1".into()),
    }
}

/// Moves message `id` on to `state` after one counted attempt of `outcome`.
pub fn finish(store: &dyn Store, id: i64, outcome: AttemptOutcome, state: MessageState) {
    let to = Transition {
        state,
        next_attempt_at: None,
        last_error: (state != MessageState::Delivered).then(|| format!("{outcome}")),
        counts: true,
    };
    store
        .finish_attempt(id, now(), &[record(outcome)], &to)
        .unwrap();
}

/// Message `id` as the admin API shows it.
pub fn message(store: &dyn Store, id: i64) -> Value {
    store
        .message_detail(id)
        .unwrap()
        .unwrap_or_else(|| panic!("message {id} exists"))
}

/// The ids of every message, oldest first.
pub fn message_ids(store: &dyn Store) -> Vec<i64> {
    let mut ids: Vec<i64> = store
        .list_messages(None, 1000)
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}
