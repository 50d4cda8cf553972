//! Deliver: the last step. Workers take due messages from the store's [`Queue`], send each
//! through the Fxiaoke client (paced under the vendor's rate limit), record every call as an
//! attempt, and move the message on: delivered, queued again on the retry schedule, or dead. In
//! dry run (the default when no credentials are configured) "sending" is logging the exact body.
//! A message taken by a process that died is queued again when the next process starts.
//!
//! The pacer resumes from the store's [`VendorLedger`]: every send's time is written there
//! before the call, and so is any pause, so a restart neither forgets the sends of the current
//! window nor a back-off. On shutdown the worker claims nothing more, puts back a claimed message
//! that is still waiting for its send slot, starts no new vendor call, and lets a send already
//! on the wire finish (a token call in progress is abandoned: it was recorded, and the next
//! sender reads the kept token or fetches one).
//!
//! With several replicas on one store, only the holder of the delivery [`lease`] sends; the
//! others stand by and take over when it lapses.
//!
//! Layout: this file is the worker's loop and its store calls; `send` is one live attempt;
//! [`lease`] is the one-sender rule; [`policy`] holds the pure decisions (classification,
//! retries, pacing); [`fxiaoke`] is the vendor client.

pub mod fxiaoke;
pub mod lease;
pub mod policy;
mod send;
pub mod storm;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::sync::Notify;

use crate::store::health::StoreHealth;
use crate::store::vendor::{CallKind, Pause, VendorLedger};
use crate::store::{Claimed, MessageState, Queue};
use fxiaoke::FxiaokeClient;
use lease::{LeaseTiming, Role};
use policy::{Pacer, RetryPolicy};
use send::{Attempt, Unsent};

/// What one step of the worker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A message was handled (delivered, rescheduled or given up).
    Handled,
    /// Nothing is due.
    Idle,
}

/// How messages leave the gateway.
#[derive(Clone)]
pub enum Mode {
    /// Log the body and mark the message delivered.
    DryRun,
    /// Send through the Fxiaoke OpenAPI.
    Live(Arc<FxiaokeClient>),
}

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// When nothing wakes the worker, it looks for due messages this often.
    pub poll_interval: Duration,
    /// Retry schedule and maximum age.
    pub retry: RetryPolicy,
    /// Sends allowed per `rate_window`.
    pub rate_limit: usize,
    /// The rate window; also how long a slow-down answer pauses every send.
    pub rate_window: Duration,
    /// Sends in progress at once.
    pub concurrency: usize,
    /// Retention of delivered events.
    pub keep_delivered: Duration,
    /// Retention of dead and failed events.
    pub keep_dead: Duration,
    /// Retention of the payloads of delivered events.
    pub keep_payloads: Duration,
    /// A claim older than this was lost (store error, dead task): the message is queued again.
    pub stale_after: Duration,
    /// The delivery lease (one sender among replicas).
    pub lease: LeaseTiming,
    /// How queued cards are merged in a storm.
    pub merger: storm::Merger,
}

impl From<&crate::config::DeliverySettings> for WorkerSettings {
    fn from(d: &crate::config::DeliverySettings) -> Self {
        WorkerSettings {
            poll_interval: d.poll_interval,
            retry: RetryPolicy {
                schedule: d.retry_schedule.clone(),
                max_age: d.max_age,
            },
            rate_limit: d.rate_limit as usize,
            rate_window: d.rate_window,
            concurrency: d.concurrency,
            keep_delivered: d.keep_delivered,
            keep_dead: d.keep_dead,
            keep_payloads: d.keep_payloads,
            // A claim lives for a token fetch and a send, each bounded by the request timeout.
            stale_after: d.request_timeout * 3 + Duration::from_secs(60),
            lease: LeaseTiming::of(d.lease),
            // The zone and card limits are the mappings' and the cards' (see `with_cards`).
            merger: storm::Merger {
                merging: d.coalesce,
                tz: chrono_tz::Asia::Shanghai,
                limits: crate::card::CardLimits::default(),
            },
        }
    }
}

