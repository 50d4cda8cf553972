//! The fake Fxiaoke of the integration tests (`tests/api/fake_fxiaoke.rs`, included as is) run
//! as a process for `bench/run`, plus a black hole to park a gateway's deliveries.
//!
//! - `fake_fxiaoke serve APP_ID APP_SECRET PERMANENT_CODE` starts the strict fake on a free
//!   loopback port and a stats listener on another, prints `base_url=…` and `stats_url=…`
//!   (one per line) and serves until killed. `GET <stats_url>` answers one JSON object: what
//!   reached the fake, the rate-limit refusals (the fake refuses more than 100 sends per 20 s),
//!   the most sends seen in any 20 s, other rule violations, and when the first and last
//!   delivered sends arrived (ms since the fake started).
//! - `fake_fxiaoke blackhole` listens on a free loopback port and never accepts: connections
//!   complete in the kernel's backlog and requests never get an answer, so a gateway pointed
//!   there takes messages in flight and holds them, sending nothing. Prints `base_url=…`.

#[path = "../../../tests/api/fake_fxiaoke/mod.rs"]
#[allow(dead_code)]
mod fake;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::json;

/// The fake's send rate rule: 100 calls per 20 s.
const VENDOR_WINDOW: Duration = Duration::from_secs(20);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["serve", app_id, app_secret, permanent_code] => serve(app_id, app_secret, permanent_code),
        ["blackhole"] => blackhole(),
        _ => {
            eprintln!(
                "usage: fake_fxiaoke serve APP_ID APP_SECRET PERMANENT_CODE | fake_fxiaoke blackhole"
            );
            std::process::exit(2);
        }
    }
}

fn serve(app_id: &str, app_secret: &str, permanent_code: &str) {
    let started = Instant::now();
    // The gateways of bench/run act as employee 1000 (FXHOOK__FXIAOKE__USER_ID).
    let fake = fake::FakeFxiaoke::start(app_id, app_secret, permanent_code, "1000");
    let stats = TcpListener::bind("127.0.0.1:0").expect("bind the stats port");
    let stats_port = stats.local_addr().expect("stats address").port();
    println!("base_url={}", fake.base_url());
    println!("stats_url=http://127.0.0.1:{stats_port}/stats");
    let _ = std::io::stdout().flush();
    for conn in stats.incoming() {
        let Ok(mut conn) = conn else { continue };
        // One small GET per connection: read its head, answer, close.
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let body = report(&fake, started).to_string();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.write_all(answer.as_bytes());
    }
}

fn report(fake: &fake::FakeFxiaoke, started: Instant) -> serde_json::Value {
    let received = fake.received();
    let is_rate = |v: &String| v.contains("calls within");
    let rate_limited = |path: &str| {
        let of_path = received.iter().filter(|r| r.path == path);
        of_path.filter(|r| r.violations.iter().any(is_rate)).count()
    };
    let other_violations: Vec<String> = fake
        .violations()
        .into_iter()
        .filter(|v| !v.contains("calls within"))
        .collect();
    let sends = fake.sends();
    let ms = |at: Instant| at.duration_since(started).as_millis() as u64;
    json!({
        "requests": received.len(),
        "send_calls": received.iter().filter(|r| r.path == "/cgi/message/send").count(),
        "delivered": sends.len(),
        "token_calls": fake.token_calls(),
        "rate_limited_sends": rate_limited("/cgi/message/send"),
        "rate_limited_token_calls": rate_limited("/oauth2.0/token"),
        "max_sends_in_20s": fake.max_sends_in_window(VENDOR_WINDOW),
        "other_violations": other_violations.len(),
        "first_violations": other_violations.iter().take(3).collect::<Vec<_>>(),
        "first_delivered_ms": sends.first().map(|r| ms(r.at)),
        "last_delivered_ms": sends.last().map(|r| ms(r.at)),
    })
}

fn blackhole() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the black hole");
    let port = listener.local_addr().expect("black hole address").port();
    println!("base_url=http://127.0.0.1:{port}");
    let _ = std::io::stdout().flush();
    // Never accept: the listener stays open (and its backlog completes handshakes) until killed.
    loop {
        std::thread::park();
    }
}
