//! The alert storm (issue 19): 1,000 distinct Alertmanager webhooks (the shape Alertmanager
//! 0.25 sends, `tests/fixtures/alertmanager-0.25-firing.body.json`, 50 alert names) in 10 s to
//! a gateway delivering at the default rate (90 sends per 20 s) to the strict fake Fxiaoke,
//! with the built-in `mappings/alertmanager.yaml`. Prints, with coalescing and without it (the
//! baseline, `delivery.coalesce: false`): the time from the first webhook to an empty queue,
//! the vendor calls made, the fake's rate-limit answers, and whether every event is in a
//! delivered card.
//!
//! `cargo bench --bench storm` (or `bench/storm`) runs both; `cargo test --benches` runs a
//! small storm with coalescing only, so the bench does not rot. Knobs: `STORM_EVENTS` (1000),
//! `STORM_SECONDS` (10), `STORM_BASELINE=0` to skip the baseline (about four minutes).

#[path = "../tests/api/fake_fxiaoke/mod.rs"]
#[allow(dead_code)]
mod fake_fxiaoke;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fake_fxiaoke::FakeFxiaoke;
use fxhook::config::Settings;
use fxhook::startup::Application;
use serde_json::Value;

const TOKEN: &str = "storm-bench-alertmanager-token";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Webhook `i`: its own group (groupKey), one of 50 alert names, firing.
fn payload(template: &Value, i: usize) -> String {
    let name = format!("StormAlert{:02}", i % 50);
    let mut p = template.clone();
    p["groupKey"] = Value::String(format!(
        "{{}}:{{alertname=\"{name}\", instance=\"node-{i}\"}}"
    ));
    p["groupLabels"] = serde_json::json!({"alertname": name});
    p["commonLabels"]["alertname"] = Value::String(name.clone());
    p["commonLabels"]["instance"] = Value::String(format!("node-{i}:9100"));
    if let Some(alerts) = p["alerts"].as_array_mut() {
        for a in alerts {
            a["labels"]["alertname"] = Value::String(name.clone());
            a["labels"]["instance"] = Value::String(format!("node-{i}:9100"));
            a["fingerprint"] = Value::String(format!("{i:016x}"));
        }
    }
    p.to_string()
}

struct Outcome {
    empty_after: Option<Duration>,
    vendor_calls: usize,
    rate_limited: usize,
    represented: bool,
    events: i64,
}

