//! The embedded SQLite backend: one file, WAL, `synchronous=FULL`; a lock file so that one
//! process serves it; forward migrations. [`Sqlite`] is one connection, and implements every
//! trait of the store's interface; the gateway opens one for each user (the ingest writer, the
//! worker, the admin API, readiness, the vendor ledger), as SQLite serialises writers anyway.
//!
//! Layout: [`ingest`] (group commit and dedup), [`queue`] (the worker's claims and attempts,
//! retention), [`inspect`] (the admin API's queries), [`maintenance`] (heartbeat, integrity,
//! sizes, the one-time header scrub), [`vendor`] (the vendor ledger), `migrations` (the schema).

pub mod ingest;
pub mod inspect;
pub mod maintenance;
mod migrations;
pub mod queue;
pub mod vendor;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension};

use super::Stores;
pub use super::unix_ms;

pub use migrations::MIGRATIONS;

/// Opens the store at `path` for every user, once this process holds its lock.
///
/// # Errors
/// Another process holds the store, or it cannot be opened.
pub async fn open_stores(path: &Path) -> anyhow::Result<Stores> {
    let lock = wait_for_lock(path).await?;
    let path = path.to_path_buf();
    // Opening migrates and may read a large file: off the async threads.
    tokio::task::spawn_blocking(move || {
        warn_if_readable_by_others(&path);
        let one = || Sqlite::open(&path).map(Arc::new);
        Ok(Stores {
            ingest: Box::new(Sqlite::open(&path)?),
            queue: one()?,
            inspect: one()?,
            monitor: one()?,
            ledger: one()?,
            lock: Box::new(lock),
        })
    })
    .await
    .context("store task failed")?
}

/// A store made by an earlier version keeps the mode its operator gave it; it now also holds the
/// vendor access token, so say so when others can read it.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode());
    if mode & 0o077 != 0 {
        tracing::warn!(
            store = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the store is readable by others: it holds payloads and the vendor access token (chmod 600 it)"
        );
    }
}

/// Takes the store's lock, waiting a little for a process (or an application of this one) that
/// is stopping.
async fn wait_for_lock(path: &Path) -> anyhow::Result<StoreLock> {
    // Wait a little for a process (or an application of this one) that is stopping.
    let mut lock = None;
    for _ in 0..300 {
        lock = try_lock(path)?;
        if lock.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    lock.with_context(|| {
        format!(
            "another fxhook process serves the store {} (it holds its .lock file)",
            path.display()
        )
    })
}

/// One connection to the store file, usable from any thread.
pub struct Sqlite {
    conn: Mutex<Connection>,
    /// The file (the integrity check reads it on a connection of its own).
    path: std::path::PathBuf,
}

impl Sqlite {
    /// Opens the store at `path` (creating and migrating it when needed).
    ///
    /// # Errors
    /// See [`open`].
    pub fn open(path: &Path) -> anyhow::Result<Sqlite> {
        Ok(Sqlite {
            conn: Mutex::new(open(path)?),
            path: path.to_path_buf(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for one call.
    ///
    /// # Errors
    /// A previous user panicked while holding it.
    pub fn conn(&self) -> anyhow::Result<MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| anyhow::anyhow!("store connection poisoned"))
    }
}

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Holds the store for one process: a second `fxhook serve` on the same file would requeue the
/// first one's sends and double the send rate. Released when dropped.
#[derive(Debug)]
pub struct StoreLock(#[allow(dead_code)] std::fs::File);

/// The store file's real path: symlinks and `..` resolved, so that two spellings of one file
/// take one lock. The file itself need not exist yet (its directory is created).
///
/// # Errors
/// The directory cannot be created or resolved.
pub fn canonical_path(path: &Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create store directory {}", dir.display()))?;
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        return Ok(real);
    }
    let dir = std::fs::canonicalize(dir.unwrap_or(Path::new(".")))
        .with_context(|| format!("cannot resolve the directory of {}", path.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("store.path {} names no file", path.display()))?;
    Ok(dir.join(name))
}

/// Takes the lock file beside the store (`fxhook.db` → `fxhook.lock`, after resolving symlinks)
/// if it is free: `Ok(None)` while another process (or an application of this process that is
/// stopping) holds it. A separate file, because a POSIX lock on the database itself would
/// interfere with SQLite's own locks.
///
/// # Errors
/// The lock file cannot be created or locked.
pub fn try_lock(path: &Path) -> anyhow::Result<Option<StoreLock>> {
    let lock_path = canonical_path(path)?.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(StoreLock(file))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
}

/// Opens (creating when needed) the database at `path` in WAL mode with `synchronous=FULL`,
/// and migrates it forward.
///
/// # Errors
/// The directory or file cannot be created, or the file is not a database of ours.
pub fn open(path: &Path) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create store directory {}", dir.display()))?;
    }
    create_private(path)?;
    let mut conn =
        Connection::open(path).with_context(|| format!("cannot open store {}", path.display()))?;
    // Wait for the write lock in 1 ms steps (up to 10 s), not SQLite's default backoff that
    // sleeps up to 100 ms a try: the writer and the worker hand the lock back and forth under
    // load, and the default sleeps showed up as p99 latency of the 202s.
    conn.busy_handler(Some(|tries: i32| {
        std::thread::sleep(std::time::Duration::from_millis(1));
        tries < 10_000
    }))?;
    // Switching a new file to WAL takes an exclusive lock, and SQLite answers BUSY there
    // without calling the busy handler when another process opens the same new file at the
    // same moment: tried again in the handler's steps, for as long.
    let mut tries = 0;
    let mode: String = loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 10_000 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            other => break other.context("cannot switch the store to WAL")?,
        }
    };
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "store {} refused WAL mode (got {mode})",
        path.display()
    );
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    migrate(&mut conn).with_context(|| format!("cannot migrate store {}", path.display()))?;
    Ok(conn)
}

