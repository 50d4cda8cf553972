//! Several replicas on one Postgres store (issue 15), each a real `fxhook serve` process: both
//! take signed webhooks, dedup is global, exactly one sends; when the sender is killed the
//! other takes over within `delivery.lease` + 5 s with every accepted card delivered, the
//! vendor's limits held and duplicates within the documented window; a rolling restart under
//! load refuses nothing and sends nothing twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fake_fxiaoke::{FakeFxiaoke, Scripted};
use crate::hardening::wait_for;
use crate::helpers::{python_hmac_sha256_many, repo_file};
use crate::pg::TestDb;
use crate::process::{Running, post, send, serve, workdir};

const SECRET: &str = "replica-secret";
const LEASE_S: u64 = 3;
const RATE_LIMIT: usize = 20;
const RATE_WINDOW_S: u64 = 2;
const CONCURRENCY: usize = 4;

/// Two replicas' shared settings: live delivery to `fake` from the database `db`.
fn env(db: &TestDb, fake: &FakeFxiaoke) -> Vec<(&'static str, String)> {
    vec![
        ("FXHOOK_SECRET_GITHUB", SECRET.into()),
        ("FXHOOK__STORE__URL", db.url.clone()),
        ("FXHOOK__FXIAOKE__BASE_URL", fake.base_url()),
        ("FXHOOK__FXIAOKE__APP_ID", "app".into()),
        ("FXHOOK__FXIAOKE__APP_SECRET", "secret".into()),
        ("FXHOOK__FXIAOKE__PERMANENT_CODE", "perm".into()),
        ("FXHOOK__FXIAOKE__USER_ID", "1000".into()),
        ("FXHOOK__DELIVERY__LEASE", format!("{LEASE_S}s")),
        ("FXHOOK__DELIVERY__RATE_LIMIT", RATE_LIMIT.to_string()),
        ("FXHOOK__DELIVERY__RATE_WINDOW", format!("{RATE_WINDOW_S}s")),
        ("FXHOOK__DELIVERY__CONCURRENCY", CONCURRENCY.to_string()),
        ("FXHOOK__DELIVERY__REQUEST_TIMEOUT", "3s".into()),
        (
            "FXHOOK__DELIVERY__RETRY_SCHEDULE",
            "200ms,200ms,200ms,200ms,200ms".into(),
        ),
        ("FXHOOK__DELIVERY__POLL_INTERVAL", "50ms".into()),
    ]
}

fn start(dir: &std::path::Path, env: &[(&'static str, String)]) -> Running {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    serve(dir, &env)
}

fn role(gw: &Running) -> String {
    let (_, json) = send(gw.port, reqwest::Method::GET, "/readyz", b"", &[]);
    json["delivery"]["role"].as_str().unwrap_or("-").to_string()
}

/// Signed GitHub `issues` webhooks numbered `from..to`: (body, signature, delivery id).
struct Webhooks {
    items: Vec<(Vec<u8>, String, String)>,
}

impl Webhooks {
    fn numbered(from: usize, to: usize) -> Webhooks {
        let template: serde_json::Value = serde_json::from_slice(
            &std::fs::read(repo_file("tests/fixtures/github/issues.opened.json")).unwrap(),
        )
        .unwrap();
        let bodies: Vec<String> = (from..to)
            .map(|n| {
                let mut body = template.clone();
                body["issue"]["number"] = n.into();
                body["issue"]["title"] = format!("replica test {n}").into();
                body.to_string()
            })
            .collect();
        let signatures = python_hmac_sha256_many(SECRET, &bodies);
        let items = bodies
            .into_iter()
            .zip(signatures)
            .zip(from..to)
            .map(|((b, s), n)| {
                (
                    b.into_bytes(),
                    format!("sha256={s}"),
                    format!("delivery-{n}"),
                )
            })
            .collect();
        Webhooks { items }
    }

    fn post(&self, i: usize, port: u16) -> (u16, serde_json::Value) {
        let (body, signature, id) = &self.items[i];
        post(
            port,
            "/hooks/github",
            body,
            &[
                ("X-Hub-Signature-256", signature.clone()),
                ("X-GitHub-Event", "issues".into()),
                ("X-GitHub-Delivery", id.clone()),
            ],
        )
    }
}

fn delivered(db: &TestDb) -> i64 {
    db.query_i64("SELECT COUNT(*) FROM messages WHERE state = 'delivered'")
}

/// How many times the fake accepted each card (by title).
fn sends_by_title(fake: &FakeFxiaoke) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for s in fake.sends() {
        let title = s.body["composite"]["head"]["title"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *seen.entry(title).or_insert(0) += 1;
    }
    seen
}

#[test]
fn when_the_sending_replica_is_killed_the_other_takes_over_and_every_accepted_card_is_delivered() {
    let db = TestDb::new();
    let fake = FakeFxiaoke::start("app", "secret", "perm", "1000");
    // Some sends hang: cards are on the wire when the sender is killed.
    fake.script((0..6).map(|_| Scripted::Hang(Duration::from_millis(700))));
    let dir = workdir();
    let env = env(&db, &fake);
    let mut a = start(dir.path(), &env);
    let mut b = start(dir.path(), &env);
    wait_for(Duration::from_secs(10), "a sender", || {
        role(&a) == "active" || role(&b) == "active"
    });

    let hooks = Webhooks::numbered(0, 40);
    for i in 0..20 {
        let port = if i % 2 == 0 { a.port } else { b.port };
        let (status, json) = hooks.post(i, port);
        assert_eq!(status, 202, "{json}");
    }
    // The same delivery to the other replica is a duplicate: dedup is global.
    let (status, json) = hooks.post(0, b.port);
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("duplicate")),
        "{json}"
    );

    wait_for(Duration::from_secs(15), "sending to begin", || {
        fake.sends().len() >= 4
    });
    let (sender, standby) = if role(&a) == "active" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    sender.child.kill().unwrap();
    let _ = sender.child.wait();
    let killed = Instant::now();
    let survivor_port = standby.port;
    for i in 20..40 {
        let (status, json) = hooks.post(i, survivor_port);
        assert_eq!(status, 202, "{json}");
    }

    let survivor: &Running = standby;
    wait_for(
        Duration::from_secs(LEASE_S + 5),
        "the standby to take over within delivery.lease + 5 s",
        || role(survivor) == "active",
    );
    let took_over = killed.elapsed();
    wait_for(
        Duration::from_secs(60),
        "every accepted card delivered",
        || delivered(&db) == 40,
    );

    let by_title = sends_by_title(&fake);
    assert_eq!(by_title.len(), 40, "every card reached the vendor");
    let twice: usize = by_title.values().map(|n| n - 1).sum();
    assert!(
        twice <= CONCURRENCY,
        "{twice} cards sent twice (at most delivery.concurrency = {CONCURRENCY} may be, the sends on the wire at the kill)"
    );
    assert!(
        fake.max_sends_in_window(Duration::from_secs(RATE_WINDOW_S)) <= RATE_LIMIT,
        "the pacing held across the hand-over"
    );
    assert!(
        fake.max_concurrent_token_calls() <= 1,
        "one token call at a time"
    );
    fake.assert_no_violations();
    eprintln!("take-over {took_over:?} after the kill");
}

