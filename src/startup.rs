//! Wiring: builds every stage from the settings, binds the listener, and runs the HTTP server
//! and the delivery worker until a shutdown signal.

use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::config::{Settings, parse_ip_range};
use crate::deliver::{Mode, Worker};
use crate::diagnostic::Severity;
use crate::enqueue::{self, WriterSettings};
use crate::receive::{self, AppState};
use crate::route::Groups;
use crate::{source, store};

/// A built gateway, bound to its port, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    worker: Option<Worker>,
    writer: JoinHandle<()>,
}

impl Application {
    /// Builds every stage and binds `server.listen` (port 0 picks a free port).
    ///
    /// # Errors
    /// A store that cannot be opened, an unreadable mappings directory, a port in use.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let tz = settings.timezone()?;
        let groups = Arc::new(Groups::new(&settings.groups).map_err(anyhow::Error::msg)?);
        let sources = source::load_dir(&settings.mappings.dir, &groups)?;
        log_sources(&sources);

        let writer_conn = store::open(&settings.store.path)?;
        let worker_conn = store::open(&settings.store.path)?;
        let queued = Arc::new(Notify::new());
        let (enqueuer, writer) = enqueue::start(
            writer_conn,
            WriterSettings {
                batch: settings.store.commit_batch,
                pending_limit: settings.store.pending_limit,
                dedup_window: settings.store.dedup_window,
            },
            Arc::clone(&queued),
        )?;
        let worker = if settings.fxiaoke.effective_dry_run() {
            tracing::info!(
                "dry run: messages are logged and marked delivered, nothing is sent to Fxiaoke"
            );
            Some(Worker::new(
                worker_conn,
                Mode::DryRun,
                queued,
                settings.delivery.poll_interval,
            )?)
        } else {
            tracing::error!(
                "live delivery to Fxiaoke is not available in this version: accepted messages stay queued \
                 (nothing is lost) until a version with delivery runs; set fxiaoke.dry_run: true to drain them to the log"
            );
            None
        };

        let trusted_proxies = settings
            .server
            .trusted_proxies
            .iter()
            .map(|p| parse_ip_range(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let state = web::Data::new(AppState {
            sources: ArcSwap::from_pointee(sources),
            groups,
            tz,
            enqueuer,
            max_body_bytes: settings.server.max_body_bytes,
            trusted_proxies,
        });
        let addr = settings.listen_addr()?;
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
        let port = listener.local_addr()?.port();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(receive::request_context))
                .configure(receive::routes)
                .default_service(web::to(|| async {
                    HttpResponse::NotFound().json(serde_json::json!({"error": "not found"}))
                }))
        })
        .shutdown_timeout(10);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server.listen(listener)?.run();
        tracing::info!(%addr, port, store = %settings.store.path.display(), "fxhook listening");
        Ok(Application {
            port,
            server,
            worker,
            writer,
        })
    }

    /// A handle that stops the server (as SIGTERM would).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM (actix handles them), then stops the worker and lets the
    /// store writer finish its last commit.
    ///
    /// # Errors
    /// The server failed.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = self.worker.map(|w| {
            tokio::spawn(w.run_until_stopped(async {
                let _ = stopped.await;
            }))
        });
        let result = self.server.await;
        let _ = stop.send(());
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        // The server's app state (and so the last Enqueuer) is gone: the writer drains and ends.
        let writer = self.writer;
        let joined = tokio::task::spawn_blocking(move || writer.join());
        if tokio::time::timeout(std::time::Duration::from_secs(5), joined)
            .await
            .is_err()
        {
            tracing::warn!("the store writer did not stop within 5 s");
        }
        result.context("HTTP server failed")
    }
}

fn log_sources(set: &source::SourceSet) {
    for d in &set.diagnostics {
        match d.severity {
            Severity::Error => tracing::error!("{d}"),
            Severity::Warning => tracing::warn!("{d}"),
        }
    }
    let names: Vec<&str> = set.sources.keys().map(String::as_str).collect();
    tracing::info!(sources = ?names, rejected = set.rejected.len(), "mappings loaded");
}
