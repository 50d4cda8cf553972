//! Enqueue: the fifth step. One writer thread owns the ingest side of the store and commits
//! accepted events in small groups (group commit): it takes every event waiting in its channel,
//! up to `store.commit_batch`, commits them in one transaction, and only then answers each
//! request. So a 202 is never sent before its own rows are durable, and one fsync serves many
//! requests under load. Dedup is checked in that same transaction (see [`crate::store::Ingest`]).
//!
//! Around it: [`watch_store`] refuses new events while the store is over its bounds, has the
//! writer prove every few seconds that it can write, and runs the integrity check after an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::store::health::StoreHealth;
use crate::store::payload;
use crate::store::{Committed, EventOutcome, Ingest, Monitor, NewEvent, unix_ms};

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
    /// Prove the store can take an event (see [`crate::store::Ingest::heartbeat`]).
    Heartbeat,
}

/// Bounds of the store, checked every second by [`watch_store`].
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most queued messages.
    pub max_queued: u64,
    /// Largest store, in bytes.
    pub max_bytes: u64,
}

/// How often the writer proves it can write when nothing else does.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// Least time between two integrity checks (a full check reads the whole store).
const CHECK_SPACING: Duration = Duration::from_secs(30);

/// Every second, compares the queue and the store size with `bounds` and refuses new events
/// (503 + Retry-After) while either is over; asks the writer for a heartbeat write every few
/// seconds; and runs the integrity check once after a store error was reported. Runs until the
/// writer stops.
pub fn watch_store(
    enqueuer: &Enqueuer,
    monitor: Arc<dyn Monitor>,
    bounds: Bounds,
    health: Arc<StoreHealth>,
) {
    let flag = Arc::clone(&enqueuer.overloaded);
    let size = Arc::clone(&enqueuer.bytes);
    // Weak: the writer stops when the last request handle goes, not when this task does.
    let writer = enqueuer.tx.downgrade();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let (mut last_heartbeat, mut last_check) = (None::<Instant>, None::<Instant>);
        let due = |last: Option<Instant>, every| last.is_none_or(|t| t.elapsed() >= every);
        loop {
            tick.tick().await;
            if due(last_heartbeat, HEARTBEAT_EVERY) {
                last_heartbeat = Some(Instant::now());
                let Some(writer) = writer.upgrade() else {
                    return;
                };
                // A full channel means the writer is busy writing events: that is the proof.
                let _ = writer.try_send(Work::Heartbeat);
            }
            if due(last_check, CHECK_SPACING) && health.take_check_request() {
                last_check = Some(Instant::now());
                check_integrity(&monitor, &health).await;
            }
            let m = Arc::clone(&monitor);
            let measured = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64)> {
                Ok((m.queue_stats()?.queued, m.size_bytes()?))
            })
            .await;
            let Ok(Ok((queued, bytes))) = measured else {
                continue;
            };
            size.store(bytes, Ordering::Relaxed);
            crate::metrics::store_bytes(bytes, bounds.max_bytes);
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

async fn check_integrity(monitor: &Arc<dyn Monitor>, health: &StoreHealth) {
    let m = Arc::clone(monitor);
    match tokio::task::spawn_blocking(move || m.integrity_check()).await {
        Ok(Ok(damage)) => {
            if let Some(d) = &damage {
                tracing::error!(damage = %d, "the store failed its integrity check: restore it from a backup");
            }
            health.checked(damage);
        }
        Ok(Err(e)) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "the integrity check could not run; trying again later"
            );
            health.check_failed();
        }
        Err(e) => {
            tracing::warn!(error = %e, "integrity check task failed");
            health.check_failed();
        }
    }
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

impl From<&crate::config::StoreSettings> for WriterSettings {
    fn from(s: &crate::config::StoreSettings) -> Self {
        WriterSettings {
            batch: s.commit_batch,
            pending_limit: s.pending_limit,
            dedup_window: s.dedup_window,
        }
    }
}

impl From<&crate::config::StoreSettings> for Bounds {
    fn from(s: &crate::config::StoreSettings) -> Self {
        Bounds {
            max_queued: s.max_queued,
            max_bytes: s.max_bytes,
        }
    }
}

/// The delivery ids this process committed lately, so that a sender's redelivery is answered
/// `duplicate` before its body is parsed or mapped. Bounded (the oldest and least used go
/// first); an id it does not hold goes to the store as before, which still decides. It never
/// answers for an id first seen longer ago than the dedup window.
struct RecentIds {
    /// `source \n delivery id` → the event's id and when it was received.
    ids: quick_cache::sync::Cache<String, (Arc<str>, SystemTime)>,
    window: Duration,
}

/// How many recent delivery ids are held (about 150 bytes each, at most ~300).
const RECENT_IDS: usize = 16 * 1024;

/// The longest delivery id held (senders' ids are UUIDs and the like: 20–40 bytes).
pub const MAX_REMEMBERED_ID: usize = 128;

impl RecentIds {
    fn key(source: &str, delivery_id: &str) -> String {
        let mut key = String::with_capacity(source.len() + 1 + delivery_id.len());
        key.push_str(source);
        key.push('\n');
        key.push_str(delivery_id);
        key
    }

    fn find(&self, source: &str, delivery_id: &str, now: SystemTime) -> Option<Arc<str>> {
        let (event, seen) = self.ids.get(&Self::key(source, delivery_id))?;
        // In whole milliseconds, as the store compares: never a duplicate the store would
        // not call one.
        let age = unix_ms(now) - unix_ms(seen);
        let within = (0..self.window.as_millis() as i64).contains(&age);
        within.then_some(event)
    }
}

