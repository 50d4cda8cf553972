//! The gateway on a Postgres store, each test on a database of its own: delivery to the strict
//! fake vendor, dedup across a restart, a SIGKILL with sends hanging, a database that is not
//! there, sessions ended under a running gateway, and two gateways sharing one database.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fxhook::config::Settings;

use crate::fake_fxiaoke::{FakeFxiaoke, Scripted};
use crate::helpers::{
    ACCEPT_ALL, Options, TestApp, mapping_with_secret_file, python_hmac_hex, spawn_app,
};
use crate::live::{eventually, live};
use crate::pg::TestDb;
use crate::process::{Running, fxhook, post, serve, workdir};

/// A source that needs no signature, one card per payload titled by its `n`.
const NOTE: &str = "verify: { unsigned: true }\nrules:\n  - name: note\n    card: { title: 'note {$.n}', link: { title: a, url: 'https://x' } }\n";

/// Settings that serve from the database at `url` instead of a SQLite file.
fn on_postgres(url: &str) -> impl FnOnce(&mut Settings) + 'static {
    let url = url.to_string();
    move |s| {
        s.store.path = None;
        s.store.url = Some(url.into());
        s.store.connect_timeout = Duration::from_secs(2);
    }
}

/// A gateway in this process with the `note` source, serving from `db`.
async fn note_app(db: &TestDb, dir: Option<tempfile::TempDir>) -> TestApp {
    spawn_app(Options {
        mappings: vec![("note".into(), NOTE.into())],
        tweak: Some(Box::new(on_postgres(&db.url))),
        dir,
    })
    .await
}

async fn post_note(app: &TestApp, n: usize) -> (u16, serde_json::Value) {
    let res = app.post_hook("note", format!(r#"{{"n":{n}}}"#), &[]).await;
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

async fn readyz(app: &TestApp) -> (u16, serde_json::Value) {
    let res = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

fn delivered(db: &TestDb) -> i64 {
    db.query_i64("SELECT COUNT(*) FROM messages WHERE state = 'delivered'")
}

#[actix_rt::test]
async fn a_signed_webhook_is_accepted_and_delivered_to_the_vendor_from_a_postgres_store() {
    let db = TestDb::new();
    let gateway = live(1, on_postgres(&db.url)).await;

    let res = gateway.post(7).await;

    assert_eq!(res.status(), 202);
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("the card delivered", Duration::from_secs(10), || {
        delivered(&db) == 1
    })
    .await;
    let sends = gateway.fake.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].body["toUser"], serde_json::json!(["5000"]));
    assert_eq!(sends[0].body["composite"]["head"]["title"], "Event 7");
    assert_eq!(
        db.query_strings("SELECT event_id FROM messages"),
        [id],
        "stored in Postgres"
    );
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM attempts WHERE outcome = 'delivered'"),
        1
    );
    gateway.fake.assert_no_violations();
}

#[actix_rt::test]
async fn a_delivery_id_seen_before_a_restart_on_the_same_database_is_a_duplicate() {
    const SECRET: &str = "pg-secret";
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let yaml = mapping_with_secret_file(dir.path(), "github", "github", SECRET, ACCEPT_ALL);
    let body = br#"{"action":"opened"}"#;
    let headers = [
        (
            "X-Hub-Signature-256",
            format!("sha256={}", python_hmac_hex("sha256", SECRET, body)),
        ),
        ("X-GitHub-Event", "issues".to_string()),
        ("X-GitHub-Delivery", "d-restart".to_string()),
    ];
    let start = |dir| {
        spawn_app(Options {
            mappings: vec![("github".into(), yaml.clone())],
            tweak: Some(Box::new(on_postgres(&db.url))),
            dir: Some(dir),
        })
    };
    let first = start(dir).await;
    let res = first.post_hook("github", &body[..], &headers).await;
    assert_eq!(res.status(), 202);
    let accepted: serde_json::Value = res.json().await.unwrap();
    let dir = first.stop().await;

    let second = start(dir).await;
    let res = second.post_hook("github", &body[..], &headers).await;

    assert_eq!(res.status(), 200);
    let again: serde_json::Value = res.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["id"], accepted["id"]);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM events"), 1);
}

