//! Wiring: builds every stage from the settings, binds the listener, and runs the HTTP server
//! and the delivery worker until a shutdown signal.

use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use tokio::sync::Notify;

use crate::admin::{self, Admin};
use crate::config::{Settings, parse_ip_range};
use crate::deliver::fxiaoke::{Credentials, FxiaokeClient};
use crate::deliver::policy::RetryPolicy;
use crate::deliver::{Mode, Worker, WorkerSettings};
use crate::enqueue::{self, WriterSettings};
use crate::receive::{self, AppState};
use crate::reload::{self, Catalog};
use crate::route::Groups;
use crate::{source, store};

/// A built gateway, bound to its port, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    worker: Worker,
    grace: Duration,
    /// Keeps the mappings watcher alive while the server runs.
    _watcher: Option<reload::Watcher>,
    /// This process's hold on the store, released when the application ends.
    _store_lock: store::StoreLock,
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
        let catalog = Arc::new(Catalog::open(
            settings.mappings.dir.clone(),
            groups,
            settings.cards.clone(),
        )?);
        log_sources(&catalog.load());
        let watcher = if settings.mappings.watch {
            Some(reload::watch(Arc::clone(&catalog))?)
        } else {
            None
        };
        reload::reload_on_sighup(Arc::clone(&catalog));

        // Wait a little for a process (or an application of this one) that is stopping.
        let mut store_lock = None;
        for _ in 0..300 {
            store_lock = store::try_lock(&settings.store.path)?;
            if store_lock.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let store_lock = store_lock.with_context(|| {
            format!(
                "another fxhook process serves the store {} (it holds its .lock file)",
                settings.store.path.display()
            )
        })?;
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
        let mode = if settings.fxiaoke.effective_dry_run() {
            tracing::info!(
                "dry run: messages are logged and marked delivered, nothing is sent to Fxiaoke"
            );
            Mode::DryRun
        } else {
            let creds =
                Credentials::from_settings(&settings.fxiaoke).context("fxiaoke credentials")?;
            let d = &settings.delivery;
            tracing::info!(base_url = %settings.fxiaoke.base_url, "live delivery to the Fxiaoke OpenAPI");
            Mode::Live(Arc::new(FxiaokeClient::new(
                &settings.fxiaoke.base_url,
                creds,
                d.connect_timeout,
                d.request_timeout,
            )?))
        };
        let d = &settings.delivery;
        let delivery = match &mode {
            Mode::Live(client) => Some(Arc::clone(client)),
            Mode::DryRun => None,
        };
        let worker = Worker::new(
            worker_conn,
            mode,
            Arc::clone(&queued),
            WorkerSettings {
                poll_interval: d.poll_interval,
                retry: RetryPolicy {
                    schedule: d.retry_schedule.clone(),
                    max_age: d.max_age,
                },
                rate_limit: d.rate_limit as usize,
                rate_window: d.rate_window,
                concurrency: d.concurrency,
                keep_delivered: d.keep_delivered,
                keep_dead: d.keep_dead,
                // A claim lives for a token fetch and a send, each bounded by the request timeout.
                stale_after: d.request_timeout * 3 + Duration::from_secs(60),
            },
        )?;
        let grace = d.request_timeout + Duration::from_secs(1);

        let trusted_proxies = settings
            .server
            .trusted_proxies
            .iter()
            .map(|p| parse_ip_range(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let admin = match &settings.admin.token {
            Some(token)
                if !secrecy::ExposeSecret::expose_secret(token)
                    .trim()
                    .is_empty() =>
            {
                Some(Admin {
                    token: token.clone(),
                    conn: Arc::new(std::sync::Mutex::new(store::open(&settings.store.path)?)),
                })
            }
            _ => None,
        };
        let metrics_handle = crate::metrics::install();
        crate::metrics::zero(&catalog.load().sources.keys().cloned().collect::<Vec<_>>());
        let reader = Arc::new(std::sync::Mutex::new(store::open(&settings.store.path)?));
        enqueue::watch_bounds(
            &enqueuer,
            Arc::clone(&reader),
            enqueue::Bounds {
                max_queued: settings.store.max_queued,
                max_bytes: settings.store.max_bytes,
            },
        );
        let state = web::Data::new(AppState {
            catalog,
            tz,
            enqueuer,
            max_body_bytes: settings.server.max_body_bytes,
            trusted_proxies,
            queued,
            admin,
            delivery,
            metrics: metrics_handle,
            metrics_token: settings.metrics.token.clone(),
            reader,
        });
        let addr = settings.listen_addr()?;
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
        let port = listener.local_addr()?.port();
        let prefix = settings.server.path_prefix.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(receive::request_context))
                .service(
                    web::scope(&prefix)
                        .configure(receive::routes)
                        .configure(admin::routes),
                )
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
            grace,
            _watcher: watcher,
            _store_lock: store_lock,
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
        let worker = tokio::spawn(self.worker.run_until_stopped(
            async {
                let _ = stopped.await;
            },
            self.grace,
        ));
        let result = self.server.await;
        let _ = stop.send(());
        let _ = worker.await;
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
    let names: Vec<&str> = set.sources.keys().map(String::as_str).collect();
    tracing::info!(sources = ?names, rejected = set.rejected.len(), "mappings loaded");
}
