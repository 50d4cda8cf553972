//! Per-event CPU cost of the pipeline's pure steps, on real payloads from `tests/fixtures`:
//!
//! - `map/<source>/<event>`: parse the body, run the source's rules, render the card and route
//!   it (`Verified<Webhook>::parse` then `Mapping::map`), for each built-in mapping file that
//!   has a fixture (a mapping without one is named on stderr and skipped);
//! - `verify/github/…`: the github preset's HMAC-SHA256 check of a 7.5 KB push (the minified
//!   push GitHub sends), through the real source loaded with a secret file, accepted and
//!   rejected.
//!
//! Run with `cargo bench --bench mapping`; `bench/run` measures the whole gateway under load.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fxhook::pipeline::Routed;
use fxhook::route::Groups;
use fxhook::source::{Source, load_file};
use fxhook::verify::spec::Algorithm;
use fxhook::verify::{ContentKind, Verifier, Webhook};

/// One benchmarked event: the mapping file's stem, a name, the fixture and the request headers.
struct Case {
    source: &'static str,
    event: &'static str,
    fixture: &'static str,
    headers: &'static [(&'static str, &'static str)],
}

/// At least one realistic event per built-in mapping that has fixtures (the most frequent kinds:
/// pushes, pull/merge requests, pipelines, alerts).
const CASES: &[Case] = &[
    Case {
        source: "github",
        event: "push",
        fixture: "github/push.4.json",
        headers: &[("X-GitHub-Event", "push")],
    },
    Case {
        source: "github",
        event: "pull_request.opened",
        fixture: "github/pull_request.opened.json",
        headers: &[("X-GitHub-Event", "pull_request")],
    },
    Case {
        source: "github",
        event: "workflow_run.completed",
        fixture: "github/workflow_run.completed.json",
        headers: &[("X-GitHub-Event", "workflow_run")],
    },
    Case {
        source: "alertmanager",
        event: "firing",
        fixture: "alertmanager-0.25-firing.body.json",
        headers: &[],
    },
    Case {
        source: "gitlab",
        event: "push",
        fixture: "gitlab/push.json",
        headers: &[("X-Gitlab-Event", "Push Hook")],
    },
    Case {
        source: "gitlab",
        event: "merge_request.open",
        fixture: "gitlab/merge_request.open.json",
        headers: &[("X-Gitlab-Event", "Merge Request Hook")],
    },
    Case {
        source: "gitlab",
        event: "pipeline.success",
        fixture: "gitlab/pipeline.success.json",
        headers: &[("X-Gitlab-Event", "Pipeline Hook")],
    },
    Case {
        source: "gitea",
        event: "push",
        fixture: "gitea/push.json",
        headers: &[("X-Gitea-Event", "push")],
    },
    Case {
        source: "gitea",
        event: "pull_request.merged",
        fixture: "gitea/pull_request.merged.json",
        headers: &[("X-Gitea-Event", "pull_request")],
    },
    Case {
        source: "circleci",
        event: "workflow-completed",
        fixture: "circleci/workflow-completed.github.json",
        headers: &[("circleci-event-type", "workflow-completed")],
    },
    Case {
        source: "sentry",
        event: "issue.created",
        fixture: "sentry/issue.created.json",
        headers: &[("Sentry-Hook-Resource", "issue")],
    },
    Case {
        source: "sentry",
        event: "event_alert.triggered",
        fixture: "sentry/event_alert.triggered.json",
        headers: &[("Sentry-Hook-Resource", "event_alert")],
    },
    Case {
        source: "grafana",
        event: "firing",
        fixture: "grafana/docs-webhook-firing.json",
        headers: &[],
    },
    Case {
        source: "jenkins",
        event: "finalized-failure",
        fixture: "jenkins/finalized-failure.no-root-url.json",
        headers: &[],
    },
    Case {
        source: "generic",
        event: "betterstack.incident",
        fixture: "generic/betterstack.incident.json",
        headers: &[],
    },
    Case {
        source: "generic",
        event: "standard-webhooks",
        fixture: "generic/standard-webhooks.contact-created.json",
        headers: &[],
    },
];

/// The signing secret of the verification benches.
const SECRET: &str = "It is a secret";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn groups() -> Groups {
    let config = BTreeMap::from([("default".to_string(), vec!["1000".to_string()])]);
    Groups::new(&config).expect("one valid recipient id")
}

/// Loads a mapping file, or says why it cannot be benchmarked.
fn load(file: &Path, groups: &Groups) -> Option<Source> {
    let (source, diagnostics) = load_file(file, groups);
    for d in diagnostics
        .iter()
        .filter(|d| d.severity == fxhook::diagnostic::Severity::Error)
    {
        eprintln!("skipped: {d}");
    }
    source
}

fn webhook(headers: &[(&str, &str)], body: Bytes) -> Webhook {
    let mut map = HeaderMap::new();
    map.insert(
        HeaderName::from_static("content-type"),
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a valid header name");
        let value = HeaderValue::from_str(value).expect("a valid header value");
        map.insert(name, value);
    }
    Webhook {
        headers: map,
        body,
        content: ContentKind::Json,
        query: String::new(),
        received_at: SystemTime::now(),
    }
}

