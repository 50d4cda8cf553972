//! The bearer tokens of `/admin` and `/metrics`, on the real binary: the admin token is checked
//! before anything of the request is read, the scheme is accepted in any case (RFC 7235), and a
//! token short enough to guess is warned about at start-up without being printed.

use reqwest::Method;

use crate::process::{send, serve, workdir};

const ADMIN_TOKEN: &str = "admin-token-long-enough-1";
const METRICS_TOKEN: &str = "metrics-token-long-enough-2";

/// Sends what a prober sends without the token (a bad query, bad path ids, a body over the
/// extractor's limit, a malformed body, an unknown source, an unknown route) with `credentials`
/// as the `Authorization` header, and asserts that each gets `status` and `error`.
fn every_probe_answers(port: u16, credentials: Option<&str>, status: u16, error: &str) {
    let get = |path: &str| (Method::GET, path.to_string(), Vec::new());
    let post = |path: &str, body: &[u8]| (Method::POST, path.to_string(), body.to_vec());
    let probes = [
        get("/admin/events?state=bogus"),
        get("/admin/events?limit=many"),
        get("/admin/messages?limit=1&limit=2&state"),
        get("/admin/messages/not-a-number"),
        get("/admin/events/%FF%FE"),
        post("/admin/render/github", &vec![b'x'; 300 * 1024]),
        post("/admin/render/github", b"{\"unterminated"),
        post("/admin/render/no-such-source", b"{}"),
        post("/admin/messages/0/replay", b""),
        get("/admin/no-such-route"),
    ];
    let headers: Vec<(&str, String)> = credentials
        .map(|c| ("authorization", c.to_string()))
        .into_iter()
        .collect();
    for (method, path, body) in probes {
        let (got, answer) = send(port, method.clone(), &path, &body, &headers);
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(error)),
            "{method} {path} with {credentials:?}"
        );
    }
}

/// The status of a GET of `path` with this `Authorization` value.
fn status_of(port: u16, path: &str, authorization: String) -> u16 {
    send(
        port,
        Method::GET,
        path,
        b"",
        &[("authorization", authorization)],
    )
    .0
}

#[test]
fn an_unauthenticated_admin_request_gets_401_whatever_its_query_path_or_body() {
    let dir = workdir();
    let gateway = serve(dir.path(), &[("FXHOOK__ADMIN__TOKEN", ADMIN_TOKEN)]);

    for credentials in [None, Some("Bearer wrong-token"), Some(ADMIN_TOKEN)] {
        every_probe_answers(
            gateway.port,
            credentials,
            401,
            "missing or wrong bearer token",
        );
    }
}

#[test]
fn with_no_admin_token_every_admin_request_gets_the_404_that_says_the_api_is_off() {
    let dir = workdir();
    let gateway = serve(dir.path(), &[]);

    every_probe_answers(
        gateway.port,
        None,
        404,
        "the admin API is off: set admin.token",
    );
}

#[test]
fn the_bearer_scheme_is_accepted_in_any_case_by_the_admin_api_and_by_metrics() {
    let dir = workdir();
    let gateway = serve(
        dir.path(),
        &[
            ("FXHOOK__ADMIN__TOKEN", ADMIN_TOKEN),
            ("FXHOOK__METRICS__TOKEN", METRICS_TOKEN),
        ],
    );

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let as_admin = [("authorization", format!("{scheme} {ADMIN_TOKEN}"))];
        let (status, answer) = send(gateway.port, Method::GET, "/admin/events", b"", &as_admin);
        assert_eq!(status, 200, "{scheme}: {answer}");
        assert!(answer["events"].is_array(), "{scheme}: {answer}");
        let as_scraper = format!("{scheme}  {METRICS_TOKEN}");
        assert_eq!(
            status_of(gateway.port, "/metrics", as_scraper),
            200,
            "{scheme}"
        );
    }
    let logs = gateway.logs.lock().unwrap().clone();
    assert!(
        !logs.iter().any(|l| l.contains("shorter than")),
        "{logs:#?}"
    );
    // Only the scheme is case-insensitive: the token is compared exactly.
    let shouted = format!("Bearer {}", ADMIN_TOKEN.to_uppercase());
    assert_eq!(status_of(gateway.port, "/admin/events", shouted), 401);
    let basic = format!("Basic {ADMIN_TOKEN}");
    assert_eq!(status_of(gateway.port, "/admin/events", basic), 401);
}

#[test]
fn a_short_admin_or_metrics_token_is_warned_about_without_its_value_and_the_gateway_serves() {
    const SHORT_ADMIN: &str = "adm-7Qv2LxN9";
    const SHORT_METRICS: &str = "met-3Hs8KdP1";
    let dir = workdir();
    let gateway = serve(
        dir.path(),
        &[
            ("FXHOOK__ADMIN__TOKEN", SHORT_ADMIN),
            ("FXHOOK__METRICS__TOKEN", SHORT_METRICS),
        ],
    );

    let as_admin = format!("Bearer {SHORT_ADMIN}");
    assert_eq!(status_of(gateway.port, "/admin/events", as_admin), 200);
    let as_scraper = format!("Bearer {SHORT_METRICS}");
    assert_eq!(status_of(gateway.port, "/metrics", as_scraper), 200);
    let logs = gateway.logs.lock().unwrap().clone();
    for key in ["admin.token", "metrics.token"] {
        assert!(
            logs.iter().any(|l| l.contains(" WARN ")
                && l.contains(&format!("{key} is shorter than 16 characters"))),
            "no warning about {key}: {logs:#?}"
        );
    }
    assert!(
        !logs
            .iter()
            .any(|l| l.contains(SHORT_ADMIN) || l.contains(SHORT_METRICS)),
        "a token in the log: {logs:#?}"
    );
}
