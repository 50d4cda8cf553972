//! The ingest writer on Postgres: a batch of events in one transaction, their statements
//! pipelined on the connection when the events are independent (else one after the other);
//! should one fail, the batch is written again, each event in a savepoint of its own. The
//! delivery id is claimed with `INSERT … ON CONFLICT DO NOTHING RETURNING`: a plain unique
//! violation would abort the batch's transaction, and two processes inserting one id at once
//! wait on the key, so the second sees the first's row and answers duplicate. Payloads come
//! compressed by the enqueuer, else are compressed before the transaction begins (see
//! [`crate::store::payload::stored`]). An event's messages go in one statement.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Transaction;
use futures_util::future::join_all;

use super::Postgres;
use crate::store::payload::{self, Encoded};
use crate::store::{
    Committed, EventOutcome, EventState, Ingest, MessageState, NewEvent, NewMessage, unix_ms,
};

impl Ingest for Postgres {
    fn commit(
        &mut self,
        events: &[&NewEvent],
        dedup_window: Duration,
    ) -> anyhow::Result<Vec<Result<Committed, String>>> {
        // Encoded before a connection is taken and a transaction opened, where the enqueuer
        // has not done it already on the request's thread.
        let payloads: Vec<Encoded> = events.iter().map(|e| payload::stored(e)).collect();
        self.run(async {
            let mut client = self.client().await?;
            // The usual case first: the whole batch, no savepoint (two round trips an event
            // fewer). Should one event fail, the batch is written again, each event in a
            // savepoint of its own, so that it alone is refused.
            {
                let tx = client.transaction().await?;
                let results = if independent(events) {
                    insert_independent(&tx, events, &payloads, dedup_window).await
                } else {
                    let mut results = Vec::with_capacity(events.len());
                    for (event, stored) in events.iter().zip(&payloads) {
                        let done = insert(&tx, event, stored, dedup_window).await;
                        let failed = done.is_err();
                        results.push(done);
                        if failed {
                            break;
                        }
                    }
                    results
                };
                if results.len() == events.len() && results.iter().all(Result::is_ok) {
                    tx.commit().await?;
                    return Ok(results
                        .into_iter()
                        .map(|r| r.map_err(|e| format!("{e:#}")))
                        .collect());
                }
                tx.rollback().await?;
            }
            let mut tx = client.transaction().await?;
            let mut results = Vec::with_capacity(events.len());
            for (event, stored) in events.iter().zip(&payloads) {
                let sp = tx.savepoint("event").await?;
                match insert(&sp, event, stored, dedup_window).await {
                    Ok(done) => {
                        sp.commit().await?;
                        results.push(Ok(done));
                    }
                    Err(e) => {
                        sp.rollback().await?;
                        tracing::error!(event_id = %event.id, error = format!("{e:#}"), "event not stored");
                        results.push(Err(format!("{e:#}")));
                    }
                }
            }
            tx.commit().await?;
            Ok(results)
        })
    }

    fn heartbeat(&mut self, now: SystemTime) -> anyhow::Result<()> {
        self.run(async {
            // About the size of an event, so that it fails when an event would.
            self.client()
                .await?
                .execute(
                    "INSERT INTO meta (key, value) VALUES ('heartbeat', $1 || ':' || repeat('x', 16384))
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&unix_ms(now).to_string()],
                )
                .await?;
            Ok(())
        })
    }

    fn forget_delivery_ids(&mut self, before: SystemTime) -> anyhow::Result<usize> {
        self.run(async {
            let n = self
                .client()
                .await?
                .execute("DELETE FROM dedup WHERE seen_at < $1", &[&unix_ms(before)])
                .await?;
            Ok(n as usize)
        })
    }

    fn scrub_stored_headers(
        &mut self,
        _clean: &mut dyn FnMut(&str, &str) -> crate::store::Scrubbed,
    ) -> anyhow::Result<usize> {
        // Every Postgres store was written by a version that stores no credentials (and `fxhook
        // store copy` scrubs the SQLite store it copies first).
        Ok(0)
    }
}

