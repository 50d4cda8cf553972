//! Metrics: every observable event of the pipeline is one function here that counts it, so
//! names and labels live in one place. Exposed at `/metrics` in the Prometheus text format by
//! `metrics-exporter-prometheus`; the gauges of the queue are read from the store at scrape
//! time. Counters that `product.md` promises exist at 0 from start-up.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::thread::LocalKey;
use std::time::Duration;

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the process-wide recorder once and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = builder.set_buckets(LATENCY_BUCKETS).unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => {
                    keep_up(handle.clone());
                    handle
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics stays empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// How often the exporter's upkeep runs (histogram samples drained into their buckets).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Runs the exporter's upkeep on a timer of its own: histogram samples otherwise pile up until
/// a scrape drains them, and many installations never scrape.
fn keep_up(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("fxhook-metrics".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
                counter!("fxhook_log_lines_dropped_total")
                    .absolute(crate::telemetry::dropped_lines());
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "metrics upkeep not started: memory grows until /metrics is scraped");
    }
}

/// A refusal's access-log line left out under a flood (the refusal itself is counted in
/// `fxhook_webhooks_total`).
pub fn refusal_line_left_out() {
    counter!("fxhook_log_refusals_left_out_total").increment(1);
}

/// The store's size on disk (database and WAL) and its bound (`store.max_bytes`).
pub fn store_bytes(bytes: u64, max_bytes: u64) {
    gauge!("fxhook_store_bytes").set(bytes as f64);
    gauge!("fxhook_store_max_bytes").set(max_bytes as f64);
}

/// How a webhook was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 202.
    Accepted,
    /// 200 ignored.
    Ignored,
    /// 200 duplicate.
    Duplicate,
    /// Refused, with a short reason: `unknown_source`, `inactive`, `signature`, `too_large`,
    /// `unsupported_media`, `malformed`, `store`.
    Rejected(&'static str),
}

/// Counts a webhook by source and outcome (`fxhook_webhooks_total`; a refused signature also
/// `fxhook_verification_failures_total`).
pub fn webhook(source: &str, outcome: Outcome) {
    with_cached(
        &WEBHOOKS,
        source,
        outcome,
        |c| c.increment(1),
        || {
            let source = source.to_string();
            match outcome {
                Outcome::Accepted => {
                    counter!("fxhook_webhooks_total", "source" => source, "outcome" => "accepted")
                }
                Outcome::Ignored => {
                    counter!("fxhook_webhooks_total", "source" => source, "outcome" => "ignored")
                }
                Outcome::Duplicate => {
                    counter!("fxhook_webhooks_total", "source" => source, "outcome" => "duplicate")
                }
                Outcome::Rejected(reason) => {
                    counter!("fxhook_webhooks_total", "source" => source, "outcome" => "rejected", "reason" => reason)
                }
            }
        },
    );
    if outcome == Outcome::Rejected("signature") {
        with_cached(
            &VERIFICATION_FAILURES,
            source,
            (),
            |c| c.increment(1),
            || counter!("fxhook_verification_failures_total", "source" => source.to_string()),
        );
    }
}

thread_local! {
    /// `fxhook_webhooks_total` by source, then outcome.
    static WEBHOOKS: Cached<Outcome, Counter> = RefCell::default();
    /// `fxhook_verification_failures_total` by source.
    static VERIFICATION_FAILURES: Cached<(), Counter> = RefCell::default();
    /// `fxhook_http_request_duration_seconds` by route, then status.
    static HTTP_DURATIONS: Cached<u16, Histogram> = RefCell::default();
    /// `fxhook_messages_total` by state.
    static MESSAGES: Cached<(), Counter> = RefCell::default();
}

/// Metric handles of one thread by their label values: a name (source, route, state), then a
/// few keys under it.
type Cached<K, M> = RefCell<HashMap<String, Vec<(K, M)>>>;

