//! Deliver: the last step. Workers take due messages from the store, send each through the
//! Fxiaoke client (paced under the vendor's rate limit), record every call as an attempt, and
//! move the message on: delivered, queued again on the retry schedule, or dead. In dry run (the
//! default when no credentials are configured) "sending" is logging the exact body. A message
//! taken by a process that died is queued again when the next process starts.
//!
//! The pacer resumes from the store's [`VendorLedger`]: every send's time is written there
//! before the call, and so is any pause, so a restart neither forgets the sends of the current
//! window nor a back-off. On shutdown the worker claims nothing more, puts back a claimed message
//! that is still waiting for its send slot, starts no new vendor call, and lets a call already
//! on the wire finish.
//!
//! Layout: [`policy`] holds the pure decisions (classification, retries, pacing); [`fxiaoke`]
//! is the vendor client.

pub mod fxiaoke;
pub mod policy;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::Connection;
use tokio::sync::Notify;

use crate::store::health::StoreHealth;
use crate::store::vendor::{CallKind, Pause, VendorLedger};
use crate::store::{self, AttemptRecord, Claimed, Transition};
use fxiaoke::{CallReport, FxiaokeClient};
use policy::{Answer, Next, Pacer, RetryPolicy, Verdict, classify, next_step};

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
    /// A claim older than this was lost (store error, dead task): the message is queued again.
    pub stale_after: Duration,
}

/// The delivery worker (cheap to clone: its clones share the store, pacer and client).
#[derive(Clone)]
pub struct Worker {
    conn: Arc<Mutex<Connection>>,
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
}

/// The outcome of sending one message: its calls and the verdict of the last one.
struct Sent {
    records: Vec<AttemptRecord>,
    verdict: Verdict,
    error: Option<String>,
    /// False when no send was made (no token): the attempt does not use up the schedule.
    counts: bool,
}

/// What became of a claimed message.
enum Attempt {
    /// Calls were made (or a token could not be had): record them and move the message on.
    Made(Sent),
    /// No call was made and none will be now (shutdown, or the send could not be recorded
    /// first): the message goes back to the queue as it was.
    Released(&'static str),
}

impl Worker {
    /// A worker on its own connection; puts back messages a dead process left in flight.
    ///
    /// # Errors
    /// A database error.
    pub fn new(
        conn: Connection,
        mode: Mode,
        queued: Arc<Notify>,
        settings: WorkerSettings,
        ledger: Arc<dyn VendorLedger>,
        health: Arc<StoreHealth>,
    ) -> anyhow::Result<Worker> {
        let requeued = store::requeue_in_flight(&conn, SystemTime::now())?;
        if requeued > 0 {
            tracing::warn!(
                messages = requeued,
                "messages left in flight by a previous process are queued again"
            );
        }
        let pacer = resume_pacer(ledger.as_ref(), &settings)?;
        Ok(Worker {
            conn: Arc::new(Mutex::new(conn)),
            mode,
            queued,
            settings: Arc::new(settings),
            pacer: Arc::new(tokio::sync::Mutex::new(pacer)),
            ledger,
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            health,
        })
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

    /// Runs a ledger call off the async threads.
    async fn ledger<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn VendorLedger) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        crate::store::vendor::off_thread(&self.ledger, f).await
    }