/// True when the events of a batch may be written at once, their statements interleaved: no
/// two share a delivery id (the second must see what the first did to the id's row, whose
/// window may have passed), and none holds back repeats (a repeat window is read, then
/// written).
fn independent(events: &[&NewEvent]) -> bool {
    let mut ids = HashSet::with_capacity(events.len());
    events.iter().all(|e| {
        let repeats = matches!(&e.outcome, EventOutcome::Mapped { messages, .. }
            if messages.iter().any(|m| m.storm.repeat.is_some()));
        let new_id = match &e.delivery_id {
            Some(id) => ids.insert((e.source.as_str(), id.as_str())),
            None => true,
        };
        !repeats && new_id
    })
}

async fn insert(
    tx: &Transaction<'_>,
    ev: &NewEvent,
    stored: &Encoded<'_>,
    window: Duration,
) -> anyhow::Result<Committed> {
    if let Some(first) = claim_and_store_event(tx, ev, stored, window).await? {
        return Ok(Committed::Duplicate(first));
    }
    let (rule, messages) = rule_and_messages(ev);
    let scope = rule.map(|r| (ev.source.as_str(), r));
    let received = unix_ms(ev.received_at);
    Ok(
        match insert_messages(tx, &ev.id, scope, 0, messages, received).await? {
            true => Committed::Suppressed(ev.id.clone()),
            false => Committed::Accepted(ev.id.clone()),
        },
    )
}

/// Writes independent events (see [`independent`]) with few round trips: every event's
/// delivery-id claim and row at once (tokio-postgres pipelines the requests of futures polled
/// together on one connection; each event's statements still run in their order), then all
/// their messages in one statement, in batch order (so that their ids, which the claim orders
/// by, keep each event's messages together, as one event at a time does). Any error stands for
/// the whole batch: its transaction is aborted.
async fn insert_independent(
    tx: &Transaction<'_>,
    events: &[&NewEvent],
    payloads: &[Encoded<'_>],
    window: Duration,
) -> Vec<anyhow::Result<Committed>> {
    let firsts = join_all(
        events
            .iter()
            .zip(payloads)
            .map(|(ev, stored)| claim_and_store_event(tx, ev, stored, window)),
    )
    .await;
    let mut rows = MessageRows::default();
    for (ev, first) in events.iter().zip(&firsts) {
        if let Ok(None) = first {
            let (_, messages) = rule_and_messages(ev);
            rows.add(&ev.id, 0, messages, (false, 0), unix_ms(ev.received_at));
        }
    }
    let messages = rows.insert(tx).await;
    events
        .iter()
        .zip(firsts)
        .map(|(ev, first)| match (first, &messages) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(anyhow::anyhow!("{e:#}")),
            (Ok(Some(first)), Ok(())) => Ok(Committed::Duplicate(first)),
            (Ok(None), Ok(())) => Ok(Committed::Accepted(ev.id.clone())),
        })
        .collect()
}

/// Messages as columns, for one `INSERT … SELECT FROM unnest(…)` in the order they were added:
/// an event's (see [`insert_messages`]) or a whole batch's (see [`insert_independent`]).
#[derive(Default)]
struct MessageRows<'a> {
    event_id: Vec<&'a str>,
    seq: Vec<i64>,
    body: Vec<&'a str>,
    state: Vec<&'static str>,
    at: Vec<i64>,
    last_error: Vec<Option<&'a str>>,
    send_order: Vec<i32>,
    coalesce_key: Vec<Option<&'a str>>,
    coalesce_window_ms: Vec<Option<i64>>,
    fold_key: Vec<Option<&'a str>>,
    fold_state: Vec<Option<&'a str>>,
    suppressed_before: Vec<i64>,
    merge_spec: Vec<Option<&'a str>>,
}

