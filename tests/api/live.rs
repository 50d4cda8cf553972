//! A gateway delivering live to its own fake Fxiaoke, with the retry schedule shrunk to
//! milliseconds: the harness of the delivery tests, and the store queries they assert on.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::fake_fxiaoke::FakeFxiaoke;
use crate::helpers::{
    Options, TestApp, mapping_with_secret_file, python_hmac_hex, python_hmac_sha256_many, spawn_app,
};

/// The signing secret of source `src`.
pub const SECRET: &str = "delivery-secret";
/// The admin API's token.
pub const ADMIN: &str = "admin-token";
/// The employee id the gateway acts as, and the fake expects.
pub const USER_ID: &str = "1000";

/// A card per event to the group `everyone`; `{$.n}` makes each card distinct.
pub const RULES: &str = r#"rules:
  - name: card
    to: [everyone]
    card:
      title: "Event {$.n}"
      rows: [{ label: N, value: "{$.n}" }]
      link: { title: Open, url: "https://example.com/{$.n}" }
"#;

/// The gateway and the vendor it delivers to.
pub struct Live {
    /// The gateway.
    pub app: TestApp,
    /// Its vendor.
    pub fake: FakeFxiaoke,
}

/// A message row, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Message id.
    pub id: i64,
    /// `queued`, `in-flight`, `delivered`, `failed` or `dead`.
    pub state: String,
    /// Attempts that counted towards the retry schedule.
    pub attempts: i64,
    /// When it is due (unix ms).
    pub next_attempt_at: i64,
    /// The error shown to admins.
    pub last_error: Option<String>,
    /// The `/cgi/message/send` body.
    pub body: serde_json::Value,
}

/// One recorded call: outcome, `errorCode`, HTTP status, error message.
pub type Attempt = (String, Option<i64>, Option<i64>, Option<String>);

/// [`live_with`] the cards of [`RULES`].
pub async fn live(
    recipients: usize,
    tweak: impl FnOnce(&mut fxhook::config::Settings) + 'static,
) -> Live {
    live_with(RULES, recipients, tweak).await
}

/// A gateway with `rules` for source `src`, a group `everyone` of `recipients` ids (5000, 5001,
/// …), live credentials pointing at a new fake, retries after 10, 20, 40, 80 and 160 ms, then
/// `tweak`.
pub async fn live_with(
    rules: &str,
    recipients: usize,
    tweak: impl FnOnce(&mut fxhook::config::Settings) + 'static,
) -> Live {
    let fake = FakeFxiaoke::start("app-1", "app-secret", "perm-code", USER_ID);
    let base = fake.base_url();
    let dir = tempfile::tempdir().unwrap();
    let yaml = mapping_with_secret_file(dir.path(), "src", "github", SECRET, rules);
    let app = spawn_app(Options {
        mappings: vec![("src".into(), yaml)],
        tweak: Some(Box::new(move |s| {
            s.fxiaoke.dry_run = false;
            s.fxiaoke.base_url = base;
            s.fxiaoke.app_id = Some("app-1".into());
            s.fxiaoke.app_secret = Some("app-secret".into());
            s.fxiaoke.permanent_code = Some("perm-code".into());
            s.fxiaoke.user_id = Some(USER_ID.into());
            s.delivery.retry_schedule = [10, 20, 40, 80, 160].map(Duration::from_millis).to_vec();
            s.delivery.request_timeout = Duration::from_millis(500);
            s.admin.token = Some(ADMIN.into());
            s.groups.insert(
                "everyone".into(),
                (0..recipients).map(|i| format!("{}", 5000 + i)).collect(),
            );
            tweak(s);
        })),
        dir: Some(dir),
    })
    .await;
    Live { app, fake }
}

impl Live {
    /// Posts `{"n": n}`, signed.
    pub async fn post(&self, n: usize) -> reqwest::Response {
        self.post_json(&serde_json::json!({ "n": n })).await
    }

    /// Posts any payload, signed.
    pub async fn post_json(&self, payload: &serde_json::Value) -> reqwest::Response {
        let body = payload.to_string();
        let sig = format!(
            "sha256={}",
            python_hmac_hex("sha256", SECRET, body.as_bytes())
        );
        self.app
            .post_hook("src", body, &[("X-Hub-Signature-256", sig)])
            .await
    }

    /// Posts many events at once (signed beforehand: signing runs a process); each gets a 202.
    pub async fn post_all(&self, ns: impl Iterator<Item = usize>) {
        let bodies: Vec<String> = ns.map(|n| format!(r#"{{"n":{n}}}"#)).collect();
        let sigs = python_hmac_sha256_many(SECRET, &bodies);
        let signed = bodies
            .into_iter()
            .zip(sigs.into_iter().map(|s| format!("sha256={s}")));
        let posts = signed.into_iter().map(|(body, sig)| async move {
            self.app
                .post_hook("src", body, &[("X-Hub-Signature-256", sig)])
                .await
        });
        for res in futures_util::future::join_all(posts).await {
            assert_eq!(res.status(), 202);
        }
    }

    /// Calls the admin API; the status and the JSON answer.
    pub async fn admin(&self, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
        let res = self
            .app
            .client
            .request(method, format!("{}{path}", self.app.address))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or_default())
    }

    /// Every message, by id.
    pub fn messages(&self) -> Vec<Message> {
        let db = self.app.db();
        let mut stmt = db
            .prepare(
                "SELECT id, state, attempts, next_attempt_at, last_error, body FROM messages ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            let body: String = r.get(5)?;
            Ok(Message {
                id: r.get(0)?,
                state: r.get(1)?,
                attempts: r.get(2)?,
                next_attempt_at: r.get(3)?,
                last_error: r.get(4)?,
                body: serde_json::from_str(&body).unwrap_or_default(),
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// Every recorded call, in order.
    pub fn attempts(&self) -> Vec<Attempt> {
        let db = self.app.db();
        let mut stmt = db
            .prepare(
                "SELECT outcome, error_code, http_status, error_message FROM attempts ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Polls until `n` messages are delivered.
    pub async fn wait_for_delivered(&self, n: i64) {
        self.app
            .wait_for_count("SELECT COUNT(*) FROM messages WHERE state = 'delivered'", n)
            .await;
    }
}

/// Polls `check` every 20 ms until it holds, failing with `what` after `within`.
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Now, in unix milliseconds (as the store writes times).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