/// The handle requests use to commit events.
#[derive(Clone)]
pub struct Enqueuer {
    tx: mpsc::Sender<Work>,
    /// Delivery ids committed lately (see [`RecentIds`]).
    recent: Arc<RecentIds>,
    /// Set while the store is over its bounds (see [`watch_store`]).
    overloaded: Arc<AtomicBool>,
    /// The store's size at the last measure (`u64::MAX` before the first).
    bytes: Arc<std::sync::atomic::AtomicU64>,
}

/// Starts the writer thread on `store`. It stops when every [`Enqueuer`] is dropped.
/// `queued` is notified after each commit that queued messages.
///
/// # Errors
/// The thread cannot be spawned.
pub fn start(
    store: Box<dyn Ingest>,
    settings: WriterSettings,
    queued: Arc<Notify>,
    health: Arc<StoreHealth>,
) -> anyhow::Result<(Enqueuer, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(settings.pending_limit);
    let writer = Writer {
        store,
        settings,
        queued,
        health,
        last_forget: SystemTime::UNIX_EPOCH,
    };
    let handle = std::thread::Builder::new()
        .name("fxhook-writer".into())
        .spawn(move || writer.run(rx))
        .context("cannot start the store writer")?;
    Ok((
        Enqueuer {
            tx,
            recent: Arc::new(RecentIds {
                ids: quick_cache::sync::Cache::new(RECENT_IDS),
                window: settings.dedup_window,
            }),
            overloaded: Arc::new(AtomicBool::new(false)),
            bytes: Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
        },
        handle,
    ))
}

impl Enqueuer {
    /// True while the writer thread runs.
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// True while the store is over its bounds and new events are refused.
    pub fn is_over_bounds(&self) -> bool {
        self.overloaded.load(Ordering::Relaxed)
    }

    /// The store's size on disk at the last measure (every second), once measured.
    pub fn store_bytes(&self) -> Option<u64> {
        Some(self.bytes.load(Ordering::Relaxed)).filter(|b| *b != u64::MAX)
    }

    /// Commits `event` durably (or finds it a duplicate).
    ///
    /// # Errors
    /// [`EnqueueError::Busy`] when the writer is saturated, [`EnqueueError::Unavailable`] when
    /// the database failed.
    pub async fn commit(&self, mut event: NewEvent) -> Result<Committed, EnqueueError> {
        if self.overloaded.load(Ordering::Relaxed) {
            return Err(EnqueueError::Busy);
        }
        // Encoded here, on the request's thread, many at once: the one writer thread only
        // writes (it compressed every payload of a batch in turn while the others waited).
        if event.stored_payload.is_none() {
            event.stored_payload = Some(payload::encode(&event.payload).into_owned());
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

    /// Remembers that `source`'s `delivery_id` (read from a header: known before parsing)
    /// committed as `event_id`, received at `received_at`. Ids longer than
    /// [`MAX_REMEMBERED_ID`] bytes are not held (they bound the cache's memory). Call it for an
    /// accepted event only: a duplicate's id was first seen earlier, at a time the store knows
    /// and this process does not.
    pub fn remember(
        &self,
        source: &str,
        delivery_id: &str,
        event_id: &str,
        received_at: SystemTime,
    ) {
        if delivery_id.len() <= MAX_REMEMBERED_ID {
            self.recent.ids.insert(
                RecentIds::key(source, delivery_id),
                (Arc::from(event_id), received_at),
            );
        }
    }

    /// The event that a delivery id of `source` committed lately in this process, if it was
    /// first seen within the dedup window: the request is a redelivery, answered `duplicate`
    /// without parsing it. `None` says nothing: the store decides.
    pub fn recent_duplicate(&self, source: &str, delivery_id: &str) -> Option<Arc<str>> {
        self.recent.find(source, delivery_id, SystemTime::now())
    }
}

struct Writer {
    store: Box<dyn Ingest>,
    settings: WriterSettings,
    queued: Arc<Notify>,
    health: Arc<StoreHealth>,
    last_forget: SystemTime,
}

impl Writer {
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
            self.forget_old_delivery_ids();
        }
        tracing::debug!("store writer stopped");
    }

    fn heartbeat(&mut self) {
        match self.store.heartbeat(SystemTime::now()) {
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

    /// Commits one group; each event's own failure is its answer alone.
    fn write(&mut self, batch: &[Job]) -> Vec<Result<Committed, String>> {
        let events: Vec<&NewEvent> = batch.iter().map(|j| &j.event).collect();
        match self.store.commit(&events, self.settings.dedup_window) {
            Ok(results) => {
                self.health.write_succeeded();
                if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                    self.health
                        .report(&anyhow::anyhow!("an event was not stored: {e}"));
                }
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

    /// Once a minute, forgets delivery ids older than the dedup window.
    fn forget_old_delivery_ids(&mut self) {
        let now = SystemTime::now();
        if now
            .duration_since(self.last_forget)
            .is_ok_and(|d| d < Duration::from_secs(60))
        {
            return;
        }
        self.last_forget = now;
        if let Err(e) = self
            .store
            .forget_delivery_ids(now - self.settings.dedup_window)
        {
            tracing::warn!(error = format!("{e:#}"), "cannot prune old delivery ids");
        }
    }
}
