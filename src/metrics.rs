//! Metrics: every observable event of the pipeline is one function here that counts it, so
//! names and labels live in one place. Exposed at `/metrics` in the Prometheus text format by
//! `metrics-exporter-prometheus`; the gauges of the queue are read from the store at scrape
//! time. Counters that `product.md` promises exist at 0 from start-up.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
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
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics stays empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
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

/// Counts a webhook by source and outcome (`fxhook_webhooks_total`).
pub fn webhook(source: &str, outcome: Outcome) {
    let source = source.to_string();
    match outcome {
        Outcome::Accepted => {
            counter!("fxhook_webhooks_total", "source" => source, "outcome" => "accepted")
                .increment(1)
        }
        Outcome::Ignored => {
            counter!("fxhook_webhooks_total", "source" => source, "outcome" => "ignored")
                .increment(1)
        }
        Outcome::Duplicate => {
            counter!("fxhook_webhooks_total", "source" => source, "outcome" => "duplicate")
                .increment(1)
        }
        Outcome::Rejected(reason) => {
            counter!("fxhook_webhooks_total", "source" => source.clone(), "outcome" => "rejected", "reason" => reason).increment(1);
            if reason == "signature" {
                counter!("fxhook_verification_failures_total", "source" => source).increment(1);
            }
        }
    }
}

/// A verified event whose mapping failed (`fxhook_mapping_errors_total`).
pub fn mapping_failed(source: &str, rule: &str) {
    counter!("fxhook_mapping_errors_total", "source" => source.to_string(), "rule" => rule.to_string()).increment(1);
}

/// A message reached `delivered`, `failed` or `dead` (`fxhook_messages_total`).
pub fn message(state: &'static str) {
    counter!("fxhook_messages_total", "state" => state).increment(1);
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
    histogram!("fxhook_http_request_duration_seconds", "route" => route.to_string(), "status" => status.to_string())
        .record(took.as_secs_f64());
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