impl WorkerSettings {
    /// How often retention runs: every 10 minutes, or a quarter of the shortest retention when
    /// that is shorter (a short retention is kept to closely), at least every second.
    pub fn prune_every(&self) -> Duration {
        (self.keep_payloads.min(self.keep_delivered) / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(600))
    }

    /// Merged cards are written in `tz` (`mappings.timezone`) within `limits` (`cards.*`).
    pub fn with_cards(mut self, tz: chrono_tz::Tz, limits: crate::card::CardLimits) -> Self {
        self.merger.tz = tz;
        self.merger.limits = limits;
        self
    }
}

/// The delivery worker (cheap to clone: its clones share the store, pacer and client).
#[derive(Clone)]
pub struct Worker {
    queue: Arc<dyn Queue>,
    mode: Mode,
    queued: Arc<Notify>,
    settings: Arc<WorkerSettings>,
    pacer: Arc<tokio::sync::Mutex<Pacer>>,
    /// Send times and pauses, kept for the next process.
    ledger: Arc<dyn VendorLedger>,
    /// Set once shutdown begins: nothing new is claimed or sent.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// Told of store errors.
    health: Arc<StoreHealth>,
    /// Notified when a pause begins: sends waiting for their slot give their message back.
    paused: Arc<Notify>,
    /// Whether this replica holds the delivery lease.
    role: Arc<Role>,
    /// This process's name as a lease holder.
    holder: Arc<String>,
    /// Merges of the last minute (a storm being coalesced).
    storm: Arc<storm::StormWatch>,
}

/// What a worker is made of.
pub struct WorkerParts {
    /// The queue it takes messages from.
    pub queue: Arc<dyn Queue>,
    /// Where sends and pauses are kept.
    pub ledger: Arc<dyn VendorLedger>,
    /// Told of store errors.
    pub health: Arc<StoreHealth>,
    /// Notified when messages are queued.
    pub queued: Arc<Notify>,
}

impl Worker {
    /// A worker, standing by until it holds the delivery lease (see [`lease`]).
    pub fn new(parts: WorkerParts, mode: Mode, settings: WorkerSettings) -> Worker {
        let pacer = Pacer::new(settings.rate_limit, settings.rate_window);
        Worker {
            queue: parts.queue,
            mode,
            queued: parts.queued,
            settings: Arc::new(settings),
            pacer: Arc::new(tokio::sync::Mutex::new(pacer)),
            ledger: parts.ledger,
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            health: parts.health,
            paused: Arc::new(Notify::new()),
            role: Arc::new(Role::default()),
            holder: Arc::new(lease::holder_name()),
            storm: Arc::new(storm::StormWatch::default()),
        }
    }

    /// Whether this replica sends, for readiness.
    pub fn role(&self) -> Arc<Role> {
        Arc::clone(&self.role)
    }

    /// Merges of the last minute, for readiness and the console.
    pub fn storm(&self) -> Arc<storm::StormWatch> {
        Arc::clone(&self.storm)
    }

