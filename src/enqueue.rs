//! Enqueue: the fifth step. One writer thread owns the ingest connection and commits accepted
//! events in small groups (group commit): it takes every event waiting in its channel, up to
//! `store.commit_batch`, writes them in one transaction with `synchronous=FULL`, and only then
//! answers each request. So a 202 is never sent before its own rows are durable, and one fsync
//! serves many requests under load.
//!
//! Dedup lives here too: checking and recording a delivery id in the same transaction as the
//! event makes two concurrent requests with one id impossible to both accept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::store::health::StoreHealth;
use crate::store::{maintenance, unix_ms};

/// A message rendered from an event, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The exact `/cgi/message/send` body.
    pub body: String,
    /// `None`: queued for delivery; `Some(reason)`: stored as failed (no recipients, …).
    pub failed: Option<String>,
}

/// What mapping made of an event.
#[derive(Debug, Clone)]
pub enum EventOutcome {
    /// Rendered into these messages by the named rule.
    Mapped {
        /// The rule that matched.
        rule: String,
        /// Its messages.
        messages: Vec<NewMessage>,
    },
    /// Mapping failed; kept for a re-map.
    Failed {
        /// The rule that matched, if one did.
        rule: Option<String>,
        /// Why.
        reason: String,
    },
}

impl EventOutcome {
    /// What to store for a mapping result; `Err(reason)` for an ignored event (nothing stored).
    ///
    /// # Errors
    /// The event is ignored.
    pub fn from_mapped(mapped: crate::map::Mapped) -> Result<EventOutcome, String> {
        use crate::map::Mapped;
        match mapped {
            Mapped::Ignored { reason } => Err(reason),
            Mapped::Rendered { rule, messages } => Ok(EventOutcome::Mapped {
                rule,
                messages: messages
                    .iter()
                    .map(|m| NewMessage {
                        // Serialising a struct of strings cannot fail.
                        body: serde_json::to_string(m).unwrap_or_default(),
                        failed: m.to_user.is_empty().then(|| "no recipients".to_string()),
                    })
                    .collect(),
            }),
            Mapped::Failed { rule, reason } => Ok(EventOutcome::Failed {
                rule: Some(rule),
                reason,
            }),
        }
    }
}

/// An accepted event to commit.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its id, returned to the sender.
    pub id: String,
    /// Source name.
    pub source: String,
    /// Event type, when the sender names it.
    pub event_type: Option<String>,
    /// Delivery id used for dedup.
    pub delivery_id: Option<String>,
    /// Arrival time.
    pub received_at: SystemTime,
    /// Headers as a JSON object, credentials removed.
    pub headers: String,
    /// The verified JSON payload.
    pub payload: Bytes,
    /// The mapping result.
    pub outcome: EventOutcome,
}

/// What the commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Stored under this id.
    Accepted(String),
    /// A delivery id already seen within the window: nothing stored; the first event's id.
    Duplicate(String),
}

/// Why an event was not stored.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// Too many events wait for their commit; the sender should retry later.
    #[error("the store is busy")]
    Busy,
    /// The database failed.
    #[error("the store cannot take the event")]
    Unavailable(#[source] anyhow::Error),
}

struct Job {
    event: NewEvent,
    reply: oneshot::Sender<Result<Committed, String>>,
}

/// What the writer is asked to do. (Events go inline, as before heartbeats existed: boxing
/// them would cost an allocation per request to save channel slots' bytes.)
#[allow(clippy::large_enum_variant)]
enum Work {
    /// Commit an event.
    Event(Job),
    /// Write the heartbeat (see [`maintenance::heartbeat`]).
    Heartbeat,
}

/// Bounds of the store, checked every second by [`watch_bounds`].
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most queued messages.
    pub max_queued: u64,
    /// Largest store file, in bytes.
    pub max_bytes: u64,
}

