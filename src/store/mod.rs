//! The store: what it keeps (events, their messages, every attempt, delivery ids, the vendor
//! ledger) and the interface the rest of the gateway uses, one trait per kind of user. The store
//! owns every SQL statement and every state name; nothing outside `src/store/` writes SQL.
//!
//! Layout: this file is the interface — the records that go in and come out, and the traits
//! [`Ingest`] (the group-commit writer), [`Queue`] (the delivery worker), [`Inspect`] (the admin
//! API), [`Monitor`] (readiness and gauges) and [`vendor::VendorLedger`]. [`state`] holds the
//! typed states, [`health`] whether the store can take events, [`payload`] how a payload is
//! kept (compressed). [`sqlite`] is the embedded backend; [`postgres`] implements the same
//! traits.
//!
//! The traits are synchronous: a backend does blocking I/O and its callers run it off the async
//! threads (`spawn_blocking`), as the writer thread does by design.

pub mod copy;
pub mod health;
pub mod payload;
pub mod postgres;
pub mod sqlite;
pub mod state;
pub mod vendor;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;

pub use state::{AttemptOutcome, EventState, MessageState, PayloadCodec};

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// A message rendered from an event, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The exact `/cgi/message/send` body.
    pub body: String,
    /// `None`: queued for delivery; `Some(reason)`: stored as failed (no recipients, …).
    pub failed: Option<String>,
    /// How it takes part in a storm.
    pub storm: MessageStorm,
}

/// How a message takes part in a storm, as its rule said (see `deliver::storm`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageStorm {
    /// Sent before normal ones when the queue is backed up.
    pub high_priority: bool,
    /// Messages with the same key (source, rule, recipients) queued within the window of
    /// the oldest may go out as one digest.
    pub coalesce: Option<(String, Duration)>,
    /// The alert it is about (same key: the same alert), and `firing` or `resolved`.
    pub fold: Option<(String, String)>,
    /// Held back (`suppressed`) when a message of the same key of its rule was queued less
    /// than the period ago.
    pub repeat: Option<(String, Duration)>,
    /// What the worker needs to write a digest or a fold (JSON, its own format).
    pub merge: Option<String>,
}

/// What mapping made of an event, as stored.
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
    /// `payload` as the store keeps it, when it was encoded before the commit: the enqueuer
    /// does that on the request's thread, so that the one store writer does not (see
    /// [`payload::stored`]). `None` everywhere else; the store then encodes `payload` itself.
    pub stored_payload: Option<payload::Encoded<'static>>,
    /// The mapping result.
    pub outcome: EventOutcome,
}

/// What a commit did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Stored under this id.
    Accepted(String),
    /// Stored under this id with its messages held back: a repeat of a card of the same
    /// `repeat` key sent within its period (answered as accepted).
    Suppressed(String),
    /// A delivery id already seen within the window: nothing stored; the first event's id.
    Duplicate(String),
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

/// A queued message as the worker's composer sees it, with its event's source and rule.
#[derive(Debug, Clone)]
pub struct Queued {
    /// Message id.
    pub id: i64,
    /// Its source.
    pub source: String,
    /// Its rule.
    pub rule: String,
    /// Its `/cgi/message/send` body.
    pub body: String,
    /// When it was queued (unix ms).
    pub created_at: i64,
    /// The key of the messages it may be sent with, when its rule coalesces.
    pub coalesce_key: Option<String>,
    /// The alert it is about, when its rule folds.
    pub fold_key: Option<String>,
    /// `firing` or `resolved`, when it folds.
    pub fold_state: Option<String>,
    /// Repeats of its key held back before it.
    pub suppressed_before: i64,
    /// How a digest or fold of it is written.
    pub merge: Option<String>,
}

/// What the composer made of a claimed message and the queued messages it may take along.
#[derive(Debug, Clone, Default)]
pub struct Composed {
    /// The body to send instead of its own (a digest, a fold, a count of repeats).
    pub body: Option<String>,
    /// The companions sent in it: they become `coalesced` into the claimed message.
    pub merged: Vec<i64>,
}

