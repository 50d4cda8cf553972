//! The store looking after itself: the heartbeat write behind `/readyz`, the integrity check
//! run after an error, the queue gauges and the size bound, and the one-time scrub of
//! credentials from headers stored by earlier versions.

use rusqlite::{Connection, OptionalExtension, params};

use super::Sqlite;
use crate::store::{Monitor, QueueStats, Scrubbed, from_unix_ms, unix_ms};

/// The `meta` key set once the stored headers have been scrubbed.
const SCRUBBED: &str = "headers_scrubbed";
/// The heartbeat writes about as much as a small event, so that it fails when an event would.
const HEARTBEAT_BYTES: i64 = 16 * 1024;

/// A small write transaction like an event's: it succeeds only when the store can take one.
///
/// # Errors
/// The write failed (disk full, read-only file system, damaged database, …).
pub fn heartbeat(conn: &mut Connection, now: std::time::SystemTime) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('heartbeat', ?1 || ':' || hex(randomblob(?2)))
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![unix_ms(now), HEARTBEAT_BYTES / 2])?;
    tx.commit()?;
    Ok(())
}

/// SQLite's `quick_check` (every page read, indexes not cross-checked): `None` when the file
/// is intact, else the first problems it names.
///
/// # Errors
/// The check itself could not run.
pub fn quick_check(conn: &Connection) -> anyhow::Result<Option<String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok((lines != ["ok"]).then(|| lines.join("; ")))
}

/// Rewrites the stored headers of every event once, with `keep(source, headers_json)` giving
/// the cleaned JSON (or `None` to leave the row as it is). Earlier versions filtered headers by
/// name only and could keep a source's token; the filter needs the loaded mappings, which a
/// plain SQL migration does not have. Runs in batches, each its own transaction, and records
/// that it ran; returns how many events changed.
///
/// # Errors
/// A database error (the scrub runs again at the next start).
pub fn scrub_headers_once(
    conn: &mut Connection,
    clean: &mut dyn FnMut(&str, &str) -> Scrubbed,
) -> anyhow::Result<usize> {
    let done: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [SCRUBBED], |r| {
            r.get(0)
        })
        .optional()?;
    if done.is_some() {
        return Ok(0);
    }
    let (mut after, mut changed, mut complete) = (0i64, 0usize, true);
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let batch: Vec<(i64, String, String)> = tx
            .prepare(
                "SELECT rowid, source, headers FROM events WHERE rowid > ?1 ORDER BY rowid LIMIT 1000",
            )?
            .query_map([after], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (rowid, source, headers) in &batch {
            let scrubbed = clean(source, headers);
            complete &= scrubbed.fully_judged;
            if let Some(cleaned) = scrubbed.cleaned.filter(|c| c != headers) {
                tx.execute(
                    "UPDATE events SET headers = ?2 WHERE rowid = ?1",
                    params![rowid, cleaned],
                )?;
                changed += 1;
            }
        }
        tx.commit()?;
        match batch.last() {
            Some((rowid, _, _)) => after = *rowid,
            None => break,
        }
    }
    if complete {
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![SCRUBBED, unix_ms(std::time::SystemTime::now())],
        )?;
    } else {
        tracing::warn!(
            "some stored events belong to sources with no loaded mapping: their headers were judged by name only; the scrub runs again at the next start"
        );
    }
    Ok(changed)
}

impl Monitor for Sqlite {
    fn ping(&self) -> anyhow::Result<()> {
        self.conn()?
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })?;
        Ok(())
    }

    fn queue_stats(&self) -> anyhow::Result<QueueStats> {
        let (queued, in_flight, oldest): (i64, i64, Option<i64>) = self.conn()?.query_row(
            "SELECT COUNT(*) FILTER (WHERE state = 'queued'), COUNT(*) FILTER (WHERE state = 'in-flight'),
                    MIN(created_at) FILTER (WHERE state = 'queued')
             FROM messages WHERE state IN ('queued', 'in-flight')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(QueueStats {
            queued: queued.max(0) as u64,
            in_flight: in_flight.max(0) as u64,
            oldest_queued: oldest.map(from_unix_ms),
        })
    }

    /// The pages in use (free pages, left by pruning, are reused before the file grows) and
    /// the WAL.
    fn size_bytes(&self) -> anyhow::Result<u64> {
        let bytes: i64 = self.conn()?.query_row(
            "SELECT (page_count - freelist_count) * page_size
             FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
            [],
            |r| r.get(0),
        )?;
        let mut wal = self.path().as_os_str().to_owned();
        wal.push("-wal");
        let wal = std::fs::metadata(wal).map_or(0, |m| m.len());
        Ok(bytes.max(0) as u64 + wal)
    }

    fn integrity_check(&self) -> anyhow::Result<Option<String>> {
        // On a connection of its own: reading the whole file must not hold up readiness and
        // the gauges, which share this store's connection.
        let conn = Connection::open_with_flags(
            self.path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        quick_check(&conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scrub_cleans_every_event_once_and_then_never_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::open(&dir.path().join("fx.db")).unwrap();
        for i in 0..2500 {
            conn.execute(
                "INSERT INTO events (id, source, received_at, headers, payload, state)
                 VALUES (?1, 'jenkins', 0, '{\"x-api-key\":\"s3cret\",\"x-ok\":\"1\"}', x'7b7d', 'mapped')",
                [format!("e{i}")],
            )
            .unwrap();
        }
        let mut clean = |_: &str, h: &str| Scrubbed {
            cleaned: Some(h.replace("\"x-api-key\":\"s3cret\",", "")),
            fully_judged: true,
        };
        assert_eq!(scrub_headers_once(&mut conn, &mut clean).unwrap(), 2500);
        let left: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM events WHERE headers LIKE '%s3cret%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        let mut calls = 0;
        let mut counted = |_: &str, _: &str| {
            calls += 1;
            Scrubbed {
                cleaned: None,
                fully_judged: true,
            }
        };
        assert_eq!(scrub_headers_once(&mut conn, &mut counted).unwrap(), 0);
        assert_eq!(calls, 0, "a store already scrubbed is not read again");
    }

    #[test]
    fn the_heartbeat_writes_and_an_intact_store_passes_its_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::open(&dir.path().join("fx.db")).unwrap();
        heartbeat(&mut conn, std::time::SystemTime::now()).unwrap();
        heartbeat(&mut conn, std::time::SystemTime::now()).unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM meta WHERE key = 'heartbeat'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(quick_check(&conn).unwrap(), None);
    }
}
