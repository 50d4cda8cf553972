//! A store that tells its size and stays proportional to a day of payloads (issue 21): the
//! payloads of delivered events go before their rows; over `store.max_bytes` webhooks get 503
//! and the gauges and `/readyz` say how full the store is.

use std::time::Duration;

use crate::hardening::wait_for;
use crate::helpers::{Options, mapping_with_secret_file, python_hmac_hex, spawn_app};
use crate::live::eventually;
use crate::process::{post, send, serve, workdir};

const SECRET: &str = "retention-secret";
const TOKEN: &str = "retention-admin-token-0123456789";

const RULES: &str = r#"rules:
  - name: build
    card:
      title: "Build {$.build}"
      link: { title: Open, url: "https://ci.example.com/{$.build}" }
"#;

#[actix_rt::test]
async fn the_payload_of_a_delivered_event_is_dropped_before_its_row_and_cannot_be_re_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = mapping_with_secret_file(dir.path(), "ci", "github", SECRET, RULES);
    let app = spawn_app(Options {
        mappings: vec![("ci".into(), yaml)],
        tweak: Some(Box::new(|s| {
            s.admin.token = Some(TOKEN.into());
            s.delivery.keep_payloads = Duration::from_millis(200);
        })),
        dir: Some(dir),
    })
    .await;
    let body = r#"{"build": 7}"#;
    let sig = format!(
        "sha256={}",
        python_hmac_hex("sha256", SECRET, body.as_bytes())
    );
    let res = app
        .post_hook("ci", body, &[("X-Hub-Signature-256", sig)])
        .await;
    assert_eq!(res.status(), 202);
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", 1)
        .await;
    eventually("the payload dropped", Duration::from_secs(10), || {
        app.count("SELECT COUNT(*) FROM events WHERE length(payload) = 0") == 1
    })
    .await;
    // The row, its card and its attempt stay.
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 1);
    assert_eq!(
        app.message_bodies()[0]["composite"]["head"]["title"],
        "Build 7"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM attempts"), 1);
    let admin = |path: String| {
        app.client
            .post(format!("{}{path}", app.address))
            .bearer_auth(TOKEN)
            .send()
    };
    let res = admin(format!("/admin/events/{id}/remap")).await.unwrap();
    assert_eq!(res.status(), 409);
    let why = res.json::<serde_json::Value>().await.unwrap();
    assert!(
        why["error"]
            .as_str()
            .unwrap()
            .contains("delivery.keep_payloads"),
        "{why}"
    );
}

/// The real binary over a tiny `store.max_bytes`: webhooks get 503, `/readyz` and the gauges
/// give the size and the bound (a process of its own: the gauges are process-wide).
#[test]
fn a_store_over_its_bound_refuses_webhooks_and_says_how_full_it_is() {
    let dir = workdir();
    let gw = serve(
        dir.path(),
        &[
            ("FXHOOK_SECRET_GITHUB", "bound-secret"),
            ("FXHOOK__STORE__MAX_BYTES", "4096"),
        ],
    );
    let body = std::fs::read(crate::helpers::repo_file(
        "mappings/examples/github/push.4.json",
    ))
    .unwrap();
    let sig = format!(
        "sha256={}",
        python_hmac_hex("sha256", "bound-secret", &body)
    );
    let headers = [
        ("X-Hub-Signature-256", sig),
        ("X-GitHub-Event", "push".to_string()),
    ];
    wait_for(Duration::from_secs(10), "a 503 over the bound", || {
        post(gw.port, "/hooks/github", &body, &headers).0 == 503
    });
    let (status, ready) = send(gw.port, reqwest::Method::GET, "/readyz", b"", &[]);
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["store_max_bytes"], 4096, "{ready}");
    let bytes = ready["store_bytes"].as_u64().expect("the store's size");
    assert!(bytes > 4096, "{ready}");
    let metrics = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            reqwest::get(format!("http://127.0.0.1:{}/metrics", gw.port))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
    assert!(metrics.contains("fxhook_store_max_bytes 4096"), "{metrics}");
    let gauge: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fxhook_store_bytes "))
        .expect("fxhook_store_bytes")
        .parse()
        .unwrap();
    assert!(gauge > 4096.0, "{gauge}");
}
