//! The embedded SQLite store: opening it with the durability settings, migrating it forward, and
//! the queries of the delivery worker and the tools. The ingest writer lives in
//! [`crate::enqueue`]; it owns the only connection that inserts events.

pub mod admin;
pub mod health;
pub mod maintenance;
mod migrations;
pub mod vendor;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

pub use migrations::MIGRATIONS;

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .context("cannot switch the store to WAL")?;
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
    tx.pragma_update(None, "user_version", target)?;
    tx.commit()?;
    tracing::info!(from = current, to = target, "store migrated");
    Ok(())
}

/// A message the worker took from the queue.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Message id.
    pub id: i64,
    /// The event it came from.
    pub event_id: String,
    /// The `/cgi/message/send` body.
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// When the message was created (unix ms).
    pub created_at: i64,
}

/// Puts back every message a previous process took and did not finish (it died).
///
/// # Errors
/// A database error.
pub fn requeue_in_flight(conn: &Connection, now: SystemTime) -> anyhow::Result<usize> {
    let n = conn.execute(
        "UPDATE messages SET state = 'queued', updated_at = ?1 WHERE state = 'in-flight'",
        params![unix_ms(now)],
    )?;
    Ok(n)
}

/// Puts a claimed message back in the queue as it was, no attempt counted (shutdown began
/// before its send, or the send could not be recorded first).
///
/// # Errors
/// A database error.
pub fn release_claim(conn: &Connection, id: i64) -> anyhow::Result<()> {
    conn.execute(
        "UPDATE messages SET state = 'queued', updated_at = ?2 WHERE id = ?1 AND state = 'in-flight'",
        params![id, unix_ms(SystemTime::now())],
    )?;
    Ok(())
}

/// Puts back messages claimed before `cutoff` and never finished (a store error after the
/// send, or a worker task that died): returns how many.
///
/// # Errors
/// A database error.
pub fn requeue_stale(conn: &Connection, cutoff: SystemTime) -> anyhow::Result<usize> {
    let n = conn.execute(
        "UPDATE messages SET state = 'queued', updated_at = ?2 WHERE state = 'in-flight' AND updated_at < ?1",
        params![unix_ms(cutoff), unix_ms(SystemTime::now())],
    )?;
    Ok(n)
}