/// The environment of `fxhook serve` on `db`, delivering live to `fake`.
fn live_env(db: &TestDb, fake: &FakeFxiaoke) -> Vec<(&'static str, String)> {
    vec![
        ("FXHOOK__STORE__URL", db.url.clone()),
        ("FXHOOK__FXIAOKE__BASE_URL", fake.base_url()),
        ("FXHOOK__FXIAOKE__APP_ID", "app".into()),
        ("FXHOOK__FXIAOKE__APP_SECRET", "secret".into()),
        ("FXHOOK__FXIAOKE__PERMANENT_CODE", "perm".into()),
        ("FXHOOK__FXIAOKE__USER_ID", "1000".into()),
        ("FXHOOK__DELIVERY__POLL_INTERVAL", "20ms".into()),
    ]
}

fn serve_with(dir: &std::path::Path, env: &[(&'static str, String)]) -> Running {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    serve(dir, &env)
}

fn note_workdir() -> tempfile::TempDir {
    let dir = workdir();
    std::fs::write(dir.path().join("mappings/note.yaml"), NOTE).unwrap();
    dir
}

/// Polls `check` every 20 ms for up to `limit`.
fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn webhooks_accepted_before_a_sigkill_while_the_vendor_hangs_are_all_delivered_after_a_restart() {
    let db = TestDb::new();
    let fake = FakeFxiaoke::start("app", "secret", "perm", "1000");
    // Every send of the first process hangs: its messages are in flight when it dies.
    fake.script((0..5).map(|_| Scripted::Hang(Duration::from_secs(30))));
    let dir = note_workdir();
    let mut env = live_env(&db, &fake);
    env.push(("FXHOOK__DELIVERY__CONCURRENCY", "8".into()));
    env.push(("FXHOOK__DELIVERY__REQUEST_TIMEOUT", "60s".into()));
    let first = serve_with(dir.path(), &env);
    for n in 0..5 {
        let (status, json) = post(
            first.port,
            "/hooks/note",
            format!(r#"{{"n":{n}}}"#).as_bytes(),
            &[],
        );
        assert_eq!(status, 202, "{json}");
    }
    wait_for(Duration::from_secs(10), "five sends hanging", || {
        fake.sends().len() == 5
    });
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM messages WHERE state = 'in-flight'"),
        5
    );

    drop(first); // SIGKILL with five sends in flight
    let _second = serve_with(dir.path(), &env);

    wait_for(Duration::from_secs(20), "all five delivered", || {
        delivered(&db) == 5
    });
    let mut titles: Vec<String> = fake
        .sends()
        .iter()
        .map(|s| {
            s.body["composite"]["head"]["title"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    titles.sort();
    titles.dedup();
    assert_eq!(
        titles,
        (0..5).map(|n| format!("note {n}")).collect::<Vec<_>>()
    );
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM events"), 5);
    fake.assert_no_violations();
}

/// What a gateway process that should not serve did: it exited (code, stderr), or it began to
/// listen (`Err` with its logs) — whichever came first within `limit`.
fn refused_start(
    dir: &std::path::Path,
    env: &[(&str, String)],
    limit: Duration,
) -> Result<(Option<i32>, String), String> {
    let mut child = fxhook()
        .arg("serve")
        .current_dir(dir)
        .env("FXHOOK__SERVER__LISTEN", "127.0.0.1:0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fxhook starts");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("fxhook listening") {
                let _ = tx.send(());
            }
            all.push(line);
        }
        all.join("\n")
    });
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Ok((status.code(), reader.join().unwrap()));
        }
        let listening = rx.try_recv().is_ok();
        if listening || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let logs = reader.join().unwrap();
            return Err(if listening {
                format!("it serves:\n{logs}")
            } else {
                format!("neither exited nor served within {limit:?}:\n{logs}")
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_store_url_where_no_postgres_listens_stops_the_binary_with_an_error_naming_the_store() {
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    let dir = note_workdir();
    let url = format!("postgres://fxhook:s3cret@127.0.0.1:{port}/fxhook");
    let env = [
        ("FXHOOK__STORE__URL", url),
        ("FXHOOK__STORE__CONNECT_TIMEOUT", "2s".to_string()),
    ];

    let (code, stderr) = refused_start(dir.path(), &env, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the gateway should not start: {e}"));

    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("Postgres store"), "{stderr}");
    assert!(
        !stderr.contains("s3cret"),
        "the password is never printed: {stderr}"
    );
}

/// The delivery role a gateway process reports in `/readyz`.
fn role(gw: &Running) -> String {
    let (_, json) = crate::process::send(gw.port, reqwest::Method::GET, "/readyz", b"", &[]);
    json["delivery"]["role"].as_str().unwrap_or("-").to_string()
}

#[test]
fn two_gateways_on_one_database_both_take_webhooks_and_exactly_one_sends() {
    let db = TestDb::new();
    let dir = note_workdir();
    let env = [
        ("FXHOOK__STORE__URL", db.url.clone()),
        ("FXHOOK__DELIVERY__LEASE", "3s".to_string()),
        ("FXHOOK__FXIAOKE__DRY_RUN", "true".to_string()),
    ];
    let first = serve_with(dir.path(), &env);
    let second = serve_with(dir.path(), &env);

    for (n, gw) in [&first, &second, &first, &second].iter().enumerate() {
        let (status, json) = post(
            gw.port,
            "/hooks/note",
            format!(r#"{{"n":{n}}}"#).as_bytes(),
            &[],
        );
        assert_eq!(status, 202, "{json}");
    }

    wait_for(Duration::from_secs(10), "one gateway to send", || {
        let roles = [role(&first), role(&second)];
        roles.contains(&"active".to_string()) && roles.contains(&"standby".to_string())
    });
    wait_for(
        Duration::from_secs(10),
        "all four delivered (dry run)",
        || delivered(&db) == 4,
    );
}

#[test]
fn after_the_database_ends_every_session_one_gateway_and_only_one_sends() {
    let db = TestDb::new();
    let dir = note_workdir();
    let env = [
        ("FXHOOK__STORE__URL", db.url.clone()),
        ("FXHOOK__DELIVERY__LEASE", "3s".to_string()),
        ("FXHOOK__FXIAOKE__DRY_RUN", "true".to_string()),
    ];
    let first = serve_with(dir.path(), &env);
    let second = serve_with(dir.path(), &env);
    wait_for(Duration::from_secs(10), "a sender", || {
        role(&first) == "active" || role(&second) == "active"
    });

    assert!(db.terminate_sessions() > 0);
    for n in 0..4 {
        let gw = if n % 2 == 0 { &first } else { &second };
        let (status, json) = post(
            gw.port,
            "/hooks/note",
            format!(r#"{{"n":{n}}}"#).as_bytes(),
            &[],
        );
        assert_eq!(status, 202, "webhook {n} after the sessions ended: {json}");
    }

    wait_for(Duration::from_secs(15), "all four delivered", || {
        delivered(&db) == 4
    });
    // Sampled over two lease periods: never both at once.
    let until = Instant::now() + Duration::from_secs(6);
    let mut seen_active = false;
    while Instant::now() < until {
        let roles = [role(&first), role(&second)];
        let active = roles.iter().filter(|r| *r == "active").count();
        assert!(active <= 1, "both gateways send: {roles:?}");
        seen_active |= active == 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(seen_active, "one of them sends");
}

#[actix_rt::test]
async fn a_gateway_whose_database_sessions_are_ended_keeps_accepting_and_delivering() {
    let db = TestDb::new();
    let app = note_app(&db, None).await;
    assert_eq!(post_note(&app, 0).await.0, 202);

    let ended = db.terminate_sessions();

    assert!(ended > 0, "the gateway had sessions");
    for n in 1..=5 {
        let (status, json) = post_note(&app, n).await;
        assert_eq!(status, 202, "webhook {n} after the sessions ended: {json}");
    }
    eventually(
        "all six delivered (dry run)",
        Duration::from_secs(10),
        || delivered(&db) == 6,
    )
    .await;
    let (status, json) = readyz(&app).await;
    assert_eq!(status, 200, "{json}");
}

#[actix_rt::test]
async fn readyz_answers_503_while_the_database_refuses_connections_and_200_once_it_takes_them_again()
 {
    let db = TestDb::new();
    let app = note_app(&db, None).await;
    assert_eq!(readyz(&app).await.0, 200);

    db.allow_connections(false);
    db.terminate_sessions();
    let (status, json) = readyz(&app).await;

    assert_eq!(status, 503, "{json}");
    assert_eq!(json["store"], "unavailable", "{json}");
    let (status, _) = post_note(&app, 1).await;
    assert_eq!(status, 503, "a webhook is refused, not lost");

    db.allow_connections(true);
    let (status, json) = post_note(&app, 2).await;
    assert_eq!(status, 202, "accepted again at once: {json}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, json) = readyz(&app).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still not ready: {json}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("the webhook delivered", Duration::from_secs(10), || {
        delivered(&db) == 1
    })
    .await;
}
