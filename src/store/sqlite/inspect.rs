//! The admin API's queries: listing and inspecting events and messages, replaying dead ones,
//! and replacing an event's failed messages after a re-map.

use std::time::SystemTime;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};

use super::Sqlite;
use super::ingest::insert_messages;
use crate::store::payload;
use crate::store::{
    EventOutcome, EventState, Inspect, MessageState, NewMessage, Replay, StoredEvent, unix_ms,
};

fn body_json(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

fn message_json(r: &Row) -> rusqlite::Result<Value> {
    Ok(json!({
        "id": r.get::<_, i64>("id")?,
        "event_id": r.get::<_, String>("event_id")?,
        "seq": r.get::<_, i64>("seq")?,
        "state": r.get::<_, String>("state")?,
        "attempts": r.get::<_, i64>("attempts")?,
        "next_attempt_at": r.get::<_, i64>("next_attempt_at")?,
        "last_error": r.get::<_, Option<String>>("last_error")?,
        "created_at": r.get::<_, i64>("created_at")?,
        "updated_at": r.get::<_, i64>("updated_at")?,
        "body": body_json(r.get("body")?),
        "digest_id": r.get::<_, Option<i64>>("digest_id")?,
    }))
}

fn event_json(r: &Row) -> rusqlite::Result<Value> {
    Ok(json!({
        "id": r.get::<_, String>("id")?,
        "source": r.get::<_, String>("source")?,
        "event_type": r.get::<_, Option<String>>("event_type")?,
        "delivery_id": r.get::<_, Option<String>>("delivery_id")?,
        "received_at": r.get::<_, i64>("received_at")?,
        "state": r.get::<_, String>("state")?,
        "rule": r.get::<_, Option<String>>("rule")?,
        "error": r.get::<_, Option<String>>("error")?,
    }))
}

/// Events, newest first, optionally of one state.
///
/// # Errors
/// A database error.
pub fn list_events(
    conn: &Connection,
    state: Option<EventState>,
    limit: i64,
) -> anyhow::Result<Vec<Value>> {
    let state = state.map(EventState::as_str);
    let mut stmt = conn.prepare(
        "SELECT * FROM events WHERE (?1 IS NULL OR state = ?1) ORDER BY received_at DESC, id DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![state, limit], event_json)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Messages, newest first, optionally of one state.
///
/// # Errors
/// A database error.
pub fn list_messages(
    conn: &Connection,
    state: Option<MessageState>,
    limit: i64,
) -> anyhow::Result<Vec<Value>> {
    let state = state.map(MessageState::as_str);
    let mut stmt = conn.prepare(
        "SELECT * FROM messages WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![state, limit], message_json)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn attempts(conn: &Connection, message_id: i64) -> anyhow::Result<Vec<Value>> {
    let mut stmt = conn.prepare("SELECT * FROM attempts WHERE message_id = ?1 ORDER BY id")?;
    let rows = stmt
        .query_map(params![message_id], |r| {
            Ok(json!({
                "started_at": r.get::<_, i64>("started_at")?,
                "finished_at": r.get::<_, i64>("finished_at")?,
                "outcome": r.get::<_, String>("outcome")?,
                "http_status": r.get::<_, Option<i64>>("http_status")?,
                "error_code": r.get::<_, Option<i64>>("error_code")?,
                "error_message": r.get::<_, Option<String>>("error_message")?,
                "trace_id": r.get::<_, Option<String>>("trace_id")?,
                "third_trace_id": r.get::<_, Option<String>>("third_trace_id")?,
            }))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The ids of the messages that went out merged into message `id`.
fn merged_into(conn: &Connection, id: i64) -> anyhow::Result<Value> {
    let ids: Vec<i64> = conn
        .prepare_cached("SELECT id FROM messages WHERE digest_id = ?1 ORDER BY id")?
        .query_map(params![id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(json!(ids))
}

/// One message with its attempts.
///
/// # Errors
/// A database error.
pub fn message_detail(conn: &Connection, id: i64) -> anyhow::Result<Option<Value>> {
    let Some(mut m) = conn
        .query_row(
            "SELECT * FROM messages WHERE id = ?1",
            params![id],
            message_json,
        )
        .optional()?
    else {
        return Ok(None);
    };
    m["attempts"] = Value::Array(attempts(conn, id)?);
    m["merged"] = merged_into(conn, id)?;
    Ok(Some(m))
}

/// One event with its payload (decoded), headers and messages (each with its attempts).
///
/// # Errors
/// A database error, or a stored payload that cannot be decoded (a damaged row).
pub fn event_detail(conn: &Connection, id: &str) -> anyhow::Result<Option<Value>> {
    let Some((mut e, codec, stored)) = conn
        .query_row("SELECT * FROM events WHERE id = ?1", params![id], |r| {
            let mut e = event_json(r)?;
            e["headers"] = body_json(r.get("headers")?);
            Ok((e, r.get::<_, String>("payload_codec")?, r.get("payload")?))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let payload = payload::decode(&codec, stored)
        .with_context(|| format!("cannot read the payload of event {id}"))?;
    e["payload"] = serde_json::from_slice(&payload).unwrap_or(Value::Null);
    let mut stmt = conn.prepare("SELECT * FROM messages WHERE event_id = ?1 ORDER BY seq")?;
    let mut messages: Vec<Value> = stmt
        .query_map(params![id], message_json)?
        .collect::<Result<_, _>>()?;
    for m in &mut messages {
        let mid = m["id"].as_i64().unwrap_or_default();
        m["attempts"] = Value::Array(attempts(conn, mid)?);
        m["merged"] = merged_into(conn, mid)?;
    }
    e["messages"] = Value::Array(messages);
    Ok(Some(e))
}

/// Queues a dead or failed message again, with a fresh retry schedule and age.
///
/// # Errors
/// A database error.
pub fn replay_message(conn: &Connection, id: i64, now: SystemTime) -> anyhow::Result<Replay> {
    let Some((state, body)): Option<(String, String)> = conn
        .query_row(
            "SELECT state, body FROM messages WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
    else {
        return Ok(Replay::NotFound);
    };
    let state: MessageState = state.parse().map_err(anyhow::Error::msg)?;
    if !matches!(state, MessageState::Dead | MessageState::Failed) {
        return Ok(Replay::WrongState(state));
    }
    let empty = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|b| b["toUser"].as_array().map(Vec::is_empty))
        .unwrap_or(true);
    if empty {
        return Ok(Replay::NoRecipients);
    }
    let now = unix_ms(now);
    conn.execute(
        "UPDATE messages SET state = ?3, attempts = 0, next_attempt_at = ?2, created_at = ?2, updated_at = ?2
         WHERE id = ?1",
        params![id, now, MessageState::Queued.as_str()],
    )?;
    Ok(Replay::Queued)
}

/// Queues every dead message again; returns how many.
///
/// # Errors
/// A database error.
pub fn replay_all_dead(conn: &Connection, now: SystemTime) -> anyhow::Result<usize> {
    let now = unix_ms(now);
    Ok(conn.execute(
        "UPDATE messages SET state = ?2, attempts = 0, next_attempt_at = ?1, created_at = ?1, updated_at = ?1
         WHERE state = ?3",
        params![now, MessageState::Queued.as_str(), MessageState::Dead.as_str()],
    )?)
}

/// The stored event `id`, when it exists, its payload decoded.
///
/// # Errors
/// A database error, or a stored payload that cannot be decoded (a damaged row).
pub fn stored_event(conn: &Connection, id: &str) -> anyhow::Result<Option<StoredEvent>> {
    let Some((mut event, codec)) = conn
        .query_row(
            "SELECT source, headers, payload, received_at, payload_codec FROM events WHERE id = ?1",
            params![id],
            |r| {
                let event = StoredEvent {
                    source: r.get(0)?,
                    headers: r.get(1)?,
                    payload: r.get(2)?,
                    received_at: r.get(3)?,
                };
                Ok((event, r.get::<_, String>(4)?))
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    event.payload = payload::decode(&codec, std::mem::take(&mut event.payload))
        .with_context(|| format!("cannot read the payload of event {id}"))?;
    Ok(Some(event))
}

/// Replaces an event's failed messages (or records a new failure) after a re-map. Refused
/// (`Ok(false)`) when some message is queued, in flight or delivered: re-mapping would send a
/// card twice.
///
/// # Errors
/// A database error.
pub fn apply_remap(
    conn: &mut Connection,
    id: &str,
    outcome: &EventOutcome,
    now: SystemTime,
) -> anyhow::Result<bool> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Busy: a message on its way or sent (alone, or inside another's digest), or one that
    // carries other events' cards (a digest: replacing it would lose them).
    let busy: i64 = tx.query_row(
        "SELECT COUNT(*) FROM messages m WHERE m.event_id = ?1
           AND (m.state IN (?2, ?3, ?4, ?5)
                OR EXISTS (SELECT 1 FROM messages d WHERE d.digest_id = m.id))",
        params![
            id,
            MessageState::Queued.as_str(),
            MessageState::InFlight.as_str(),
            MessageState::Delivered.as_str(),
            MessageState::Coalesced.as_str()
        ],
        |r| r.get(0),
    )?;
    if busy > 0 {
        return Ok(false);
    }
    if matches!(outcome, EventOutcome::Failed { .. }) {
        // Never trade a replayable dead card for a failure: keep everything as it is.
        return Ok(false);
    }
    let next_seq: i64 = tx.query_row(
        "SELECT COALESCE(MAX(seq) + 1, 0) FROM messages WHERE event_id = ?1",
        params![id],
        |r| r.get(0),
    )?;
    tx.execute("DELETE FROM messages WHERE event_id = ?1", params![id])?;
    let (state, rule, error, messages): (EventState, Option<&str>, Option<&str>, &[NewMessage]) =
        match outcome {
            EventOutcome::Mapped { rule, messages } => {
                (EventState::Mapped, Some(rule), None, messages)
            }
            EventOutcome::Failed { rule, reason } => {
                (EventState::Failed, rule.as_deref(), Some(reason), &[])
            }
        };
    tx.execute(
        "UPDATE events SET state = ?2, rule = ?3, error = ?4 WHERE id = ?1",
        params![id, state.as_str(), rule, error],
    )?;
    insert_messages(&tx, id, None, next_seq, messages, unix_ms(now))?;
    tx.commit()?;
    Ok(true)
}

/// The newest events of `source`.
///
/// # Errors
/// A database error.
pub fn events_of(conn: &Connection, source: &str, limit: i64) -> anyhow::Result<Vec<Value>> {
    let mut stmt = conn.prepare(
        "SELECT * FROM events WHERE source = ?1 ORDER BY received_at DESC, id DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![source, limit], event_json)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A page of messages with their event's source.
///
/// # Errors
/// A database error.
pub fn message_page(
    conn: &Connection,
    state: Option<MessageState>,
    source: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> anyhow::Result<Vec<Value>> {
    let mut stmt = conn.prepare(
        "SELECT m.*, e.source AS source FROM messages m JOIN events e ON e.id = m.event_id
         WHERE (?1 IS NULL OR m.state = ?1) AND (?2 IS NULL OR e.source = ?2)
           AND (?3 IS NULL OR m.id < ?3)
         ORDER BY m.id DESC LIMIT ?4",
    )?;
    let rows = stmt
        .query_map(
            params![state.map(MessageState::as_str), source, before, limit],
            |r| {
                let mut m = message_json(r)?;
                m["source"] = Value::String(r.get("source")?);
                Ok(m)
            },
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

impl Inspect for Sqlite {
    fn count_messages(&self, state: MessageState) -> anyhow::Result<u64> {
        let n: i64 = self.conn()?.query_row(
            "SELECT COUNT(*) FROM messages WHERE state = ?1",
            params![state.as_str()],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn events_of(&self, source: &str, limit: i64) -> anyhow::Result<Vec<Value>> {
        events_of(&*self.conn()?, source, limit)
    }

    fn message_page(
        &self,
        state: Option<MessageState>,
        source: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<Value>> {
        message_page(&*self.conn()?, state, source, before, limit)
    }

    fn list_events(&self, state: Option<EventState>, limit: i64) -> anyhow::Result<Vec<Value>> {
        list_events(&*self.conn()?, state, limit)
    }

    fn list_messages(&self, state: Option<MessageState>, limit: i64) -> anyhow::Result<Vec<Value>> {
        list_messages(&*self.conn()?, state, limit)
    }

    fn event_detail(&self, id: &str) -> anyhow::Result<Option<Value>> {
        event_detail(&*self.conn()?, id)
    }

    fn message_detail(&self, id: i64) -> anyhow::Result<Option<Value>> {
        message_detail(&*self.conn()?, id)
    }

    fn replay_message(&self, id: i64, now: SystemTime) -> anyhow::Result<Replay> {
        replay_message(&*self.conn()?, id, now)
    }

    fn replay_all_dead(&self, now: SystemTime) -> anyhow::Result<usize> {
        replay_all_dead(&*self.conn()?, now)
    }

    fn stored_event(&self, id: &str) -> anyhow::Result<Option<StoredEvent>> {
        stored_event(&*self.conn()?, id)
    }

    fn apply_remap(
        &self,
        id: &str,
        outcome: &EventOutcome,
        now: SystemTime,
    ) -> anyhow::Result<bool> {
        apply_remap(&mut *self.conn()?, id, outcome, now)
    }
}
