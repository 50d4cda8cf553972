//! The console end to end in Debian's Chromium, driven by `tests/npm/console-e2e.mjs`
//! (playwright-core): sign in (a wrong token first), open the GitHub mapping with a recent push
//! previewed, break a template and see the error at its line and column, fix it, save after the
//! diff, send a signed push and find the new title in the card the fake Fxiaoke received;
//! replay a dead message from the Deliveries page and see it delivered. Screenshots of every
//! page at 390 and 1280 px go to `target/console-screenshots/`.
//!
//! Needs `node`, `/usr/bin/chromium` (Debian's `chromium`) and `tests/npm/node_modules` with
//! `playwright-core`: `scripts/test.sh` installs them; without them this test fails naming
//! what is missing.

use std::path::PathBuf;
use std::time::Duration;

use crate::fake_fxiaoke::{FakeFxiaoke, Scripted};
use crate::helpers::{
    Options, python_hmac_hex, repo_file, shipped_mapping_with_secret_file, spawn_app,
};

const TOKEN: &str = "browser-admin-token-0123456789";
const SECRET: &str = "browser-github-secret";
const PREFIX: &str = "[console]";

fn chromium() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string()),
    );
    assert!(
        path.is_file(),
        "{} is missing: install Debian's chromium (scripts/test.sh does)",
        path.display()
    );
    path
}

fn playwright() -> PathBuf {
    let dir = repo_file("tests/npm");
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is missing from tests/npm/node_modules: run `npm install` in tests/npm (scripts/test.sh does)"
    );
    dir
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..250 {
        if done() {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[actix_rt::test]
async fn an_admin_edits_the_github_mapping_in_a_browser_and_replays_a_dead_message() {
    let chromium = chromium();
    let npm = playwright();
    let fake = FakeFxiaoke::start("app-1", "app-secret", "perm-code", "1000");
    let base = fake.base_url();
    let dir = tempfile::tempdir().unwrap();
    let github = shipped_mapping_with_secret_file(dir.path(), "github", "github", SECRET);
    // The examples' payloads beside the mapping, as shipped: the editor runs them.
    let examples = dir.path().join("mappings/examples/github");
    std::fs::create_dir_all(&examples).unwrap();
    for entry in std::fs::read_dir(repo_file("mappings/examples/github")).unwrap() {
        let from = entry.unwrap().path();
        std::fs::copy(&from, examples.join(from.file_name().unwrap())).unwrap();
    }
    let app = spawn_app(Options {
        mappings: vec![("github".into(), github)],
        tweak: Some(Box::new(move |s| {
            s.admin.token = Some(TOKEN.into());
            s.fxiaoke.dry_run = false;
            s.fxiaoke.base_url = base;
            s.fxiaoke.app_id = Some("app-1".into());
            s.fxiaoke.app_secret = Some("app-secret".into());
            s.fxiaoke.permanent_code = Some("perm-code".into());
            s.fxiaoke.user_id = Some("1000".into());
            s.delivery.request_timeout = Duration::from_secs(2);
        })),
        dir: Some(dir),
    })
    .await;

    // A recent push (delivered), and a message the vendor refused for good (dead).
    let push_file = repo_file("mappings/examples/github/push.4.json");
    let push = std::fs::read(&push_file).unwrap();
    let sig = format!("sha256={}", python_hmac_hex("sha256", SECRET, &push));
    let headers = |delivery: &str| {
        vec![
            ("X-Hub-Signature-256", sig.clone()),
            ("X-GitHub-Event", "push".to_string()),
            ("X-GitHub-Delivery", delivery.to_string()),
        ]
    };
    fake.script([Scripted::ErrorCode(20021)]);
    assert_eq!(
        app.post_hook("github", push.clone(), &headers("first-push"))
            .await
            .status(),
        202
    );
    app.wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'dead'", 1)
        .await;
    assert_eq!(
        app.post_hook("github", push.clone(), &headers("second-push"))
            .await
            .status(),
        202
    );
    app.wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 1)
        .await;
    let dead: i64 = app
        .db()
        .query_row("SELECT id FROM messages WHERE state = 'dead'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let sends_before = fake.sends().len();

    let shots = repo_file("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let out = tokio::process::Command::new("node")
        .arg("console-e2e.mjs")
        .current_dir(&npm)
        .env("CONSOLE_BASE", &app.address)
        .env("ADMIN_TOKEN", TOKEN)
        .env("GITHUB_SECRET", SECRET)
        .env("PUSH_FILE", &push_file)
        .env("DEAD_MESSAGE", dead.to_string())
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("NEW_TITLE_PREFIX", PREFIX)
        .output()
        .await
        .expect("node runs (install nodejs: scripts/test.sh does)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        shots.display()
    );

    // What the vendor received: the card of the saved mapping, and the replayed dead message.
    wait_until("the replayed message at the vendor", || {
        fake.sends().len() >= sends_before + 2
    })
    .await;
    let titles: Vec<String> = fake
        .sends()
        .iter()
        .map(|r| {
            r.body["composite"]["head"]["title"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t.starts_with(PREFIX) && t.contains("commit(s) to master")),
        "{titles:?}"
    );
    let replayed = titles.iter().filter(|t| !t.starts_with(PREFIX)).count();
    assert!(
        replayed >= 2,
        "the first push's card, refused then replayed: {titles:?}"
    );
    fake.assert_no_violations();

    for page in [
        "sign-in",
        "overview",
        "editor",
        "editor-error",
        "editor-preview",
        "editor-diff",
        "deliveries",
        "message-dead",
        "message-delivered",
        "send-test",
        "replay-all",
    ] {
        for width in [390, 1280] {
            let shot = shots.join(format!("{page}-{width}.png"));
            let bytes = std::fs::read(&shot).unwrap_or_default();
            assert!(
                bytes.starts_with(b"\x89PNG"),
                "{} is not a screenshot",
                shot.display()
            );
        }
    }
}
