//! The delivery worker's queries: claiming due messages, recording attempts, putting claims
//! back, dry-run delivery in batches, and retention.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

use super::Sqlite;
use crate::store::{
    AttemptOutcome, AttemptRecord, Claimed, Composer, Queue, Queued, Transition, unix_ms,
};

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
    log: &mut dyn FnMut(&Claimed),
) -> anyhow::Result<usize> {
    let now = unix_ms(now);
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let due: Vec<Claimed> = {
        let mut stmt = tx.prepare_cached(&due_sql(limit))?;
        stmt.query_map(params![now], |r| {
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
            "INSERT INTO attempts (message_id, started_at, finished_at, outcome) VALUES (?1, ?2, ?2, ?3)",
        )?;
        for m in &due {
            log(m);
            done.execute(params![m.id, now])?;
            attempt.execute(params![m.id, now, AttemptOutcome::DryRun.as_str()])?;
        }
    }
    tx.commit()?;
    Ok(due.len())
}

/// The due messages, oldest first, at most `limit`. The limit is written into the statement, not
/// bound: SQLite plans with a bound LIMIT's value, so a statement with `LIMIT ?` is prepared
/// again each time it is bound (measured: every dry-run batch, ~74k instructions each).
fn due_sql(limit: usize) -> String {
    format!(
        "SELECT id, event_id, body, attempts, created_at FROM messages
         WHERE state = 'queued' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT {limit}"
    )
}

/// Takes the next due queued message (high priority first) and marks it in flight, after
/// `compose` wrote the card it goes out as (see [`Queue::claim_next`]).
///
/// # Errors
/// A database error.
pub fn claim_next(
    conn: &mut Connection,
    now: SystemTime,
    merging: bool,
    compose: Composer<'_>,
) -> anyhow::Result<Option<Claimed>> {
    let now = unix_ms(now);
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let next = tx
        .prepare_cached(
            "SELECT m.id, m.event_id, m.body, m.attempts, m.created_at, e.source,
                    COALESCE(e.rule, ''), m.fold_state, m.suppressed_before, m.merge_spec,
                    m.own_body IS NOT NULL, m.coalesce_key, m.coalesce_window_ms, m.fold_key
             FROM messages m JOIN events e ON e.id = m.event_id
             WHERE m.state = 'queued' AND m.next_attempt_at <= ?1
             ORDER BY m.state, m.send_order, m.next_attempt_at, m.id LIMIT 1",
        )?
        .query_row(params![now], |r| {
            let claimed = Claimed {
                id: r.get(0)?,
                event_id: r.get(1)?,
                body: r.get(2)?,
                attempts: r.get(3)?,
                created_at: r.get(4)?,
            };
            let keys: (Option<String>, Option<i64>, Option<String>) =
                (r.get(11)?, r.get(12)?, r.get(13)?);
            let queued = Queued {
                id: claimed.id,
                source: r.get(5)?,
                rule: r.get(6)?,
                body: claimed.body.clone(),
                created_at: claimed.created_at,
                coalesce_key: keys.0.clone(),
                fold_key: keys.2.clone(),
                fold_state: r.get(7)?,
                suppressed_before: r.get(8)?,
                merge: r.get(9)?,
            };
            let is_digest: bool = r.get(10)?;
            Ok((claimed, queued, is_digest, keys))
        })
        .optional()
        .context("cannot claim a message")?;
    let Some((mut claimed, queued, is_digest, (coalesce_key, window, fold_key))) = next else {
        return Ok(None);
    };
    // A digest (or a fold) that failed is retried whole, as it was written.
    if !is_digest {
        // A card with neither key has no companions: no scan of the queue for them.
        let keyed = coalesce_key.is_some() || fold_key.is_some();
        let companions = match merging && keyed {
            true => companions(&tx, &queued, now, coalesce_key, window, fold_key)?,
            false => Vec::new(),
        };
        let composed = compose(&queued, &companions);
        // Companions are merged only into a body written to tell them.
        let Some(body) = composed.body else {
            tx.prepare_cached(
                "UPDATE messages SET state = 'in-flight', updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![claimed.id, now])?;
            tx.commit()?;
            return Ok(Some(claimed));
        };
        tx.prepare_cached("UPDATE messages SET own_body = body, body = ?2 WHERE id = ?1")?
            .execute(params![claimed.id, body])?;
        claimed.body = body;
        let mut merge = tx.prepare_cached(
            "UPDATE messages SET state = 'coalesced', digest_id = ?2, updated_at = ?3
             WHERE id = ?1 AND state = 'queued'",
        )?;
        for id in composed.merged {
            if companions.iter().any(|c| c.id == id) {
                merge.execute(params![id, claimed.id, now])?;
            }
        }
    }
    tx.prepare_cached("UPDATE messages SET state = 'in-flight', updated_at = ?2 WHERE id = ?1")?
        .execute(params![claimed.id, now])?;
    tx.commit()?;
    Ok(Some(claimed))
}

/// The most companions one digest takes (its rows are capped; its count is not).
const MAX_COMPANIONS: i64 = 10_000;

/// The queued messages `carrier` may take along: due ones of its coalesce key queued within
/// its window, and any of its alert (to fold), oldest first.
fn companions(
    conn: &Connection,
    carrier: &Queued,
    now: i64,
    coalesce_key: Option<String>,
    window: Option<i64>,
    fold_key: Option<String>,
) -> anyhow::Result<Vec<Queued>> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, e.source, COALESCE(e.rule, ''), m.body, m.created_at, m.fold_state,
                m.suppressed_before, m.merge_spec, m.coalesce_key, m.fold_key
         FROM messages m JOIN events e ON e.id = m.event_id
         WHERE m.state = 'queued' AND m.id != ?1 AND m.own_body IS NULL
           AND ((?2 IS NOT NULL AND m.coalesce_key = ?2 AND m.next_attempt_at <= ?3
                 AND m.created_at <= ?4)
             OR (?5 IS NOT NULL AND m.fold_key = ?5))
         ORDER BY m.created_at, m.id LIMIT ?6",
    )?;
    let until = carrier.created_at + window.unwrap_or(0);
    let rows = stmt
        .query_map(
            params![
                carrier.id,
                coalesce_key,
                now,
                until,
                fold_key,
                MAX_COMPANIONS
            ],
            |r| {
                Ok(Queued {
                    id: r.get(0)?,
                    source: r.get(1)?,
                    rule: r.get(2)?,
                    body: r.get(3)?,
                    created_at: r.get(4)?,
                    fold_state: r.get(5)?,
                    suppressed_before: r.get(6)?,
                    merge: r.get(7)?,
                    coalesce_key: r.get(8)?,
                    fold_key: r.get(9)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
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
                record.outcome.as_str(),
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
            to.state.as_str(),
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
    keep_delivered: Duration,
    keep_dead: Duration,
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

impl Queue for Sqlite {
    fn requeue_in_flight(&self, now: SystemTime) -> anyhow::Result<usize> {
        requeue_in_flight(&*self.conn()?, now)
    }

    fn requeue_stale(&self, cutoff: SystemTime) -> anyhow::Result<usize> {
        requeue_stale(&*self.conn()?, cutoff)
    }

    fn claim_next(
        &self,
        now: SystemTime,
        merging: bool,
        compose: Composer<'_>,
    ) -> anyhow::Result<Option<Claimed>> {
        claim_next(&mut *self.conn()?, now, merging, compose)
    }

    fn release_claim(&self, id: i64) -> anyhow::Result<()> {
        release_claim(&*self.conn()?, id)
    }

    fn finish_attempt(
        &self,
        id: i64,
        started: SystemTime,
        records: &[AttemptRecord],
        to: &Transition,
    ) -> anyhow::Result<()> {
        finish_attempt(&mut *self.conn()?, id, started, records, to)
    }

    fn deliver_dry_run(
        &self,
        now: SystemTime,
        limit: usize,
        log: &mut dyn FnMut(&Claimed),
    ) -> anyhow::Result<usize> {
        deliver_dry_run(&mut *self.conn()?, now, limit, log)
    }

    /// One process serves an SQLite file (its lock file sees to that): it always holds the
    /// lease.
    fn hold_lease(&self, _: &str, _: Duration, _: Duration) -> anyhow::Result<bool> {
        Ok(true)
    }

    fn release_lease(&self, _: &str, _: Duration) -> anyhow::Result<()> {
        Ok(())
    }

    fn prune(
        &self,
        now: SystemTime,
        keep_delivered: Duration,
        keep_dead: Duration,
    ) -> anyhow::Result<usize> {
        prune(&*self.conn()?, now, keep_delivered, keep_dead)
    }

    fn drop_payloads(&self, now: SystemTime, keep: Duration) -> anyhow::Result<usize> {
        drop_payloads(&*self.conn()?, now, keep)
    }
}

/// One batch of [`drop_payloads`]. Its terms `state = 'mapped' AND length(payload) > 0` are
/// those of the partial index `events_with_payload` (migration 6), so that it reads only events
/// that still hold a payload, not every older one again.
const DROP_PAYLOADS: &str =
    "UPDATE events SET payload = X'', payload_codec = 'identity' WHERE id IN (
    SELECT id FROM events
    WHERE received_at < ?1 AND state = 'mapped' AND length(payload) > 0
      AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.event_id = events.id
                      AND m.state NOT IN ('delivered', 'coalesced', 'suppressed'))
    LIMIT 500)";

/// See [`Queue::drop_payloads`]: in batches of 500, each its own short transaction.
///
/// # Errors
/// A database error.
pub fn drop_payloads(conn: &Connection, now: SystemTime, keep: Duration) -> anyhow::Result<usize> {
    let cutoff = unix_ms(now) - keep.as_millis() as i64;
    conn.execute("DELETE FROM repeats WHERE until < ?1", params![cutoff])?;
    let mut total = 0;
    loop {
        let n = conn.execute(DROP_PAYLOADS, params![cutoff])?;
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
    use crate::store::sqlite::open;

    #[test]
    fn dropping_payloads_reads_only_the_events_that_still_hold_one() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("fx.db")).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {DROP_PAYLOADS}"))
            .unwrap()
            .query_map(params![0], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX events_with_payload")),
            "{plan:?}"
        );
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
    fn the_dry_run_statement_is_not_prepared_again_each_time_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("fx.db")).unwrap();
        conn.execute(
            "INSERT INTO events (id, source, received_at, headers, payload, state) VALUES ('e', 's', 0, '{}', x'7b7d', 'mapped')",
            [],
        )
        .unwrap();
        for seq in 0..5 {
            conn.execute(
                "INSERT INTO messages (event_id, seq, body, state, next_attempt_at, created_at, updated_at)
                 VALUES ('e', ?1, '{}', 'queued', 0, 0, 0)",
                params![seq],
            )
            .unwrap();
        }
        let reprepared = |conn: &Connection| {
            let stmt = conn.prepare_cached(&due_sql(1)).unwrap();
            stmt.get_status(rusqlite::StatementStatus::RePrepare)
        };
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(
            deliver_dry_run(&mut conn, at(1), 1, &mut |_| {}).unwrap(),
            1
        );
        let first = reprepared(&conn);

        for ms in 2..5 {
            assert_eq!(
                deliver_dry_run(&mut conn, at(ms), 1, &mut |_| {}).unwrap(),
                1
            );
        }

        assert_eq!(reprepared(&conn), first, "prepared again by later runs");
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
}
