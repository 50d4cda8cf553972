//! The command line of `product.md`: `serve`, `check` and `render`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::diagnostic::Severity;
use crate::pipeline::Routed;
use crate::route::Groups;
use crate::source::LoadOptions;

/// fxhook: webhooks from CI, monitoring and Git hosts, delivered as Fxiaoke cards.
#[derive(Debug, Parser)]
#[command(name = "fxhook", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (HTTP listener and delivery worker).
    Serve {
        /// Configuration file (default: fxhook.yaml when present, else built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load the configuration and every mapping file and report each problem as FILE:LINE:COL.
    Check {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Exit 0 when the local gateway answers GET /healthz with 200 (for container health checks).
    Healthcheck {
        /// Configuration file (for server.listen).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Fetch a token with the configured credentials and send one test card, printing each step.
    SendTest {
        /// The employee id that receives the test card.
        #[arg(long)]
        to: String,
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Store tools: `fxhook store copy --from FILE --to URL`.
    Store {
        /// What to do with the store.
        #[command(subcommand)]
        action: StoreCommand,
    },
    /// Map and route one payload offline (no signature check, no send) and print the messages.
    Render {
        /// Source name (the mapping file's name without .yaml).
        #[arg(long)]
        source: String,
        /// The JSON payload file.
        #[arg(long)]
        payload: PathBuf,
        /// A request header, `Name: value` (repeatable).
        #[arg(long = "header", value_name = "'Name: value'")]
        headers: Vec<String>,
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The `store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a stopped SQLite store (events, messages, attempts, delivery ids, the vendor
    /// ledger) into an empty Postgres store, checking the counts: the way up from SQLite.
    Copy {
        /// The SQLite store file (its gateway stopped).
        #[arg(long)]
        from: PathBuf,
        /// The Postgres URL (`postgres://…`), an empty database.
        #[arg(long)]
        to: String,
        /// Configuration file (for the mappings: stored headers are scrubbed with them first).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::Check { config } => check(config.as_deref()),
        Command::Healthcheck { config } => healthcheck(config.as_deref()),
        Command::SendTest { to, config } => send_test(&to, config.as_deref()),
        Command::Store {
            action: StoreCommand::Copy { from, to, config },
        } => store_copy(&from, &to, config.as_deref()),
        Command::Render {
            source,
            payload,
            headers,
            config,
        } => render(&source, &payload, &headers, config.as_deref()),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}

fn serve(config: Option<&Path>) -> ExitCode {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let log = crate::telemetry::init_with(settings.log.format);
    settings
        .warnings()
        .iter()
        .for_each(|w| tracing::warn!("{w}"));
    let result = actix_web::rt::System::new().block_on(async move {
        crate::startup::Application::build(settings)
            .await?
            .run_until_stopped()
            .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fxhook stopped");
            drop(log); // the log's last lines before the error on stderr
            fail(&e)
        }
    }
}

fn check(config: Option<&Path>) -> ExitCode {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let groups = match Groups::new(&settings.groups) {
        Ok(g) => g,
        Err(e) => return fail(&anyhow::anyhow!(e)),
    };
    // In check, a failing example is an error: it fails the admin's CI.
    let options = LoadOptions::from_settings(&settings, Severity::Error);
    let set = match crate::source::load_dir_with(&settings.mappings.dir, &groups, &options) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let mut errors = 0;
    let mut warnings = 0;
    for d in &set.diagnostics {
        match d.severity {
            Severity::Error => {
                errors += 1;
                println!("{d}");
            }
            Severity::Warning => {
                warnings += 1;
                eprintln!("{d}");
            }
        }
    }
    eprintln!(
        "checked {} mapping file(s): {errors} error(s), {warnings} warning(s)",
        set.sources.len() + set.rejected.len()
    );
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The first thing to run after entering credentials: every step and the vendor's answer.
fn send_test(to: &str, config: Option<&Path>) -> ExitCode {
    use crate::card::{Card, Link, Row, SendBody};
    use crate::config::DeliveryMode;
    use crate::deliver::fxiaoke::FxiaokeClient;
    use crate::deliver::policy::Answer;
    let run = || -> anyhow::Result<bool> {
        let settings = Settings::load(config)?;
        let f = &settings.fxiaoke;
        let DeliveryMode::Live(creds) = f.mode().map_err(anyhow::Error::msg)? else {
            anyhow::bail!(
                "fxiaoke.app_id, app_secret, permanent_code and user_id must all be set (FXHOOK__FXIAOKE__…), and dry_run off"
            );
        };
        let to = crate::route::RecipientId::try_from(to.to_string()).map_err(anyhow::Error::msg)?;
        let d = &settings.delivery;
        // The gateway's own ledger: a test send uses the token a gateway kept, and its send and
        // token calls count for the next gateway that starts or takes over delivery (a running
        // one read the ledger when it took the lease, and does not see them).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let ledger = rt.block_on(crate::store::open_ledger(&settings.store))?;
        let client = FxiaokeClient::new(
            &f.base_url,
            creds,
            d.connect_timeout,
            d.request_timeout,
            ledger.clone(),
        )?;
        let card = Card::new(
            "fxhook test card".into(),
            Some("If you can read this, delivery works.".into()),
            vec![Row {
                label: "Sent by".into(),
                value: "fxhook send-test".into(),
            }],
            None,
            Link {
                title: "fxhook".into(),
                url: "https://open.fxiaoke.com".into(),
            },
        )?;
        let body = serde_json::to_string(&SendBody::new(vec![to.as_str().to_string()], &card))?;
        rt.block_on(async {
            println!(
                "1. token: POST {}/oauth2.0/token",
                f.base_url.trim_end_matches('/')
            );
            let token = match client.token().await {
                Ok(t) => {
                    println!("   ok ({t:?})");
                    t
                }
                Err(failure) => {
                    println!("   failed: {}", failure.reason);
                    if let Some(r) = failure.report {
                        println!(
                            "   thirdTraceId {} traceId {}",
                            r.third_trace_id,
                            r.trace_id.unwrap_or_default()
                        );
                    }
                    return Ok(false);
                }
            };
            println!(
                "2. send: POST {}/cgi/message/send to {}",
                f.base_url.trim_end_matches('/'),
                to.as_str()
            );
            println!("   body {body}");
            let now = std::time::SystemTime::now();
            crate::store::vendor::off_thread(&ledger, move |l| {
                l.record_call(crate::store::vendor::CallKind::Send, now)
            })
            .await?;
            let report = client.send(&token, &body).await;
            println!(
                "   answer: {:?} {} (http {}, traceId {}, thirdTraceId {})",
                report.answer,
                report.message.clone().unwrap_or_default(),
                report
                    .http_status
                    .map_or("-".to_string(), |s| s.to_string()),
                report.trace_id.clone().unwrap_or_else(|| "-".into()),
                report.third_trace_id
            );
            let ok = report.answer == Answer::Code(0);
            println!(
                "{}",
                if ok {
                    "delivered: check the Fxiaoke app of that employee"
                } else {
                    "not delivered"
                }
            );
            Ok(ok)
        })
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => fail(&e),
    }
}

/// `fxhook store copy`: the SQLite store, locked and scrubbed, into an empty Postgres store.
fn store_copy(from: &Path, to: &str, config: Option<&Path>) -> ExitCode {
    let run = || -> anyhow::Result<()> {
        let settings = Settings::load(config)?;
        anyhow::ensure!(
            from.is_file(),
            "{} is not a store file (--from)",
            from.display()
        );
        let url = secrecy::SecretString::from(to.to_string());
        let _held = crate::store::sqlite::try_lock(from)?.with_context(|| {
            format!(
                "a gateway serves {}: stop it before copying its store",
                from.display()
            )
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        rt.block_on(async {
            let groups = Groups::new(&settings.groups).map_err(anyhow::Error::msg)?;
            let catalog = std::sync::Arc::new(crate::reload::Catalog::open(
                settings.mappings.dir.clone(),
                std::sync::Arc::new(groups),
                LoadOptions::from_settings(&settings, Severity::Warning),
            )?);
            let path = from.to_path_buf();
            let sqlite = tokio::task::spawn_blocking(move || crate::store::sqlite::Sqlite::open(&path))
                .await??;
            let sqlite = crate::startup::scrub_stored_headers(Box::new(sqlite), catalog).await?;
            let target = crate::store::postgres::open_unlocked(&url, &settings.store).await?;
            eprintln!(
                "copying {} into {}",
                from.display(),
                crate::config::redact_url(to)
            );
            drop(sqlite);
            let path = from.to_path_buf();
            let report = tokio::task::spawn_blocking(move || {
                let source = crate::store::sqlite::Sqlite::open(&path)?;
                crate::store::copy::sqlite_to_postgres(&source, &target)
            })
            .await??;
            for (table, rows) in &report.tables {
                println!("{table:>13}  {rows} rows");
            }
            println!(
                "copied and counted in {:.1} s: set store.url to the Postgres URL (and remove store.path) to serve from it",
                report.seconds
            );
            Ok(())
        })
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// One GET /healthz over a plain TCP connection: no HTTP client in the image is needed.
fn healthcheck(config: Option<&Path>) -> ExitCode {
    use std::io::{Read, Write};
    let probe = || -> anyhow::Result<bool> {
        let mut addr = Settings::load(config)?.server.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let timeout = std::time::Duration::from_secs(3);
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("unhealthy: /healthz did not answer 200");
            ExitCode::FAILURE
        }
        Err(e) => fail(&e),
    }
}

fn parse_headers(lines: &[String]) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("--header {line:?} is not 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("--header {line:?}: bad header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("--header {line:?}: bad header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn render(source: &str, payload: &Path, headers: &[String], config: Option<&Path>) -> ExitCode {
    match render_json(source, payload, headers, config) {
        Ok(doc) => {
            println!("{doc}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// The document `fxhook render` prints.
///
/// # Errors
/// Unreadable inputs, a mapping file with errors, a mapping failure.
pub fn render_json(
    source: &str,
    payload: &Path,
    headers: &[String],
    config: Option<&Path>,
) -> anyhow::Result<serde_json::Value> {
    let settings = Settings::load(config)?;
    let groups = Groups::new(&settings.groups).map_err(anyhow::Error::msg)?;
    let file = ["yaml", "yml"]
        .iter()
        .map(|ext| settings.mappings.dir.join(format!("{source}.{ext}")))
        .find(|p| p.exists())
        .with_context(|| {
            format!(
                "no mapping file {source}.yaml in {}",
                settings.mappings.dir.display()
            )
        })?;
    let options = LoadOptions::from_settings(&settings, Severity::Warning);
    let (loaded, diagnostics) = crate::source::load_file_with(&file, &groups, &options);
    // Warnings about secrets and groups are `check`'s business; render reports errors only.
    for d in diagnostics.iter().filter(|d| d.severity == Severity::Error) {
        eprintln!("{d}");
    }
    let loaded = loaded.with_context(|| format!("{} has errors", file.display()))?;
    let body =
        std::fs::read(payload).with_context(|| format!("cannot read {}", payload.display()))?;
    let parsed = crate::verify::offline::trust_admin_supplied(
        parse_headers(headers)?,
        body.into(),
        std::time::SystemTime::now(),
    )
    .with_context(|| format!("{} is not a JSON payload", payload.display()))?;
    let routed = crate::pipeline::render(&loaded.mapping, &parsed, &groups, options.tz);
    if let Routed::Rendered { rule, messages, .. } = &routed
        && messages.iter().any(|m| m.to_user.is_empty())
    {
        eprintln!(
            "warning: rule {rule} reaches no recipient: the message would be stored as failed (no recipients)"
        );
    }
    routed.document().map_err(anyhow::Error::msg)
}
