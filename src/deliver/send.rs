//! One live attempt: a token, a send slot under the rate limit (written to the ledger before the
//! call), the call, and the decision the retry policy makes of the answer — as records and a
//! [`Transition`] for the store.

use std::time::{Instant, SystemTime};

use super::Worker;
use super::fxiaoke::{CallReport, FxiaokeClient};
use super::policy::{self, Answer, Next, Verdict, classify, next_step};
use crate::store::vendor::CallKind;
use crate::store::{
    AttemptOutcome, AttemptRecord, Claimed, MessageState, Transition, from_unix_ms,
};

/// The outcome of sending one message: its calls and the verdict of the last one.
pub(super) struct Sent {
    pub(super) records: Vec<AttemptRecord>,
    pub(super) verdict: Verdict,
    pub(super) error: Option<String>,
    /// False when no send was made (no token): the attempt does not use up the schedule.
    pub(super) counts: bool,
}

/// What became of a claimed message.
pub(super) enum Attempt {
    /// Calls were made (or a token could not be had): record them and move the message on.
    Made(Sent),
    /// No call was made and none will be now: the message goes back to the queue as it was.
    Released(Unsent),
}

/// Why a claimed message was not sent.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unsent {
    /// Shutdown began.
    Stopping,
    /// A pause (rate limit, daily quota) began while it waited for its slot.
    Paused,
    /// The send could not be written to the ledger first: the store is failing.
    NotRecorded,
    /// The delivery lease is no longer surely held: another replica may be sending.
    Standby,
}

impl Unsent {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Unsent::Stopping => "shutting down",
            Unsent::Paused => "sending is paused",
            Unsent::NotRecorded => "the send could not be recorded in the store first",
            Unsent::Standby => "this replica no longer holds the delivery lease",
        }
    }
}

impl Worker {
    /// Waits for a send slot under the rate limit (and any pause), then writes the send's time
    /// to the ledger, before the call. `Err` when no call may be made now.
    async fn pace(&self) -> Result<(), Unsent> {
        // Woken when a pause begins, so that a claimed message never waits for its slot
        // through a pause (registered before the slot is taken: no pause can slip between).
        let paused = self.paused.notified();
        tokio::pin!(paused);
        paused.as_mut().enable();
        let slot = {
            let mut pacer = self.pacer.lock().await;
            let now = Instant::now();
            // Paused (rate limit, daily quota): do not hold the message until the pause ends.
            if pacer.is_paused(now) {
                return Err(Unsent::Paused);
            }
            let slot = pacer.next_slot(now);
            pacer.record(slot);
            slot
        };
        let cancel = |why| async move {
            self.pacer.lock().await.cancel(slot);
            Err(why)
        };
        let waited = self
            .unless_stopping(async {
                tokio::select! {
                    _ = tokio::time::sleep_until(slot.into()) => true,
                    _ = &mut paused => false,
                }
            })
            .await;
        match waited {
            None => return cancel(Unsent::Stopping).await,
            Some(false) => return cancel(Unsent::Paused).await,
            Some(true) => {}
        }
        // Another send may have met a rate-limit or quota answer just now.
        if self.pacer.lock().await.is_paused(Instant::now()) {
            return cancel(Unsent::Paused).await;
        }
        let now = SystemTime::now();
        if let Err(e) = self
            .ledger(move |l| l.record_call(CallKind::Send, now))
            .await
        {
            tracing::error!(
                error = format!("{e:#}"),
                "cannot record the send in the store"
            );
            return cancel(Unsent::NotRecorded).await;
        }
        // The call starts now, after the write: count the window from here.
        self.pacer.lock().await.settle(slot, Instant::now());
        // Shutdown may have begun while the time was written: then no call starts; nor when the
        // lease could have lapsed meanwhile.
        if self.is_stopping() {
            return Err(Unsent::Stopping);
        }
        if !self.role.is_active() {
            return Err(Unsent::Standby);
        }
        Ok(())
    }

