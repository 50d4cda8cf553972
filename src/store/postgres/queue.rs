//! The delivery worker's queries on Postgres. A claim takes its row with `FOR UPDATE SKIP
//! LOCKED`, so that several claimers never take one message.

use std::time::{Duration, SystemTime};

use tokio_postgres::Row;

use super::Postgres;
use crate::store::{
    AttemptOutcome, AttemptRecord, Claimed, Composer, MessageState, Queue, Queued, Transition,
    unix_ms,
};

fn claimed(r: &Row) -> Claimed {
    Claimed {
        id: r.get(0),
        event_id: r.get(1),
        body: r.get(2),
        attempts: r.get(3),
        created_at: r.get(4),
    }
}

const DUE: &str = "SELECT id FROM messages WHERE state = 'queued' AND next_attempt_at <= $1
                   ORDER BY next_attempt_at, id";

/// A queued message of a row whose columns from 5 are: source, rule, fold_state,
/// suppressed_before, merge_spec, then `keys` (coalesce_key, fold_key); its first five are
/// those of [`claimed`].
fn queued(r: &Row, keys: (usize, usize)) -> Queued {
    Queued {
        id: r.get(0),
        body: r.get(2),
        created_at: r.get(4),
        source: r.get(5),
        rule: r.get(6),
        fold_state: r.get(7),
        suppressed_before: r.get(8),
        merge: r.get(9),
        coalesce_key: r.get(keys.0),
        fold_key: r.get(keys.1),
    }
}

impl Queue for Postgres {
    fn requeue_in_flight(&self, now: SystemTime) -> anyhow::Result<usize> {
        self.run(async {
            let n = self
                .client()
                .await?
                .execute(
                    "UPDATE messages SET state = 'queued', updated_at = $1 WHERE state = 'in-flight'",
                    &[&unix_ms(now)],
                )
                .await?;
            Ok(n as usize)
        })
    }

    fn requeue_stale(&self, cutoff: SystemTime) -> anyhow::Result<usize> {
        self.run(async {
            let n = self
                .client()
                .await?
                .execute(
                    "UPDATE messages SET state = 'queued', updated_at = $2
                     WHERE state = 'in-flight' AND updated_at < $1",
                    &[&unix_ms(cutoff), &unix_ms(SystemTime::now())],
                )
                .await?;
            Ok(n as usize)
        })
    }