/// What a case maps to, for the log: the point is to time real renders, not the ignore path.
fn describe(mapped: &Routed) -> String {
    match mapped {
        Routed::Rendered { rule, messages, .. } => {
            format!("rendered by rule {rule}, {} message(s)", messages.len())
        }
        Routed::Ignored { reason } => format!("IGNORED: {reason}"),
        Routed::Failed { rule, reason } => format!("FAILED in rule {rule}: {reason}"),
    }
}

fn mapping(c: &mut Criterion) {
    let groups = groups();
    let tz = chrono_tz::Asia::Shanghai;
    let dir = root().join("mappings");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the mappings directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut group = c.benchmark_group("map");
    for file in files {
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let cases: Vec<&Case> = CASES.iter().filter(|k| k.source == stem).collect();
        if cases.is_empty() {
            eprintln!("map/{stem}: no fixture in tests/fixtures, not measured");
            continue;
        }
        let Some(source) = load(&file, &groups) else {
            eprintln!("map/{stem}: the mapping file does not load, not measured");
            continue;
        };
        for case in cases {
            let path = root().join("tests/fixtures").join(case.fixture);
            let Ok(body) = std::fs::read(&path) else {
                eprintln!("map/{stem}/{}: {} is missing", case.event, path.display());
                continue;
            };
            let request = webhook(case.headers, Bytes::from(body));
            let unsigned = Verifier::unsigned();
            let once = unsigned
                .verify(request.clone())
                .expect("unsigned")
                .parse()
                .expect("JSON");
            let outcome = describe(&fxhook::pipeline::render(
                &source.mapping,
                &once,
                &groups,
                tz,
            ));
            eprintln!(
                "map/{stem}/{} ({} bytes): {outcome}",
                case.event,
                request.body.len()
            );
            group.throughput(Throughput::Bytes(request.body.len() as u64));
            group.bench_function(format!("{stem}/{}", case.event), |b| {
                b.iter_batched(
                    || request.clone(),
                    |request| {
                        let verified = unsigned.verify(request).expect("unsigned");
                        let payload = verified.parse().expect("JSON");
                        black_box(fxhook::pipeline::render(
                            &source.mapping,
                            &payload,
                            &groups,
                            tz,
                        ))
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

/// The github mapping with its secret read from a file, as a Kubernetes secret would be.
fn github_with_secret_file(dir: &Path, groups: &Groups) -> Source {
    let secret = dir.join("github_webhook");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("write the secret file");
    let text = std::fs::read_to_string(root().join("mappings/github.yaml")).expect("github.yaml");
    let mut out = String::new();
    let mut replaced = false;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if !replaced && line.trim_start().starts_with("preset: github") {
            out.push_str(&format!("  secrets: [{{ file: {} }}]\n", secret.display()));
            replaced = true;
        }
    }
    assert!(
        replaced,
        "mappings/github.yaml has no `preset: github` line"
    );
    let file = dir.join("github.yaml");
    std::fs::write(&file, out).expect("write the mapping copy");
    load(&file, groups).expect("the github mapping with a secret file loads")
}

fn verification(c: &mut Criterion) {
    let groups = groups();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let source = github_with_secret_file(dir.path(), &groups);
    // GitHub sends minified JSON: push.4 minified is 7,679 bytes, the 7.5 KB of the load test.
    let pretty = std::fs::read(root().join("tests/fixtures/github/push.4.json")).expect("push.4");
    let value: serde_json::Value = serde_json::from_slice(&pretty).expect("JSON");
    let body = Bytes::from(serde_json::to_vec(&value).expect("serialise"));
    let mac = fxhook::verify::crypto::mac(Algorithm::Sha256, SECRET.as_bytes(), &[&body]);
    let good = format!("sha256={}", hex::encode(&mac));
    let bad = format!("sha256={}", hex::encode(vec![0u8; mac.len()]));
    let signed = |signature: &str| {
        let headers = [
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("X-Hub-Signature-256", signature),
        ];
        webhook(&headers, body.clone())
    };
    let (good, bad) = (signed(&good), signed(&bad));
    assert!(source.verifier.verify(good.clone()).is_ok());
    assert!(source.verifier.verify(bad.clone()).is_err());

    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Bytes(body.len() as u64));
    let name = format!("github/push-{}B", body.len());
    group.bench_function(format!("{name}/accepted"), |b| {
        b.iter_batched(
            || good.clone(),
            |w| black_box(source.verifier.verify(w).is_ok()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function(format!("{name}/rejected"), |b| {
        b.iter_batched(
            || bad.clone(),
            |w| black_box(source.verifier.verify(w).is_err()),
            BatchSize::SmallInput,
        )
    });
    // The whole pure path of one accepted push: verify, parse, map, route.
    group.bench_function(format!("{name}/verify+parse+map"), |b| {
        b.iter_batched(
            || good.clone(),
            |w| {
                let verified = source.verifier.verify(w).expect("signed");
                let payload = verified.parse().expect("JSON");
                black_box(fxhook::pipeline::render(
                    &source.mapping,
                    &payload,
                    &groups,
                    chrono_tz::Asia::Shanghai,
                ))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, mapping, verification);
criterion_main!(benches);