impl<'a> MessageRows<'a> {
    /// An event's messages, numbered from `first_seq`, written at `now_ms`: failed with their
    /// reason, else queued, or suppressed when `held` back as a repeat; `before` is the count
    /// of repeats held back before them (see [`insert_messages`]).
    fn add(
        &mut self,
        event_id: &'a str,
        first_seq: i64,
        messages: &'a [NewMessage],
        (held, before): (bool, i64),
        now_ms: i64,
    ) {
        for (i, m) in messages.iter().enumerate() {
            let state = match (&m.failed, held) {
                (Some(_), _) => MessageState::Failed,
                (None, true) => MessageState::Suppressed,
                (None, false) => MessageState::Queued,
            };
            let storm = &m.storm;
            self.event_id.push(event_id);
            self.seq.push(first_seq + i as i64);
            self.body.push(&m.body);
            self.state.push(state.as_str());
            self.at.push(now_ms);
            self.last_error.push(m.failed.as_deref());
            self.send_order
                .push(if storm.high_priority { 0 } else { 1 });
            self.coalesce_key
                .push(storm.coalesce.as_ref().map(|(k, _)| k.as_str()));
            self.coalesce_window_ms
                .push(storm.coalesce.as_ref().map(|(_, w)| w.as_millis() as i64));
            self.fold_key
                .push(storm.fold.as_ref().map(|(k, _)| k.as_str()));
            self.fold_state
                .push(storm.fold.as_ref().map(|(_, s)| s.as_str()));
            self.suppressed_before.push(before);
            self.merge_spec.push(storm.merge.as_deref());
        }
    }

    /// Inserts them in the order they were added.
    async fn insert(&self, tx: &Transaction<'_>) -> anyhow::Result<()> {
        if self.event_id.is_empty() {
            return Ok(());
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO messages (event_id, seq, body, state, attempts, next_attempt_at,
                                       last_error, created_at, updated_at, send_order,
                                       coalesce_key, coalesce_window_ms, fold_key, fold_state,
                                       suppressed_before, merge_spec)
                 SELECT event_id, seq, body, state, 0, at, last_error, at, at, send_order,
                        coalesce_key, coalesce_window_ms, fold_key, fold_state,
                        suppressed_before, merge_spec
                 FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[],
                             $6::TEXT[], $7::INT[], $8::TEXT[], $9::BIGINT[], $10::TEXT[],
                             $11::TEXT[], $12::BIGINT[], $13::TEXT[])
                      WITH ORDINALITY AS m (event_id, seq, body, state, at, last_error,
                                            send_order, coalesce_key, coalesce_window_ms,
                                            fold_key, fold_state, suppressed_before,
                                            merge_spec, n)
                 ORDER BY n",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &self.event_id,
                &self.seq,
                &self.body,
                &self.state,
                &self.at,
                &self.last_error,
                &self.send_order,
                &self.coalesce_key,
                &self.coalesce_window_ms,
                &self.fold_key,
                &self.fold_state,
                &self.suppressed_before,
                &self.merge_spec,
            ],
        )
        .await?;
        Ok(())
    }
}

/// The rule that mapped `ev` and its messages (none for an event whose mapping failed).
fn rule_and_messages(ev: &NewEvent) -> (Option<&str>, &[NewMessage]) {
    match &ev.outcome {
        EventOutcome::Mapped { rule, messages } => (Some(rule.as_str()), &messages[..]),
        EventOutcome::Failed { rule, .. } => (rule.as_deref(), &[][..]),
    }
}

