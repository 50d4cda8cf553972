//! The delivery decisions, as pure functions with table tests: how a vendor answer is
//! classified, when a message is tried again or given up, and how sends are paced under the
//! vendor's rate limit.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Days, TimeZone, Utc};

/// What one send attempt came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A JSON answer with this `errorCode`.
    Code(i64),
    /// An HTTP status other than 200 (with or without a body).
    Http(u16),
    /// A 200 whose body is not JSON: almost always a wrong `base_url`.
    NotJson,
    /// No answer within the request timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
}

/// What an answer means for the message and the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Done.
    Delivered,
    /// A transient failure: try again on the retry schedule.
    RetryLater,
    /// The vendor's rate limit: back the whole sender off, then retry.
    SlowDown,
    /// The token is invalid or expired: refresh it once and retry at once.
    RefreshToken,
    /// The daily quota is used up: resume after the vendor's midnight.
    QuotaReset,
    /// Retrying cannot help: the message is dead until an admin replays it.
    Permanent,
}

/// Classifies an answer by the table of `fxiaoke-api.md`.
pub fn classify(answer: &Answer) -> Verdict {
    match answer {
        Answer::Code(0) => Verdict::Delivered,
        Answer::Code(-1 | -2 | 50009) => Verdict::RetryLater,
        Answer::Code(14001 | 30004) => Verdict::SlowDown,
        Answer::Code(20016) => Verdict::RefreshToken,
        Answer::Code(30002) => Verdict::QuotaReset,
        // 30003 no quota bought; 2002x/15003/20014 app disabled or not authorised;
        // 10015/11016 bad toUser; 11017/12003 bad msgType; anything unknown: not retryable.
        Answer::Code(_) => Verdict::Permanent,
        Answer::Http(429) => Verdict::SlowDown,
        Answer::Http(_) | Answer::NotJson | Answer::Timeout | Answer::Connect => {
            Verdict::RetryLater
        }
    }
}

/// What to do with a message after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Mark it delivered.
    Delivered,
    /// Queue it again for this time.
    RetryAt(SystemTime),
    /// Give up: dead, with the reason.
    Dead(String),
}

/// The retry policy's inputs besides the verdict.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delays after the 1st, 2nd, … failed attempt.
    pub schedule: Vec<Duration>,
    /// Messages older than this are given up.
    pub max_age: Duration,
}

/// Decides the next step after attempt number `attempt` (1 for the first) of a message created
/// at `created`. `jitter` in [-1, 1] spreads retries by up to ±20%.
pub fn next_step(
    policy: &RetryPolicy,
    verdict: Verdict,
    attempt: usize,
    created: SystemTime,
    now: SystemTime,
    jitter: f64,
) -> Next {
    match verdict {
        Verdict::Delivered => return Next::Delivered,
        Verdict::Permanent => return Next::Dead("the vendor answered a permanent error".into()),
        Verdict::QuotaReset => return Next::RetryAt(next_vendor_midnight(now)),
        _ => {}
    }
    if now.duration_since(created).unwrap_or_default() >= policy.max_age {
        return Next::Dead(format!(
            "older than delivery.max_age ({})",
            humantime::format_duration(policy.max_age)
        ));
    }
    let Some(delay) = policy.schedule.get(attempt.saturating_sub(1)) else {
        return Next::Dead(format!("retry schedule exhausted after {attempt} attempts"));
    };
    let factor = 1.0 + 0.2 * jitter.clamp(-1.0, 1.0);
    Next::RetryAt(now + delay.mul_f64(factor))
}

/// The next midnight in Asia/Shanghai, when the vendor's daily quota resets.
pub fn next_vendor_midnight(now: SystemTime) -> SystemTime {
    let tz = chrono_tz::Asia::Shanghai;
    let local = DateTime::<Utc>::from(now).with_timezone(&tz);
    let tomorrow = local.date_naive().checked_add_days(Days::new(1));
    tomorrow
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| tz.from_local_datetime(&t).single())
        .map(|t| SystemTime::from(t.with_timezone(&Utc)))
        .unwrap_or(now + Duration::from_secs(24 * 3600))
}

