//! Running the real `fxhook` binary as operators do: on port 0 in a work directory, with its
//! logs collected, plus small HTTP helpers for tests that drive it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::repo_file;

/// The `fxhook` binary of this build, with `RUST_LOG` cleared.
pub fn fxhook() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fxhook"));
    cmd.env_remove("RUST_LOG");
    cmd
}

/// A gateway process and the port it listens on.
pub struct Running {
    /// The process.
    pub child: Child,
    /// The port it listens on.
    pub port: u16,
    /// Every line it wrote to stderr so far.
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `fxhook serve` in `dir` (port 0) and waits for its "listening" log line.
pub fn serve(dir: &Path, env: &[(&str, &str)]) -> Running {
    let mut cmd = fxhook();
    cmd.arg("serve");
    serve_command(dir, cmd, env)
}

/// Starts `cmd` (an `fxhook serve`, perhaps wrapped) in `dir` on port 0 and waits for its
/// "listening" log line.
pub fn serve_command(dir: &Path, mut cmd: Command, env: &[(&str, &str)]) -> Running {
    let mut child = cmd
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("FXHOOK__SERVER__LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("fxhook starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut all) = sink.lock() {
                all.push(line.clone());
            }
            // `port=1234` in the text format, `"port":1234` in the JSON one.
            if let Some(port) = line
                .split("port=")
                .nth(1)
                .or_else(|| line.split("\"port\":").nth(1))
            {
                let port: String = port.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(port.parse::<u16>().ok());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(20))
        .ok()
        .flatten()
        .expect("fxhook logs its port");
    Running { child, port, logs }
}

/// A working directory with the shipped mappings and a config with one recipient.
pub fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    for name in ["github", "alertmanager"] {
        let mappings = dir.path().join("mappings");
        std::fs::copy(
            repo_file(&format!("mappings/{name}.yaml")),
            mappings.join(format!("{name}.yaml")),
        )
        .unwrap();
        // The payloads of the file's examples travel with it.
        let examples = mappings.join("examples").join(name);
        std::fs::create_dir_all(&examples).unwrap();
        for entry in std::fs::read_dir(repo_file(&format!("mappings/examples/{name}"))).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, examples.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        dir.path().join("fxhook.yaml"),
        "groups:\n  default: ['1000']\n",
    )
    .unwrap();
    dir
}

/// POSTs JSON and returns the status and JSON body.
pub fn post(
    port: u16,
    path: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (u16, serde_json::Value) {
    let mut headers = headers.to_vec();
    headers.push(("content-type", "application/json".into()));
    send(port, reqwest::Method::POST, path, body, &headers)
}

/// Sends one request and returns the status and the JSON body (null when it is not JSON).
pub fn send(
    port: u16,
    method: reqwest::Method,
    path: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method, format!("http://127.0.0.1:{port}{path}"))
            .body(body.to_vec());
        for (n, v) in headers {
            req = req.header(*n, v);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or_default())
    })
}

/// Polls `check` for up to 10 s.
pub fn wait_until(mut check: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Parses Prometheus text into `name{sorted labels}` → value.
pub fn scrape(port: u16) -> std::collections::HashMap<String, f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let mut labels: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
                    labels.sort();
                    (n, labels.join(","))
                }
                None => (series, String::new()),
            };
            Some((format!("{name}{{{labels}}}"), value.parse().ok()?))
        })
        .collect()
}
