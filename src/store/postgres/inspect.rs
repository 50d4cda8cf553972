//! The admin API's queries on Postgres; their JSON is the SQLite store's, field for field.

use std::time::SystemTime;

use anyhow::Context;
use serde_json::{Value, json};
use tokio_postgres::{GenericClient, Row};

use super::Postgres;
use super::ingest::insert_messages;
use crate::store::payload;
use crate::store::{
    EventOutcome, EventState, Inspect, MessageState, NewMessage, Replay, StoredEvent, unix_ms,
};

fn body_json(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

const MESSAGE: &str = "id, event_id, seq, state, attempts, next_attempt_at, last_error, created_at, updated_at, body, digest_id";
const EVENT: &str = "id, source, event_type, delivery_id, received_at, state, rule, error";

fn message_json(r: &Row) -> Value {
    json!({
        "id": r.get::<_, i64>("id"),
        "event_id": r.get::<_, String>("event_id"),
        "seq": r.get::<_, i64>("seq"),
        "state": r.get::<_, String>("state"),
        "attempts": r.get::<_, i64>("attempts"),
        "next_attempt_at": r.get::<_, i64>("next_attempt_at"),
        "last_error": r.get::<_, Option<String>>("last_error"),
        "created_at": r.get::<_, i64>("created_at"),
        "updated_at": r.get::<_, i64>("updated_at"),
        "body": body_json(r.get("body")),
        "digest_id": r.get::<_, Option<i64>>("digest_id"),
    })
}

fn event_json(r: &Row) -> Value {
    json!({
        "id": r.get::<_, String>("id"),
        "source": r.get::<_, String>("source"),
        "event_type": r.get::<_, Option<String>>("event_type"),
        "delivery_id": r.get::<_, Option<String>>("delivery_id"),
        "received_at": r.get::<_, i64>("received_at"),
        "state": r.get::<_, String>("state"),
        "rule": r.get::<_, Option<String>>("rule"),
        "error": r.get::<_, Option<String>>("error"),
    })
}

/// The ids of the messages that went out merged into message `id`.
async fn merged_into(c: &impl GenericClient, id: i64) -> anyhow::Result<Value> {
    let ids: Vec<i64> = c
        .query(
            "SELECT id FROM messages WHERE digest_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(serde_json::json!(ids))
}

async fn attempts(c: &impl GenericClient, message_id: i64) -> anyhow::Result<Vec<Value>> {
    let rows = c
        .query(
            "SELECT started_at, finished_at, outcome, http_status, error_code, error_message,
                    trace_id, third_trace_id
             FROM attempts WHERE message_id = $1 ORDER BY id",
            &[&message_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({
                "started_at": r.get::<_, i64>(0),
                "finished_at": r.get::<_, i64>(1),
                "outcome": r.get::<_, String>(2),
                "http_status": r.get::<_, Option<i32>>(3).map(i64::from),
                "error_code": r.get::<_, Option<i64>>(4),
                "error_message": r.get::<_, Option<String>>(5),
                "trace_id": r.get::<_, Option<String>>(6),
                "third_trace_id": r.get::<_, Option<String>>(7),
            })
        })
        .collect())
}

impl Inspect for Postgres {
    fn events_of(&self, source: &str, limit: i64) -> anyhow::Result<Vec<Value>> {
        self.run(async {
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "SELECT {EVENT} FROM events WHERE source = $1
                         ORDER BY received_at DESC, id DESC LIMIT $2"
                    ),
                    &[&source, &limit],
                )
                .await?;
            Ok(rows.iter().map(event_json).collect())
        })
    }

    fn count_messages(&self, state: MessageState) -> anyhow::Result<u64> {
        self.run(async {
            let row = self
                .client()
                .await?
                .query_one(
                    "SELECT COUNT(*) FROM messages WHERE state = $1",
                    &[&state.as_str()],
                )
                .await?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
    }

    fn message_page(
        &self,
        state: Option<MessageState>,
        source: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<Value>> {
        self.run(async {
            let columns: Vec<String> = MESSAGE.split(", ").map(|c| format!("m.{c}")).collect();
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "SELECT {}, e.source AS source FROM messages m JOIN events e ON e.id = m.event_id
                         WHERE ($1::TEXT IS NULL OR m.state = $1) AND ($2::TEXT IS NULL OR e.source = $2)
                           AND ($3::BIGINT IS NULL OR m.id < $3)
                         ORDER BY m.id DESC LIMIT $4",
                        columns.join(", ")
                    ),
                    &[&state.map(MessageState::as_str), &source, &before, &limit],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    let mut m = message_json(r);
                    m["source"] = Value::String(r.get("source"));
                    m
                })
                .collect())
        })
    }

    fn list_events(&self, state: Option<EventState>, limit: i64) -> anyhow::Result<Vec<Value>> {
        self.run(async {
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "SELECT {EVENT} FROM events WHERE ($1::TEXT IS NULL OR state = $1)
                         ORDER BY received_at DESC, id DESC LIMIT $2"
                    ),
                    &[&state.map(EventState::as_str), &limit],
                )
                .await?;
            Ok(rows.iter().map(event_json).collect())
        })
    }

    fn list_messages(&self, state: Option<MessageState>, limit: i64) -> anyhow::Result<Vec<Value>> {
        self.run(async {
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "SELECT {MESSAGE} FROM messages WHERE ($1::TEXT IS NULL OR state = $1)
                         ORDER BY id DESC LIMIT $2"
                    ),
                    &[&state.map(MessageState::as_str), &limit],
                )
                .await?;
            Ok(rows.iter().map(message_json).collect())
        })
    }

    fn event_detail(&self, id: &str) -> anyhow::Result<Option<Value>> {
        self.run(async {
            let client = self.client().await?;
            let Some(row) = client
                .query_opt(
                    &format!(
                        "SELECT {EVENT}, payload, payload_codec, headers FROM events WHERE id = $1"
                    ),
                    &[&id],
                )
                .await?
            else {
                return Ok(None);
            };
            let mut e = event_json(&row);
            let payload = payload::decode(row.get("payload_codec"), row.get("payload"))
                .with_context(|| format!("cannot read the payload of event {id}"))?;
            e["payload"] = serde_json::from_slice(&payload).unwrap_or(Value::Null);
            e["headers"] = body_json(row.get("headers"));
            let rows = client
                .query(
                    &format!("SELECT {MESSAGE} FROM messages WHERE event_id = $1 ORDER BY seq"),
                    &[&id],
                )
                .await?;
            let mut messages = Vec::with_capacity(rows.len());
            for r in &rows {
                let mut m = message_json(r);
                m["attempts"] = Value::Array(attempts(&**client, r.get("id")).await?);
                m["merged"] = merged_into(&**client, r.get("id")).await?;
                messages.push(m);
            }
            e["messages"] = Value::Array(messages);
            Ok(Some(e))
        })
    }

    fn message_detail(&self, id: i64) -> anyhow::Result<Option<Value>> {
        self.run(async {
            let client = self.client().await?;
            let Some(row) = client
                .query_opt(
                    &format!("SELECT {MESSAGE} FROM messages WHERE id = $1"),
                    &[&id],
                )
                .await?
            else {
                return Ok(None);
            };
            let mut m = message_json(&row);
            m["attempts"] = Value::Array(attempts(&**client, id).await?);
            m["merged"] = merged_into(&**client, id).await?;
            Ok(Some(m))
        })
    }

    fn replay_message(&self, id: i64, now: SystemTime) -> anyhow::Result<Replay> {
        self.run(async {
            let client = self.client().await?;
            let Some(row) = client
                .query_opt("SELECT state, body FROM messages WHERE id = $1", &[&id])
                .await?
            else {
                return Ok(Replay::NotFound);
            };
            let state: MessageState = row
                .get::<_, String>(0)
                .parse()
                .map_err(anyhow::Error::msg)?;
            if !matches!(state, MessageState::Dead | MessageState::Failed) {
                return Ok(Replay::WrongState(state));
            }
            let body: String = row.get(1);
            let empty = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|b| b["toUser"].as_array().map(Vec::is_empty))
                .unwrap_or(true);
            if empty {
                return Ok(Replay::NoRecipients);
            }
            client
                .execute(
                    "UPDATE messages SET state = 'queued', attempts = 0, next_attempt_at = $2,
                            created_at = $2, updated_at = $2
                     WHERE id = $1",
                    &[&id, &unix_ms(now)],
                )
                .await?;
            Ok(Replay::Queued)
        })
    }

    fn replay_all_dead(&self, now: SystemTime) -> anyhow::Result<usize> {
        self.run(async {
            let n = self
                .client()
                .await?
                .execute(
                    "UPDATE messages SET state = 'queued', attempts = 0, next_attempt_at = $1,
                            created_at = $1, updated_at = $1
                     WHERE state = 'dead'",
                    &[&unix_ms(now)],
                )
                .await?;
            Ok(n as usize)
        })
    }

    fn stored_event(&self, id: &str) -> anyhow::Result<Option<StoredEvent>> {
        self.run(async {
            let row = self
                .client()
                .await?
                .query_opt(
                    "SELECT source, headers, payload, received_at, payload_codec
                     FROM events WHERE id = $1",
                    &[&id],
                )
                .await?;
            let Some(r) = row else {
                return Ok(None);
            };
            Ok(Some(StoredEvent {
                source: r.get(0),
                headers: r.get(1),
                payload: payload::decode(r.get(4), r.get(2))
                    .with_context(|| format!("cannot read the payload of event {id}"))?,
                received_at: r.get(3),
            }))
        })
    }

    fn apply_remap(
        &self,
        id: &str,
        outcome: &EventOutcome,
        now: SystemTime,
    ) -> anyhow::Result<bool> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // Lock the event's messages: a concurrent claim waits, then sees the new ones. Busy:
            // on its way or sent (alone or inside another's digest), or carrying other events'
            // cards (a digest: replacing it would lose them).
            let busy: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM messages m WHERE m.event_id = $1
                       AND (m.state IN ('queued', 'in-flight', 'delivered', 'coalesced')
                            OR EXISTS (SELECT 1 FROM messages d WHERE d.digest_id = m.id))
                       FOR UPDATE OF m) x",
                    &[&id],
                )
                .await?
                .get(0);
            if busy > 0 || matches!(outcome, EventOutcome::Failed { .. }) {
                // Never send twice, and never trade a replayable dead card for a failure.
                return Ok(false);
            }
            let next_seq: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(seq) + 1, 0) FROM messages WHERE event_id = $1",
                    &[&id],
                )
                .await?
                .get(0);
            tx.execute("DELETE FROM messages WHERE event_id = $1", &[&id])
                .await?;
            let (state, rule, error, messages): (
                EventState,
                Option<&str>,
                Option<&str>,
                &[NewMessage],
            ) = match outcome {
                EventOutcome::Mapped { rule, messages } => {
                    (EventState::Mapped, Some(rule), None, messages)
                }
                EventOutcome::Failed { rule, reason } => {
                    (EventState::Failed, rule.as_deref(), Some(reason), &[])
                }
            };
            tx.execute(
                "UPDATE events SET state = $2, rule = $3, error = $4 WHERE id = $1",
                &[&id, &state.as_str(), &rule, &error],
            )
            .await?;
            insert_messages(&tx, id, None, next_seq, messages, unix_ms(now)).await?;
            tx.commit().await?;
            Ok(true)
        })
    }
}
