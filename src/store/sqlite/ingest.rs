//! The ingest writer's statements: a batch of events in one transaction (written again with
//! each event in a savepoint of its own should one fail); dedup checked and recorded in the same
//! transaction as the event, so that two requests with one delivery id cannot both be accepted.
//! Payloads come compressed by the enqueuer, else are compressed before the transaction begins
//! (see [`crate::store::payload::stored`]).

use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};

use super::Sqlite;
use super::maintenance;
use crate::store::payload::{self, Encoded};
use crate::store::{
    Committed, EventOutcome, EventState, Ingest, MessageState, NewEvent, NewMessage, unix_ms,
};

impl Ingest for Sqlite {
    fn commit(
        &mut self,
        events: &[&NewEvent],
        dedup_window: Duration,
    ) -> anyhow::Result<Vec<Result<Committed, String>>> {
        let mut conn = self.conn()?;
        // Encoded before the write lock is taken (the worker and retention wait for it), where
        // the enqueuer has not done it already on the request's thread.
        let payloads: Vec<Encoded> = events.iter().map(|e| payload::stored(e)).collect();
        // The usual case first: the whole batch, no savepoint (two statements an event fewer,
        // and no page copied aside for a rollback to one). Should one event fail, the batch is
        // written again, each event in a savepoint of its own, so that it alone is refused.
        // IMMEDIATE: take the write lock up front, so the busy handler applies instead of a read
        // transaction failing to upgrade while the worker writes.
        {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut results = Vec::with_capacity(events.len());
            for (event, stored) in events.iter().zip(&payloads) {
                match insert(&tx, event, stored, dedup_window) {
                    Ok(done) => results.push(Ok(done)),
                    Err(_) => break,
                }
            }
            if results.len() == events.len() {
                tx.commit()?;
                return Ok(results);
            }
            // SQLite may have rolled back already (a full disk): the next BEGIN says so.
            let _ = tx.rollback();
        }
        let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(events.len());
        for (event, stored) in events.iter().zip(&payloads) {
            let mut sp = tx.savepoint()?;
            match insert(&sp, event, stored, dedup_window) {
                Ok(done) => {
                    sp.commit()?;
                    results.push(Ok(done));
                }
                Err(e) => {
                    sp.rollback()?;
                    tracing::error!(event_id = %event.id, error = format!("{e:#}"), "event not stored");
                    results.push(Err(format!("{e:#}")));
                }
            }
        }
        tx.commit()?;
        Ok(results)
    }

    fn heartbeat(&mut self, now: SystemTime) -> anyhow::Result<()> {
        maintenance::heartbeat(&mut *self.conn()?, now)
    }

    fn scrub_stored_headers(
        &mut self,
        clean: &mut dyn FnMut(&str, &str) -> crate::store::Scrubbed,
    ) -> anyhow::Result<usize> {
        maintenance::scrub_headers_once(&mut *self.conn()?, clean)
    }

    /// Oldest first by rowid, up to the first delivery id seen at or after `before`: rows are
    /// appended as events arrive (a replaced row gets a new rowid), so this needs no index on
    /// the time, one B-tree insert fewer an event. An older row behind a newer one waits for a
    /// later pass; meanwhile it counts as new anyway, as the window is checked when a delivery
    /// id is looked up.
    fn forget_delivery_ids(&mut self, before: SystemTime) -> anyhow::Result<usize> {
        Ok(self.conn()?.execute(
            "DELETE FROM dedup WHERE rowid < COALESCE(
                 (SELECT rowid FROM dedup WHERE seen_at >= ?1 ORDER BY rowid LIMIT 1),
                 (SELECT MAX(rowid) + 1 FROM dedup))",
            params![unix_ms(before)],
        )?)
    }
}