/// How often the writer proves it can write when nothing else does.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Every second, compares the queue and the store size with `bounds` and refuses new events
/// (503 + Retry-After) while either is over; asks the writer for a heartbeat write every few
/// seconds; and runs the integrity check once after a store error was reported. Runs until the
/// process ends.
pub fn watch_store(
    enqueuer: &Enqueuer,
    reader: Arc<std::sync::Mutex<Connection>>,
    bounds: Bounds,
    health: Arc<StoreHealth>,
) {
    let flag = Arc::clone(&enqueuer.overloaded);
    // Weak: the writer stops when the last request handle goes, not when this task does.
    let writer = enqueuer.tx.downgrade();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_heartbeat = std::time::Instant::now() - HEARTBEAT_EVERY;
        loop {
            tick.tick().await;
            if last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
                last_heartbeat = std::time::Instant::now();
                let Some(writer) = writer.upgrade() else {
                    return;
                };
                // A full channel means the writer is busy writing events: that is the proof.
                let _ = writer.try_send(Work::Heartbeat);
            }
            if health.take_check_request() {
                let reader = Arc::clone(&reader);
                let checked = tokio::task::spawn_blocking(move || {
                    let conn = reader
                        .lock()
                        .map_err(|_| anyhow::anyhow!("reader poisoned"))?;
                    maintenance::quick_check(&conn)
                })
                .await;
                match checked {
                    Ok(Ok(damage)) => {
                        if let Some(d) = &damage {
                            tracing::error!(damage = %d, "the store failed its integrity check: restore it from a backup");
                        }
                        health.checked(damage);
                    }
                    Ok(Err(e)) => health.checked(Some(format!("{e:#}"))),
                    Err(e) => tracing::warn!(error = %e, "integrity check task failed"),
                }
            }
            let reader = Arc::clone(&reader);
            let measured = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64)> {
                let conn = reader
                    .lock()
                    .map_err(|_| anyhow::anyhow!("reader poisoned"))?;
                let queued: i64 = conn.query_row(
                    "SELECT COUNT(*) FROM messages WHERE state = 'queued'",
                    [],
                    |r| r.get(0),
                )?;
                let bytes: i64 = conn.query_row(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                    [],
                    |r| r.get(0),
                )?;
                Ok((queued.max(0) as u64, bytes.max(0) as u64))
            })
            .await;
            let Ok(Ok((queued, bytes))) = measured else {
                continue;
            };
            let over = queued > bounds.max_queued || bytes > bounds.max_bytes;
            if over != flag.swap(over, Ordering::Relaxed) {
                if over {
                    tracing::error!(
                        queued,
                        bytes,
                        ?bounds,
                        "store over its bounds: new webhooks get 503 until it drains"
                    );
                } else {
                    tracing::info!(
                        queued,
                        bytes,
                        "store back under its bounds: accepting webhooks again"
                    );
                }
            }
        }
    });
}

/// Settings of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// Most events per transaction.
    pub batch: usize,
    /// Events that may wait for a commit.
    pub pending_limit: usize,
    /// Dedup window.
    pub dedup_window: Duration,
}

/// The handle requests use to commit events.
#[derive(Clone)]
pub struct Enqueuer {
    tx: mpsc::Sender<Work>,
    /// Set while the store is over its bounds (see [`watch_bounds`]).
    overloaded: Arc<AtomicBool>,
}

/// Starts the writer thread on `conn`. It stops when every [`Enqueuer`] is dropped.
/// `delivered` is notified after each commit that queued messages.
///
/// # Errors
/// The thread cannot be spawned.
pub fn start(
    conn: Connection,
    settings: WriterSettings,
    queued: std::sync::Arc<Notify>,
    health: Arc<StoreHealth>,
) -> anyhow::Result<(Enqueuer, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(settings.pending_limit);
    let handle = std::thread::Builder::new()
        .name("fxhook-writer".into())
        .spawn(move || Writer::new(conn, settings, queued, health).run(rx))
        .context("cannot start the store writer")?;
    Ok((
        Enqueuer {
            tx,
            overloaded: Arc::new(AtomicBool::new(false)),
        },
        handle,
    ))
}

impl Enqueuer {
    /// True while the writer thread runs.
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Commits `event` durably (or finds it a duplicate).
    ///
    /// # Errors
    /// [`EnqueueError::Busy`] when the writer is saturated, [`EnqueueError::Unavailable`] when
    /// the database failed.
    pub async fn commit(&self, event: NewEvent) -> Result<Committed, EnqueueError> {
        if self.overloaded.load(Ordering::Relaxed) {
            return Err(EnqueueError::Busy);
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Work::Event(Job { event, reply }))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => EnqueueError::Busy,
                mpsc::error::TrySendError::Closed(_) => {
                    EnqueueError::Unavailable(anyhow::anyhow!("the store writer has stopped"))
                }
            })?;
        answer
            .await
            .map_err(|_| EnqueueError::Unavailable(anyhow::anyhow!("the store writer stopped")))?
            .map_err(|e| EnqueueError::Unavailable(anyhow::anyhow!(e)))
    }
}

struct Writer {
    conn: Connection,
    settings: WriterSettings,
    queued: std::sync::Arc<Notify>,
    health: Arc<StoreHealth>,
    last_prune: SystemTime,
}

impl Writer {
    fn new(
        conn: Connection,
        settings: WriterSettings,
        queued: std::sync::Arc<Notify>,
        health: Arc<StoreHealth>,
    ) -> Self {
        Writer {
            conn,
            settings,
            queued,
            health,
            last_prune: SystemTime::UNIX_EPOCH,
        }
    }