/// Runs `with` on the metric of `name` and `key`, made by `make` the first time this thread
/// needs it. Per-request metrics go through here: building a metric's key (its labels as owned
/// strings) and finding it in the registry cost more than the increment (issue 20: ~3k
/// instructions a request, more than the rest of a refusal's bookkeeping). Before the recorder
/// is installed nothing is kept, so that no thread holds a handle of the no-op recorder; the
/// names are the configured sources and the routes, so what is kept stays small.
fn with_cached<K: Copy + PartialEq, M>(
    cache: &'static LocalKey<Cached<K, M>>,
    name: &str,
    key: K,
    with: impl FnOnce(&M),
    make: impl FnOnce() -> M,
) {
    if HANDLE.get().is_none() {
        return with(&make());
    }
    cache.with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return with(&make());
        };
        if !cache.contains_key(name) {
            cache.insert(name.to_string(), Vec::new());
        }
        let Some(list) = cache.get_mut(name) else {
            return with(&make());
        };
        match list.iter().position(|(k, _)| *k == key) {
            Some(i) => with(&list[i].1),
            None => {
                let metric = make();
                with(&metric);
                list.push((key, metric));
            }
        }
    });
}

/// A verified event whose mapping failed (`fxhook_mapping_errors_total`).
pub fn mapping_failed(source: &str, rule: &str) {
    counter!("fxhook_mapping_errors_total", "source" => source.to_string(), "rule" => rule.to_string()).increment(1);
}

/// An event whose card was held back as a repeat (`fxhook_messages_suppressed_total`).
pub fn message_suppressed(source: &str, rule: &str) {
    counter!("fxhook_messages_suppressed_total", "source" => source.to_string(), "rule" => rule.to_string()).increment(1);
}

/// Messages that went out inside another's digest or fold (`fxhook_messages_coalesced_total`).
pub fn messages_coalesced(source: &str, rule: &str, n: u64) {
    counter!("fxhook_messages_coalesced_total", "source" => source.to_string(), "rule" => rule.to_string()).increment(n);
}

/// A message reached `delivered`, `failed` or `dead` (`fxhook_messages_total`).
pub fn message(state: &'static str) {
    with_cached(
        &MESSAGES,
        state,
        (),
        |c| c.increment(1),
        || counter!("fxhook_messages_total", "state" => state),
    );
}

/// One call to the vendor's send endpoint, by outcome, with its duration.
pub fn delivery_attempt(outcome: &str, took: Duration) {
    counter!("fxhook_delivery_attempts_total", "outcome" => outcome.to_string()).increment(1);
    histogram!("fxhook_delivery_duration_seconds").record(took.as_secs_f64());
}

/// A non-zero vendor `errorCode` (`fxhook_vendor_errors_total`).
pub fn vendor_error(code: i64) {
    // Only the codes of the vendor's table become label values; anything else is `other`.
    const KNOWN: &[i64] = &[
        -1, -2, 50009, 14001, 30004, 20016, 30002, 30003, 20021, 20022, 15003, 20014, 20020, 10015,
        11016, 11017, 12003, 10006, 20017,
    ];
    let label = if KNOWN.contains(&code) {
        code.to_string()
    } else {
        "other".to_string()
    };
    counter!("fxhook_vendor_errors_total", "code" => label).increment(1);
}

/// A token fetch, `ok` or `failed` (`fxhook_token_fetches_total`).
pub fn token_fetch(ok: bool) {
    counter!("fxhook_token_fetches_total", "result" => if ok { "ok" } else { "failed" })
        .increment(1);
}

/// An HTTP request by route pattern and status, with its latency.
pub fn http_request(route: &str, status: u16, took: Duration) {
    with_cached(
        &HTTP_DURATIONS,
        route,
        status,
        |h| h.record(took.as_secs_f64()),
        || histogram!("fxhook_http_request_duration_seconds", "route" => route.to_string(), "status" => status.to_string()),
    );
}

/// `fxhook_delivery_role`: 1 while this replica holds the delivery lease and sends, else 0.
pub fn delivery_role(active: bool) {
    gauge!("fxhook_delivery_role").set(if active { 1.0 } else { 0.0 });
}