/// The event first seen with `ev`'s delivery id, when that was within `window` before it.
fn seen(conn: &Connection, ev: &NewEvent, window: Duration) -> anyhow::Result<Option<String>> {
    let Some(delivery_id) = &ev.delivery_id else {
        return Ok(None);
    };
    let seen: Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT event_id, seen_at FROM dedup WHERE source = ?1 AND delivery_id = ?2",
        )?
        .query_row(params![ev.source, delivery_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let received = unix_ms(ev.received_at);
    Ok(seen
        .filter(|(_, seen_at)| received - seen_at < window.as_millis() as i64)
        .map(|(first, _)| first))
}

/// Stores `ev` with its payload as `stored`, or finds it a duplicate.
fn insert(
    conn: &Connection,
    ev: &NewEvent,
    stored: &Encoded,
    window: Duration,
) -> anyhow::Result<Committed> {
    let received = unix_ms(ev.received_at);
    if let Some(delivery_id) = &ev.delivery_id {
        if let Some(first) = seen(conn, ev, window)? {
            return Ok(Committed::Duplicate(first));
        }
        conn.prepare_cached(
            "INSERT OR REPLACE INTO dedup (source, delivery_id, event_id, seen_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![ev.source, delivery_id, ev.id, received])?;
    }
    let (state, rule, error, messages) = match &ev.outcome {
        EventOutcome::Mapped { rule, messages } => {
            (EventState::Mapped, Some(rule.as_str()), None, &messages[..])
        }
        EventOutcome::Failed { rule, reason } => (
            EventState::Failed,
            rule.as_deref(),
            Some(reason.as_str()),
            &[][..],
        ),
    };
    conn.prepare_cached(
        "INSERT INTO events (id, source, event_type, delivery_id, received_at, headers, payload,
                             payload_codec, state, rule, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        ev.id,
        ev.source,
        ev.event_type,
        ev.delivery_id,
        received,
        ev.headers,
        &stored.bytes[..],
        stored.codec.as_str(),
        state.as_str(),
        rule,
        error
    ])?;
    let scope = rule.map(|r| (ev.source.as_str(), r));
    let held = insert_messages(conn, &ev.id, scope, 0, messages, received)?;
    Ok(match held {
        true => Committed::Suppressed(ev.id.clone()),
        false => Committed::Accepted(ev.id.clone()),
    })
}

/// What the repeat window of a key says of a new card.
enum Repeat {
    /// Not a repeat: it opens a window; this many were held back in the previous one.
    Opens(i64),
    /// A repeat within the window: held back (counted).
    HeldBack,
}

/// Opens the repeat window of `key` or counts a repeat in it.
fn repeat_window(
    conn: &Connection,
    (source, rule, key): (&str, &str, &str),
    every: Duration,
    now_ms: i64,
) -> anyhow::Result<Repeat> {
    let open: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT until, suppressed FROM repeats WHERE source = ?1 AND rule = ?2 AND key = ?3",
        )?
        .query_row(params![source, rule, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match open {
        Some((until, _)) if now_ms < until => {
            conn.prepare_cached(
                "UPDATE repeats SET suppressed = suppressed + 1 WHERE source = ?1 AND rule = ?2 AND key = ?3",
            )?
            .execute(params![source, rule, key])?;
            Ok(Repeat::HeldBack)
        }
        previous => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO repeats (source, rule, key, until, suppressed) VALUES (?1, ?2, ?3, ?4, 0)",
            )?
            .execute(params![source, rule, key, now_ms + every.as_millis() as i64])?;
            Ok(Repeat::Opens(previous.map_or(0, |(_, n)| n)))
        }
    }
}

