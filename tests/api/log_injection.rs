//! Log injection: values that come from requests (a source name in the path, a delivery id from a
//! header or the payload, the reason of a refusal) can neither forge a log line nor reach a
//! terminal as an escape sequence, in either log format; an admin still reads them, escaped. The
//! real binary runs, and its stderr is read line by line as a log shipper would.

use crate::process::{Running, post, serve, wait_until, workdir};

/// The text each attack tries to start a log line with.
const FORGED: &str = "FORGED";

/// Unsigned sources whose delivery id comes from a header or from the payload.
const BY_HEADER: &str = "verify: { unsigned: true }
dedup: { header: X-Delivery }
rules:
  - name: any
    card:
      title: Probe
      link: { title: Open, url: \"https://example.com\" }
";

/// A newline and a carriage return (forged lines), ESC (a terminal colour), NUL, DEL and the C1
/// control CSI, which some terminals obey as ESC [.
const CONTROLS: &str = "\nFORGED line\r\u{1b}[31mred\u{0}nul\u{7f}del\u{9b}csi";
/// The same, percent-encoded in a path.
const CONTROLS_IN_PATH: &str = "%0AFORGED%20line%0D%1B[31mred%00nul%7Fdel%C2%9Bcsi";

/// Starts the gateway in `format`, sends the three attacks, and returns every line it logged.
fn logs_after_the_attacks(format: &str) -> Vec<String> {
    let dir = workdir();
    let mappings = dir.path().join("mappings");
    std::fs::write(mappings.join("by-header.yaml"), BY_HEADER).unwrap();
    let by_payload = BY_HEADER.replace("{ header: X-Delivery }", "{ path: $.id }");
    std::fs::write(mappings.join("by-payload.yaml"), by_payload).unwrap();
    let gateway = serve(dir.path(), &[("FXHOOK__LOG__FORMAT", format)]);
    let port = gateway.port;

    let (status, _) = post(port, &format!("/hooks/{CONTROLS_IN_PATH}"), b"{}", &[]);
    assert_eq!(status, 404);
    let body = serde_json::json!({ "id": format!("id{CONTROLS}") }).to_string();
    let (status, _) = post(port, "/hooks/by-payload", body.as_bytes(), &[]);
    assert_eq!(status, 202);
    // HTTP lets a header carry one control character only: the tab.
    let headers = [
        ("X-Delivery", "id\tFORGED".to_string()),
        ("X-Request-Id", "id\tFORGED".to_string()),
    ];
    let (status, _) = post(port, "/hooks/by-header", b"{}", &headers);
    assert_eq!(status, 202);

    wait_until(
        || completed(&gateway) == 3,
        "the three requests in the access log",
    );
    gateway.logs.lock().unwrap().clone()
}

fn completed(gateway: &Running) -> usize {
    let logs = gateway.logs.lock().unwrap();
    logs.iter()
        .filter(|l| l.contains("request completed"))
        .count()
}

/// What must hold in both formats: no line starts with forged text, and none carries a raw
/// control character (ESC, NUL, CR, DEL, C1, tab).
fn assert_no_line_is_forged_or_raw(lines: &[String]) {
    for line in lines {
        assert!(
            !line.trim_start().starts_with(FORGED),
            "a forged log line: {line:?}"
        );
        assert!(
            !line.contains(char::is_control),
            "a raw control character in {line:?}"
        );
    }
}

#[test]
fn control_characters_from_requests_are_escaped_in_the_text_log_and_forge_no_line() {
    let lines = logs_after_the_attacks("text");

    assert_no_line_is_forged_or_raw(&lines);
    let escaped = r"\nFORGED line\r\u{1b}[31mred\0nul\u{7f}del\u{9b}csi";
    let refusal = lines
        .iter()
        .find(|l| l.contains("status=404"))
        .expect("the refusal is logged");
    assert!(
        refusal.contains(&format!("reason=unknown source {escaped}")),
        "{refusal}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("delivery_id=id{escaped}"))),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains(r"delivery_id=id\tFORGED")),
        "{lines:#?}"
    );
}

#[test]
fn control_characters_from_requests_stay_escaped_in_the_json_log_and_every_line_is_json() {
    let lines = logs_after_the_attacks("json");

    assert_no_line_is_forged_or_raw(&lines);
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let spans: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["fields"]["message"] == "request completed")
        .map(|r| &r["span"])
        .collect();
    assert!(
        spans
            .iter()
            .any(|s| s["reason"] == format!("unknown source {CONTROLS}").as_str()),
        "{spans:#?}"
    );
    assert!(
        spans
            .iter()
            .any(|s| s["delivery_id"] == format!("id{CONTROLS}").as_str()),
        "{spans:#?}"
    );
    assert!(
        spans.iter().any(|s| s["delivery_id"] == "id\tFORGED"),
        "{spans:#?}"
    );
}
