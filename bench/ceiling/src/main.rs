//! The ceiling server of `bench/run`: what a webhook endpoint costs when it does only what it
//! must and nothing of what fxhook adds. `POST /hooks/github` reads the body (at most 1 MiB),
//! checks `X-Hub-Signature-256` (`sha256=<hex>`, HMAC-SHA256 under the secret in `BENCH_SECRET`,
//! compared in constant time) and parses the body as JSON, then answers 202
//! `{"status":"accepted"}`; a missing or wrong signature gets 401, a body that is not a JSON
//! object 400. It stores nothing, maps nothing and logs nothing, so fxhook's rate over its rate
//! is the share of the bare minimum that fxhook keeps while storing every event durably.
//!
//! Usage: `BENCH_SECRET=… bench_ceiling` listens on a free loopback port, prints
//! `base_url=http://127.0.0.1:PORT` (as `fake_fxiaoke` does) and serves until SIGTERM or SIGINT,
//! with actix-web's default worker count (one per CPU it may run on), as fxhook does.

use std::io::Write;
use std::net::TcpListener;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The largest body read, as a gateway must bound what it buffers.
const BODY_LIMIT: usize = 1 << 20;

/// The shared secret of the signatures.
struct Secret(Vec<u8>);

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let Some(secret) = std::env::var_os("BENCH_SECRET").filter(|s| !s.is_empty()) else {
        eprintln!("bench_ceiling: BENCH_SECRET is not set");
        std::process::exit(2);
    };
    let secret = web::Data::new(Secret(secret.into_encoded_bytes()));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(secret.clone())
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .route("/hooks/github", web::post().to(github))
    })
    .listen(listener)?
    .run();
    println!("base_url=http://127.0.0.1:{port}");
    std::io::stdout().flush()?;
    server.await
}

async fn github(req: HttpRequest, body: web::Bytes, secret: web::Data<Secret>) -> HttpResponse {
    if !signed(&req, &body, &secret.0) {
        return HttpResponse::Unauthorized().json(serde_json::json!({"error": "bad signature"}));
    }
    // Parsed whole, as a gateway that maps the event must; only an object is a GitHub event.
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(event) if event.is_object() => {
            HttpResponse::Accepted().json(serde_json::json!({"status": "accepted"}))
        }
        _ => HttpResponse::BadRequest().json(serde_json::json!({"error": "not a JSON object"})),
    }
}

/// Whether `X-Hub-Signature-256` is the HMAC-SHA256 of `body` under `secret`.
fn signed(req: &HttpRequest, body: &[u8], secret: &[u8]) -> bool {
    let Some(hex_mac) = req
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
    else {
        return false;
    };
    let Ok(claimed) = hex::decode(hex_mac) else {
        return false;
    };
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&claimed).is_ok()
}