    fn claim_next(
        &self,
        now: SystemTime,
        merging: bool,
        compose: Composer<'_>,
    ) -> anyhow::Result<Option<Claimed>> {
        self.run(async {
            let now = unix_ms(now);
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT m.id, m.event_id, m.body, m.attempts, m.created_at, e.source,
                            COALESCE(e.rule, ''), m.fold_state, m.suppressed_before, m.merge_spec,
                            m.own_body IS NOT NULL, m.coalesce_key, m.coalesce_window_ms, m.fold_key
                     FROM messages m JOIN events e ON e.id = m.event_id
                     WHERE m.state = 'queued' AND m.next_attempt_at <= $1
                     ORDER BY m.send_order, m.next_attempt_at, m.id LIMIT 1
                     FOR UPDATE OF m SKIP LOCKED",
                    &[&now],
                )
                .await?
            else {
                return Ok(None);
            };
            let mut claimed = claimed(&row);
            let carrier = queued(&row, (11, 13));
            let is_digest: bool = row.get(10);
            if !is_digest {
                let (key, window, fold): (Option<String>, Option<i64>, Option<String>) =
                    (row.get(11), row.get(12), row.get(13));
                // A card with neither key has no companions: no scan of the queue for them.
                let keyed = key.is_some() || fold.is_some();
                let companions = match merging && keyed {
                    true => {
                        let until = carrier.created_at + window.unwrap_or(0);
                        tx.query(
                            "SELECT m.id, m.event_id, m.body, m.attempts, m.created_at, e.source,
                                    COALESCE(e.rule, ''), m.fold_state, m.suppressed_before,
                                    m.merge_spec, m.coalesce_key, m.fold_key
                             FROM messages m JOIN events e ON e.id = m.event_id
                             WHERE m.state = 'queued' AND m.id <> $1 AND m.own_body IS NULL
                               AND (($2::TEXT IS NOT NULL AND m.coalesce_key = $2
                                     AND m.next_attempt_at <= $3 AND m.created_at <= $4)
                                 OR ($5::TEXT IS NOT NULL AND m.fold_key = $5))
                             ORDER BY m.created_at, m.id LIMIT 10000
                             FOR UPDATE OF m SKIP LOCKED",
                            &[&claimed.id, &key, &now, &until, &fold],
                        )
                        .await?
                        .iter()
                        .map(|r| queued(r, (10, 11)))
                        .collect()
                    }
                    false => Vec::new(),
                };
                let composed = compose(&carrier, &companions);
                let wrote = composed.body.is_some();
                if let Some(body) = composed.body {
                    tx.execute(
                        "UPDATE messages SET own_body = body, body = $2 WHERE id = $1",
                        &[&claimed.id, &body],
                    )
                    .await?;
                    claimed.body = body;
                }
                // Companions are merged only into a body written to tell them.
                let taken: Vec<i64> = match wrote {
                    false => Vec::new(),
                    true => composed
                        .merged
                        .into_iter()
                        .filter(|id| companions.iter().any(|c| c.id == *id))
                        .collect(),
                };
                if !taken.is_empty() {
                    tx.execute(
                        "UPDATE messages SET state = 'coalesced', digest_id = $2, updated_at = $3
                         WHERE id = ANY($1) AND state = 'queued'",
                        &[&taken, &claimed.id, &now],
                    )
                    .await?;
                }
            }
            tx.execute(
                "UPDATE messages SET state = 'in-flight', updated_at = $2 WHERE id = $1",
                &[&claimed.id, &now],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(claimed))
        })
    }

    fn release_claim(&self, id: i64) -> anyhow::Result<()> {
        self.run(async {
            self.client()
                .await?
                .execute(
                    "UPDATE messages SET state = 'queued', updated_at = $2
                     WHERE id = $1 AND state = 'in-flight'",
                    &[&id, &unix_ms(SystemTime::now())],
                )
                .await?;
            Ok(())
        })
    }

    fn finish_attempt(
        &self,
        id: i64,
        started: SystemTime,
        records: &[AttemptRecord],
        to: &Transition,
    ) -> anyhow::Result<()> {
        self.run(async {
            let now = unix_ms(SystemTime::now());
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO attempts (message_id, started_at, finished_at, outcome, http_status,
                                           error_code, error_message, trace_id, third_trace_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .await?;
            for r in records {
                tx.execute(
                    &insert,
                    &[
                        &id,
                        &unix_ms(started),
                        &now,
                        &r.outcome.as_str(),
                        &r.http_status.map(i32::from),
                        &r.error_code,
                        &r.error_message,
                        &r.trace_id,
                        &r.third_trace_id,
                    ],
                )
                .await?;
            }
            tx.execute(
                "UPDATE messages SET state = $2, attempts = attempts + $6, updated_at = $3,
                        next_attempt_at = COALESCE($4, next_attempt_at), last_error = $5
                 WHERE id = $1",
                &[
                    &id,
                    &to.state.as_str(),
                    &now,
                    &to.next_attempt_at.map(unix_ms),
                    &to.last_error,
                    &i64::from(to.counts),
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn deliver_dry_run(
        &self,
        now: SystemTime,
        limit: usize,
        log: &mut dyn FnMut(&Claimed),
    ) -> anyhow::Result<usize> {
        let now = unix_ms(now);
        let due: Vec<Claimed> = self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let sql = format!(
                "UPDATE messages SET state = 'delivered', attempts = attempts + 1, updated_at = $1,
                                     last_error = NULL
                 WHERE id IN ({DUE} LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING id, event_id, body, attempts - 1, created_at"
            );
            let rows = tx.query(&sql, &[&now, &(limit as i64)]).await?;
            let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            tx.execute(
                "INSERT INTO attempts (message_id, started_at, finished_at, outcome)
                 SELECT unnest($1::BIGINT[]), $2, $2, $3",
                &[&ids, &now, &AttemptOutcome::DryRun.as_str()],
            )
            .await?;
            tx.commit().await?;
            Ok(rows.iter().map(claimed).collect())
        })?;
        due.iter().for_each(log);
        Ok(due.len())
    }

    fn hold_lease(&self, holder: &str, lease: Duration, margin: Duration) -> anyhow::Result<bool> {
        self.run(async {
            let row = self
                .client()
                .await?
                .query_opt(
                    "INSERT INTO delivery_lease (id, holder, expires_at)
                     VALUES (1, $1, now() + $2::BIGINT * interval '1 millisecond')
                     ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,
                                                    expires_at = excluded.expires_at
                     WHERE delivery_lease.holder = excluded.holder
                        OR delivery_lease.expires_at < now() - $3::BIGINT * interval '1 millisecond'
                     RETURNING holder",
                    &[
                        &holder,
                        &(lease.as_millis() as i64),
                        &(margin.as_millis() as i64),
                    ],
                )
                .await?;
            Ok(row.is_some())
        })
    }

    fn release_lease(&self, holder: &str, margin: Duration) -> anyhow::Result<()> {
        self.run(async {
            self.client()
                .await?
                .execute(
                    "UPDATE delivery_lease
                     SET expires_at = now() - ($2::BIGINT + 1) * interval '1 millisecond'
                     WHERE holder = $1",
                    &[&holder, &(margin.as_millis() as i64)],
                )
                .await?;
            Ok(())
        })
    }

    fn prune(
        &self,
        now: SystemTime,
        keep_delivered: Duration,
        keep_dead: Duration,
    ) -> anyhow::Result<usize> {
        let now = unix_ms(now);
        let delivered_cutoff = now - keep_delivered.as_millis() as i64;
        let dead_cutoff = now - keep_dead.as_millis() as i64;
        let pending = [MessageState::Queued, MessageState::InFlight].map(MessageState::as_str);
        self.run(async {
            let client = self.client().await?;
            let mut total = 0;
            // In batches of 500, each its own short transaction.
            loop {
                let n = client
                    .execute(
                        "DELETE FROM events WHERE id IN (
                            SELECT id FROM events
                            WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.event_id = events.id
                                              AND m.state = ANY($3))
                              AND ((received_at < $1 AND state = 'mapped'
                                    AND NOT EXISTS (SELECT 1 FROM messages m
                                                    WHERE m.event_id = events.id
                                                    AND m.state IN ('dead', 'failed')))
                                   OR received_at < $2)
                            LIMIT 500)",
                        &[&delivered_cutoff, &dead_cutoff, &&pending[..]],
                    )
                    .await? as usize;
                total += n;
                if n < 500 {
                    return Ok(total);
                }
            }
        })
    }

    fn drop_payloads(&self, now: SystemTime, keep: Duration) -> anyhow::Result<usize> {
        let cutoff = unix_ms(now) - keep.as_millis() as i64;
        self.run(async {
            let client = self.client().await?;
            client
                .execute("DELETE FROM repeats WHERE until < $1", &[&cutoff])
                .await?;
            let mut total = 0;
            loop {
                let n = client
                    .execute(
                        "UPDATE events SET payload = ''::BYTEA, payload_codec = 'identity' WHERE id IN (
                            SELECT id FROM events
                            WHERE received_at < $1 AND state = 'mapped' AND octet_length(payload) > 0
                              AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.event_id = events.id
                                              AND m.state NOT IN ('delivered', 'coalesced', 'suppressed'))
                            LIMIT 500)",
                        &[&cutoff],
                    )
                    .await? as usize;
                total += n;
                if n < 500 {
                    return Ok(total);
                }
            }
        })
    }
}
