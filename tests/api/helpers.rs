//! `spawn_app` and the signing helpers shared by the tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use fxhook::config::Settings;
use fxhook::startup::Application;
use tempfile::TempDir;

/// A running gateway and its files.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The temp directory holding mappings, secrets and the store.
    pub dir: TempDir,
    /// The store file.
    pub store_path: PathBuf,
    /// Stops the server.
    pub handle: actix_web::dev::ServerHandle,
    /// An HTTP client.
    pub client: reqwest::Client,
}

/// A mapping that verifies with `verify` (YAML lines) and reads its secret from a file holding `secret`.
pub fn mapping_with_secret_file(
    dir: &Path,
    source: &str,
    preset: &str,
    secret: &str,
    rules: &str,
) -> String {
    let secret_file = dir.join(format!("{source}.secret"));
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    format!(
        "verify:\n  preset: {preset}\n  secrets: [{{file: {}}}]\n{rules}",
        secret_file.display()
    )
}

/// The shipped `mappings/{source}.yaml` (whose preset is `preset`), with its secret read from a
/// file in `dir` holding `secret` instead of from the process environment.
pub fn shipped_mapping_with_secret_file(
    dir: &Path,
    source: &str,
    preset: &str,
    secret: &str,
) -> String {
    let secret_file = dir.join(format!("{source}.secret"));
    std::fs::write(&secret_file, secret).unwrap();
    std::fs::read_to_string(repo_file(&format!("mappings/{source}.yaml")))
        .unwrap()
        .replacen(
            &format!("  preset: {preset}"),
            &format!(
                "  preset: {preset}\n  secrets: [{{file: {}}}]",
                secret_file.display()
            ),
            1,
        )
}

/// A rule set that accepts every event with a small card to group `default`.
pub const ACCEPT_ALL: &str = r#"rules:
  - name: everything
    card:
      title: "event {$.action | default('none')}"
      link: { title: Open, url: "https://example.com/{$.id | default('x')}" }
"#;

/// Adjusts the settings of a test gateway before it starts.
pub type Tweak = Option<Box<dyn FnOnce(&mut Settings)>>;

/// Options of a test gateway.
#[derive(Default)]
pub struct Options {
    /// Mapping files: (source, YAML). A `{SECRETS}` placeholder is not needed: use [`mapping_with_secret_file`].
    pub mappings: Vec<(String, String)>,
    /// Adjusts the settings before start.
    pub tweak: Tweak,
    /// Reuse this directory (restart tests).
    pub dir: Option<TempDir>,
}

/// Settings for a test: port 0, the given directory, dry run, one default recipient.
pub fn test_settings(dir: &Path) -> Settings {
    let mut s = Settings::default();
    s.server.listen = ([127, 0, 0, 1], 0).into();
    s.server.workers = 1;
    s.mappings.dir = dir.join("mappings");
    s.store.path = Some(dir.join("store/fxhook.db"));
    s.fxiaoke.dry_run = true;
    // Reload tests turn the watcher on; the others do not need one each.
    s.mappings.watch = false;
    s.delivery.poll_interval = std::time::Duration::from_millis(20);
    s.groups.insert("default".into(), vec!["1000".into()]);
    s
}

/// Starts a gateway in this runtime.
pub async fn spawn_app(opts: Options) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        fxhook::telemetry::init();
    }
    let dir = opts.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let mappings = dir.path().join("mappings");
    std::fs::create_dir_all(&mappings).unwrap();
    for (source, yaml) in &opts.mappings {
        std::fs::write(mappings.join(format!("{source}.yaml")), yaml).unwrap();
    }
    let mut settings = test_settings(dir.path());
    if let Some(tweak) = opts.tweak {
        tweak(&mut settings);
    }
    let store_path = settings.store.sqlite_path();
    let app = Application::build(settings).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        dir,
        store_path,
        handle,
        client: reqwest::Client::new(),
    }
}

impl TestApp {
    /// POSTs `body` to `/hooks/{source}` with these headers (content type JSON unless given).
    pub async fn post_hook(
        &self,
        source: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> reqwest::Response {
        let mut req = self.client.post(format!("{}/hooks/{source}", self.address));
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        for (n, v) in headers {
            req = req.header(*n, v);
        }
        req.body(body.into()).send().await.expect("request sent")
    }

    /// Stops the server and gives back its directory.
    pub async fn stop(self) -> TempDir {
        self.handle.stop(true).await;
        self.dir
    }

    /// A read-only view of the store.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.store_path).unwrap()
    }

    /// Counts rows of a query's single integer result.
    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// The `/cgi/message/send` body of every stored message, by id.
    pub fn message_bodies(&self) -> Vec<serde_json::Value> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT body FROM messages ORDER BY id").unwrap();
        let bodies = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        bodies
            .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
            .collect()
    }

    /// Polls until `sql` returns `want`, for up to 10 s.
    pub async fn wait_for_count(&self, sql: &str, want: i64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let got = self.count(sql);
            if got == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{sql} stayed at {got}, wanted {want}"
            );
            actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// HMAC-hex of `message` computed by Python's `hmac` module: an implementation independent of ours.
pub fn python_hmac_hex(algorithm: &str, key: &str, message: &[u8]) -> String {
    python(
        "import hmac,hashlib,sys; k=sys.argv[1].encode(); m=sys.stdin.buffer.read(); print(hmac.new(k, m, getattr(hashlib, sys.argv[2])).hexdigest())",
        &[key, algorithm],
        message,
    )
}

/// HMAC-SHA256 hex signatures of many messages, computed by one Python process.
pub fn python_hmac_sha256_many(key: &str, messages: &[String]) -> Vec<String> {
    let input = serde_json::to_vec(messages).unwrap();
    python(
        "import hmac,hashlib,sys,json; k=sys.argv[1].encode(); [print(hmac.new(k, m.encode(), hashlib.sha256).hexdigest()) for m in json.load(sys.stdin)]",
        &[key],
        &input,
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// A Standard Webhooks signature (`v1,<base64>`) computed by Python.
pub fn python_standard_webhooks(key: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    python(
        "import hmac,hashlib,base64,sys; k=base64.b64decode(sys.argv[1].split('_',1)[1]); m=(sys.argv[2]+'.'+sys.argv[3]+'.').encode()+sys.stdin.buffer.read(); print('v1,'+base64.b64encode(hmac.new(k,m,hashlib.sha256).digest()).decode())",
        &[key, id, timestamp],
        body,
    )
}

fn python(script: &str, args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed to sign test requests independently (install python3)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 signing failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The current unix time in seconds, as text.
pub fn now_secs() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

/// A file of this repository.
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
