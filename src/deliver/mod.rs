//! Deliver: the last step. The worker takes due messages from the store one at a time, sends
//! each, records the attempt and moves the message on. In dry-run mode (the default when no
//! credentials are configured) "sending" is logging the exact request body, and the message is
//! stored as delivered in dry-run. A message taken by a process that died is put back in the
//! queue when the next process starts.

pub mod policy;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rusqlite::Connection;
use tokio::sync::Notify;

use crate::store::{self, AttemptRecord};

/// What one step of the worker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A message was handled (delivered, rescheduled or given up).
    Handled,
    /// Nothing is due.
    Idle,
}

/// How messages leave the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Log the body and mark the message delivered.
    DryRun,
}

/// The delivery worker.
#[derive(Clone)]
pub struct Worker {
    conn: Arc<Mutex<Connection>>,
    mode: Mode,
    queued: Arc<Notify>,
    poll_interval: Duration,
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
        poll_interval: Duration,
    ) -> anyhow::Result<Worker> {
        let requeued = store::requeue_in_flight(&conn, SystemTime::now())?;
        if requeued > 0 {
            tracing::warn!(
                messages = requeued,
                "messages left in flight by a previous process are queued again"
            );
        }
        Ok(Worker {
            conn: Arc::new(Mutex::new(conn)),
            mode,
            queued,
            poll_interval,
        })
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
        let Some(msg) = self
            .with_conn(|c| store::claim_next(c, SystemTime::now()))
            .await?
        else {
            return Ok(Step::Idle);
        };
        let started = SystemTime::now();
        let (record, state) = match self.mode {
            Mode::DryRun => {
                tracing::info!(
                    message_id = msg.id,
                    event_id = %msg.event_id,
                    body = %msg.body,
                    "dry run: this body would be POSTed to /cgi/message/send"
                );
                (
                    AttemptRecord {
                        outcome: "dry-run".into(),
                        ..AttemptRecord::default()
                    },
                    "delivered",
                )
            }
        };
        let id = msg.id;
        self.with_conn(move |c| store::finish_attempt(c, id, started, &record, state, None))
            .await?;
        Ok(Step::Handled)
    }

    /// Runs until `shutdown` completes, sleeping when idle until a commit wakes it or the poll
    /// interval passes.
    pub async fn run_until_stopped(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let step = tokio::select! {
                _ = &mut shutdown => break,
                step = self.try_execute_task() => step,
            };
            match step {
                Ok(Step::Handled) => continue,
                Ok(Step::Idle) => {
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = self.queued.notified() => {}
                        _ = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "delivery worker step failed");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
            }
        }
        tracing::info!("delivery worker stopped");
    }
}