/// Writes the card a claimed message goes out as, from it and the companions the store found
/// (queued messages of the same coalesce key within its window, and of the same alert).
pub type Composer<'a> = &'a mut dyn FnMut(&Queued, &[Queued]) -> Composed;

/// What one call ended in, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// What it came to.
    pub outcome: AttemptOutcome,
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

/// Where a message goes after an attempt: the worker's decision, in the store's terms.
#[derive(Debug, Clone)]
pub struct Transition {
    /// `Delivered`, `Queued` (retry) or `Dead`.
    pub state: MessageState,
    /// When it is due again (for `Queued`).
    pub next_attempt_at: Option<SystemTime>,
    /// The error shown to admins, if any.
    pub last_error: Option<String>,
    /// Whether this attempt counts towards the retry schedule (a send was made).
    pub counts: bool,
}

/// What re-mapping needs of a stored event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Source name.
    pub source: String,
    /// Headers as stored (JSON object).
    pub headers: String,
    /// The verified payload, decoded (empty once dropped after `delivery.keep_payloads`).
    pub payload: Vec<u8>,
    /// Arrival time (unix ms).
    pub received_at: i64,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Queued again.
    Queued,
    /// No such message.
    NotFound,
    /// Only dead or failed messages are replayed; this one is in this state.
    WrongState(MessageState),
    /// A failed message with no recipients: re-map its event once the group is filled.
    NoRecipients,
}

/// The queue as the gauges show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages waiting for an attempt.
    pub queued: u64,
    /// Messages being sent.
    pub in_flight: u64,
    /// When the oldest queued message was created.
    pub oldest_queued: Option<SystemTime>,
}

/// The group-commit writer's side: one writer, many events a transaction.
pub trait Ingest: Send {
    /// Commits `events` in one transaction (written again with each event in a savepoint of its
    /// own should one fail, so that one bad event does not refuse the others): each is stored, or found a duplicate of a delivery id seen
    /// within `dedup_window`, or refused with the reason.
    ///
    /// # Errors
    /// The transaction failed: nothing of the batch is stored.
    fn commit(
        &mut self,
        events: &[&NewEvent],
        dedup_window: Duration,
    ) -> anyhow::Result<Vec<Result<Committed, String>>>;

    /// A write about the size of an event, proving the store can take one now.
    ///
    /// # Errors
    /// The write failed (disk full, read-only, damaged).
    fn heartbeat(&mut self, now: SystemTime) -> anyhow::Result<()>;

    /// Forgets delivery ids seen before `before`; returns how many.
    ///
    /// # Errors
    /// A database error.
    fn forget_delivery_ids(&mut self, before: SystemTime) -> anyhow::Result<usize>;

    /// Until done once: rewrites each stored event's headers with `clean(source, headers)`.
    /// Earlier versions kept headers that carried a source's token; cleaning needs the loaded
    /// mappings, so the scrub counts as done only when every event's source could be judged
    /// with its mapping. Returns how many events changed.
    ///
    /// # Errors
    /// A database error (the scrub runs again at the next start).
    fn scrub_stored_headers(
        &mut self,
        clean: &mut dyn FnMut(&str, &str) -> Scrubbed,
    ) -> anyhow::Result<usize>;
}

/// The delivery worker's side.
pub trait Queue: Send + Sync {
    /// Puts back every message a previous process took and did not finish.
    ///
    /// # Errors
    /// A database error.
    fn requeue_in_flight(&self, now: SystemTime) -> anyhow::Result<usize>;

    /// Puts back messages claimed before `cutoff` and never finished.
    ///
    /// # Errors
    /// A database error.
    fn requeue_stale(&self, cutoff: SystemTime) -> anyhow::Result<usize>;

    /// Takes the next due queued message (high priority first, then the oldest due) and marks
    /// it in flight. With `merging`, a message that is not already a digest is shown to
    /// `compose` with its companions; the body it writes and the companions it takes are
    /// stored in the same transaction (taken ones become `coalesced` into it).
    ///
    /// # Errors
    /// A database error.
    fn claim_next(
        &self,
        now: SystemTime,
        merging: bool,
        compose: Composer<'_>,
    ) -> anyhow::Result<Option<Claimed>>;

