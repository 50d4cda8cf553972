//! `fxhook store copy`: a stopped SQLite store with queued cards moves to Postgres, and the
//! gateway on Postgres delivers them; delivery ids come along; a store in use or a target that
//! is not empty is refused.

use std::process::Command;
use std::time::Duration;

use crate::fake_fxiaoke::FakeFxiaoke;
use crate::hardening::wait_for;
use crate::pg::TestDb;
use crate::process::{Running, fxhook, post, serve, workdir};

/// An unsigned source whose cards say `note <n>`, with a delivery id in `X-Id`.
fn note_source(dir: &std::path::Path) {
    std::fs::write(
        dir.join("mappings/note.yaml"),
        "verify: { unsigned: true }\ndedup: { header: X-Id }\nrules:\n  - name: note\n    card: { title: 'note {$.n}', link: { title: a, url: 'https://x' } }\n",
    )
    .unwrap();
}

fn live<'a>(base: &'a str, store: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("FXHOOK__FXIAOKE__BASE_URL", base),
        ("FXHOOK__FXIAOKE__APP_ID", "app"),
        ("FXHOOK__FXIAOKE__APP_SECRET", "secret"),
        ("FXHOOK__FXIAOKE__PERMANENT_CODE", "perm"),
        ("FXHOOK__FXIAOKE__USER_ID", "1000"),
        (
            "FXHOOK__DELIVERY__RETRY_SCHEDULE",
            "100ms,100ms,100ms,100ms,100ms",
        ),
        ("FXHOOK__DELIVERY__POLL_INTERVAL", "20ms"),
    ];
    env.extend_from_slice(store);
    env
}

fn post_note(gw: &Running, n: usize) -> u16 {
    let (status, _) = post(
        gw.port,
        "/hooks/note",
        format!(r#"{{"n":{n}}}"#).as_bytes(),
        &[("X-Id", format!("delivery-{n}"))],
    );
    status
}

fn copy(dir: &std::path::Path, to: &str) -> std::process::Output {
    fxhook()
        .args(["store", "copy", "--from", "data/fxhook.db", "--to", to])
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn a_stopped_sqlite_store_moves_to_postgres_and_its_queued_cards_are_delivered_from_there() {
    let fake = FakeFxiaoke::start("app", "secret", "perm", "1000");
    let dir = workdir();
    note_source(dir.path());
    // The vendor is out of reach: every card stays queued in the SQLite store.
    let mut first = serve(dir.path(), &live("http://127.0.0.1:9", &[]));
    for n in 0..5 {
        assert_eq!(post_note(&first, n), 202);
    }
    let ok = Command::new("kill")
        .args(["-TERM", &first.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    wait_for(
        Duration::from_secs(10),
        "the SQLite gateway to stop",
        || first.child.try_wait().unwrap().is_some(),
    );

    let db = TestDb::new();
    let out = copy(dir.path(), &db.url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("events  5 rows"), "{stdout}");
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM messages WHERE state = 'queued'"),
        5
    );
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM dedup"), 5);

    let base = fake.base_url();
    let second = serve(
        dir.path(),
        &live(&base, &[("FXHOOK__STORE__URL", db.url.as_str())]),
    );
    wait_for(
        Duration::from_secs(20),
        "the copied cards to be delivered",
        || fake.sends().len() == 5,
    );
    let mut titles: Vec<String> = fake
        .sends()
        .iter()
        .map(|s| {
            s.body["composite"]["head"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    titles.sort();
    assert_eq!(titles, ["note 0", "note 1", "note 2", "note 3", "note 4"]);
    // The delivery ids came along: a redelivery is still a duplicate.
    assert_eq!(post_note(&second, 3), 200);
    fake.assert_no_violations();

    drop(second);
    let again = copy(dir.path(), &db.url);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn a_store_still_served_by_a_gateway_is_not_copied() {
    let dir = workdir();
    note_source(dir.path());
    let gw = serve(dir.path(), &[("FXHOOK__FXIAOKE__DRY_RUN", "true")]);
    assert_eq!(post_note(&gw, 1), 202);
    let db = TestDb::new();
    let out = copy(dir.path(), &db.url);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stop it"), "{stderr}");
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'events'"),
        0
    );
}
