//! No secret reaches the log: the real binary runs with `RUST_LOG=debug` and every secret in
//! the environment, takes a full request cycle (signed requests accepted, forged ones refused,
//! tokens in a header and in the query string, the admin API, delivery), and its whole stderr
//! is searched for each secret's value.
//!
//! The binary is used because `fxhook::telemetry::init()` installs a global stderr subscriber
//! that a test cannot capture in-process.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::fake_fxiaoke::FakeFxiaoke;
use crate::helpers::{python_hmac_hex, repo_file};

/// Every secret the gateway is given. Long and distinctive, so a hit is never a coincidence.
const GITHUB_SECRET: &str = "gh-signing-7Qv2LxN9wB4";
const GITHUB_PREVIOUS: &str = "gh-previous-3Hs8KdP1zT6";
const CI_TOKEN: &str = "ci-token-5Wm0RfJ7cY2";
const APP_SECRET: &str = "fx-app-secret-8Ub4NeG6qA1";
const PERMANENT_CODE: &str = "fx-permanent-2Kt9VhS3jL5";
const ADMIN_TOKEN: &str = "admin-token-6Pz1MxC8rD3";
const METRICS_TOKEN: &str = "metrics-token-4Ye7BqW2nF9";

const SECRETS: &[(&str, &str)] = &[
    ("FXHOOK_SECRET_GITHUB", GITHUB_SECRET),
    ("FXHOOK_SECRET_GITHUB_PREVIOUS", GITHUB_PREVIOUS),
    ("FXHOOK_SECRET_CI", CI_TOKEN),
    ("FXHOOK__FXIAOKE__APP_SECRET", APP_SECRET),
    ("FXHOOK__FXIAOKE__PERMANENT_CODE", PERMANENT_CODE),
    ("FXHOOK__ADMIN__TOKEN", ADMIN_TOKEN),
    ("FXHOOK__METRICS__TOKEN", METRICS_TOKEN),
];

/// A gateway started with `RUST_LOG=debug` whose stderr is read to the end in a thread.
struct Gateway {
    child: Child,
    port: u16,
    stderr: std::thread::JoinHandle<String>,
}

impl Gateway {
    fn start(dir: &Path, extra_env: &[(&str, String)]) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fxhook"))
            .arg("serve")
            .current_dir(dir)
            .env("RUST_LOG", "debug")
            .env("FXHOOK__SERVER__LISTEN", "127.0.0.1:0")
            .env("FXHOOK__FXIAOKE__APP_ID", "fxhook-app")
            .env("FXHOOK__FXIAOKE__USER_ID", "1000")
            .envs(SECRETS.iter().copied())
            .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fxhook starts");
        let mut pipe = child.stderr.take().unwrap();
        let (port_tx, port_rx) = mpsc::channel();
        // Reads byte by byte into one string, so nothing is lost however the lines end.
        let stderr = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            let mut sent = false;
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
                if !sent {
                    let text = String::from_utf8_lossy(&all);
                    if let Some(rest) = text.split("port=").nth(1) {
                        let digits: String =
                            rest.chars().take_while(char::is_ascii_digit).collect();
                        if rest.len() > digits.len() {
                            let _ = port_tx.send(digits.parse::<u16>().ok());
                            sent = true;
                        }
                    }
                }
            }
            String::from_utf8_lossy(&all).into_owned()
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .flatten()
            .expect("fxhook logs its port");
        Gateway {
            child,
            port,
            stderr,
        }
    }

    /// Stops the process with SIGTERM (so it logs its shutdown too) and returns all it wrote.
    fn stop(mut self) -> String {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
        self.stderr.join().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// A work directory with the shipped GitHub mapping, a token-verified `ci` source and one
/// recipient.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    std::fs::create_dir(&mappings).unwrap();
    std::fs::copy(
        repo_file("mappings/github.yaml"),
        mappings.join("github.yaml"),
    )
    .unwrap();
    std::fs::write(
        mappings.join("ci.yaml"),
        "verify: { preset: jenkins }\nrules:\n  - card:\n      title: \"build {$.build}\"\n      link: { title: Open, url: \"https://ci.example.com/{$.build}\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fxhook.yaml"),
        "groups:\n  default: ['1000']\ndelivery:\n  poll_interval: 20ms\n",
    )
    .unwrap();
    dir
}