    /// Puts a claimed message back in the queue as it was, no attempt counted.
    ///
    /// # Errors
    /// A database error.
    fn release_claim(&self, id: i64) -> anyhow::Result<()>;

    /// Records the calls of one attempt and moves the message on, in one transaction.
    ///
    /// # Errors
    /// A database error.
    fn finish_attempt(
        &self,
        id: i64,
        started: SystemTime,
        records: &[AttemptRecord],
        to: &Transition,
    ) -> anyhow::Result<()>;

    /// Dry run: takes up to `limit` due messages, hands each to `log`, and marks them
    /// delivered with a dry-run attempt, in one transaction; returns how many.
    ///
    /// # Errors
    /// A database error.
    fn deliver_dry_run(
        &self,
        now: SystemTime,
        limit: usize,
        log: &mut dyn FnMut(&Claimed),
    ) -> anyhow::Result<usize>;

    /// Takes or renews the delivery lease for `holder` until `lease` from now, by the store's
    /// clock; another holder's lease is taken only once it lapsed more than `margin` ago.
    /// `Ok(true)` while `holder` holds it. Exactly one process delivers at a time.
    ///
    /// # Errors
    /// A database error (the caller's lease then lapses on its own).
    fn hold_lease(&self, holder: &str, lease: Duration, margin: Duration) -> anyhow::Result<bool>;

    /// Gives the lease up at once, if `holder` holds it (a clean stop), so that another
    /// process takes over without waiting for it to lapse.
    ///
    /// # Errors
    /// A database error.
    fn release_lease(&self, holder: &str, margin: Duration) -> anyhow::Result<()>;

    /// Deletes events past their retention (never one with a message still pending).
    ///
    /// # Errors
    /// A database error.
    fn prune(
        &self,
        now: SystemTime,
        keep_delivered: Duration,
        keep_dead: Duration,
    ) -> anyhow::Result<usize>;

    /// Drops the payloads of events received more than `keep` ago whose messages all went out
    /// (delivered, merged or held back as repeats); the rows stay. Also forgets repeat windows
    /// that ended more than `keep` ago. How many payloads were dropped.
    ///
    /// # Errors
    /// A database error.
    fn drop_payloads(&self, now: SystemTime, keep: Duration) -> anyhow::Result<usize>;
}

/// The admin API's side.
pub trait Inspect: Send + Sync {
    /// Events, newest first, optionally of one state.
    ///
    /// # Errors
    /// A database error.
    fn list_events(&self, state: Option<EventState>, limit: i64) -> anyhow::Result<Vec<Value>>;

    /// Messages, newest first, optionally of one state.
    ///
    /// # Errors
    /// A database error.
    fn list_messages(&self, state: Option<MessageState>, limit: i64) -> anyhow::Result<Vec<Value>>;

    /// The newest events of one source (without payloads), newest first.
    ///
    /// # Errors
    /// A database error.
    fn events_of(&self, source: &str, limit: i64) -> anyhow::Result<Vec<Value>>;

