//! What an outside probe of the running gateway broke (issue 12), each reproduced against the
//! real binary: stalled uploads, the connection bound, secrets kept with events, readiness on a
//! full disk or a damaged store.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::python_hmac_hex;
use crate::process::{Running, fxhook, post, serve, wait_until, workdir};

/// Polls `check` until it holds or `limit` passes.
pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens a connection that sends a request's headers and the start of its body, then stalls.
/// Reads on it give up after `deadline`, so a server that never answers fails the test.
fn stalled_upload(port: u16, path: &str, deadline: Duration) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(deadline)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"zen\":"
    )
    .unwrap();
    s.flush().unwrap();
    s
}

/// Everything the server sends until it closes the connection; panics when it is still open
/// at the read deadline.
fn read_until_closed(s: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) => String::from_utf8_lossy(&answer).into_owned(),
        Err(e) => panic!(
            "the connection is still open ({e}); received so far: {}",
            String::from_utf8_lossy(&answer)
        ),
    }
}

fn signed_push(port: u16, secret: &str) -> (u16, serde_json::Value) {
    let body = std::fs::read(crate::helpers::repo_file(
        "tests/fixtures/github/push.0.json",
    ))
    .unwrap();
    let sig = format!("sha256={}", python_hmac_hex("sha256", secret, &body));
    post(
        port,
        "/hooks/github",
        &body,
        &[
            ("X-Hub-Signature-256", sig),
            ("X-GitHub-Event", "push".into()),
            ("X-GitHub-Delivery", uuid::Uuid::new_v4().to_string()),
        ],
    )
}

#[test]
fn a_client_that_stalls_mid_body_gets_408_and_is_disconnected_while_signed_webhooks_pass() {
    let dir = workdir();
    let gw = serve(
        dir.path(),
        &[
            ("FXHOOK_SECRET_GITHUB", "stall-secret"),
            ("FXHOOK__FXIAOKE__DRY_RUN", "true"),
            ("FXHOOK__SERVER__BODY_TIMEOUT", "1s"),
        ],
    );
    let mut stalled: Vec<TcpStream> = (0..20)
        .map(|_| stalled_upload(gw.port, "/hooks/github", Duration::from_secs(30)))
        .collect();

    let (status, json) = signed_push(gw.port, "stall-secret");
    assert_eq!(status, 202, "a signed webhook passes meanwhile: {json}");

    for s in &mut stalled {
        let answer = read_until_closed(s);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("server.body_timeout"), "{answer}");
    }
    let logs = gw.logs.lock().unwrap().join("\n");
    assert!(logs.contains("status=408"), "the access log shows the 408s");
}

#[test]
fn connections_beyond_the_bound_wait_until_a_stalled_one_is_timed_out() {
    let dir = workdir();
    let gw = serve(
        dir.path(),
        &[
            // An active source: its handler reads the body (an inactive one refuses at once).
            ("FXHOOK_SECRET_GITHUB", "bound-secret"),
            ("FXHOOK__FXIAOKE__DRY_RUN", "true"),
            ("FXHOOK__SERVER__WORKERS", "1"),
            ("FXHOOK__SERVER__MAX_CONNECTIONS", "4"),
            ("FXHOOK__SERVER__BODY_TIMEOUT", "2s"),
        ],
    );
    let port = gw.port;
    let started = Instant::now();
    // Four uploads stall and fill the bound; each reports when its 408 came.
    let stalled: Vec<_> = (0..4)
        .map(|_| {
            let mut s = stalled_upload(port, "/hooks/github", Duration::from_secs(30));
            std::thread::spawn(move || {
                let answer = read_until_closed(&mut s);
                (Instant::now(), answer)
            })
        })
        .collect();
    // A fifth connection is not served while the four hold the bound.
    let mut fifth = TcpStream::connect(("127.0.0.1", port)).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        fifth,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let answer = read_until_closed(&mut fifth);
    let served_at = Instant::now();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let timed_out: Vec<(Instant, String)> =
        stalled.into_iter().map(|t| t.join().unwrap()).collect();
    for (_, answer) in &timed_out {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    // The fifth is served once the first stalled one is closed (2 s body timeout): not
    // before. (Compared with the start, not with the 408's reader thread, which a busy machine
    // may schedule after the fifth's.)
    let first_408 = timed_out.iter().map(|(at, _)| *at).min().unwrap();
    assert!(
        served_at.duration_since(started) >= Duration::from_millis(1500),
        "the fifth connection was served {:?} after the stalled ones began, before any was closed (first 408 after {:?}): no bound",
        served_at.duration_since(started),
        first_408.duration_since(started)
    );
    let logs = gw.logs.lock().unwrap().join("\n");
    assert!(logs.contains("max_connections=4"), "{logs}");
}

/// A source verified by a token in a custom header, with the admin API on.
fn token_source(dir: &Path) {
    std::fs::write(
        dir.join("mappings/ops.yaml"),
        "verify: { preset: token, header: X-Api-Key }\nrules:\n  - name: all\n    card:\n      title: 'ops {$.what}'\n      link: { title: Open, url: 'https://example.com' }\n",
    )
    .unwrap();
}

const OPS_SECRET: &str = "ops-SECRET-value-42";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn ops_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("FXHOOK_SECRET_OPS", OPS_SECRET),
        ("FXHOOK__FXIAOKE__DRY_RUN", "true"),
        ("FXHOOK__ADMIN__TOKEN", ADMIN_TOKEN),
    ]
}

