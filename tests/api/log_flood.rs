//! The access log under pressure: a flood of forgeries is counted in full but logged in a
//! sample (the line after says how many were left out), and requests are answered even when
//! nobody reads the gateway's stderr (the log is written off the request path). The real
//! binary runs.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::python_hmac_hex;
use crate::process::{fxhook, post, scrape, serve, wait_until, workdir};

fn forged_push(port: u16, n: usize) -> u16 {
    let headers = [
        ("X-Hub-Signature-256", "sha256=00".to_string()),
        ("X-GitHub-Event", "push".to_string()),
        ("X-GitHub-Delivery", format!("forged-{n}")),
    ];
    post(port, "/hooks/github", b"{}", &headers).0
}

#[test]
fn a_flood_of_forgeries_is_counted_in_full_and_logged_in_a_sample_that_says_what_it_left_out() {
    let dir = workdir();
    let gateway = serve(dir.path(), &[("FXHOOK_SECRET_GITHUB", "flood-secret")]);
    let port = gateway.port;

    // Bursts from eight threads until the sampler has left lines out (50 a second are
    // written): however slow the machine, a burst of 400 outruns that.
    let mut sent = 0;
    while !scrape(port).contains_key("fxhook_log_refusals_left_out_total{}") {
        assert!(
            sent < 8_000,
            "no refusal line was left out after {sent} forgeries"
        );
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|t| {
                    s.spawn(move || {
                        (0..50)
                            .map(|i| forged_push(port, sent + t * 50 + i))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
        sent += statuses.len();
    }

    let metrics = scrape(port);
    let counted =
        metrics[r#"fxhook_webhooks_total{outcome="rejected",reason="signature",source="github"}"#];
    let left_out = metrics["fxhook_log_refusals_left_out_total{}"];
    assert_eq!(counted, sent as f64, "every refusal counted");
    // One more refusal, a second later, is written with the count of what was left out.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(forged_push(port, sent), 401);
    wait_until(
        || {
            gateway
                .logs
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("refusal lines left out") && l.contains("left_out="))
        },
        "the line saying how many refusal lines were left out",
    );
    let logs = gateway.logs.lock().unwrap();
    let written = logs
        .iter()
        .filter(|l| l.contains("request completed") && l.contains("status=401"))
        .count();
    assert!(left_out >= 1.0);
    // Nothing written twice, and what was left out was not written.
    assert!(
        written as f64 + left_out <= sent as f64 + 1.0,
        "{written} lines written, {left_out} left out, {sent} sent"
    );
}

#[test]
fn requests_are_answered_while_nobody_reads_the_gateways_log() {
    let dir = workdir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "stalled-log-secret";
    // stderr is a pipe nobody reads: once its 64 KiB are full, a write to it blocks.
    let mut child = fxhook()
        .arg("serve")
        .current_dir(dir.path())
        .env("FXHOOK__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FXHOOK__FXIAOKE__DRY_RUN", "true")
        .env("FXHOOK_SECRET_GITHUB", secret)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && crate::process::send(port, reqwest::Method::GET, "/healthz", b"", &[]).0 == 200
        },
        "the gateway to listen",
    );

    let body = std::fs::read(crate::helpers::repo_file(
        "tests/fixtures/github/push.4.json",
    ))
    .unwrap();
    let sig = format!("sha256={}", python_hmac_hex("sha256", secret, &body));
    // Each accepted push logs an access line and a dry-run line of its card: 400 of them
    // write far more than the pipe holds.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let (body, sig) = (&body, &sig);
                s.spawn(move || {
                    (0..100)
                        .map(|i| {
                            let headers = [
                                ("X-Hub-Signature-256", sig.clone()),
                                ("X-GitHub-Event", "push".to_string()),
                                ("X-GitHub-Delivery", format!("stalled-{t}-{i}")),
                            ];
                            post(port, "/hooks/github", body, &headers).0
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(statuses.len(), 400);
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
}