/// Creates the store file readable by its owner only, when it does not exist: it holds
/// payloads and the vendor access token. (SQLite gives its `-wal` and `-shm` files the same
/// mode.) An existing file keeps the mode its operator gave it.
fn create_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create store {}", path.display())),
    }
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    // Tables are rebuilt by some migrations: references are checked once, after them (turning
    // the checks off is not possible inside a transaction).
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    let migrated = migrate_unchecked(conn);
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    migrated
}

fn migrate_unchecked(conn: &mut Connection) -> anyhow::Result<()> {
    // Read the version inside the write transaction: two processes starting on a new file
    // must not both run the migrations.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let target = schema_version();
    anyhow::ensure!(
        current <= target,
        "the store has schema version {current}, newer than this build's {target}: upgrade fxhook"
    );
    if current == target {
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)
            .with_context(|| format!("migration {} failed", i + 1))?;
    }
    let broken: Option<String> = tx
        .query_row(
            "SELECT \"table\" FROM pragma_foreign_key_check LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    anyhow::ensure!(
        broken.is_none(),
        "migration left a broken reference in {}",
        broken.unwrap_or_default()
    );
    tx.pragma_update(None, "user_version", target)?;
    tx.commit()?;
    tracing::info!(from = current, to = target, "store migrated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_of_version_3_migrates_its_messages_and_never_gives_a_message_id_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fxhook.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(
                "PRAGMA user_version = 3;
                 INSERT INTO events (id, source, received_at, headers, payload, state)
                     VALUES ('e', 'src', 1, '{}', X'7B7D', 'mapped');
                 INSERT INTO messages (event_id, seq, body, state, next_attempt_at, created_at, updated_at)
                     VALUES ('e', 0, '{}', 'delivered', 1, 1, 1), ('e', 1, '{}', 'queued', 1, 1, 1),
                            ('e', 2, '{}', 'queued', 1, 1, 1);
                 DELETE FROM messages WHERE id = 3;",
            )
            .unwrap();
        }
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn).unwrap();
        let kept: Vec<(i64, String, i64)> = conn
            .prepare("SELECT id, state, send_order FROM messages ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(kept, [(1, "delivered".into(), 1), (2, "queued".into(), 1)]);
        conn.execute(
            "INSERT INTO messages (event_id, seq, body, state, next_attempt_at, created_at, updated_at)
             VALUES ('e', 3, '{}', 'queued', 1, 1, 1)",
            [],
        )
        .unwrap();
        assert_eq!(conn.last_insert_rowid(), 4, "id 3 was given once already");
    }

    #[test]
    fn opening_a_new_store_migrates_it_to_the_current_version_and_reopening_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/fx.db");
        let conn = open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema_version());
        drop(conn);
        let conn = open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_store_of_the_second_version_keeps_its_rows_and_never_gives_an_id_twice_after_migrating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fx.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute_batch(
                "INSERT INTO events (id, source, received_at, headers, payload, state)
                     VALUES ('e', 's', 0, '{}', x'7b7d', 'mapped');
                 INSERT INTO messages (id, event_id, seq, body, state, next_attempt_at, created_at, updated_at)
                     VALUES (7, 'e', 0, '{}', 'dead', 0, 0, 0);
                 INSERT INTO attempts (message_id, started_at, finished_at, outcome)
                     VALUES (7, 0, 0, 'refused');",
            )
            .unwrap();
        }
        let conn = open(&path).unwrap();
        let kept: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM messages WHERE id = 7), (SELECT COUNT(*) FROM attempts WHERE message_id = 7)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kept, (1, 1));
        conn.execute("DELETE FROM messages WHERE id = 7", [])
            .unwrap();
        let orphans: i64 = conn
            .query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(orphans, 0, "references still cascade");
        conn.execute(
            "INSERT INTO messages (event_id, seq, body, state, next_attempt_at, created_at, updated_at)
             VALUES ('e', 1, '{}', 'queued', 0, 0, 0)",
            [],
        )
        .unwrap();
        assert_eq!(conn.last_insert_rowid(), 8, "id 7 is never given again");
    }

    #[test]
    fn a_store_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fx.db");
        let conn = open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = open(&path).unwrap_err();
        assert!(format!("{err:#}").contains("newer than this build"));
    }

    #[test]
    fn a_store_reached_through_a_symlink_is_the_same_store_and_takes_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("alias")).unwrap();
        let held = try_lock(&real.join("fx.db"))
            .unwrap()
            .expect("a free store");
        assert!(
            try_lock(&dir.path().join("alias/fx.db")).unwrap().is_none(),
            "the symlinked directory names the same store"
        );
        assert!(
            try_lock(&dir.path().join("alias/../real/./fx.db"))
                .unwrap()
                .is_none()
        );
        drop(open(&real.join("fx.db")).unwrap());
        std::os::unix::fs::symlink(real.join("fx.db"), dir.path().join("link.db")).unwrap();
        assert!(
            try_lock(&dir.path().join("link.db")).unwrap().is_none(),
            "a symlinked file names the same store"
        );
        drop(held);
        assert!(try_lock(&dir.path().join("link.db")).unwrap().is_some());
    }

    #[test]
    fn a_new_store_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fx.db");
        drop(open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_second_process_cannot_take_a_store_in_use_and_can_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fx.db");
        let first = try_lock(&path).unwrap().expect("a free store");
        assert!(try_lock(&path).unwrap().is_none(), "held by the first");
        drop(first);
        assert!(try_lock(&path).unwrap().is_some());
    }
}