    pub(super) async fn send_live(&self, client: &FxiaokeClient, msg: &Claimed) -> Attempt {
        let mut records = Vec::new();
        let mut refreshed = false;
        loop {
            let Some(token) = self.unless_stopping(client.token()).await else {
                // A send refused as a stale token (20016) was made and recorded: let it count.
                return match records.is_empty() {
                    true => Attempt::Released(Unsent::Stopping),
                    false => Attempt::Made(Sent {
                        records,
                        verdict: Verdict::RetryLater,
                        error: Some("token refresh cut off by shutdown".into()),
                        counts: true,
                    }),
                };
            };
            let token = match token {
                Ok(t) => t,
                Err(failure) => {
                    if let Some(report) = &failure.report {
                        records.push(record(AttemptOutcome::TokenFailed, report));
                    }
                    let (third, trace) = failure.report.as_ref().map_or(("-", "-"), |r| {
                        (
                            r.third_trace_id.as_str(),
                            r.trace_id.as_deref().unwrap_or("-"),
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
                        // Only a send made before (refused as a stale token) uses up the schedule.
                        counts: refreshed,
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
                        error: Some(format!(
                            "token refreshed; the retry was not sent: {}",
                            why.describe()
                        )),
                        counts: true,
                    }),
                };
            }
            let call_started = Instant::now();
            tracing::debug!(
                message_id = msg.id,
                endpoint = "/cgi/message/send",
                "calling the vendor"
            );
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
                records.push(record(AttemptOutcome::TokenRefresh, &report));
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
                Verdict::Delivered => AttemptOutcome::Delivered,
                Verdict::SlowDown => AttemptOutcome::SlowDown,
                Verdict::QuotaReset => AttemptOutcome::Quota,
                Verdict::Permanent => AttemptOutcome::Refused,
                Verdict::RetryLater | Verdict::RefreshToken => AttemptOutcome::Retry,
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
    pub(super) async fn decide(&self, msg: &Claimed, sent: &Sent) -> Transition {
        let now = SystemTime::now();
        let created = from_unix_ms(msg.created_at);
        let attempt = msg.attempts as usize + usize::from(sent.counts);
        let next = next_step(
            &self.settings.retry,
            sent.verdict,
            attempt.max(1),
            created,
            now,
            rand_unit(),
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
        let (state, next_attempt_at, last_error) = match next {
            Next::Delivered => (MessageState::Delivered, None, None),
            Next::RetryAt(at) => (MessageState::Queued, Some(at), sent.error.clone()),
            Next::Dead(why) => {
                let error = match &sent.error {
                    Some(e) => format!("{e}; {why}"),
                    None => why,
                };
                tracing::error!(message_id = msg.id, event_id = %msg.event_id, %error, "message is dead; an admin can replay it");
                (MessageState::Dead, None, Some(error))
            }
        };
        Transition {
            state,
            next_attempt_at,
            last_error,
            counts: sent.counts,
        }
    }
}

fn record(outcome: AttemptOutcome, r: &CallReport) -> AttemptRecord {
    AttemptRecord {
        outcome,
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
    let mut text = match &r.answer {
        Answer::Code(c) => format!("errorCode {c}"),
        Answer::Http(s) => format!("HTTP {s}"),
        Answer::NotJson => "not a JSON answer".into(),
        Answer::Timeout => "timeout".into(),
        Answer::Connect => "connection failed".into(),
    };
    if let Some(m) = &r.message {
        text.push_str(": ");
        text.push_str(m);
    }
    match &r.trace_id {
        Some(t) => text.push_str(&format!(
            " (traceId {t}, thirdTraceId {})",
            r.third_trace_id
        )),
        None => text.push_str(&format!(" (thirdTraceId {})", r.third_trace_id)),
    }
    text
}

fn log_call(msg: &Claimed, r: &CallReport, verdict: Verdict) {
    let trace_id = r.trace_id.as_deref().unwrap_or("-");
    let code = match r.answer {
        Answer::Code(c) => c.to_string(),
        _ => "-".into(),
    };
    tracing::debug!(message_id = msg.id, endpoint = "/cgi/message/send", error_code = %code,
        http_status = r.http_status, third_trace_id = %r.third_trace_id, trace_id, verdict = ?verdict, "vendor answered");
    if verdict == Verdict::Delivered {
        tracing::info!(message_id = msg.id, event_id = %msg.event_id, third_trace_id = %r.third_trace_id,
            trace_id, "message delivered");
    } else {
        tracing::warn!(message_id = msg.id, event_id = %msg.event_id, third_trace_id = %r.third_trace_id,
            trace_id, verdict = ?verdict, error = %describe(r), "send failed");
    }
}

/// A value in [-1, 1] for retry jitter (from the UUID generator's randomness: no extra crate).
fn rand_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u32;
    f64::from(bits) / f64::from(u32::MAX) * 2.0 - 1.0
}
