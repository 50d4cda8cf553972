//! Behind a real reverse proxy (Debian's nginx, started by the test): signatures still verify,
//! the path prefix works, and the client IP in the logs is the real client's, taken from
//! `X-Forwarded-For` only because the proxy is trusted.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use crate::helpers::{python_hmac_hex, repo_file};
use crate::process::{serve, wait_until, workdir};

const NGINX: &str = "/usr/sbin/nginx";

struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM, not KILL: the master stops its workers, which would otherwise outlive the test.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx on a free loopback port, proxying `/fxhook/` to the gateway on `upstream`.
fn nginx(dir: &Path, upstream: u16) -> Nginx {
    assert!(
        Path::new(NGINX).exists(),
        "missing test dependency: nginx (Debian package nginx); run scripts/test.sh, which installs it"
    );
    let port = free_port();
    let conf = format!(
        r#"daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location /fxhook/ {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"#,
        dir = dir.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx starts");
    wait_until(
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "nginx to listen",
    );
    Nginx { child, port }
}

#[test]
fn behind_nginx_signatures_verify_under_a_path_prefix_and_the_real_client_ip_is_logged() {
    let dir = workdir();
    let secret = "proxy-secret";
    let gateway = serve(
        dir.path(),
        &[
            ("FXHOOK_SECRET_GITHUB", secret),
            ("FXHOOK__SERVER__PATH_PREFIX", "/fxhook"),
            ("FXHOOK__SERVER__TRUSTED_PROXIES", "127.0.0.1"),
        ],
    );
    let proxy = nginx(dir.path(), gateway.port);

    let body = std::fs::read(repo_file("tests/fixtures/github/push.4.json")).unwrap();
    let sig = format!("sha256={}", python_hmac_hex("sha256", secret, &body));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, request_id) = rt.block_on(async {
        // The client comes from another loopback address than the proxy: 127.0.0.5.
        let client = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 5]))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let res = client
            .post(format!(
                "http://127.0.0.1:{}/fxhook/hooks/github",
                proxy.port
            ))
            .header("content-type", "application/json")
            .header("X-GitHub-Event", "push")
            .header("X-Hub-Signature-256", sig)
            .header("X-Request-Id", "through-nginx-1")
            .body(body)
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.headers()["x-request-id"].to_str().unwrap().to_string(),
        )
    });
    assert_eq!(status, 202);
    assert_eq!(request_id, "through-nginx-1");
    wait_until(
        || {
            gateway.logs.lock().unwrap().iter().any(|l| {
                l.contains("request completed")
                    && l.contains("through-nginx-1")
                    && l.contains("client_ip=127.0.0.5")
            })
        },
        "an access-log line with the real client IP",
    );
}
