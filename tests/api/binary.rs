//! The `fxhook` binary as operators and admins run it: configuration from a file and the
//! environment, `check`, `render`, and a SIGKILL that loses nothing.

use std::process::Command;
use std::time::Duration;

use crate::helpers::{python_hmac_hex, repo_file};
use crate::process::{fxhook, post, scrape, serve, wait_until, workdir};

#[test]
fn a_push_signed_by_python_is_accepted_survives_a_sigkill_and_is_delivered_after_restart() {
    let dir = workdir();
    let secret = "binary-test-secret";
    // The first process has credentials for a vendor that does not answer, so its message
    // stays queued; it is killed with SIGKILL; the second runs in dry run and must deliver it.
    let live = [
        ("FXHOOK_SECRET_GITHUB", secret),
        ("FXHOOK__FXIAOKE__BASE_URL", "http://127.0.0.1:9"),
        ("FXHOOK__FXIAOKE__APP_ID", "app"),
        ("FXHOOK__FXIAOKE__APP_SECRET", "s"),
        ("FXHOOK__FXIAOKE__PERMANENT_CODE", "p"),
        ("FXHOOK__FXIAOKE__USER_ID", "1000"),
    ];
    let first = serve(dir.path(), &live);
    let body = std::fs::read(repo_file("tests/fixtures/github/push.4.json")).unwrap();
    let sig = format!("sha256={}", python_hmac_hex("sha256", secret, &body));
    let (status, json) = post(
        first.port,
        "/hooks/github",
        &body,
        &[
            ("X-Hub-Signature-256", sig),
            ("X-GitHub-Event", "push".into()),
            ("X-GitHub-Delivery", "kill-1".into()),
        ],
    );
    assert_eq!(status, 202, "{json}");
    let id = json["id"].as_str().unwrap().to_string();
    drop(first); // SIGKILL

    let db = rusqlite::Connection::open(dir.path().join("data/fxhook.db")).unwrap();
    let stored: i64 = db
        .query_row("SELECT COUNT(*) FROM events WHERE id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, 1);
    let queued: i64 = db
        .query_row("SELECT COUNT(*) FROM messages WHERE event_id = ?1 AND state IN ('queued', 'in-flight')", [&id], |r| r.get(0))
        .unwrap();
    assert_eq!(
        queued, 1,
        "the message is still waiting when the process dies"
    );

    let _second = serve(
        dir.path(),
        &[
            ("FXHOOK_SECRET_GITHUB", secret),
            ("FXHOOK__FXIAOKE__DRY_RUN", "true"),
        ],
    );
    wait_until(
        || {
            db.query_row(
                "SELECT COUNT(*) FROM messages WHERE event_id = ?1 AND state = 'delivered'",
                [&id],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
                == 1
        },
        "the message to be delivered",
    );
}

#[test]
fn the_gateway_starts_on_its_embedded_defaults_with_no_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    std::fs::copy(
        repo_file("mappings/github.yaml"),
        dir.path().join("mappings/github.yaml"),
    )
    .unwrap();
    let running = serve(dir.path(), &[]);
    let (status, json) = post(running.port, "/hooks/github", b"{}", &[]);
    assert_eq!(status, 401);
    assert_eq!(json["error"], "source github has no secret configured");
    assert!(dir.path().join("data/fxhook.db").exists());
    let health = fxhook()
        .arg("healthcheck")
        .current_dir(dir.path())
        .env(
            "FXHOOK__SERVER__LISTEN",
            format!("0.0.0.0:{}", running.port),
        )
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
}

#[test]
fn a_bad_configuration_value_stops_start_up_with_a_message_naming_the_key() {
    let dir = workdir();
    let out = fxhook()
        .arg("serve")
        .current_dir(dir.path())
        .env("FXHOOK__SERVER__MAX_BODY_BYTES", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.max_body_bytes"), "{stderr}");

    std::fs::write(
        dir.path().join("fxhook.yaml"),
        "mappings:\n  timezone: Mars/Olympus\n",
    )
    .unwrap();
    let out = fxhook()
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mappings.timezone"));

    // Three credentials of four is a typo, not a wish for a dry run that sends nothing.
    std::fs::write(
        dir.path().join("fxhook.yaml"),
        "groups:\n  default: ['1000']\n",
    )
    .unwrap();
    let out = fxhook()
        .arg("check")
        .current_dir(dir.path())
        .env("FXHOOK__FXIAOKE__APP_ID", "a")
        .env("FXHOOK__FXIAOKE__APP_SECRET", "s")
        .env("FXHOOK__FXIAOKE__PERMANENT_CODE", "p")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fxiaoke.user_id missing"));

    std::fs::write(dir.path().join("fxhook.yaml"), "servr:\n  listen: 1\n").unwrap();
    let out = fxhook()
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `servr`"));
}

#[test]
fn check_passes_on_the_shipped_mappings_and_fails_with_file_line_col_on_a_broken_one() {
    let dir = workdir();
    let out = fxhook()
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Inactive sources are warned about on stderr without failing.
    assert!(String::from_utf8_lossy(&out.stderr).contains("github has no secret configured"));
    // The documented example configuration is a valid one.
    let out = fxhook()
        .arg("check")
        .arg("--config")
        .arg(repo_file("fxhook.example.yaml"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(
        dir.path().join("mappings/broken.yaml"),
        "verify: { preset: github }\nrules:\n  - card:\n      title: \"{$.a | nope}\"\n      link: { title: a, url: 'https://b' }\n",
    )
    .unwrap();
    let out = fxhook()
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("mappings/broken.yaml:4:22: unknown filter 'nope'"),
        "{stdout}"
    );
}

#[test]
fn render_prints_the_exact_send_bodies_as_one_json_document() {
    let dir = workdir();
    let out = fxhook()
        .current_dir(dir.path())
        .args([
            "render",
            "--source",
            "github",
            "--header",
            "X-GitHub-Event: release",
            "--payload",
        ])
        .arg(repo_file("tests/fixtures/github/release.published.json"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "rendered");
    assert_eq!(doc["rule"], "release");
    let message = &doc["messages"][0];
    assert_eq!(message["toUser"], serde_json::json!(["1000"]));
    assert_eq!(message["msgType"], "composite");
    assert_eq!(
        message["composite"]["head"]["title"],
        "Codertocat/Hello-World: release 0.0.1 published"
    );

    let out = fxhook()
        .current_dir(dir.path())
        .args([
            "render",
            "--source",
            "github",
            "--header",
            "X-GitHub-Event: ping",
            "--payload",
        ])
        .arg(repo_file("tests/fixtures/github/ping.0.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "ignored");
    assert!(doc["reason"].as_str().unwrap().starts_with("ping"));
}

/// `fxhook render` in both languages, from the environment alone: English by default (no
/// Chinese anywhere in the card), Chinese titles and labels with FXHOOK__CARDS__LOCALE=zh-CN.
#[test]
fn render_speaks_english_by_default_and_chinese_when_cards_locale_says_so() {
    let dir = workdir();
    let render = |locale: Option<&str>, source: &str, header: &str, fixture: &str| {
        let mut cmd = fxhook();
        cmd.current_dir(dir.path())
            .args([
                "render",
                "--source",
                source,
                "--header",
                header,
                "--payload",
            ])
            .arg(repo_file(fixture));
        if let Some(l) = locale {
            cmd.env("FXHOOK__CARDS__LOCALE", l);
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["messages"][0]["composite"].clone()
    };
    let cjk = |v: &serde_json::Value| {
        let text = format!("{} {}", v["head"]["title"], v["form"]);
        text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
    };
    let cases = [
        (
            "github",
            "X-GitHub-Event: push",
            "mappings/examples/github/push.4.json",
            "个提交推送到",
        ),
        (
            "github",
            "X-GitHub-Event: pull_request",
            "tests/fixtures/github/pull_request.closed.json",
            "拉取请求",
        ),
        (
            "alertmanager",
            "X-Anything: 1",
            "tests/fixtures/alertmanager-0.25-firing.body.json",
            "告警中",
        ),
    ];
    for (source, header, fixture, word) in cases {
        let en = render(None, source, header, fixture);
        assert!(!cjk(&en), "{source} {fixture} in English: {en}");
        let zh = render(Some("zh-CN"), source, header, fixture);
        let title = zh["head"]["title"].as_str().unwrap();
        assert!(title.contains(word), "{source} {fixture} in Chinese: {zh}");
    }
}

#[test]
fn render_exits_1_with_the_reason_on_stderr_when_the_mapping_fails() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("mappings/thin.yaml"),
        "verify: { unsigned: true }\nrules:\n  - card:\n      title: \"{$.title}\"\n      link: { title: a, url: 'https://b' }\n",
    )
    .unwrap();
    let payload = dir.path().join("p.json");
    std::fs::write(&payload, "{}").unwrap();
    let out = fxhook()
        .current_dir(dir.path())
        .args(["render", "--source", "thin", "--payload"])
        .arg(&payload)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("card title rendered empty"));
}

#[test]
fn messages_in_flight_when_the_process_is_killed_are_all_delivered_after_restart() {
    use crate::fake_fxiaoke::{FakeFxiaoke, Scripted};
    let fake = FakeFxiaoke::start("app", "secret", "perm", "1000");
    // Every send of the first process hangs: its messages are in flight when it dies.
    fake.script((0..5).map(|_| Scripted::Hang(Duration::from_secs(30))));
    let dir = workdir();
    let base = fake.base_url();
    let env = [
        ("FXHOOK_SECRET_GITHUB", "kill-secret"),
        ("FXHOOK__FXIAOKE__BASE_URL", base.as_str()),
        ("FXHOOK__FXIAOKE__APP_ID", "app"),
        ("FXHOOK__FXIAOKE__APP_SECRET", "secret"),
        ("FXHOOK__FXIAOKE__PERMANENT_CODE", "perm"),
        ("FXHOOK__FXIAOKE__USER_ID", "1000"),
        ("FXHOOK__DELIVERY__CONCURRENCY", "8"),
        ("FXHOOK__DELIVERY__REQUEST_TIMEOUT", "60s"),
    ];
    let first = serve(dir.path(), &env);
    let bodies: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"action":"opened","issue":{{"number":{i},"title":"t{i}","html_url":"https://x/{i}","user":{{"login":"u"}}}},"repository":{{"full_name":"o/r"}},"sender":{{"login":"u"}}}}"#))
        .collect();
    for body in &bodies {
        let sig = format!(
            "sha256={}",
            python_hmac_hex("sha256", "kill-secret", body.as_bytes())
        );
        let (status, json) = post(
            first.port,
            "/hooks/github",
            body.as_bytes(),
            &[
                ("X-Hub-Signature-256", sig),
                ("X-GitHub-Event", "issues".into()),
            ],
        );
        assert_eq!(status, 202, "{json}");
    }
    wait_until(|| fake.sends().len() == 5, "five sends in flight");
    drop(first); // SIGKILL with five sends in flight

    let _second = serve(dir.path(), &env);
    let db = rusqlite::Connection::open(dir.path().join("data/fxhook.db")).unwrap();
    wait_until(
        || {
            db.query_row(
                "SELECT COUNT(*) FROM messages WHERE state = 'delivered'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
                == 5
        },
        "every accepted message to be delivered",
    );
    let titles: std::collections::HashSet<String> = fake
        .sends()
        .iter()
        .map(|s| {
            s.body["composite"]["head"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(titles.len(), 5, "{titles:?}");
    fake.assert_no_violations();
}

#[test]
fn send_test_fetches_a_token_and_sends_one_card_printing_each_step() {
    let fake = crate::fake_fxiaoke::FakeFxiaoke::start("app", "secret", "perm", "1000");
    let dir = workdir();
    let out = fxhook()
        .args(["send-test", "--to", "1000"])
        .current_dir(dir.path())
        .env("FXHOOK__FXIAOKE__BASE_URL", fake.base_url())
        .env("FXHOOK__FXIAOKE__APP_ID", "app")
        .env("FXHOOK__FXIAOKE__APP_SECRET", "secret")
        .env("FXHOOK__FXIAOKE__PERMANENT_CODE", "perm")
        .env("FXHOOK__FXIAOKE__USER_ID", "1000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1. token") && stdout.contains("2. send") && stdout.contains("delivered"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("secret\""),
        "the app secret is printed: {stdout}"
    );
    assert_eq!(fake.sends().len(), 1);
    fake.assert_no_violations();

    let out = fxhook()
        .args(["send-test", "--to", "1000"])
        .current_dir(dir.path())
        .env("FXHOOK__FXIAOKE__BASE_URL", fake.base_url())
        .env("FXHOOK__FXIAOKE__APP_ID", "app")
        .env("FXHOOK__FXIAOKE__APP_SECRET", "wrong")
        .env("FXHOOK__FXIAOKE__PERMANENT_CODE", "perm")
        .env("FXHOOK__FXIAOKE__USER_ID", "1000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("10006"));
}

#[test]
fn sigterm_stops_cleanly_and_a_send_still_in_progress_is_delivered_after_restart() {
    use crate::fake_fxiaoke::{FakeFxiaoke, Scripted};
    let fake = FakeFxiaoke::start("app", "secret", "perm", "1000");
    fake.script([Scripted::Hang(Duration::from_secs(30))]);
    let dir = workdir();
    let base = fake.base_url();
    let env = [
        ("FXHOOK_SECRET_GITHUB", "term-secret"),
        ("FXHOOK__FXIAOKE__BASE_URL", base.as_str()),
        ("FXHOOK__FXIAOKE__APP_ID", "app"),
        ("FXHOOK__FXIAOKE__APP_SECRET", "secret"),
        ("FXHOOK__FXIAOKE__PERMANENT_CODE", "perm"),
        ("FXHOOK__FXIAOKE__USER_ID", "1000"),
        ("FXHOOK__DELIVERY__REQUEST_TIMEOUT", "2s"),
        ("FXHOOK__DELIVERY__RETRY_SCHEDULE", "20ms,40ms"),
    ];
    let mut first = serve(dir.path(), &env);
    let body = std::fs::read(repo_file("tests/fixtures/github/issues.opened.json")).unwrap();
    let sig = format!("sha256={}", python_hmac_hex("sha256", "term-secret", &body));
    let (status, _) = post(
        first.port,
        "/hooks/github",
        &body,
        &[
            ("X-Hub-Signature-256", sig),
            ("X-GitHub-Event", "issues".into()),
        ],
    );
    assert_eq!(status, 202);
    wait_until(|| fake.sends().len() == 1, "the send to hang");

    let term = Command::new("kill")
        .args(["-TERM", &first.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    // The send hangs for 30 s: exiting before that (wait_until gives up after 10 s) means the
    // process did not wait for it; its grace is the 2 s request timeout and a second.
    wait_until(
        || first.child.try_wait().unwrap().is_some(),
        "the process to exit",
    );
    assert_eq!(
        first.child.try_wait().unwrap().and_then(|s| s.code()),
        Some(0)
    );

    let _second = serve(dir.path(), &env);
    let db = rusqlite::Connection::open(dir.path().join("data/fxhook.db")).unwrap();
    wait_until(
        || {
            db.query_row(
                "SELECT COUNT(*) FROM messages WHERE state = 'delivered'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
                == 1
        },
        "the message to be delivered",
    );
    fake.assert_no_violations();
}

#[test]
fn sighup_reloads_the_mappings() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("mappings/note.yaml"),
        "verify: { unsigned: true }\nrules:\n  - card: { title: before, link: { title: a, url: 'https://x' } }\n",
    )
    .unwrap();
    let running = serve(
        dir.path(),
        &[
            ("FXHOOK__MAPPINGS__WATCH", "false"),
            ("FXHOOK__ADMIN__TOKEN", "t"),
        ],
    );
    let rendered = || -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let res = reqwest::Client::new()
                .post(format!(
                    "http://127.0.0.1:{}/admin/render/note",
                    running.port
                ))
                .bearer_auth("t")
                .body("{}")
                .send()
                .await
                .unwrap();
            let doc: serde_json::Value = res.json().await.unwrap();
            doc["messages"][0]["composite"]["head"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
    };
    assert_eq!(rendered(), "before");
    std::fs::write(
        dir.path().join("mappings/note.yaml"),
        "verify: { unsigned: true }\nrules:\n  - card: { title: after, link: { title: a, url: 'https://x' } }\n",
    )
    .unwrap();
    // The watcher is off: nothing changes until the signal. What is tested is an absence, so this
    // watches for a while (a watcher would have reloaded within it) instead of polling for work.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rendered(), "before");
    let hup = Command::new("kill")
        .args(["-HUP", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_until(|| rendered() == "after", "SIGHUP to reload the mapping");
}

#[test]
fn metrics_count_every_outcome_of_a_scripted_run() {
    let dir = workdir();
    let secret = "metrics-secret";
    let running = serve(dir.path(), &[("FXHOOK_SECRET_GITHUB", secret)]);
    let before = scrape(running.port);
    assert_eq!(
        before.get(r#"fxhook_messages_total{state="dead"}"#),
        Some(&0.0),
        "exists at 0 from start-up"
    );
    assert_eq!(
        before.get(r#"fxhook_webhooks_total{outcome="accepted",source="github"}"#),
        Some(&0.0)
    );

    let body = std::fs::read(repo_file("tests/fixtures/github/issues.opened.json")).unwrap();
    let sig = format!("sha256={}", python_hmac_hex("sha256", secret, &body));
    let send = |event: &str, delivery: &str, sig: &str| {
        post(
            running.port,
            "/hooks/github",
            &body,
            &[
                ("X-Hub-Signature-256", sig.to_string()),
                ("X-GitHub-Event", event.to_string()),
                ("X-GitHub-Delivery", delivery.to_string()),
            ],
        )
        .0
    };
    assert_eq!(send("issues", "m-1", &sig), 202);
    assert_eq!(send("issues", "m-2", &sig), 202);
    assert_eq!(send("issues", "m-2", &sig), 200); // duplicate
    assert_eq!(send("ping", "m-3", &sig), 200); // ignored
    assert_eq!(send("issues", "m-4", "sha256=00"), 401);
    assert_eq!(post(running.port, "/hooks/nosuch", b"{}", &[]).0, 404);

    let db = rusqlite::Connection::open(dir.path().join("data/fxhook.db")).unwrap();
    wait_until(
        || {
            db.query_row(
                "SELECT COUNT(*) FROM messages WHERE state = 'delivered'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
                == 2
        },
        "two deliveries",
    );
    let after = scrape(running.port);
    let get = |k: &str| {
        after
            .get(k)
            .copied()
            .unwrap_or_else(|| panic!("no series {k}"))
    };
    assert_eq!(
        get(r#"fxhook_webhooks_total{outcome="accepted",source="github"}"#),
        2.0
    );
    assert_eq!(
        get(r#"fxhook_webhooks_total{outcome="duplicate",source="github"}"#),
        1.0
    );
    assert_eq!(
        get(r#"fxhook_webhooks_total{outcome="ignored",source="github"}"#),
        1.0
    );
    assert_eq!(
        get(r#"fxhook_webhooks_total{outcome="rejected",reason="signature",source="github"}"#),
        1.0
    );
    assert_eq!(
        get(r#"fxhook_webhooks_total{outcome="rejected",reason="unknown_source",source="-"}"#),
        1.0
    );
    assert_eq!(
        get(r#"fxhook_verification_failures_total{source="github"}"#),
        1.0
    );
    assert_eq!(get(r#"fxhook_messages_total{state="delivered"}"#), 2.0);
    assert_eq!(get(r#"fxhook_messages_total{state="dead"}"#), 0.0);
    assert_eq!(get(r#"fxhook_queue_depth{state="queued"}"#), 0.0);
    assert_eq!(
        get(r#"fxhook_http_request_duration_seconds_count{route="/hooks/{source}",status="202"}"#),
        2.0
    );
}