fn admin_get(port: u16, path: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

/// Every byte of the store's files (database, WAL), as text.
fn store_bytes(dir: &Path) -> String {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir.join("data")).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[test]
fn a_token_in_a_custom_header_or_the_query_is_never_stored_nor_shown() {
    let dir = workdir();
    token_source(dir.path());
    let gw = serve(dir.path(), &ops_env());
    let (status, json) = post(
        gw.port,
        "/hooks/ops",
        br#"{"what":"header"}"#,
        &[
            ("X-Api-Key", OPS_SECRET.into()),
            // A proxy's copy of the URL carries the token too.
            ("X-Original-URI", format!("/hooks/ops?token={OPS_SECRET}")),
            ("X-Trace", "kept".into()),
        ],
    );
    assert_eq!(status, 202, "{json}");
    let id = json["id"].as_str().unwrap().to_string();
    let (status, json) = post(
        gw.port,
        &format!("/hooks/ops?token={OPS_SECRET}"),
        br#"{"what":"query"}"#,
        &[],
    );
    assert_eq!(status, 202, "{json}");

    let shown = admin_get(gw.port, &format!("/admin/events/{id}"));
    assert!(shown.contains("x-trace"), "headers are kept: {shown}");
    assert!(!shown.contains(OPS_SECRET), "{shown}");
    assert!(!shown.to_ascii_lowercase().contains("x-api-key"), "{shown}");
    assert!(!admin_get(gw.port, "/admin/events").contains(OPS_SECRET));
    assert!(!store_bytes(dir.path()).contains(OPS_SECRET));
    assert!(!gw.logs.lock().unwrap().join("\n").contains(OPS_SECRET));
}

#[test]
fn a_store_written_by_an_earlier_version_has_its_stored_tokens_scrubbed_at_start_up() {
    let dir = workdir();
    token_source(dir.path());
    let first = serve(dir.path(), &ops_env());
    let (status, json) = post(
        first.port,
        "/hooks/ops",
        br#"{"what":"old"}"#,
        &[("X-Api-Key", OPS_SECRET.into())],
    );
    assert_eq!(status, 202, "{json}");
    drop(first);
    // What an earlier version kept: the token header, and no record of a scrub.
    let db = rusqlite::Connection::open(dir.path().join("data/fxhook.db")).unwrap();
    db.execute(
        "UPDATE events SET headers = ?1",
        [format!(
            r#"{{"x-api-key":"{OPS_SECRET}","x-trace":"kept"}}"#
        )],
    )
    .unwrap();
    db.execute("DELETE FROM meta WHERE key = 'headers_scrubbed'", [])
        .unwrap();
    drop(db);

    let second = serve(dir.path(), &ops_env());
    let shown = admin_get(second.port, "/admin/events");
    let id = serde_json::from_str::<serde_json::Value>(&shown).unwrap()["events"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let event = admin_get(second.port, &format!("/admin/events/{id}"));
    assert!(event.contains("x-trace"), "{event}");
    assert!(!event.contains(OPS_SECRET), "{event}");
    let logs = second.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("removed signature and token headers"),
        "{logs}"
    );
}

/// `fxhook serve` under a file-size limit (bash's `ulimit -f`, in KiB), SIGXFSZ ignored so a
/// write past the limit fails with EFBIG as on a full disk instead of killing the process.
fn serve_with_file_limit(dir: &Path, kib: u64, env: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("ulimit -f {kib}; trap '' XFSZ; exec \"$0\" serve",))
        .arg(fxhook().get_program());
    crate::process::serve_command(dir, cmd, env)
}