/// Added to the window: the vendor counts a call when it arrives, a little after we start it,
/// and one call may travel slower than another (a new connection, a busy network).
pub const PACE_GUARD: Duration = Duration::from_millis(100);

/// A sliding-window limiter: never more than `limit` sends in any `window` (plus
/// [`PACE_GUARD`]), and a pause that backs the whole sender off.
#[derive(Debug)]
pub struct Pacer {
    limit: usize,
    window: Duration,
    /// Send times, oldest first (reserved slots until [`Pacer::settle`] puts the real time).
    sent: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl Pacer {
    /// A pacer allowing `limit` sends per `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        Pacer {
            limit: limit.max(1),
            window: window + PACE_GUARD,
            sent: VecDeque::new(),
            paused_until: None,
        }
    }

    /// Replaces the reserved slot `reserved` by the time the call really started (after the
    /// send was written to the store), keeping the times in order.
    pub fn settle(&mut self, reserved: Instant, started: Instant) {
        let Some(i) = self.sent.iter().rposition(|t| *t == reserved) else {
            self.record(started);
            return;
        };
        self.sent.remove(i);
        self.record(started);
    }

    /// When the next send may go: `now`, or later.
    pub fn next_slot(&mut self, now: Instant) -> Instant {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.sent.pop_front();
        }
        let by_rate = if self.sent.len() < self.limit {
            now
        } else {
            // The oldest of the last `limit` sends leaves the window at this moment.
            self.sent
                .get(self.sent.len() - self.limit)
                .map_or(now, |t| *t + self.window)
        };
        match self.paused_until {
            Some(p) if p > by_rate => p,
            _ => by_rate,
        }
    }

    /// Gives back a reserved slot whose send was not made.
    pub fn cancel(&mut self, reserved: Instant) {
        if let Some(i) = self.sent.iter().rposition(|t| *t == reserved) {
            self.sent.remove(i);
        }
    }

    /// True while a pause holds every send.
    pub fn is_paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|p| p > now)
    }

    /// Records a send made at `at` (in order: usually the newest).
    pub fn record(&mut self, at: Instant) {
        let i = self
            .sent
            .iter()
            .rposition(|t| *t <= at)
            .map_or(0, |i| i + 1);
        self.sent.insert(i, at);
    }

    /// Holds every send until `until`.
    pub fn pause_until(&mut self, until: Instant) {
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_is_classified_by_the_vendor_table() {
        let table = [
            (Answer::Code(0), Verdict::Delivered),
            (Answer::Code(-1), Verdict::RetryLater),
            (Answer::Code(-2), Verdict::RetryLater),
            (Answer::Code(50009), Verdict::RetryLater),
            (Answer::Code(14001), Verdict::SlowDown),
            (Answer::Code(30004), Verdict::SlowDown),
            (Answer::Code(20016), Verdict::RefreshToken),
            (Answer::Code(30002), Verdict::QuotaReset),
            (Answer::Code(30003), Verdict::Permanent),
            (Answer::Code(20021), Verdict::Permanent),
            (Answer::Code(20022), Verdict::Permanent),
            (Answer::Code(15003), Verdict::Permanent),
            (Answer::Code(20014), Verdict::Permanent),
            (Answer::Code(20020), Verdict::Permanent),
            (Answer::Code(10015), Verdict::Permanent),
            (Answer::Code(11016), Verdict::Permanent),
            (Answer::Code(11017), Verdict::Permanent),
            (Answer::Code(12003), Verdict::Permanent),
            (Answer::Code(99999), Verdict::Permanent),
            (Answer::Http(500), Verdict::RetryLater),
            (Answer::Http(502), Verdict::RetryLater),
            (Answer::Http(429), Verdict::SlowDown),
            (Answer::NotJson, Verdict::RetryLater),
            (Answer::Timeout, Verdict::RetryLater),
            (Answer::Connect, Verdict::RetryLater),
        ];
        for (answer, verdict) in table {
            assert_eq!(classify(&answer), verdict, "{answer:?}");
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            schedule: vec![Duration::from_secs(5), Duration::from_secs(30)],
            max_age: Duration::from_secs(3600),
        }
    }

    #[test]
    fn retries_follow_the_schedule_with_jitter_then_the_message_dies() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cases = [
            (
                Verdict::RetryLater,
                1,
                0.0,
                Next::RetryAt(t0 + Duration::from_secs(5)),
            ),
            (
                Verdict::RetryLater,
                1,
                1.0,
                Next::RetryAt(t0 + Duration::from_secs(6)),
            ),
            (
                Verdict::SlowDown,
                2,
                -1.0,
                Next::RetryAt(t0 + Duration::from_secs(24)),
            ),
            (
                Verdict::RetryLater,
                3,
                0.0,
                Next::Dead("retry schedule exhausted after 3 attempts".into()),
            ),
            (
                Verdict::Permanent,
                1,
                0.0,
                Next::Dead("the vendor answered a permanent error".into()),
            ),
            (Verdict::Delivered, 3, 0.0, Next::Delivered),
        ];
        for (verdict, attempt, jitter, want) in cases {
            assert_eq!(
                next_step(&policy(), verdict, attempt, t0, t0, jitter),
                want,
                "{verdict:?} #{attempt}"
            );
        }
    }

    #[test]
    fn a_message_older_than_the_maximum_age_dies_instead_of_retrying() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = t0 + Duration::from_secs(3601);
        assert!(matches!(
            next_step(&policy(), Verdict::RetryLater, 1, t0, later, 0.0),
            Next::Dead(reason) if reason.contains("max_age")
        ));
    }

    #[test]
    fn the_daily_quota_resumes_after_midnight_in_shanghai() {
        // 2026-11-25 15:30 UTC is 23:30 in Shanghai: midnight there is 16:00 UTC.
        let now = SystemTime::from(Utc.with_ymd_and_hms(2026, 11, 25, 15, 30, 0).unwrap());
        let want = SystemTime::from(Utc.with_ymd_and_hms(2026, 11, 25, 16, 0, 0).unwrap());
        assert_eq!(next_vendor_midnight(now), want);
        assert_eq!(
            next_step(&policy(), Verdict::QuotaReset, 9, now, now, 0.0),
            Next::RetryAt(want)
        );
    }

    #[test]
    fn the_pacer_never_allows_more_than_the_limit_in_any_window() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(3, Duration::from_secs(10));
        let mut sent = Vec::new();
        let mut now = t0;
        for _ in 0..10 {
            let slot = pacer.next_slot(now);
            now = slot.max(now);
            pacer.record(now);
            sent.push(now);
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(10))
                .count();
            assert!(in_window <= 3, "{in_window} sends within 10 s");
        }
        // A burst of three goes at once; the fourth waits for the first to leave the window.
        assert_eq!(sent[2], t0);
        assert_eq!(sent[3], t0 + Duration::from_secs(10) + PACE_GUARD);
    }

    #[test]
    fn a_send_that_started_later_than_its_slot_counts_from_when_it_started() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut pacer = Pacer::new(2, Duration::from_secs(1));
        let (a, b) = (pacer.next_slot(t0), t0);
        pacer.record(a);
        pacer.record(b);
        // The first call started 40 ms after its slot (a slow write before it).
        pacer.settle(a, t0 + ms(40));
        let window = Duration::from_secs(1) + PACE_GUARD;
        assert_eq!(
            pacer.next_slot(t0),
            t0 + window,
            "the earliest is now the second"
        );
        pacer.record(t0 + window);
        assert_eq!(pacer.next_slot(t0), t0 + ms(40) + window);
    }

    #[test]
    fn a_pause_holds_every_send_until_it_ends() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(100, Duration::from_secs(20));
        pacer.pause_until(t0 + Duration::from_secs(20));
        assert_eq!(pacer.next_slot(t0), t0 + Duration::from_secs(20));
        pacer.pause_until(t0 + Duration::from_secs(5));
        assert_eq!(pacer.next_slot(t0), t0 + Duration::from_secs(20));
    }
}