/// Inserts an event's messages, numbered from `first_seq`: queued, failed with their reason,
/// or held back as a repeat within `repeats` (the source and rule whose repeat windows apply;
/// none for an admin's re-map). The event's messages share one card, so one repeat window
/// decides for all. True when they were held back.
///
/// # Errors
/// A database error.
pub fn insert_messages(
    conn: &Connection,
    event_id: &str,
    repeats: Option<(&str, &str)>,
    first_seq: i64,
    messages: &[NewMessage],
    now_ms: i64,
) -> anyhow::Result<bool> {
    let repeat = messages
        .iter()
        .find(|m| m.failed.is_none())
        .and_then(|m| m.storm.repeat.as_ref());
    let (held, before) = match repeat.zip(repeats) {
        None => (false, 0),
        Some(((key, every), (source, rule))) => {
            match repeat_window(conn, (source, rule, key), *every, now_ms)? {
                Repeat::Opens(n) => (false, n),
                Repeat::HeldBack => (true, 0),
            }
        }
    };
    let mut stmt = conn.prepare_cached(
        "INSERT INTO messages (event_id, seq, body, state, attempts, next_attempt_at, last_error,
                               created_at, updated_at, send_order, coalesce_key, coalesce_window_ms,
                               fold_key, fold_state, suppressed_before, merge_spec)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?5, ?5, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for (i, m) in messages.iter().enumerate() {
        let state = match (&m.failed, held) {
            (Some(_), _) => MessageState::Failed,
            (None, true) => MessageState::Suppressed,
            (None, false) => MessageState::Queued,
        };
        let storm = &m.storm;
        stmt.execute(params![
            event_id,
            first_seq + i as i64,
            m.body,
            state.as_str(),
            now_ms,
            m.failed,
            if storm.high_priority { 0 } else { 1 },
            storm.coalesce.as_ref().map(|(k, _)| k),
            storm.coalesce.as_ref().map(|(_, w)| w.as_millis() as i64),
            storm.fold.as_ref().map(|(k, _)| k),
            storm.fold.as_ref().map(|(_, s)| s),
            before,
            storm.merge,
        ])?;
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_whose_payload_was_not_encoded_ahead_is_encoded_where_it_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("fx.db")).unwrap();
        let payload = include_bytes!("../../../tests/fixtures/github/push.4.json");
        let event = NewEvent {
            id: "e-1".into(),
            source: "github".into(),
            event_type: None,
            delivery_id: Some("d-1".into()),
            received_at: SystemTime::now(),
            headers: "{}".into(),
            payload: bytes::Bytes::from_static(payload),
            stored_payload: None,
            outcome: EventOutcome::Failed {
                rule: None,
                reason: "none".into(),
            },
        };

        let stored = payload::stored(&event);
        assert_eq!(stored.codec, payload::PayloadCodec::Zstd);
        let done = insert(&conn, &event, &stored, Duration::from_secs(60)).unwrap();

        assert_eq!(done, Committed::Accepted("e-1".into()));
        let (codec, stored): (String, Vec<u8>) = conn
            .query_row(
                "SELECT payload_codec, payload FROM events WHERE id = 'e-1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(payload::decode(&codec, stored).unwrap(), payload);
        assert_eq!(
            seen(&conn, &event, Duration::from_secs(60))
                .unwrap()
                .as_deref(),
            Some("e-1")
        );
    }

    #[test]
    fn delivery_ids_are_forgotten_oldest_first_and_one_behind_a_newer_one_still_counts_as_new() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Sqlite::open(&dir.path().join("fx.db")).unwrap();
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s);
        // Appended in this order; "late" arrived after "fresh" with an older time.
        for (id, seen_at) in [("old-1", 0), ("old-2", 10), ("fresh", 100), ("late", 5)] {
            store
                .conn()
                .unwrap()
                .execute(
                    "INSERT INTO dedup (source, delivery_id, event_id, seen_at) VALUES ('s', ?1, ?1, ?2)",
                    params![id, unix_ms(at(seen_at))],
                )
                .unwrap();
        }

        assert_eq!(store.forget_delivery_ids(at(50)).unwrap(), 2);

        let event = |delivery: &str| NewEvent {
            id: "new".into(),
            source: "s".into(),
            event_type: None,
            delivery_id: Some(delivery.into()),
            received_at: at(120),
            headers: "{}".into(),
            payload: bytes::Bytes::new(),
            stored_payload: None,
            outcome: EventOutcome::Failed {
                rule: None,
                reason: "none".into(),
            },
        };
        let conn = store.conn().unwrap();
        let window = Duration::from_secs(60);
        assert_eq!(
            seen(&conn, &event("late"), window).unwrap(),
            None,
            "kept, yet new"
        );
        assert_eq!(
            seen(&conn, &event("fresh"), window).unwrap().as_deref(),
            Some("fresh")
        );
        drop(conn);
        assert_eq!(
            store.forget_delivery_ids(at(200)).unwrap(),
            2,
            "the rest, later"
        );
    }
}