#[test]
fn readyz_fails_when_the_store_cannot_be_written_as_on_a_full_disk() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("mappings/bulk.yaml"),
        "verify: { unsigned: true }\nrules:\n  - card: { title: 'bulk {$.n}', link: { title: a, url: 'https://x' } }\n",
    )
    .unwrap();
    let gw = serve_with_file_limit(dir.path(), 2048, &[("FXHOOK__FXIAOKE__DRY_RUN", "true")]);
    let filler = "x".repeat(32 * 1024);
    let mut refused = None;
    for n in 0..1000 {
        let body = format!(r#"{{"n":{n},"fill":"{filler}"}}"#);
        let (status, json) = post(gw.port, "/hooks/bulk", body.as_bytes(), &[]);
        if status == 503 {
            refused = Some(json);
            break;
        }
        assert_eq!(status, 202, "{json}");
    }
    let refused = refused.expect("the store filled up within 1,000 events of 32 KiB");
    assert!(refused["error"].as_str().is_some(), "{refused}");
    let (status, body) = get(gw.port, "/readyz");
    assert_eq!(status, 503, "ready while ingest refuses: {body}");
    assert!(body.contains("cannot be written"), "{body}");
}

fn get(port: u16, path: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let res = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    })
}

#[test]
fn readyz_fails_once_a_store_error_reveals_a_damaged_database() {
    let dir = workdir();
    token_source(dir.path());
    let first = serve(dir.path(), &ops_env());
    for n in 0..50 {
        let body = format!(r#"{{"what":"e{n}","fill":"{}"}}"#, "y".repeat(2000));
        let (status, _) = post(
            first.port,
            "/hooks/ops",
            body.as_bytes(),
            &[("X-Api-Key", OPS_SECRET.into())],
        );
        assert_eq!(status, 202);
    }
    // A clean stop checkpoints the WAL into the database file.
    let term = Command::new("kill")
        .args(["-TERM", &first.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut first = first;
    wait_until(|| first.child.try_wait().unwrap().is_some(), "a clean stop");
    // Damage the events table's root page.
    let path = dir.path().join("data/fxhook.db");
    let (root, page_size): (i64, i64) = {
        let db = rusqlite::Connection::open(&path).unwrap();
        let root = db
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let size = db.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        (root, size)
    };
    let mut bytes = std::fs::read(&path).unwrap();
    let start = ((root - 1) * page_size) as usize;
    bytes[start..start + page_size as usize].fill(0xA5);
    std::fs::write(&path, bytes).unwrap();

    let second = serve(dir.path(), &ops_env());
    let (status, _) = get(second.port, "/readyz");
    assert_eq!(status, 200, "nothing has read the damaged table yet");
    let (status, body) = get(second.port, "/admin/events");
    assert_eq!(status, 500, "{body}");
    let mut last = String::new();
    wait_for(Duration::from_secs(10), "readyz to fail", || {
        let (status, body) = get(second.port, "/readyz");
        last = body;
        status == 503
    });
    assert!(last.contains("damaged"), "{last}");
}

#[test]
fn the_systemd_unit_and_the_compose_file_raise_the_open_file_limit() {
    let unit = std::fs::read_to_string(crate::helpers::repo_file("deploy/fxhook.service")).unwrap();
    assert!(unit.contains("LimitNOFILE="), "{unit}");
    let compose = std::fs::read_to_string(crate::helpers::repo_file("docker-compose.yml")).unwrap();
    assert!(compose.contains("nofile"), "{compose}");
}

/// Each preset's signature or token headers, as `webhook-senders.md` names them (an independent
/// list: the test does not ask the scheme which headers it reads).
const CREDENTIAL_HEADERS: &[(&str, &[&str])] = &[
    ("github", &["X-Hub-Signature-256", "X-Hub-Signature"]),
    ("gitlab", &["X-Gitlab-Token", "webhook-signature"]),
    ("standard-webhooks", &["webhook-signature"]),
    ("svix", &["svix-signature"]),
    (
        "gitea",
        &[
            "X-Gitea-Signature",
            "X-Gogs-Signature",
            "X-Hub-Signature-256",
        ],
    ),
    (
        "forgejo",
        &[
            "X-Forgejo-Signature",
            "X-Gitea-Signature",
            "X-Hub-Signature-256",
        ],
    ),
    ("gogs", &["X-Gogs-Signature"]),
    ("bitbucket", &["X-Hub-Signature"]),
    ("circleci", &["circleci-signature"]),
    ("sentry", &["sentry-hook-signature"]),
    ("grafana", &["X-Grafana-Alerting-Signature"]),
    ("slack", &["X-Slack-Signature"]),
    ("stripe", &["Stripe-Signature"]),
    ("shopify", &["X-Shopify-Hmac-Sha256"]),
    ("jenkins", &["X-Webhook-Token", "Authorization"]),
    ("token", &["X-Webhook-Token", "Authorization"]),
    ("azure-devops", &["Authorization"]),
    ("alertmanager", &["Authorization"]),
    ("hmac", &["X-Ops-Mac"]),
];

#[test]
fn no_preset_stores_a_header_that_carries_its_signature_or_token_nor_a_value_holding_its_secret() {
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
    use fxhook::verify::presets::{PRESETS, find};
    use fxhook::verify::spec::VerifySpec;
    use fxhook::verify::{Secret, Verifier};

    let listed: Vec<&str> = CREDENTIAL_HEADERS.iter().map(|(p, _)| *p).collect();
    let unlisted: Vec<&str> = PRESETS
        .iter()
        .map(|p| p.name)
        .filter(|n| !listed.contains(n))
        .collect();
    assert!(
        unlisted.is_empty(),
        "presets missing from this test: {unlisted:?}"
    );
    // A secret a Standard Webhooks scheme accepts, and that any other takes as text.
    let secret = "whsec_c3VwZXItc2VjcmV0LXZhbHVlLTEyMzQ1Njc4";
    for (preset, headers) in CREDENTIAL_HEADERS {
        let spec = VerifySpec {
            header: (*preset == "hmac").then(|| "X-Ops-Mac".to_string()),
            ..VerifySpec::default()
        };
        let scheme = (find(preset).unwrap().build)(&spec).unwrap();
        let verifier = Verifier::new(scheme, vec![Secret::new(secret, "test")]);
        let mut map = HeaderMap::new();
        for h in *headers {
            map.insert(
                HeaderName::from_bytes(h.as_bytes()).unwrap(),
                HeaderValue::from_static("v1,c2lnbmF0dXJl"),
            );
        }
        map.insert(
            HeaderName::from_static("x-forwarded-uri"),
            HeaderValue::from_str(&format!("/hooks/x?token={secret}")).unwrap(),
        );
        map.insert(
            HeaderName::from_static("x-event-key"),
            HeaderValue::from_static("repo:push"),
        );
        let stored = fxhook::pipeline::headers_json(&map, &verifier).to_ascii_lowercase();
        for h in *headers {
            assert!(
                !stored.contains(&h.to_ascii_lowercase()),
                "{preset} stores {h}: {stored}"
            );
        }
        assert!(!stored.contains("x-forwarded-uri"), "{preset}: {stored}");
        assert!(
            stored.contains("x-event-key"),
            "{preset} keeps the rest: {stored}"
        );
    }
}