/// The queue as the store sees it at scrape time.
pub fn queue(queued: i64, in_flight: i64, oldest_queued_age: Duration) {
    gauge!("fxhook_queue_depth", "state" => "queued").set(queued as f64);
    gauge!("fxhook_queue_depth", "state" => "in-flight").set(in_flight as f64);
    gauge!("fxhook_oldest_queued_age_seconds").set(oldest_queued_age.as_secs_f64());
}

/// Makes the promised counters exist at 0 for these sources.
pub fn zero(sources: &[String]) {
    delivery_role(false);
    for state in ["delivered", "failed", "dead"] {
        counter!("fxhook_messages_total", "state" => state).increment(0);
    }
    for source in sources {
        for outcome in ["accepted", "ignored", "duplicate"] {
            counter!("fxhook_webhooks_total", "source" => source.clone(), "outcome" => outcome)
                .increment(0);
        }
        counter!("fxhook_verification_failures_total", "source" => source.clone()).increment(0);
    }
}

/// Webhooks of the last hour by source, counted by this process for the console's overview
/// (Prometheus keeps the totals; this keeps a window a page can show without a query language).
/// One slot a minute, sixty of them; only sources of the mappings are counted.
#[derive(Debug, Default)]
pub struct LastHour {
    slots: std::sync::Mutex<std::collections::HashMap<String, [Minute; 60]>>,
}

/// One minute's counts.
#[derive(Debug, Default, Clone, Copy)]
struct Minute {
    /// Minutes since the epoch this slot counts.
    at: u64,
    counts: HourCounts,
}

/// Webhooks of one source in the last hour.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HourCounts {
    /// Answered 202.
    pub accepted: u64,
    /// Answered 200: ignored by the mapping, or a duplicate.
    pub ignored: u64,
    /// Refused (401, 400, 413, 415, 429, 503 …).
    pub rejected: u64,
}

fn minute_of(now: std::time::SystemTime) -> u64 {
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

impl LastHour {
    /// Counts one answer to `source` at `now`.
    pub fn record(&self, source: &str, outcome: Outcome, now: std::time::SystemTime) {
        let at = minute_of(now);
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        if !slots.contains_key(source) {
            slots.insert(source.to_string(), [Minute::default(); 60]);
        }
        let Some(minutes) = slots.get_mut(source) else {
            return;
        };
        let slot = &mut minutes[(at % 60) as usize];
        if slot.at != at {
            *slot = Minute {
                at,
                counts: HourCounts::default(),
            };
        }
        match outcome {
            Outcome::Accepted => slot.counts.accepted += 1,
            Outcome::Ignored | Outcome::Duplicate => slot.counts.ignored += 1,
            Outcome::Rejected(_) => slot.counts.rejected += 1,
        }
    }

    /// The counts of `source` over the sixty minutes up to `now`.
    pub fn of(&self, source: &str, now: std::time::SystemTime) -> HourCounts {
        let at = minute_of(now);
        let Ok(slots) = self.slots.lock() else {
            return HourCounts::default();
        };
        let Some(minutes) = slots.get(source) else {
            return HourCounts::default();
        };
        minutes
            .iter()
            .filter(|m| m.at + 60 > at && m.at <= at)
            .fold(HourCounts::default(), |sum, m| HourCounts {
                accepted: sum.accepted + m.counts.accepted,
                ignored: sum.ignored + m.counts.ignored,
                rejected: sum.rejected + m.counts.rejected,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn the_last_hour_counts_each_outcome_and_forgets_what_is_older() {
        let hour = LastHour::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 * 60);
        hour.record("github", Outcome::Accepted, t0);
        hour.record("github", Outcome::Duplicate, t0);
        hour.record(
            "github",
            Outcome::Rejected("signature"),
            t0 + Duration::from_secs(600),
        );
        let want = HourCounts {
            accepted: 1,
            ignored: 1,
            rejected: 1,
        };
        assert_eq!(hour.of("github", t0 + Duration::from_secs(601)), want);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            hour.of("github", later),
            HourCounts {
                accepted: 0,
                ignored: 0,
                rejected: 1
            }
        );
        assert_eq!(hour.of("gitlab", t0), HourCounts::default());
    }
}
