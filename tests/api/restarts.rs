//! The vendor's limits across restarts and what a shutdown does to sends (issue 12), against
//! the real binary and the strict fake vendor, which outlives the gateway processes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fake_fxiaoke::{FakeFxiaoke, Scripted};
use crate::hardening::wait_for;
use crate::process::{Running, post, serve, workdir};

/// An unsigned source whose card title is the payload's `n`.
fn numbered_source(dir: &Path) {
    std::fs::write(
        dir.join("mappings/note.yaml"),
        "verify: { unsigned: true }\nrules:\n  - name: note\n    card: { title: 'note {$.n}', link: { title: a, url: 'https://x' } }\n",
    )
    .unwrap();
}

/// A fake vendor that outlives the gateways, a work directory with the numbered source, and
/// the environment of live delivery to the fake.
struct Rig {
    fake: FakeFxiaoke,
    dir: tempfile::TempDir,
    base: String,
}

impl Rig {
    fn new() -> Rig {
        let fake = FakeFxiaoke::start("app", "secret", "perm", "1000");
        let dir = workdir();
        numbered_source(dir.path());
        let base = fake.base_url();
        Rig { fake, dir, base }
    }

    /// `fxhook serve` delivering to the fake, with `extra` settings.
    fn serve(&self, extra: &[(&str, &str)]) -> Running {
        let mut env = vec![
            ("FXHOOK__FXIAOKE__BASE_URL", self.base.as_str()),
            ("FXHOOK__FXIAOKE__APP_ID", "app"),
            ("FXHOOK__FXIAOKE__APP_SECRET", "secret"),
            ("FXHOOK__FXIAOKE__PERMANENT_CODE", "perm"),
            ("FXHOOK__FXIAOKE__USER_ID", "1000"),
            ("FXHOOK__DELIVERY__POLL_INTERVAL", "20ms"),
        ];
        env.extend_from_slice(extra);
        serve(self.dir.path(), &env)
    }
}