    /// Takes over delivery after winning the lease: puts back what was left in flight (by a
    /// replica that died or was cut off), and re-reads the pacing window, any pause and the
    /// kept token from the store, where the previous sender left them.
    async fn take_over(&self) -> anyhow::Result<()> {
        let (queue, ledger) = (Arc::clone(&self.queue), Arc::clone(&self.ledger));
        let (limit, window) = (self.settings.rate_limit, self.settings.rate_window);
        let (requeued, pacer) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let requeued = queue.requeue_in_flight(SystemTime::now())?;
            Ok((requeued, resume_pacer(ledger.as_ref(), limit, window)?))
        })
        .await
        .context("store task failed")??;
        *self.pacer.lock().await = pacer;
        if let Mode::Live(client) = &self.mode {
            client.forget_cached_token().await;
        }
        if requeued > 0 {
            tracing::warn!(
                messages = requeued,
                "messages left in flight by the previous sender are queued again"
            );
        }
        Ok(())
    }

    /// Holds the delivery lease while the worker runs: renews it, or stands by and tries to
    /// take it, until shutdown.
    async fn keep_lease(self) {
        let timing = self.settings.lease;
        let mut stop = self.stopping.subscribe();
        let mut held = false;
        while !*stop.borrow_and_update() {
            let sent = Instant::now();
            let holder = Arc::clone(&self.holder);
            let asked = self
                .store(move |q| q.hold_lease(&holder, timing.lease, timing.margin))
                .await;
            match asked {
                Ok(true) => {
                    if !held {
                        if let Err(e) = self.take_over().await {
                            tracing::error!(error = format!("{e:#}"), "cannot take over delivery");
                            self.health.report(&e);
                            self.wait(&mut stop, timing.poll_every()).await;
                            continue;
                        }
                        tracing::info!(holder = %self.holder, "this replica holds the delivery lease: it sends");
                    }
                    held = true;
                    self.role.hold_until(Some(timing.valid_until(sent)));
                    self.queued.notify_waiters();
                }
                Ok(false) => {
                    if held {
                        tracing::warn!("another replica holds the delivery lease: standing by");
                    }
                    held = false;
                    self.role.hold_until(None);
                }
                // The lease lapses on its own if the store stays away: nothing to undo here.
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "cannot renew the delivery lease");
                    self.health.report(&e);
                }
            }
            let every = if held {
                timing.renew_every()
            } else {
                timing.poll_every()
            };
            self.wait(&mut stop, every).await;
        }
    }

    /// Sleeps for `wait` unless shutdown begins first.
    async fn wait(&self, stop: &mut tokio::sync::watch::Receiver<bool>, wait: Duration) {
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }

    /// True once shutdown has begun.
    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Runs `work` unless shutdown begins first (`None` then).
    async fn unless_stopping<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        let mut stop = self.stopping.subscribe();
        if *stop.borrow_and_update() {
            return None;
        }
        tokio::select! {
            out = work => Some(out),
            _ = stop.wait_for(|s| *s) => None,
        }
    }

    /// Runs a queue call off the async threads.
    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Queue) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let queue = Arc::clone(&self.queue);
        tokio::task::spawn_blocking(move || f(queue.as_ref()))
            .await
            .context("store task failed")?
    }

    /// Runs a ledger call off the async threads.
    async fn ledger<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn VendorLedger) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        crate::store::vendor::off_thread(&self.ledger, f).await
    }

    /// Holds every send for `wait` and keeps the pause for the next process.
    async fn pause(&self, wait: Duration, reason: &str) {
        self.pacer.lock().await.pause_until(Instant::now() + wait);
        self.paused.notify_waiters();
        let pause = Pause {
            until: SystemTime::now() + wait,
            reason: reason.to_string(),
        };
        if let Err(e) = self.ledger(move |l| l.save_pause(&pause)).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot keep the pause in the store: a restart would not know it"
            );
        }
    }

    /// Takes one due message and handles it.
    ///
    /// # Errors
    /// A database error; the message (if taken) stays in flight and is queued again at the
    /// next start.
    pub async fn try_execute_task(&self) -> anyhow::Result<Step> {
        // A standby replica sends nothing; the lease's holder does.
        if !self.role.is_active() {
            return Ok(Step::Idle);
        }
        if let Mode::DryRun = self.mode {
            let n = self
                .store(|q| {
                    q.deliver_dry_run(SystemTime::now(), 512, &mut |m| {
                        tracing::info!(
                            message_id = m.id,
                            event_id = %m.event_id,
                            body = %m.body,
                            "dry run: this body would be POSTed to /cgi/message/send"
                        );
                    })
                })
                .await?;
            (0..n).for_each(|_| crate::metrics::message("delivered"));
            return Ok(if n == 0 { Step::Idle } else { Step::Handled });
        }
        // Wait for a send slot before claiming, so that a pause (rate limit, daily quota)
        // leaves messages queued rather than holding them in flight.
        let slot = self.pacer.lock().await.next_slot(Instant::now());
        if self
            .unless_stopping(tokio::time::sleep_until(slot.into()))
            .await
            .is_none()
        {
            return Ok(Step::Idle);
        }
        // A pause may have begun while this loop slept: look again rather than claim.
        if self.is_stopping() || self.pacer.lock().await.is_paused(Instant::now()) {
            return Ok(Step::Idle);
        }
        let merger = self.settings.merger.clone();
        let (claimed, taken) = self
            .store(move |q| {
                let mut taken = storm::Taken::default();
                let claimed = q.claim_next(SystemTime::now(), merger.merging, &mut |c, with| {
                    merger.compose(c, with, &mut taken)
                })?;
                Ok((claimed, taken))
            })
            .await?;
        let merged: u64 = taken.by_rule.values().sum();
        if merged > 0 {
            for ((source, rule), n) in &taken.by_rule {
                crate::metrics::messages_coalesced(source, rule, *n);
            }
            self.storm.merged(merged);
        }
        let Some(msg) = claimed else {
            return Ok(Step::Idle);
        };
        if merged > 0 {
            tracing::info!(
                message_id = msg.id,
                merged,
                "queued cards go out merged into this one"
            );
        }
        let span = tracing::info_span!("delivery", message_id = msg.id, event_id = %msg.event_id);
        tracing::Instrument::instrument(self.handle(msg), span).await
    }

    /// Sends one claimed message and records the outcome.
    async fn handle(&self, msg: Claimed) -> anyhow::Result<Step> {
        let started = SystemTime::now();
        // Dry run never claims one message at a time (see `try_execute_task`).
        let Mode::Live(client) = &self.mode else {
            anyhow::bail!("a dry-run worker does not send");
        };
        let id = msg.id;
        let sent = match self.send_live(client, &msg).await {
            Attempt::Made(sent) => sent,
            Attempt::Released(why) => {
                self.store(move |q| q.release_claim(id)).await?;
                tracing::info!(
                    message_id = id,
                    why = why.describe(),
                    "message put back in the queue unsent"
                );
                return match why {
                    Unsent::NotRecorded => {
                        Err(anyhow::anyhow!("message {id} not sent: {}", why.describe()))
                    }
                    Unsent::Stopping | Unsent::Paused | Unsent::Standby => Ok(Step::Idle),
                };
            }
        };
        let transition = Arc::new(self.decide(&msg, &sent).await);
        let records = Arc::new(sent.records);
        // The send happened: recording it must not be lost to a brief store error. Retry with
        // backoff; if the store stays unavailable the claim goes stale and is queued again.
        let mut delay = Duration::from_millis(200);
        for attempt in 1.. {
            let (records, to) = (Arc::clone(&records), Arc::clone(&transition));
            match self
                .store(move |q| q.finish_attempt(id, started, &records, &to))
                .await
            {
                Ok(()) => break,
                Err(e) if attempt < 6 => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        attempt,
                        "cannot record the attempt yet; retrying"
                    );
                    self.health.report(&e);
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        match transition.state {
            MessageState::Delivered | MessageState::Dead => {
                crate::metrics::message(transition.state.as_str())
            }
            _ => {}
        }
        Ok(Step::Handled)
    }

    /// Queues again the claims that went stale (see [`WorkerSettings::stale_after`]).
    async fn reap(&self) {
        let cutoff = SystemTime::now() - self.settings.stale_after;
        match self.store(move |q| q.requeue_stale(cutoff)).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                messages = n,
                "messages whose claim went stale are queued again"
            ),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot requeue stale claims"),
        }
    }

    /// Deletes events past their retention.
    async fn prune(&self) {
        let (keep_delivered, keep_dead) = (self.settings.keep_delivered, self.settings.keep_dead);
        match self
            .store(move |q| q.prune(SystemTime::now(), keep_delivered, keep_dead))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned events past their retention"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot prune old events"),
        }
        let keep = self.settings.keep_payloads;
        match self
            .store(move |q| q.drop_payloads(SystemTime::now(), keep))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                events = n,
                "dropped the payloads of delivered events past delivery.keep_payloads"
            ),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot drop old payloads"),
        }
    }

    async fn run_loop(self, prunes: bool) {
        let mut stop = self.stopping.subscribe();
        let mut last_prune: Option<Instant> = None;
        let mut last_reap = Instant::now();
        while !*stop.borrow_and_update() {
            if prunes && last_prune.is_none_or(|t| t.elapsed() > self.settings.prune_every()) {
                last_prune = Some(Instant::now());
                self.prune().await;
            }
            if prunes && last_reap.elapsed() > Duration::from_secs(60) {
                last_reap = Instant::now();
                self.reap().await;
            }
            let wait = match self.try_execute_task().await {
                Ok(Step::Handled) => continue,
                Ok(Step::Idle) => self.settings.poll_interval,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "delivery worker step failed");
                    self.health.report(&e);
                    self.settings.poll_interval.max(Duration::from_millis(500))
                }
            };
            tokio::select! {
                _ = stop.changed() => {}
                _ = self.queued.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Runs `delivery.concurrency` loops until `shutdown` completes. Then nothing new is
    /// claimed, a claimed message still waiting for its send slot goes back to the queue, no
    /// new vendor call starts, and calls already made get up to `grace` to finish (what does
    /// not finish stays in flight and is queued again at the next start).
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) {
        let keeper = tokio::spawn(self.clone().keep_lease());
        let mut loops = tokio::task::JoinSet::new();
        for i in 0..self.settings.concurrency {
            loops.spawn(self.clone().run_loop(i == 0));
        }
        shutdown.await;
        self.stopping.send_replace(true);
        tracing::info!("delivery stopping: no new sends; sends in progress finish");
        self.queued.notify_waiters();
        let drained =
            tokio::time::timeout(grace, async { while loops.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                "sends still in progress at shutdown are queued again at the next start"
            );
            loops.abort_all();
        }
        let _ = keeper.await;
        if self.role.is_active() {
            // Sends are done: the next replica need not wait for the lease to lapse.
            self.role.hold_until(None);
            let (holder, margin) = (Arc::clone(&self.holder), self.settings.lease.margin);
            match self.store(move |q| q.release_lease(&holder, margin)).await {
                Ok(()) => tracing::info!("delivery lease given up"),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot give up the delivery lease; it lapses on its own"
                ),
            }
        }
        tracing::info!("delivery worker stopped");
    }
}