    /// Holds every send until `until` (monotonic, for this process) and keeps the pause for
    /// the next process.
    async fn pause(&self, wait: Duration, reason: &str) {
        self.pacer.lock().await.pause_until(Instant::now() + wait);
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

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| anyhow::anyhow!("store connection poisoned"))?;
            f(&mut guard)
        })
        .await
        .context("store task failed")?
    }

    /// Takes one due message and handles it.
    ///
    /// # Errors
    /// A database error; the message (if taken) stays in flight and is queued again at the
    /// next start.
    pub async fn try_execute_task(&self) -> anyhow::Result<Step> {
        if let Mode::DryRun = self.mode {
            let n = self
                .with_conn(|c| {
                    store::deliver_dry_run(c, SystemTime::now(), 64, |m| {
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
        if let Mode::Live(_) = self.mode {
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
        }
        if self.is_stopping() {
            return Ok(Step::Idle);
        }
        let Some(msg) = self
            .with_conn(|c| store::claim_next(c, SystemTime::now()))
            .await?
        else {
            return Ok(Step::Idle);
        };
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
        let sent = match self.send_live(client, &msg).await {
            Attempt::Made(sent) => sent,
            Attempt::Released(why) => {
                let id = msg.id;
                self.with_conn(move |c| store::release_claim(c, id)).await?;
                tracing::info!(message_id = id, why, "message put back in the queue unsent");
                return if self.is_stopping() {
                    Ok(Step::Idle)
                } else {
                    Err(anyhow::anyhow!("message {id} not sent: {why}"))
                };
            }
        };
        let transition = self.decide(&msg, &sent).await;
        let id = msg.id;
        let records = sent.records;
        let state = transition.state.to_string();
        let next = transition.next_attempt_at;
        let error = transition.last_error.clone();
        let counts = transition.counts;
        // The send happened: recording it must not be lost to a brief store error. Retry with
        // backoff; if the store stays unavailable the claim goes stale and is queued again.
        let mut delay = Duration::from_millis(200);
        for attempt in 1.. {
            let (records, state, error) = (records.clone(), state.clone(), error.clone());
            let done = self
                .with_conn(move |c| {
                    store::finish_attempt(
                        c,
                        id,
                        started,
                        &records,
                        &Transition {
                            state: &state,
                            next_attempt_at: next,
                            last_error: error,
                            counts,
                        },
                    )
                })
                .await;
            match done {
                Ok(()) => break,
                Err(e) if attempt < 6 => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        attempt,
                        "cannot record the attempt yet; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        match transition.state {
            "delivered" => crate::metrics::message("delivered"),
            "dead" => crate::metrics::message("dead"),
            _ => {}
        }
        Ok(Step::Handled)
    }

    /// Waits for a send slot under the rate limit (and any pause), then writes the send's time
    /// to the ledger, before the call. `Err` when shutdown began first or the time could not be
    /// written: then no call may be made.
    async fn pace(&self) -> Result<(), &'static str> {
        let slot = {
            let mut pacer = self.pacer.lock().await;
            let slot = pacer.next_slot(Instant::now());
            pacer.record(slot);
            slot
        };
        self.unless_stopping(tokio::time::sleep_until(slot.into()))
            .await
            .ok_or("shutting down")?;
        let now = SystemTime::now();
        if let Err(e) = self
            .ledger(move |l| l.record_call(CallKind::Send, now))
            .await
        {
            tracing::error!(
                error = format!("{e:#}"),
                "cannot record the send in the store"
            );
            return Err("the send could not be recorded in the store first");
        }
        // The call starts now, after the write: count the window from here.
        self.pacer.lock().await.settle(slot, Instant::now());
        // Shutdown may have begun while the time was written: then no call starts.
        if self.is_stopping() {
            return Err("shutting down");
        }
        Ok(())
    }

    async fn send_live(&self, client: &FxiaokeClient, msg: &Claimed) -> Attempt {
        let mut records = Vec::new();
        let mut refreshed = false;
        loop {
            let Some(token) = self.unless_stopping(client.token()).await else {
                return Attempt::Released("shutting down");
            };
            let token = match token {
                Ok(t) => t,
                Err(failure) => {
                    if let Some(report) = &failure.report {
                        records.push(record("token-failed", report));
                    }
                    let (third, trace) =
                        failure
                            .report
                            .as_ref()
                            .map_or(("-".to_string(), "-".to_string()), |r| {
                                (
                                    r.third_trace_id.clone(),
                                    r.trace_id.clone().unwrap_or_else(|| "-".into()),
                                )
                            });
                    tracing::error!(message_id = msg.id, reason = %failure.reason, third_trace_id = %third, trace_id = %trace, "no access token");
                    // No send was made: hold every send for a window instead of cycling the
                    // whole queue through failed token fetches, and keep the schedule intact.
                    self.pause(self.settings.rate_window, "no access token")
                        .await;
                    return Attempt::Made(Sent {
                        records,
                        verdict: Verdict::RetryLater,
                        error: Some(failure.reason),
                        counts: false,
                    });
                }
            };
            if let Err(why) = self.pace().await {
                // A refused first call (20016) was made and recorded: let it count.
                return match records.is_empty() {
                    true => Attempt::Released(why),
                    false => Attempt::Made(Sent {
                        records,
                        verdict: Verdict::RetryLater,
                        error: Some(format!("token refreshed; the retry was not sent: {why}")),
                        counts: true,
                    }),
                };
            }
            let call_started = Instant::now();
            let report = client.send(&token, &msg.body).await;
            let verdict = classify(&report.answer);
            crate::metrics::delivery_attempt(
                &format!("{verdict:?}").to_lowercase(),
                call_started.elapsed(),
            );
            if let Answer::Code(code) = report.answer
                && code != 0
            {
                crate::metrics::vendor_error(code);
            }
            log_call(msg, &report, verdict);
            if verdict == Verdict::RefreshToken && !refreshed {
                // The token is stale: drop it (unless someone already did), fetch once, retry at once.
                records.push(record("token-refresh", &report));
                client.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            let verdict = if verdict == Verdict::RefreshToken {
                Verdict::RetryLater
            } else {
                verdict
            };
            let outcome = match verdict {
                Verdict::Delivered => "delivered",
                Verdict::SlowDown => "slow-down",
                Verdict::QuotaReset => "quota",
                Verdict::Permanent => "refused",
                _ => "retry",
            };
            let error = (verdict != Verdict::Delivered).then(|| describe(&report));
            records.push(record(outcome, &report));
            return Attempt::Made(Sent {
                records,
                verdict,
                error,
                counts: true,
            });
        }
    }

    /// Applies the policy, and backs the whole sender off on a slow-down or quota answer.
    async fn decide(&self, msg: &Claimed, sent: &Sent) -> Transition<'static> {
        let now = SystemTime::now();
        let created = UNIX_EPOCH + Duration::from_millis(msg.created_at.max(0) as u64);
        let jitter = rand_unit();
        let attempt = msg.attempts as usize + usize::from(sent.counts);
        let next = next_step(
            &self.settings.retry,
            sent.verdict,
            attempt.max(1),
            created,
            now,
            jitter,
        );
        match sent.verdict {
            Verdict::SlowDown => {
                self.pause(self.settings.rate_window, "the vendor asked to slow down")
                    .await
            }
            Verdict::QuotaReset => {
                if let Ok(wait) = policy::next_vendor_midnight(now).duration_since(now) {
                    tracing::error!(
                        "the daily OpenAPI quota is used up (30002): sending resumes after midnight Asia/Shanghai"
                    );
                    self.pause(wait, "daily quota used up (30002)").await;
                }
            }
            _ => {}
        }
        match next {
            Next::Delivered => Transition {
                state: "delivered",
                next_attempt_at: None,
                last_error: None,
                counts: sent.counts,
            },
            Next::RetryAt(at) => Transition {
                state: "queued",
                next_attempt_at: Some(at),
                last_error: sent.error.clone(),
                counts: sent.counts,
            },
            Next::Dead(why) => {
                let error = match &sent.error {
                    Some(e) => format!("{e}; {why}"),
                    None => why,
                };
                tracing::error!(message_id = msg.id, event_id = %msg.event_id, %error, "message is dead; an admin can replay it");
                Transition {
                    state: "dead",
                    next_attempt_at: None,
                    last_error: Some(error),
                    counts: sent.counts,
                }
            }
        }
    }
    /// Queues again the claims that went stale (see [`WorkerSettings::stale_after`]).
    async fn reap(&self) {
        let cutoff = SystemTime::now() - self.settings.stale_after;
        match self
            .with_conn(move |c| store::requeue_stale(c, cutoff))
            .await
        {
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
            .with_conn(move |c| store::prune(c, SystemTime::now(), keep_delivered, keep_dead))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned events past their retention"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot prune old events"),
        }
    }

    async fn run_loop(self, prunes: bool) {
        let mut stop = self.stopping.subscribe();
        let mut last_prune: Option<Instant> = None;
        let mut last_reap = Instant::now();
        while !*stop.borrow_and_update() {
            if prunes && last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(600)) {
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
        tracing::info!("delivery worker stopped");
    }
}

fn record(outcome: &str, r: &CallReport) -> AttemptRecord {
    AttemptRecord {
        outcome: outcome.to_string(),
        http_status: r.http_status,
        error_code: match r.answer {
            Answer::Code(c) => Some(c),
            _ => None,
        },
        error_message: r.message.clone(),
        trace_id: r.trace_id.clone(),
        third_trace_id: Some(r.third_trace_id.clone()),
    }
}

/// The admin-facing text of a failed call: code, message and both trace ids.
fn describe(r: &CallReport) -> String {
    let what = match &r.answer {
        Answer::Code(c) => format!("errorCode {c}"),
        Answer::Http(s) => format!("HTTP {s}"),
        Answer::NotJson => "not a JSON answer".into(),
        Answer::Timeout => "timeout".into(),
        Answer::Connect => "connection failed".into(),
    };
    let mut text = what;
    if let Some(m) = &r.message {
        text.push_str(": ");
        text.push_str(m);
    }
    if let Some(t) = &r.trace_id {
        text.push_str(&format!(" (traceId {t}"));
        text.push_str(&format!(", thirdTraceId {})", r.third_trace_id));
    } else {
        text.push_str(&format!(" (thirdTraceId {})", r.third_trace_id));
    }
    text
}

fn log_call(msg: &Claimed, r: &CallReport, verdict: Verdict) {
    if verdict == Verdict::Delivered {
        tracing::info!(message_id = msg.id, event_id = %msg.event_id, third_trace_id = %r.third_trace_id,
            trace_id = r.trace_id.as_deref().unwrap_or("-"), "message delivered");
    } else {
        tracing::warn!(message_id = msg.id, event_id = %msg.event_id, third_trace_id = %r.third_trace_id,
            trace_id = r.trace_id.as_deref().unwrap_or("-"), verdict = ?verdict, error = %describe(r), "send failed");
    }
}

/// How much later than its recorded time a call of the previous process may have started.
const RESUME_MARGIN: Duration = Duration::from_secs(1);

/// A pacer that knows the sends of the current window and any pause kept by the previous
/// process.
fn resume_pacer(ledger: &dyn VendorLedger, settings: &WorkerSettings) -> anyhow::Result<Pacer> {
    let mut pacer = Pacer::new(settings.rate_limit, settings.rate_window);
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
    let window_start = wall - settings.rate_window;
    let sends = ledger.calls_since(CallKind::Send, window_start)?;
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

/// A value in [-1, 1] for retry jitter (from the UUID generator's randomness: no extra crate).
fn rand_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u32;
    f64::from(bits) / f64::from(u32::MAX) * 2.0 - 1.0
}