fn post_notes(gw: &Running, range: std::ops::Range<usize>) {
    for n in range {
        let (status, json) = post(
            gw.port,
            "/hooks/note",
            format!(r#"{{"n":{n}}}"#).as_bytes(),
            &[],
        );
        assert_eq!(status, 202, "{json}");
    }
}

fn count(dir: &Path, sql: &str) -> i64 {
    let db = rusqlite::Connection::open(dir.join("data/fxhook.db")).unwrap();
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn delivered(dir: &Path) -> i64 {
    count(
        dir,
        "SELECT COUNT(*) FROM messages WHERE state = 'delivered'",
    )
}

fn sigterm(gw: &mut Running) -> Instant {
    let at = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    at
}

fn titles_sent(fake: &FakeFxiaoke) -> Vec<String> {
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
    titles
}

#[test]
fn the_send_rate_holds_across_a_sigkill_restart_in_the_same_window() {
    let rig = Rig::new();
    let (fake, dir) = (&rig.fake, &rig.dir);
    let env: &[(&str, &str)] = &[
        ("FXHOOK__DELIVERY__RATE_LIMIT", "4"),
        ("FXHOOK__DELIVERY__RATE_WINDOW", "3s"),
        ("FXHOOK__DELIVERY__CONCURRENCY", "2"),
    ];
    let first = rig.serve(env);
    post_notes(&first, 0..12);
    wait_for(Duration::from_secs(10), "the first window's sends", || {
        fake.sends().len() >= 4
    });
    drop(first); // SIGKILL, early in the window it filled

    let second = rig.serve(env);
    wait_for(Duration::from_secs(30), "all twelve delivered", || {
        delivered(dir.path()) == 12
    });
    let t0 = fake.received()[0].at;
    let timeline: Vec<String> = fake
        .received()
        .iter()
        .map(|r| format!("{:?} {}", r.at.duration_since(t0), r.path))
        .collect();
    assert!(
        fake.max_sends_in_window(Duration::from_secs(3)) <= 4,
        "{} sends within 3 s across the restart (limit 4): {timeline:#?}",
        fake.max_sends_in_window(Duration::from_secs(3))
    );
    let logs = second.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("sends of the current rate window still count"),
        "{logs}"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn token_calls_stay_within_ten_a_minute_across_a_restart_during_a_20016_storm() {
    let rig = Rig::new();
    let fake = &rig.fake;
    // Every send says the token is invalid: each attempt fetches a new one.
    fake.script((0..500).map(|_| Scripted::ErrorCode(20016)));
    let env: &[(&str, &str)] = &[
        (
            "FXHOOK__DELIVERY__RETRY_SCHEDULE",
            "50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms",
        ),
        ("FXHOOK__DELIVERY__RATE_WINDOW", "200ms"),
        ("FXHOOK__DELIVERY__RATE_LIMIT", "50"),
    ];
    let first = rig.serve(env);
    post_notes(&first, 0..10);
    wait_for(Duration::from_secs(30), "ten token calls", || {
        fake.token_calls() >= 10
    });
    drop(first); // SIGKILL with the minute's token calls spent

    let second = rig.serve(env);
    wait_for(
        Duration::from_secs(20),
        "the new process to hold back",
        || {
            second
                .logs
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("token endpoint limit"))
        },
    );
    // The fake counts token calls in every sliding minute: an eleventh is a violation.
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert!(fake.token_calls() >= 10);
}

#[test]
fn a_restart_reuses_the_token_it_kept_instead_of_fetching_a_new_one() {
    let rig = Rig::new();
    let (fake, dir) = (&rig.fake, &rig.dir);
    let env: &[(&str, &str)] = &[];
    let first = rig.serve(env);
    post_notes(&first, 0..1);
    wait_for(Duration::from_secs(10), "the first card", || {
        delivered(dir.path()) == 1
    });
    drop(first);

    let second = rig.serve(env);
    post_notes(&second, 1..2);
    wait_for(Duration::from_secs(10), "the second card", || {
        delivered(dir.path()) == 2
    });
    assert_eq!(fake.token_calls(), 1);
    assert_eq!(fake.violations(), Vec::<String>::new());
    let logs = second.logs.lock().unwrap().join("\n");
    assert!(!logs.contains("tok-1"), "the token is a secret");
}

#[test]
fn after_sigterm_no_new_send_starts_while_requests_drain_and_nothing_is_sent_twice() {
    let rig = Rig::new();
    let (fake, dir) = (&rig.fake, &rig.dir);
    let env: &[(&str, &str)] = &[
        ("FXHOOK__DELIVERY__RATE_LIMIT", "2"),
        ("FXHOOK__DELIVERY__RATE_WINDOW", "1s"),
        ("FXHOOK__DELIVERY__REQUEST_TIMEOUT", "3s"),
        ("FXHOOK__SERVER__BODY_TIMEOUT", "30s"),
    ];
    let mut first = rig.serve(env);
    post_notes(&first, 0..20);
    wait_for(Duration::from_secs(10), "sending to begin", || {
        fake.sends().len() >= 2
    });
    // A request still being received keeps the HTTP server draining after the signal.
    let mut upload = std::net::TcpStream::connect(("127.0.0.1", first.port)).unwrap();
    std::io::Write::write_all(
        &mut upload,
        b"POST /hooks/note HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();

    let signalled = sigterm(&mut first);
    // Exits within delivery.request_timeout (3 s) + 1 s; the deadline leaves room for a slow machine.
    wait_for(Duration::from_secs(8), "the process to exit", || {
        first.child.try_wait().unwrap().is_some()
    });
    assert_eq!(
        first.child.try_wait().unwrap().and_then(|s| s.code()),
        Some(0)
    );
    let late: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|r| r.at > signalled + Duration::from_millis(500))
        .map(|r| r.path)
        .collect();
    assert!(
        late.is_empty(),
        "vendor calls started after SIGTERM: {late:?}"
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM messages WHERE state = 'in-flight'"
        ),
        0,
        "nothing is left in flight to be sent again"
    );

    let _second = rig.serve(&[]);
    wait_for(Duration::from_secs(20), "all twenty delivered", || {
        delivered(dir.path()) == 20
    });
    let titles = titles_sent(fake);
    let mut unique = titles.clone();
    unique.dedup();
    assert_eq!(titles.len(), 20, "each card sent once: {titles:?}");
    assert_eq!(unique.len(), 20);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn a_claimed_message_waiting_for_its_send_slot_goes_back_unsent_on_sigterm() {
    let rig = Rig::new();
    let (fake, dir) = (&rig.fake, &rig.dir);
    // The first send is refused as a stale token: the retry after the refresh needs a second
    // send slot, which a limit of 1 a minute will not give.
    fake.script([Scripted::ErrorCode(20016)]);
    let env: &[(&str, &str)] = &[
        ("FXHOOK__DELIVERY__RATE_LIMIT", "1"),
        ("FXHOOK__DELIVERY__RATE_WINDOW", "60s"),
        ("FXHOOK__DELIVERY__REQUEST_TIMEOUT", "2s"),
    ];
    let mut first = rig.serve(env);
    post_notes(&first, 0..1);
    wait_for(
        Duration::from_secs(10),
        "the refresh after the 20016",
        || fake.token_calls() == 2,
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM messages WHERE state = 'in-flight'"
        ),
        1,
        "claimed, waiting for its slot"
    );
    sigterm(&mut first);
    wait_for(Duration::from_secs(6), "the process to exit", || {
        first.child.try_wait().unwrap().is_some()
    });
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM messages WHERE state = 'queued'"
        ),
        1,
        "back in the queue"
    );
    let sends = fake
        .received()
        .iter()
        .filter(|r| r.path == "/cgi/message/send")
        .count();
    assert_eq!(sends, 1, "the retry was not sent");
}

#[test]
fn a_send_in_progress_at_sigterm_finishes_and_is_not_sent_again_after_restart() {
    let rig = Rig::new();
    let (fake, dir) = (&rig.fake, &rig.dir);
    fake.script([Scripted::Hang(Duration::from_secs(2))]);
    let env: &[(&str, &str)] = &[("FXHOOK__DELIVERY__REQUEST_TIMEOUT", "5s")];
    let mut first = rig.serve(env);
    post_notes(&first, 0..1);
    wait_for(Duration::from_secs(10), "the send to hang", || {
        fake.sends().len() == 1
    });
    sigterm(&mut first);
    wait_for(Duration::from_secs(10), "the process to exit", || {
        first.child.try_wait().unwrap().is_some()
    });
    assert_eq!(delivered(dir.path()), 1, "the answer came and was recorded");

    let second = rig.serve(env);
    post_notes(&second, 1..2);
    wait_for(Duration::from_secs(10), "the next card", || {
        delivered(dir.path()) == 2
    });
    assert_eq!(titles_sent(fake), ["note 0", "note 1"]);
}
