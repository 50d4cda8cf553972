//! With `RUST_LOG=info,fxhook=debug` the gateway narrates each step of a webhook, so an admin
//! can read why one was refused or ignored; and no secret, signature or token is in the story.

use std::time::Duration;

use crate::fake_fxiaoke::FakeFxiaoke;
use crate::hardening::wait_for;
use crate::helpers::{python_hmac_hex, repo_file};
use crate::process::{post, serve, workdir};

const SECRET: &str = "debug-story-secret";

#[test]
fn a_signed_push_at_debug_level_is_narrated_step_by_step_without_a_secret() {
    let fake = FakeFxiaoke::start("app", "app-secret-xyz", "perm-code-xyz", "1000");
    let dir = workdir();
    let base = fake.base_url();
    let gw = serve(
        dir.path(),
        &[
            ("RUST_LOG", "info,fxhook=debug"),
            ("FXHOOK_SECRET_GITHUB", SECRET),
            ("FXHOOK__FXIAOKE__BASE_URL", base.as_str()),
            ("FXHOOK__FXIAOKE__APP_ID", "app"),
            ("FXHOOK__FXIAOKE__APP_SECRET", "app-secret-xyz"),
            ("FXHOOK__FXIAOKE__PERMANENT_CODE", "perm-code-xyz"),
            ("FXHOOK__FXIAOKE__USER_ID", "1000"),
        ],
    );
    let body = std::fs::read(repo_file("tests/fixtures/github/push.0.json")).unwrap();
    let signature = python_hmac_hex("sha256", SECRET, &body);
    let headers = |sig: &str| {
        vec![
            ("X-Hub-Signature-256", format!("sha256={sig}")),
            ("X-GitHub-Event", "push".to_string()),
            ("X-GitHub-Delivery", uuid::Uuid::new_v4().to_string()),
        ]
    };
    let (status, json) = post(gw.port, "/hooks/github", &body, &headers(&signature));
    assert_eq!(status, 202, "{json}");
    let forged = python_hmac_hex("sha256", "not-the-secret", &body);
    let (status, _) = post(gw.port, "/hooks/github", &body, &headers(&forged));
    assert_eq!(status, 401);
    wait_for(Duration::from_secs(10), "the card to be sent", || {
        fake.sends().len() == 1
    });
    let has = |words: &[&str]| {
        wait_for(
            Duration::from_secs(10),
            &format!("a debug line with {words:?}"),
            || {
                gw.logs
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.contains("DEBUG") && words.iter().all(|w| l.contains(w)))
            },
        )
    };
    // verify: the preset, the header, how many secrets were tried
    has(&["preset=\"github\"", "X-Hub-Signature-256", "secrets_tried"]);
    has(&["no_secret_matched"]);
    // map: the rule; route: the recipients
    has(&["rule matched", "rule=push"]);
    has(&["recipients resolved", "recipients=1"]);
    // deliver: the token call, the vendor endpoint with its errorCode and traceId
    has(&["access token fetched", "/oauth2.0/token"]);
    has(&[
        "vendor answered",
        "/cgi/message/send",
        "error_code=0",
        "trace_id=\"E-O.",
    ]);

    let logs = gw.logs.lock().unwrap().join("\n");
    for secret in [
        SECRET,
        &signature,
        &forged,
        "tok-1",
        "app-secret-xyz",
        "perm-code-xyz",
    ] {
        assert!(!logs.contains(secret), "{secret:?} reached the log");
    }
    fake.assert_no_violations();
}

#[test]
fn a_refused_token_call_logged_as_json_at_debug_level_shows_no_secret() {
    let fake = FakeFxiaoke::start("app", "right-app-secret", "perm-code-xyz", "1000");
    let dir = workdir();
    let base = fake.base_url();
    let gw = serve(
        dir.path(),
        &[
            ("RUST_LOG", "debug"),
            ("FXHOOK__LOG__FORMAT", "json"),
            ("FXHOOK_SECRET_GITHUB", SECRET),
            ("FXHOOK__FXIAOKE__BASE_URL", base.as_str()),
            ("FXHOOK__FXIAOKE__APP_ID", "app"),
            ("FXHOOK__FXIAOKE__APP_SECRET", "wrong-app-secret"),
            ("FXHOOK__FXIAOKE__PERMANENT_CODE", "perm-code-xyz"),
            ("FXHOOK__FXIAOKE__USER_ID", "1000"),
        ],
    );
    let body = std::fs::read(repo_file("tests/fixtures/github/push.0.json")).unwrap();
    let signature = python_hmac_hex("sha256", SECRET, &body);
    let (status, json) = post(
        gw.port,
        "/hooks/github",
        &body,
        &[
            ("X-Hub-Signature-256", format!("sha256={signature}")),
            ("X-GitHub-Event", "push".to_string()),
        ],
    );
    assert_eq!(status, 202, "{json}");
    wait_for(
        Duration::from_secs(10),
        "the refused token call to be logged",
        || {
            gw.logs
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("no access token") && l.contains("10006"))
        },
    );
    let logs = gw.logs.lock().unwrap().clone();
    for line in &logs {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
    let all = logs.join("\n");
    for secret in [
        SECRET,
        signature.as_str(),
        "wrong-app-secret",
        "perm-code-xyz",
    ] {
        assert!(!all.contains(secret), "{secret:?} reached the log");
    }
}