    fn heartbeat(&mut self) {
        match maintenance::heartbeat(&mut self.conn, SystemTime::now()) {
            Ok(()) => self.health.write_succeeded(),
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "store heartbeat failed: not ready"
                );
                self.health.write_failed(&e);
            }
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Work>) {
        let mut batch = Vec::with_capacity(self.settings.batch);
        while let Some(first) = rx.blocking_recv() {
            let mut heartbeat = false;
            let mut next = Some(first);
            while let Some(work) = next.take() {
                match work {
                    Work::Event(job) => batch.push(job),
                    Work::Heartbeat => heartbeat = true,
                }
                if batch.len() < self.settings.batch {
                    next = rx.try_recv().ok();
                }
            }
            // With events to write, their commit is the heartbeat.
            if heartbeat && batch.is_empty() {
                self.heartbeat();
                continue;
            }
            let results = self.write(&batch);
            let mut wake = false;
            for (job, result) in batch.drain(..).zip(results) {
                wake |= matches!(&result, Ok(Committed::Accepted(_)))
                    && matches!(&job.event.outcome, EventOutcome::Mapped { .. });
                // The requester may have gone (client hung up): the event is stored regardless.
                let _ = job.reply.send(result);
            }
            if wake {
                self.queued.notify_one();
            }
            self.prune_dedup();
        }
        tracing::debug!("store writer stopped");
    }

    /// Writes one group in one transaction; each event in its own savepoint so that one bad
    /// event does not refuse the others.
    fn write(&mut self, batch: &[Job]) -> Vec<Result<Committed, String>> {
        let window = self.settings.dedup_window;
        let mut attempt = || -> anyhow::Result<Vec<Result<Committed, String>>> {
            // IMMEDIATE: take the write lock up front, so the busy timeout applies instead of a
            // read transaction failing to upgrade while the worker writes.
            let mut tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut results = Vec::with_capacity(batch.len());
            for job in batch {
                let mut sp = tx.savepoint()?;
                match insert(&sp, &job.event, window) {
                    Ok(done) => {
                        sp.commit()?;
                        results.push(Ok(done));
                    }
                    Err(e) => {
                        sp.rollback()?;
                        tracing::error!(event_id = %job.event.id, error = format!("{e:#}"), "event not stored");
                        self.health.report(&e);
                        results.push(Err(format!("{e:#}")));
                    }
                }
            }
            tx.commit()?;
            Ok(results)
        };
        match attempt() {
            Ok(results) => {
                self.health.write_succeeded();
                results
            }
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    events = batch.len(),
                    "group commit failed"
                );
                self.health.write_failed(&e);
                batch.iter().map(|_| Err(format!("{e:#}"))).collect()
            }
        }
    }

    fn prune_dedup(&mut self) {
        let now = SystemTime::now();
        if now
            .duration_since(self.last_prune)
            .is_ok_and(|d| d < Duration::from_secs(60))
        {
            return;
        }
        self.last_prune = now;
        let cutoff = unix_ms(now) - self.settings.dedup_window.as_millis() as i64;
        if let Err(e) = self
            .conn
            .execute("DELETE FROM dedup WHERE seen_at < ?1", params![cutoff])
        {
            tracing::warn!(error = %e, "cannot prune old delivery ids");
        }
    }
}

fn insert(conn: &Connection, ev: &NewEvent, window: Duration) -> anyhow::Result<Committed> {
    let received = unix_ms(ev.received_at);
    if let Some(delivery_id) = &ev.delivery_id {
        let seen: Option<(String, i64)> = conn
            .prepare_cached(
                "SELECT event_id, seen_at FROM dedup WHERE source = ?1 AND delivery_id = ?2",
            )?
            .query_row(params![ev.source, delivery_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((first, seen_at)) = seen
            && received - seen_at < window.as_millis() as i64
        {
            return Ok(Committed::Duplicate(first));
        }
        conn.prepare_cached(
            "INSERT OR REPLACE INTO dedup (source, delivery_id, event_id, seen_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![ev.source, delivery_id, ev.id, received])?;
    }
    let (state, rule, error, messages) = match &ev.outcome {
        EventOutcome::Mapped { rule, messages } => {
            ("mapped", Some(rule.as_str()), None, &messages[..])
        }
        EventOutcome::Failed { rule, reason } => {
            ("failed", rule.as_deref(), Some(reason.as_str()), &[][..])
        }
    };
    conn.prepare_cached(
        "INSERT INTO events (id, source, event_type, delivery_id, received_at, headers, payload, state, rule, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
            ev.id,
            ev.source,
            ev.event_type,
            ev.delivery_id,
            received,
            ev.headers,
            &ev.payload[..],
            state,
            rule,
            error
        ],
    )?;
    insert_messages(conn, &ev.id, 0, messages, received)?;
    Ok(Committed::Accepted(ev.id.clone()))
}

/// Inserts an event's messages, numbered from `first_seq`: queued, or failed with their reason.
///
/// # Errors
/// A database error.
pub fn insert_messages(
    conn: &Connection,
    event_id: &str,
    first_seq: i64,
    messages: &[NewMessage],
    now_ms: i64,
) -> anyhow::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO messages (event_id, seq, body, state, attempts, next_attempt_at, last_error, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?5, ?5)",
    )?;
    for (i, m) in messages.iter().enumerate() {
        let state = if m.failed.is_some() {
            "failed"
        } else {
            "queued"
        };
        stmt.execute(params![
            event_id,
            first_seq + i as i64,
            m.body,
            state,
            now_ms,
            m.failed
        ])?;
    }
    Ok(())
}