/// How much later than its recorded time a call of the previous process may have started.
const RESUME_MARGIN: Duration = Duration::from_secs(1);

/// A pacer that knows the sends of the current window and any pause kept by the previous
/// process.
fn resume_pacer(
    ledger: &dyn VendorLedger,
    limit: usize,
    window: Duration,
) -> anyhow::Result<Pacer> {
    let mut pacer = Pacer::new(limit, window);
    let (now, wall) = (Instant::now(), SystemTime::now());
    // The wall-clock times become instants of this process; one from the "future" (a clock set
    // back) counts as just made. A time is written before its call, which starts once the write
    // is done: count each call as up to RESUME_MARGIN later than written, for a slow disk.
    let instant = |at: SystemTime| {
        wall.duration_since(at)
            .ok()
            .and_then(|age| now.checked_sub(age))
            .unwrap_or(now)
            + RESUME_MARGIN
    };
    // Every send that can still count: the window, its guard, and the margin.
    let sends = ledger.calls_since(
        CallKind::Send,
        wall - (window + policy::PACE_GUARD + RESUME_MARGIN),
    )?;
    for at in &sends {
        pacer.record(instant(*at));
    }
    if !sends.is_empty() {
        tracing::info!(
            sends = sends.len(),
            "the previous process's sends of the current rate window still count"
        );
    }
    if let Some(pause) = ledger.load_pause(wall)? {
        let left = pause.until.duration_since(wall).unwrap_or_default();
        tracing::warn!(reason = %pause.reason, resume_in = %humantime::format_duration(left), "sending is paused, as the previous process left it");
        pacer.pause_until(now + left);
    }
    Ok(pacer)
}