/// The requests of one cycle; returns how many events were accepted with a card to deliver.
async fn request_cycle(gw: &Gateway) -> i64 {
    let client = reqwest::Client::new();
    let push = std::fs::read(repo_file("tests/fixtures/github/push.0.json")).unwrap();
    let github = |body: Vec<u8>, signature: String, delivery: &str| {
        client
            .post(gw.url("/hooks/github"))
            .header("content-type", "application/json")
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", delivery)
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
    };
    let sign = |secret: &str| format!("sha256={}", python_hmac_hex("sha256", secret, &push));
    let status = |res: reqwest::Result<reqwest::Response>| res.unwrap().status().as_u16();

    assert_eq!(
        status(github(push.clone(), sign(GITHUB_SECRET), "d-1").await),
        202
    );
    assert_eq!(
        status(github(push.clone(), sign(GITHUB_PREVIOUS), "d-2").await),
        202
    );
    assert_eq!(
        status(github(push.clone(), sign("a-guess"), "d-3").await),
        401
    );
    assert_eq!(
        status(github(b"{}".to_vec(), "sha1=00".into(), "d-4").await),
        401
    );

    let ci = |query: String, header: Option<&str>, build: u32| {
        let mut req = client
            .post(gw.url(&format!("/hooks/ci{query}")))
            .header("content-type", "application/json")
            .body(format!(r#"{{"build":{build}}}"#));
        if let Some(token) = header {
            req = req.header("X-Webhook-Token", token);
        }
        req.send()
    };
    assert_eq!(status(ci(format!("?token={CI_TOKEN}"), None, 1).await), 202);
    assert_eq!(status(ci(String::new(), Some(CI_TOKEN), 2).await), 202);
    assert_eq!(
        status(ci("?token=ci-token-wrong".into(), None, 3).await),
        401
    );
    let bearer = client
        .post(gw.url("/hooks/ci"))
        .header("content-type", "application/json")
        .header("Authorization", format!("Bearer {CI_TOKEN}"))
        .body(r#"{"build":4}"#)
        .send();
    assert_eq!(status(bearer.await), 202);

    let admin = |token: &str| {
        client
            .get(gw.url("/admin/events"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(status(admin(ADMIN_TOKEN).await), 200);
    assert_eq!(status(admin("admin-token-wrong").await), 401);
    let metrics = client
        .get(gw.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send();
    assert_eq!(status(metrics.await), 200);
    5
}

/// Polls the store until `want` messages are delivered.
async fn wait_for_delivery(dir: &Path, want: i64) {
    let db = dir.join("data/fxhook.db");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let delivered: i64 = rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM messages WHERE state = 'delivered'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0);
        if delivered >= want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{delivered} of {want} messages delivered"
        );
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Fails with every log line that shows one of `secrets` (its name, never the value itself, in
/// the message, so the test output does not become a leak of its own).
fn assert_no_secret_in(log: &str, secrets: &[(&str, &str)]) {
    let leaks: Vec<String> = secrets
        .iter()
        .flat_map(|(name, value)| {
            log.lines()
                .enumerate()
                .filter(move |(_, line)| line.contains(value))
                .map(move |(n, line)| {
                    format!(
                        "line {}: {name}: {}",
                        n + 1,
                        line.replace(value, "<SECRET>")
                    )
                })
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );
}

#[actix_rt::test]
async fn no_secret_appears_in_the_debug_log_of_a_full_dry_run_cycle() {
    let dir = workdir();
    let gw = Gateway::start(dir.path(), &[("FXHOOK__FXIAOKE__DRY_RUN", "true".into())]);
    let accepted = request_cycle(&gw).await;
    wait_for_delivery(dir.path(), accepted).await;
    let log = gw.stop();

    // The log really is the debug log of that cycle, or finding nothing would prove nothing.
    assert!(log.contains("DEBUG"), "no debug line: {log}");
    for expected in [
        "outcome=signature",
        "outcome=accepted",
        "dry run: this body would be POSTed",
    ] {
        assert!(log.contains(expected), "no {expected:?} in the log:\n{log}");
    }
    assert_no_secret_in(&log, SECRETS);
}

#[actix_rt::test]
async fn no_secret_nor_access_token_appears_in_the_debug_log_of_a_live_delivery() {
    let fake = FakeFxiaoke::start("fxhook-app", APP_SECRET, PERMANENT_CODE, "1000");
    let dir = workdir();
    let gw = Gateway::start(
        dir.path(),
        &[("FXHOOK__FXIAOKE__BASE_URL", fake.base_url())],
    );
    let accepted = request_cycle(&gw).await;
    wait_for_delivery(dir.path(), accepted).await;
    let log = gw.stop();

    assert_eq!(fake.sends().len() as i64, accepted);
    fake.assert_no_violations();
    assert!(log.contains("DEBUG"), "no debug line: {log}");
    // The fake issues "tok-1"; the gateway sends it as `Authorization: Bearer tok-1`.
    let issued = fake
        .received()
        .iter()
        .find_map(|r| r.authorization.clone())
        .expect("a send carried the access token");
    let token = issued.trim_start_matches("Bearer ").to_string();
    let mut secrets = SECRETS.to_vec();
    secrets.push(("the corpAccessToken", &token));
    assert_no_secret_in(&log, &secrets);
}
