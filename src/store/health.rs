//! Whether the store can take an event right now, for `/readyz`. Ready must mean "can
//! accept": an open file is not enough when the disk is full or the database is corrupt.
//!
//! Three signals feed it: the ingest writer's own commits (a failed group commit makes the store
//! unhealthy until a write succeeds again), a heartbeat write made through the same writer every
//! few seconds (so that a store with no traffic is still tested, and a store that recovered is
//! seen to), and errors reported by any other user of the store, after which an integrity check
//! runs once (a full check reads the whole file, so never on a timer).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The shared health of one store.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// The last write through the ingest connection (commit or heartbeat) failed, and why.
    write_failure: Mutex<Option<String>>,
    /// The integrity check found damage.
    corrupt: Mutex<Option<String>>,
    /// An error was reported and no integrity check has run since.
    check_wanted: AtomicBool,
}

fn lock(m: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StoreHealth {
    /// A write through the ingest connection succeeded.
    pub fn write_succeeded(&self) {
        lock(&self.write_failure).take();
    }

    /// A write through the ingest connection failed.
    pub fn write_failed(&self, error: &anyhow::Error) {
        *lock(&self.write_failure) = Some(format!("{error:#}"));
        self.report(error);
    }

    /// Any other store error asks for an integrity check; a database that says it is damaged
    /// is marked so at once (until a check finds it intact).
    pub fn report(&self, error: &anyhow::Error) {
        if says_damaged(error) {
            *lock(&self.corrupt) = Some(format!("{error:#}"));
        }
        self.check_wanted.store(true, Ordering::Relaxed);
    }

    /// The integrity check could not run: it is asked for again (the caller spaces checks).
    pub fn check_failed(&self) {
        self.check_wanted.store(true, Ordering::Relaxed);
    }

    /// True once after an error was reported: the caller runs the integrity check.
    pub fn take_check_request(&self) -> bool {
        self.check_wanted.swap(false, Ordering::Relaxed)
    }

    /// Records the integrity check's verdict (`None`: intact).
    pub fn checked(&self, damage: Option<String>) {
        *lock(&self.corrupt) = damage;
    }

    /// Why the store cannot take events now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if let Some(damage) = lock(&self.corrupt).clone() {
            return Some(format!("the store is damaged: {damage}"));
        }
        lock(&self.write_failure)
            .clone()
            .map(|e| format!("the store cannot be written: {e}"))
    }
}

/// True when an error is the database saying its pages are damaged (SQLite's CORRUPT or
/// NOTADB; Postgres's `XX001` data or `XX002` index corrupted).
fn says_damaged(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let sqlite = cause
            .downcast_ref::<rusqlite::Error>()
            .and_then(rusqlite::Error::sqlite_error_code)
            .is_some_and(|code| {
                matches!(
                    code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                )
            });
        let postgres = cause
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
            .is_some_and(|code| {
                *code == tokio_postgres::error::SqlState::DATA_CORRUPTED
                    || *code == tokio_postgres::error::SqlState::INDEX_CORRUPTED
            });
        sqlite || postgres
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_error(code: i32) -> anyhow::Error {
        anyhow::Error::new(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
        .context("listing events")
    }

    #[test]
    fn a_failed_write_makes_the_store_unready_until_a_write_succeeds() {
        let health = StoreHealth::default();
        assert_eq!(health.problem(), None);
        health.write_failed(&sqlite_error(rusqlite::ffi::SQLITE_FULL));
        assert!(health.problem().unwrap().contains("cannot be written"));
        assert!(health.take_check_request(), "an error asks for a check");
        assert!(!health.take_check_request(), "once");
        health.write_succeeded();
        assert_eq!(health.problem(), None);
    }

    #[test]
    fn a_corrupt_database_is_marked_at_once_and_stays_so_until_a_check_clears_it() {
        let health = StoreHealth::default();
        health.report(&sqlite_error(rusqlite::ffi::SQLITE_CORRUPT));
        assert!(health.problem().unwrap().contains("damaged"));
        health.write_succeeded();
        assert!(
            health.problem().is_some(),
            "a write elsewhere does not heal it"
        );
        assert!(health.take_check_request(), "and a check is asked for");
        health.checked(None);
        assert_eq!(health.problem(), None);
    }

    #[test]
    fn a_check_that_cannot_run_marks_nothing_and_is_asked_for_again() {
        let health = StoreHealth::default();
        health.report(&sqlite_error(rusqlite::ffi::SQLITE_BUSY));
        assert!(health.take_check_request());
        health.check_failed();
        assert_eq!(health.problem(), None, "no damage is known");
        assert!(health.take_check_request(), "the check runs again later");
    }
}