/// Dry run: takes up to `limit` due messages, hands each to `log`, and marks them delivered with
/// a `dry-run` attempt — all in one transaction, so a burst costs one commit, not two per message
/// (which would contend with the ingest writer for the write lock).
///
/// # Errors
/// A database error.
pub fn deliver_dry_run(
    conn: &mut Connection,
    now: SystemTime,
    limit: usize,
    mut log: impl FnMut(&Claimed),
) -> anyhow::Result<usize> {
    let now = unix_ms(now);
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let due: Vec<Claimed> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, event_id, body, attempts, created_at FROM messages
             WHERE state = 'queued' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2",
        )?;
        stmt.query_map(params![now, limit as i64], |r| {
            Ok(Claimed {
                id: r.get(0)?,
                event_id: r.get(1)?,
                body: r.get(2)?,
                attempts: r.get(3)?,
                created_at: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?
    };
    {
        let mut done = tx.prepare_cached(
            "UPDATE messages SET state = 'delivered', attempts = attempts + 1, updated_at = ?2, last_error = NULL WHERE id = ?1",
        )?;
        let mut attempt = tx.prepare_cached(
            "INSERT INTO attempts (message_id, started_at, finished_at, outcome) VALUES (?1, ?2, ?2, 'dry-run')",
        )?;
        for m in &due {
            log(m);
            done.execute(params![m.id, now])?;
            attempt.execute(params![m.id, now])?;
        }
    }
    tx.commit()?;
    Ok(due.len())
}

/// Takes the next due queued message and marks it in-flight.
///
/// # Errors
/// A database error.
pub fn claim_next(conn: &Connection, now: SystemTime) -> anyhow::Result<Option<Claimed>> {
    let now = unix_ms(now);
    conn.query_row(
        "UPDATE messages SET state = 'in-flight', updated_at = ?1
         WHERE id = (SELECT id FROM messages
                     WHERE state = 'queued' AND next_attempt_at <= ?1
                     ORDER BY next_attempt_at, id LIMIT 1)
         RETURNING id, event_id, body, attempts, created_at",
        params![now],
        |r| {
            Ok(Claimed {
                id: r.get(0)?,
                event_id: r.get(1)?,
                body: r.get(2)?,
                attempts: r.get(3)?,
                created_at: r.get(4)?,
            })
        },
    )
    .optional()
    .context("cannot claim a message")
}

/// What one attempt ended in, as recorded.
#[derive(Debug, Clone, Default)]
pub struct AttemptRecord {
    /// `delivered`, `dry-run`, `retry`, `dead`, …
    pub outcome: String,
    /// HTTP status of the vendor's answer, if any.
    pub http_status: Option<u16>,
    /// The vendor's `errorCode`, if any.
    pub error_code: Option<i64>,
    /// A short description of the error.
    pub error_message: Option<String>,
    /// The vendor's `traceId`.
    pub trace_id: Option<String>,
    /// Our `thirdTraceId`.
    pub third_trace_id: Option<String>,
}

/// Where a message goes after an attempt.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    /// `delivered`, `queued` (retry) or `dead`.
    pub state: &'a str,
    /// When it is due again (for `queued`).
    pub next_attempt_at: Option<SystemTime>,
    /// The error shown to admins, if any.
    pub last_error: Option<String>,
    /// Whether this attempt counts towards the retry schedule (a send was made).
    pub counts: bool,
}

/// Records the calls of one attempt and moves the message on, in one transaction.
///
/// # Errors
/// A database error.
pub fn finish_attempt(
    conn: &mut Connection,
    message_id: i64,
    started: SystemTime,
    records: &[AttemptRecord],
    to: &Transition,
) -> anyhow::Result<()> {
    let now = unix_ms(SystemTime::now());
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO attempts (message_id, started_at, finished_at, outcome, http_status,
                                   error_code, error_message, trace_id, third_trace_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for record in records {
            insert.execute(params![
                message_id,
                unix_ms(started),
                now,
                record.outcome,
                record.http_status,
                record.error_code,
                record.error_message,
                record.trace_id,
                record.third_trace_id
            ])?;
        }
    }
    tx.execute(
        "UPDATE messages SET state = ?2, attempts = attempts + ?6, updated_at = ?3,
                next_attempt_at = COALESCE(?4, next_attempt_at), last_error = ?5
         WHERE id = ?1",
        params![
            message_id,
            to.state,
            now,
            to.next_attempt_at.map(unix_ms),
            to.last_error,
            i64::from(to.counts)
        ],
    )?;
    tx.commit()?;
    Ok(())
}

/// Deletes events (with their messages and attempts) past their retention: delivered ones after
/// `keep_delivered`; dead and failed ones after `keep_dead`. Events with a message still queued
/// or in flight are never pruned.
///
/// # Errors
/// A database error.
pub fn prune(
    conn: &Connection,
    now: SystemTime,
    keep_delivered: std::time::Duration,
    keep_dead: std::time::Duration,
) -> anyhow::Result<usize> {
    let now = unix_ms(now);
    let delivered_cutoff = now - keep_delivered.as_millis() as i64;
    let dead_cutoff = now - keep_dead.as_millis() as i64;
    // In batches of 500, each its own short transaction (autocommit), so the ingest writer never
    // waits long for the lock even when a large backlog ages out at once.
    let mut total = 0;
    loop {
        let n = conn.execute(
            "DELETE FROM events WHERE id IN (
                SELECT id FROM events
                WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.event_id = events.id
                                  AND m.state IN ('queued', 'in-flight'))
                  AND ((received_at < ?1 AND state = 'mapped'
                        AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.event_id = events.id
                                        AND m.state IN ('dead', 'failed')))
                       OR received_at < ?2)
                LIMIT 500)",
            params![delivered_cutoff, dead_cutoff],
        )?;
        total += n;
        if n < 500 {
            return Ok(total);
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn pruning_removes_events_past_their_retention_and_never_one_still_waiting() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("fx.db")).unwrap();
        let day = 24 * 3600 * 1000;
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(100 * day as u64);
        let at = |days_ago: i64| unix_ms(now) - days_ago * day;
        // (event, age in days, message state)
        for (id, age, state) in [
            ("old-delivered", 8, "delivered"),
            ("new-delivered", 6, "delivered"),
            ("old-dead", 8, "dead"),
            ("ancient-dead", 31, "dead"),
            ("ancient-queued", 40, "queued"),
        ] {
            conn.execute(
                "INSERT INTO events (id, source, received_at, headers, payload, state) VALUES (?1, 's', ?2, '{}', x'7b7d', 'mapped')",
                params![id, at(age)],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO messages (event_id, seq, body, state, next_attempt_at, created_at, updated_at)
                 VALUES (?1, 0, '{}', ?2, 0, 0, 0)",
                params![id, state],
            )
            .unwrap();
        }
        let week = Duration::from_secs(7 * 24 * 3600);
        let month = Duration::from_secs(30 * 24 * 3600);
        assert_eq!(prune(&conn, now, week, month).unwrap(), 2);
        let mut stmt = conn.prepare("SELECT id FROM events ORDER BY id").unwrap();
        let left: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, ["ancient-queued", "new-delivered", "old-dead"]);
        let orphans: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE event_id NOT IN (SELECT id FROM events)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0, "messages go with their event");
    }

    #[test]
    fn a_claim_older_than_the_cutoff_is_queued_again_and_a_fresh_one_is_not() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("fx.db")).unwrap();
        conn.execute(
            "INSERT INTO events (id, source, received_at, headers, payload, state) VALUES ('e', 's', 0, '{}', x'7b7d', 'mapped')",
            [],
        )
        .unwrap();
        for (seq, updated) in [(0, 1_000), (1, 9_000_000_000_000i64)] {
            conn.execute(
                "INSERT INTO messages (event_id, seq, body, state, next_attempt_at, created_at, updated_at)
                 VALUES ('e', ?1, '{}', 'in-flight', 0, 0, ?2)",
                params![seq, updated],
            )
            .unwrap();
        }
        let cutoff = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(requeue_stale(&conn, cutoff).unwrap(), 1);
        let states: Vec<String> = conn
            .prepare("SELECT state FROM messages ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(states, ["queued", "in-flight"]);
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
