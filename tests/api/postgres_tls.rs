//! TLS to the Postgres store, against the machine's real server, which serves Debian's
//! "snakeoil" certificate (`CN=localhost`, signed by itself): `require` encrypts without
//! checking it, `verify-ca` and `verify-full` check it against `sslrootcert` (the certificate
//! itself here) or the system's roots, and `verify-full` checks the name too.

use fxhook::config::StoreSettings;
use fxhook::store::Monitor;
use fxhook::store::postgres::{Postgres, open_unlocked};
use secrecy::SecretString;

use crate::pg::TestDb;

/// The certificate the local server presents (Debian's default for PostgreSQL).
const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// `db`'s URL reached as `host` (at 127.0.0.1 whatever the name) with these parameters.
fn url(db: &TestDb, host: &str, params: &str) -> String {
    let server = crate::pg::server_url();
    let user = server
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .unwrap_or("postgres");
    let port = server
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap_or("5432");
    format!(
        "postgres://{user}@{host}:{port}/{}?hostaddr=127.0.0.1&{params}",
        db.name
    )
}

async fn open(url: &str) -> anyhow::Result<Postgres> {
    let settings = StoreSettings {
        path: None,
        url: Some(SecretString::from(url.to_string())),
        ..StoreSettings::default()
    };
    open_unlocked(&SecretString::from(url.to_string()), &settings).await
}

fn server_has_tls() {
    assert!(
        std::path::Path::new(SNAKEOIL).exists(),
        "{SNAKEOIL} is missing: the local PostgreSQL must serve TLS with Debian's snakeoil certificate (package ssl-cert)"
    );
}

#[tokio::test]
async fn require_encrypts_the_connection_without_checking_the_certificate() {
    server_has_tls();
    let db = TestDb::new();
    let store = open(&url(&db, "127.0.0.1", "sslmode=require"))
        .await
        .expect("sslmode=require connects to a self-signed server");
    // A clone pings: the store (and its pooled connection) lives on for the check below.
    let pinger = store.clone();
    let pinged = tokio::task::spawn_blocking(move || pinger.ping())
        .await
        .unwrap();
    assert!(pinged.is_ok(), "{pinged:?}");
    assert!(
        db.query_i64("SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.application_name = 'fxhook'")
            >= 1,
        "the store's connections use TLS"
    );
    drop(store);
}

#[tokio::test]
async fn verify_full_accepts_the_server_named_in_its_certificate_signed_by_sslrootcert() {
    server_has_tls();
    let db = TestDb::new();
    let params = format!("sslmode=verify-full&sslrootcert={SNAKEOIL}");
    let store = open(&url(&db, "localhost", &params)).await;
    assert!(store.is_ok(), "{:#}", store.err().unwrap());
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_name_and_verify_ca_does_not_check_names() {
    server_has_tls();
    let db = TestDb::new();
    let full = format!("sslmode=verify-full&sslrootcert={SNAKEOIL}");
    let refused = open(&url(&db, "127.0.0.1", &full)).await;
    let err = format!(
        "{:#}",
        refused.err().expect("the name 127.0.0.1 is not localhost")
    );
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("name"),
        "{err}"
    );
    let ca = format!("sslmode=verify-ca&sslrootcert={SNAKEOIL}");
    let store = open(&url(&db, "127.0.0.1", &ca)).await;
    assert!(store.is_ok(), "{:#}", store.err().unwrap());
}

#[tokio::test]
async fn verify_full_refuses_a_server_not_signed_by_the_authority_it_is_given() {
    server_has_tls();
    let db = TestDb::new();
    // An authority of our own, which signed nothing the server presents.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("other-ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not the database's authority",
        ])
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("openssl makes a test certificate authority (install openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let params = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    let refused = open(&url(&db, "localhost", &params)).await;
    let err = format!(
        "{:#}",
        refused
            .err()
            .expect("the server's certificate is not signed by that authority")
    );
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The URL in an error never shows a password.
    let with_password =
        url(&db, "localhost", "sslmode=bogus").replace("postgres@", "postgres:hunter2@");
    let err = format!("{:#}", open(&with_password).await.err().unwrap());
    assert!(err.contains("sslmode") && !err.contains("hunter2"), "{err}");
}
