//! Each preset's scheme against published vectors and an independent signer (Python's `hmac`),
//! and the ways a request can fail verification.

use std::time::{Duration, UNIX_EPOCH};

use fxhook::verify::hmac::HmacScheme;
use fxhook::verify::spec::{Algorithm, Encoding};
use fxhook::verify::standard_webhooks::StandardWebhooks;
use fxhook::verify::{ContentKind, Scheme, Secret, VerifyError, Webhook};

use crate::helpers::{
    ACCEPT_ALL, Options, mapping_with_secret_file, now_secs, python_hmac_hex,
    python_standard_webhooks, spawn_app,
};

fn webhook(headers: &[(&str, &str)], body: &[u8]) -> Webhook {
    let mut map = actix_web::http::header::HeaderMap::new();
    for (n, v) in headers {
        map.append(
            actix_web::http::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            actix_web::http::header::HeaderValue::from_str(v).unwrap(),
        );
    }
    Webhook {
        headers: map,
        body: bytes::Bytes::copy_from_slice(body),
        content: ContentKind::Json,
        query: String::new(),
        received_at: std::time::SystemTime::now(),
    }
}

#[test]
fn the_published_github_vector_verifies() {
    let scheme = HmacScheme::of_body(
        "X-Hub-Signature-256",
        Algorithm::Sha256,
        Encoding::Hex,
        "sha256=",
    );
    let hook = webhook(
        &[(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )],
        b"Hello, World!",
    );
    let secrets = [Secret::new("It's a Secret to Everybody", "test")];
    assert_eq!(scheme.check(&hook, &secrets, hook.received_at), Ok(()));
    let tampered = webhook(
        &[(
            "X-Hub-Signature-256",
            hook.header("X-Hub-Signature-256").unwrap(),
        )],
        b"Hello, World?",
    );
    assert_eq!(
        scheme.check(&tampered, &secrets, hook.received_at),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn the_published_standard_webhooks_vector_verifies_at_its_own_time_and_is_stale_later() {
    let hook = webhook(
        &[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1a,ignored v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ],
        br#"{"test": 2432232314}"#,
    );
    let secrets = [Secret::new(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "test",
    )];
    let then = UNIX_EPOCH + Duration::from_secs(1_614_265_330);
    let scheme = StandardWebhooks::default();
    assert_eq!(scheme.check(&hook, &secrets, then), Ok(()));
    assert_eq!(
        scheme.check(&hook, &secrets, then + Duration::from_secs(301)),
        Err(VerifyError::Stale)
    );
}

#[test]
fn svix_header_names_are_accepted_too() {
    let body = br#"{"type":"x"}"#;
    let key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let ts = now_secs();
    let sig = python_standard_webhooks(key, "msg_1", &ts, body);
    let hook = webhook(
        &[
            ("svix-id", "msg_1"),
            ("svix-timestamp", &ts),
            ("svix-signature", &sig),
        ],
        body,
    );
    let scheme = StandardWebhooks::default();
    assert_eq!(
        scheme.check(&hook, &[Secret::new(key, "t")], hook.received_at),
        Ok(())
    );
}

const GH_SECRET: &str = "rotating-secret-new";

async fn github() -> crate::helpers::TestApp {
    let dir = tempfile::tempdir().unwrap();
    let secret_new = dir.path().join("new");
    let secret_old = dir.path().join("old");
    std::fs::write(&secret_new, GH_SECRET).unwrap();
    std::fs::write(&secret_old, "rotating-secret-old\n").unwrap();
    let yaml = format!(
        "verify:\n  preset: github\n  secrets: [{{file: {}}}, {{file: {}}}]\n{ACCEPT_ALL}",
        secret_new.display(),
        secret_old.display()
    );
    spawn_app(Options {
        mappings: vec![("github".into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await
}

#[actix_rt::test]
async fn a_real_github_push_signed_by_python_is_accepted() {
    let app = github().await;
    let body = std::fs::read(crate::helpers::repo_file(
        "tests/fixtures/github/push.0.json",
    ))
    .unwrap();
    let sig = format!("sha256={}", python_hmac_hex("sha256", GH_SECRET, &body));
    let res = app
        .post_hook(
            "github",
            body.clone(),
            &[
                ("X-Hub-Signature-256", sig),
                ("X-GitHub-Event", "push".into()),
            ],
        )
        .await;
    assert_eq!(res.status(), 202);
    let (event_type, codec, payload): (String, String, Vec<u8>) = app
        .db()
        .query_row(
            "SELECT event_type, payload_codec, payload FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(event_type, "push");
    let payload = fxhook::store::payload::decode(&codec, payload).unwrap();
    assert_eq!(payload, body, "stored byte for byte as signed (compressed)");
}

#[actix_rt::test]
async fn the_previous_secret_still_verifies_during_a_rotation() {
    let app = github().await;
    let body = br#"{"action":"x"}"#;
    let sig = format!(
        "sha256={}",
        python_hmac_hex("sha256", "rotating-secret-old", body)
    );
    assert_eq!(
        app.post_hook("github", &body[..], &[("X-Hub-Signature-256", sig)])
            .await
            .status(),
        202
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 1);
}

#[actix_rt::test]
async fn a_missing_signature_header_is_a_401_naming_it() {
    let app = github().await;
    let res = app.post_hook("github", &b"{}"[..], &[]).await;
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "missing X-Hub-Signature-256 header");
}

#[actix_rt::test]
async fn a_sha1_signature_sent_to_a_sha256_source_is_refused() {
    let app = github().await;
    let body = br#"{"action":"x"}"#;
    let sha1 = python_hmac_hex("sha1", GH_SECRET, body);
    let res = app
        .post_hook(
            "github",
            &body[..],
            &[("X-Hub-Signature", format!("sha1={sha1}"))],
        )
        .await;
    assert_eq!(res.status(), 401);
    // Nor can the sha1 value be smuggled into the sha256 header.
    let res = app
        .post_hook(
            "github",
            &body[..],
            &[("X-Hub-Signature-256", format!("sha1={sha1}"))],
        )
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 0);
}

#[actix_rt::test]
async fn a_tampered_body_is_refused() {
    let app = github().await;
    let sig = format!(
        "sha256={}",
        python_hmac_hex("sha256", GH_SECRET, br#"{"amount":1}"#)
    );
    let res = app
        .post_hook(
            "github",
            &br#"{"amount":9}"#[..],
            &[("X-Hub-Signature-256", sig)],
        )
        .await;
    assert_eq!(res.status(), 401);
    let answer: serde_json::Value = res.json().await.unwrap();
    assert_eq!(answer["error"], "signature does not match");
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 0);
}

#[actix_rt::test]
async fn standard_webhooks_requests_signed_now_are_accepted_and_old_ones_are_stale() {
    let dir = tempfile::tempdir().unwrap();
    let key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let yaml =
        mapping_with_secret_file(dir.path(), "generic", "standard-webhooks", key, ACCEPT_ALL);
    let app = spawn_app(Options {
        mappings: vec![("generic".into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await;
    let body = br#"{"type":"invoice.paid","id":"1"}"#;
    let ts = now_secs();
    let headers = |ts: &str, id: &str| {
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                python_standard_webhooks(key, id, ts, body),
            ),
        ]
    };
    assert_eq!(
        app.post_hook("generic", &body[..], &headers(&ts, "msg_a"))
            .await
            .status(),
        202
    );
    let old = (ts.parse::<u64>().unwrap() - 600).to_string();
    let res = app
        .post_hook("generic", &body[..], &headers(&old, "msg_b"))
        .await;
    assert_eq!(res.status(), 401);
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["error"], "timestamp outside the replay window");
}

#[actix_rt::test]
async fn alertmanager_accepts_its_bearer_token_or_basic_credentials_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tok");
    let basic = dir.path().join("basic");
    std::fs::write(&tokens, "am-token").unwrap();
    std::fs::write(&basic, "am:pass word").unwrap();
    let yaml = format!(
        "verify:\n  preset: alertmanager\n  secrets: [{{file: {}}}, {{file: {}}}]\n{ACCEPT_ALL}",
        tokens.display(),
        basic.display()
    );
    let app = spawn_app(Options {
        mappings: vec![("alertmanager".into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await;
    let body = std::fs::read(crate::helpers::repo_file(
        "tests/fixtures/alertmanager-0.25-firing.body.json",
    ))
    .unwrap();
    use base64::Engine as _;
    let basic_header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("am:pass word")
    );
    for (auth, want) in [
        ("Bearer am-token".to_string(), 202),
        (basic_header, 202),
        ("Bearer wrong".to_string(), 401),
        ("Token am-token".to_string(), 401),
    ] {
        let res = app
            .post_hook(
                "alertmanager",
                body.clone(),
                &[("Authorization", auth.clone())],
            )
            .await;
        assert_eq!(res.status(), want, "{auth}");
    }
    assert_eq!(app.post_hook("alertmanager", body, &[]).await.status(), 401);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events"),
        2,
        "only the two good ones"
    );
}

#[actix_rt::test]
async fn gitlab_accepts_its_token_and_refuses_one_a_character_short() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = mapping_with_secret_file(dir.path(), "gitlab", "gitlab", "gl-token", ACCEPT_ALL);
    let app = spawn_app(Options {
        mappings: vec![("gitlab".into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await;
    let ok = app
        .post_hook(
            "gitlab",
            &b"{}"[..],
            &[("X-Gitlab-Token", "gl-token".into())],
        )
        .await;
    assert_eq!(ok.status(), 202);
    let bad = app
        .post_hook(
            "gitlab",
            &b"{}"[..],
            &[("X-Gitlab-Token", "gl-toke".into())],
        )
        .await;
    assert_eq!(bad.status(), 401);
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 1);
}

#[actix_rt::test]
async fn the_generic_hmac_scheme_signs_a_template_with_a_timestamp_and_checks_the_window() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s"), "generic-secret").unwrap();
    let yaml = format!(
        "verify:\n  preset: hmac\n  header: X-Sig\n  algorithm: sha512\n  encoding: hex\n  prefix: 'v1='\n  signed: '{{timestamp}}:{{body}}'\n  timestamp_header: X-Ts\n  tolerance: 1m\n  secrets: [{{file: {}}}]\n{ACCEPT_ALL}",
        dir.path().join("s").display()
    );
    let app = spawn_app(Options {
        mappings: vec![("custom".into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await;
    let body = br#"{"id":"9"}"#;
    let sign = |ts: &str| {
        let mut msg = format!("{ts}:").into_bytes();
        msg.extend_from_slice(body);
        format!("v1={}", python_hmac_hex("sha512", "generic-secret", &msg))
    };
    let ts = now_secs();
    let ok = app
        .post_hook(
            "custom",
            &body[..],
            &[("X-Sig", sign(&ts)), ("X-Ts", ts.clone())],
        )
        .await;
    assert_eq!(ok.status(), 202);
    let old = (ts.parse::<u64>().unwrap() - 120).to_string();
    let stale = app
        .post_hook("custom", &body[..], &[("X-Sig", sign(&old)), ("X-Ts", old)])
        .await;
    assert_eq!(stale.status(), 401);
    let answer: serde_json::Value = stale.json().await.unwrap();
    assert_eq!(answer["error"], "timestamp outside the replay window");
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 1);
}