#[test]
fn a_rolling_restart_under_load_refuses_nothing_and_sends_nothing_twice() {
    let db = TestDb::new();
    let fake = FakeFxiaoke::start("app", "secret", "perm", "1000");
    let dir = workdir();
    let env = env(&db, &fake);
    let ports = Arc::new(Mutex::new(Vec::<u16>::new()));
    let a = start(dir.path(), &env);
    let b = start(dir.path(), &env);
    ports.lock().unwrap().extend([a.port, b.port]);

    // The load: webhooks one after another to the replicas in service, as an ingress does.
    let hooks = Arc::new(Webhooks::numbered(0, 400));
    let (sent, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let refused = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (hooks, ports, sent, stop, refused) = (
            Arc::clone(&hooks),
            Arc::clone(&ports),
            Arc::clone(&sent),
            Arc::clone(&stop),
            Arc::clone(&refused),
        );
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < hooks.items.len() {
                let port = {
                    let p = ports.lock().unwrap();
                    p[i % p.len()]
                };
                let (status, json) = hooks.post(i, port);
                if status != 202 {
                    refused
                        .lock()
                        .unwrap()
                        .push(format!("{i}: {status} {json}"));
                }
                i += 1;
                sent.store(i, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // Restart one replica, then the other: out of service, SIGTERM, a new process, back.
    let mut replicas = vec![a, b];
    for k in 0..2 {
        let old = replicas.remove(0);
        ports.lock().unwrap().retain(|p| *p != old.port);
        let mut old = old;
        let term = std::process::Command::new("kill")
            .args(["-TERM", &old.child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        wait_for(Duration::from_secs(10), "the old replica to stop", || {
            old.child.try_wait().unwrap().is_some()
        });
        let new = start(dir.path(), &env);
        ports.lock().unwrap().push(new.port);
        replicas.push(new);
        let before = sent.load(Ordering::Relaxed);
        wait_for(
            Duration::from_secs(10),
            &format!("load after restart {k}"),
            || sent.load(Ordering::Relaxed) >= before + 20,
        );
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let total = sent.load(Ordering::Relaxed) as i64;

    assert_eq!(
        refused.lock().unwrap().clone(),
        Vec::<String>::new(),
        "refused during the restarts"
    );
    wait_for(
        Duration::from_secs(60),
        "every accepted card delivered",
        || delivered(&db) == total,
    );
    let by_title = sends_by_title(&fake);
    let twice: Vec<_> = by_title.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(by_title.len() as i64, total);
    fake.assert_no_violations();
}