async fn storm(events: usize, over: Duration, coalesce: bool, give_up: Duration) -> Outcome {
    let fake = FakeFxiaoke::start("app-storm", "secret-storm", "perm-storm", "1000");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mappings = dir.path().join("mappings");
    std::fs::create_dir_all(&mappings).expect("the mappings directory");
    let secret = dir.path().join("alertmanager.secret");
    std::fs::write(&secret, TOKEN).expect("the secret file");
    let yaml = std::fs::read_to_string(repo("mappings/alertmanager.yaml"))
        .expect("mappings/alertmanager.yaml")
        .replacen(
            "  preset: alertmanager",
            &format!(
                "  preset: alertmanager\n  secrets: [{{file: {}}}]",
                secret.display()
            ),
            1,
        );
    std::fs::write(mappings.join("alertmanager.yaml"), yaml).expect("the mapping");
    let mut s = Settings::default();
    s.server.listen = ([127, 0, 0, 1], 0).into();
    s.server.workers = 2;
    s.mappings.dir = mappings;
    s.mappings.watch = false;
    s.store.path = Some(dir.path().join("store/fxhook.db"));
    s.groups
        .insert("default".into(), vec!["1000".into(), "1001".into()]);
    s.fxiaoke.dry_run = false;
    s.fxiaoke.base_url = fake.base_url();
    s.fxiaoke.app_id = Some("app-storm".into());
    s.fxiaoke.app_secret = Some("secret-storm".into());
    s.fxiaoke.permanent_code = Some("perm-storm".into());
    s.fxiaoke.user_id = Some("1000".into());
    s.delivery.coalesce = coalesce;
    s.delivery.poll_interval = Duration::from_millis(50);
    let store = s.store.sqlite_path();
    let app = Application::build(s).await.expect("the gateway builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    actix_rt::spawn(app.run_until_stopped());

    let template: Value = serde_json::from_slice(
        &std::fs::read(repo("tests/fixtures/alertmanager-0.25-firing.body.json"))
            .expect("the Alertmanager fixture"),
    )
    .expect("JSON");
    let client = reqwest::Client::new();
    let start = Instant::now();
    let gap = over / events.max(1) as u32;
    let mut posts = Vec::new();
    for i in 0..events {
        let due = start + gap * i as u32;
        actix_rt::time::sleep_until(due.into()).await;
        let req = client
            .post(format!("{address}/hooks/alertmanager"))
            .header("content-type", "application/json")
            .header("user-agent", "Alertmanager/0.25.0")
            .bearer_auth(TOKEN)
            .body(payload(&template, i));
        posts.push(actix_rt::spawn(async move {
            req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        }));
    }
    for p in posts {
        let status = p.await.unwrap_or(0);
        assert_eq!(status, 202, "every webhook is accepted");
    }
    let db = || rusqlite::Connection::open(&store).expect("the store");
    let count = |sql: &str| -> i64 { db().query_row(sql, [], |r| r.get(0)).unwrap_or(-1) };
    let mut empty_after = None;
    while start.elapsed() < give_up {
        if count("SELECT COUNT(*) FROM messages WHERE state IN ('queued', 'in-flight')") == 0 {
            empty_after = Some(start.elapsed());
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let orphans = count(
        "SELECT COUNT(*) FROM messages m WHERE NOT (m.state = 'delivered'
             OR (m.state = 'coalesced' AND EXISTS (SELECT 1 FROM messages d
                 WHERE d.id = m.digest_id AND d.state = 'delivered')))",
    );
    let events = count("SELECT COUNT(*) FROM events");
    let calls = fake.send_calls();
    let rate_limited = calls
        .iter()
        .filter(|c| c.error_code.is_some_and(|e| e == 14001 || e == 30004))
        .count();
    handle.stop(true).await;
    Outcome {
        empty_after,
        vendor_calls: calls.len(),
        rate_limited,
        represented: orphans == 0,
        events,
    }
}

fn print(label: &str, o: &Outcome) {
    let empty = o.empty_after.map_or("not empty".to_string(), |d| {
        format!("{:.1} s", d.as_secs_f64())
    });
    println!(
        "{label:<22} {:>7} events  queue empty after {empty:>10}  {:>5} vendor calls  {:>3} rate-limit answers  every event in a delivered card: {}",
        o.events,
        o.vendor_calls,
        o.rate_limited,
        if o.represented { "yes" } else { "NO" }
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not.
    let benching = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, default: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let events = if benching {
        env("STORM_EVENTS", 1000)
    } else {
        60
    };
    let seconds = if benching {
        env("STORM_SECONDS", 10)
    } else {
        1
    };
    let baseline = benching && env("STORM_BASELINE", 1) != 0;
    actix_rt::System::new().block_on(async move {
        println!(
            "alert storm: {events} distinct Alertmanager 0.25 webhooks (50 alert names) in {seconds} s, default rate 90 sends / 20 s, strict fake Fxiaoke"
        );
        let over = Duration::from_secs(seconds as u64);
        let merged = storm(events, over, true, Duration::from_secs(180)).await;
        print("coalescing (default)", &merged);
        if baseline {
            let plain = storm(events, over, false, Duration::from_secs(600)).await;
            print("without (baseline)", &plain);
        }
        let met = merged.empty_after.is_some_and(|d| d <= Duration::from_secs(60))
            && merged.rate_limited == 0
            && merged.represented
            && (!benching || merged.vendor_calls < 100);
        println!(
            "targets (queue empty within 60 s, under 100 vendor calls, every event represented, no rate-limit answer): {}",
            if met { "met" } else { "MISSED" }
        );
        assert!(merged.represented, "an event is in no delivered card");
    });
}