/// Claims `ev`'s delivery id and stores its row: `Some(first event's id)` when the id was seen
/// within `window` (nothing stored), else `None` (its messages are still to be written).
async fn claim_and_store_event(
    tx: &Transaction<'_>,
    ev: &NewEvent,
    stored: &Encoded<'_>,
    window: Duration,
) -> anyhow::Result<Option<String>> {
    let received = unix_ms(ev.received_at);
    if let Some(delivery_id) = &ev.delivery_id {
        let claim = tx
            .prepare_cached(
                "INSERT INTO dedup (source, delivery_id, event_id, seen_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (source, delivery_id) DO NOTHING RETURNING event_id",
            )
            .await?;
        let claimed = tx
            .query_opt(&claim, &[&ev.source, delivery_id, &ev.id, &received])
            .await?;
        if claimed.is_none() {
            let (first, seen_at): (String, i64) = tx
                .query_one(
                    "SELECT event_id, seen_at FROM dedup WHERE source = $1 AND delivery_id = $2",
                    &[&ev.source, delivery_id],
                )
                .await
                .map(|r| (r.get(0), r.get(1)))?;
            if received - seen_at < window.as_millis() as i64 {
                return Ok(Some(first));
            }
            // Seen before the window: this delivery is new again.
            tx.execute(
                "UPDATE dedup SET event_id = $3, seen_at = $4 WHERE source = $1 AND delivery_id = $2",
                &[&ev.source, delivery_id, &ev.id, &received],
            )
            .await?;
        }
    }
    let (state, rule, error) = match &ev.outcome {
        EventOutcome::Mapped { rule, .. } => (EventState::Mapped, Some(rule.as_str()), None),
        EventOutcome::Failed { rule, reason } => {
            (EventState::Failed, rule.as_deref(), Some(reason.as_str()))
        }
    };
    let insert_event = tx
        .prepare_cached(
            "INSERT INTO events (id, source, event_type, delivery_id, received_at, headers, payload,
                                 payload_codec, state, rule, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .await?;
    tx.execute(
        &insert_event,
        &[
            &ev.id,
            &ev.source,
            &ev.event_type,
            &ev.delivery_id,
            &received,
            &ev.headers,
            &&stored.bytes[..],
            &stored.codec.as_str(),
            &state.as_str(),
            &rule,
            &error,
        ],
    )
    .await?;
    Ok(None)
}

/// Opens the repeat window of `key` (`Some(held back in the previous one)`) or counts a repeat
/// in it (`None`). The row is locked, so two replicas count one repeat each.
async fn repeat_window(
    tx: &Transaction<'_>,
    (source, rule, key): (&str, &str, &str),
    every: Duration,
    now_ms: i64,
) -> anyhow::Result<Option<i64>> {
    let until = now_ms + every.as_millis() as i64;
    let opened = tx
        .execute(
            "INSERT INTO repeats (source, rule, key, until, suppressed) VALUES ($1, $2, $3, $4, 0)
             ON CONFLICT (source, rule, key) DO NOTHING",
            &[&source, &rule, &key, &until],
        )
        .await?;
    if opened == 1 {
        return Ok(Some(0));
    }
    let row = tx
        .query_one(
            "SELECT until, suppressed FROM repeats WHERE source = $1 AND rule = $2 AND key = $3 FOR UPDATE",
            &[&source, &rule, &key],
        )
        .await?;
    let (open_until, held): (i64, i64) = (row.get(0), row.get(1));
    if now_ms < open_until {
        tx.execute(
            "UPDATE repeats SET suppressed = suppressed + 1 WHERE source = $1 AND rule = $2 AND key = $3",
            &[&source, &rule, &key],
        )
        .await?;
        return Ok(None);
    }
    tx.execute(
        "UPDATE repeats SET until = $4, suppressed = 0 WHERE source = $1 AND rule = $2 AND key = $3",
        &[&source, &rule, &key, &until],
    )
    .await?;
    Ok(Some(held))
}

/// Inserts an event's messages, numbered from `first_seq`: queued, failed with their reason,
/// or held back as a repeat within `repeats` (as SQLite's `insert_messages`). True when they
/// were held back.
///
/// # Errors
/// A database error.
pub async fn insert_messages(
    tx: &Transaction<'_>,
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
            match repeat_window(tx, (source, rule, key), *every, now_ms).await? {
                Some(n) => (false, n),
                None => (true, 0),
            }
        }
    };
    let mut rows = MessageRows::default();
    rows.add(event_id, first_seq, messages, (held, before), now_ms);
    rows.insert(tx).await?;
    Ok(held)
}