    /// A page of messages, newest first: of one state and source when given, with ids below
    /// `before` when given; each with its event's `source`.
    ///
    /// # Errors
    /// A database error.
    fn message_page(
        &self,
        state: Option<MessageState>,
        source: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<Value>>;

    /// How many messages are in `state`.
    ///
    /// # Errors
    /// A database error.
    fn count_messages(&self, state: MessageState) -> anyhow::Result<u64>;

    /// One event with its payload, headers and messages (each with its attempts).
    ///
    /// # Errors
    /// A database error.
    fn event_detail(&self, id: &str) -> anyhow::Result<Option<Value>>;

    /// One message with its attempts.
    ///
    /// # Errors
    /// A database error.
    fn message_detail(&self, id: i64) -> anyhow::Result<Option<Value>>;

    /// Queues a dead or failed message again, with a fresh schedule and age.
    ///
    /// # Errors
    /// A database error.
    fn replay_message(&self, id: i64, now: SystemTime) -> anyhow::Result<Replay>;

    /// Queues every dead message again; returns how many.
    ///
    /// # Errors
    /// A database error.
    fn replay_all_dead(&self, now: SystemTime) -> anyhow::Result<usize>;

    /// What re-mapping needs of the event `id`, when it exists.
    ///
    /// # Errors
    /// A database error.
    fn stored_event(&self, id: &str) -> anyhow::Result<Option<StoredEvent>>;

    /// Replaces an event's failed messages after a re-map. Refused (`Ok(false)`) when a
    /// message is queued, in flight or delivered (it would be sent twice), or when the re-map
    /// failed too.
    ///
    /// # Errors
    /// A database error.
    fn apply_remap(
        &self,
        id: &str,
        outcome: &EventOutcome,
        now: SystemTime,
    ) -> anyhow::Result<bool>;
}

/// What scrubbing one event's stored headers gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed {
    /// The cleaned headers (JSON object), or `None` to leave them as they are.
    pub cleaned: Option<String>,
    /// False when the event's source has no loaded mapping: only the header names could be
    /// judged, and the scrub stays pending for the next start.
    pub fully_judged: bool,
}

/// The store opened for each of its users, and this process's hold on it.
pub struct Stores {
    /// The group-commit writer's handle.
    pub ingest: Box<dyn Ingest>,
    /// The delivery worker's.
    pub queue: Arc<dyn Queue>,
    /// The admin API's.
    pub inspect: Arc<dyn Inspect>,
    /// Readiness and gauges.
    pub monitor: Arc<dyn Monitor>,
    /// The vendor ledger.
    pub ledger: Arc<dyn vendor::VendorLedger>,
    /// Released when dropped: then another process may serve the store.
    pub lock: Box<dyn std::any::Any + Send + Sync>,
}

/// Opens the store the settings name, for every user, once this process holds it (waiting a
/// little for a process, or an application of this one, that is stopping).
///
/// # Errors
/// Another process holds the store, or it cannot be opened.
pub async fn open(settings: &crate::config::StoreSettings) -> anyhow::Result<Stores> {
    use crate::config::StoreKind;
    match settings.kind().map_err(anyhow::Error::msg)? {
        StoreKind::Sqlite(path) => sqlite::open_stores(&path).await,
        StoreKind::Postgres(url) => postgres::open_stores(&url, settings).await,
    }
}

/// The vendor ledger alone, with no process lock (`fxhook send-test` uses the token a gateway
/// kept, and records its calls for the next one that takes over delivery).
///
/// # Errors
/// The store cannot be opened.
pub async fn open_ledger(
    settings: &crate::config::StoreSettings,
) -> anyhow::Result<Arc<dyn vendor::VendorLedger>> {
    use crate::config::StoreKind;
    Ok(match settings.kind().map_err(anyhow::Error::msg)? {
        StoreKind::Sqlite(path) => {
            let store = tokio::task::spawn_blocking(move || sqlite::Sqlite::open(&path)).await??;
            Arc::new(store)
        }
        StoreKind::Postgres(url) => Arc::new(postgres::open_unlocked(&url, settings).await?),
    })
}

/// Readiness and gauges.
pub trait Monitor: Send + Sync {
    /// `Ok` when the store answers a query.
    ///
    /// # Errors
    /// It does not.
    fn ping(&self) -> anyhow::Result<()>;

    /// The queue's depth and age.
    ///
    /// # Errors
    /// A database error.
    fn queue_stats(&self) -> anyhow::Result<QueueStats>;

    /// How many bytes the store takes (as its bound `store.max_bytes` counts them).
    ///
    /// # Errors
    /// A database error.
    fn size_bytes(&self) -> anyhow::Result<u64>;

    /// A full read of the store: `None` when intact, else what is damaged.
    ///
    /// # Errors
    /// The check could not run.
    fn integrity_check(&self) -> anyhow::Result<Option<String>>;
}
