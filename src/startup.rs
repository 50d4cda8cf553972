//! Wiring: builds every stage from the settings, binds the listener, and runs the HTTP server
//! and the delivery worker until a shutdown signal.
//!
//! Shutdown (SIGTERM, SIGINT, SIGQUIT) is handled here rather than by actix: the delivery
//! worker must stop taking and sending messages at once, not after the HTTP server has drained.

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
use crate::config::{ConnectionBudget, Settings, parse_ip_range};
use crate::deliver::fxiaoke::{Credentials, FxiaokeClient};
use crate::deliver::policy::RetryPolicy;
use crate::deliver::{Mode, Worker, WorkerSettings};
use crate::enqueue::{self, WriterSettings};
use crate::receive::{self, AppState};
use crate::reload::{self, Catalog};
use crate::route::Groups;
use crate::store::health::StoreHealth;
use crate::store::vendor::{SqliteLedger, VendorLedger};
use crate::{source, store};

/// A built gateway, bound to its port, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    worker: Worker,
    /// How long sends in progress may take to finish after a shutdown signal.
    grace: Duration,
    /// Stops the delivery worker; sent on a signal or when the server ends.
    stop_worker: Arc<tokio::sync::watch::Sender<bool>>,
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
        let mut writer_conn = store::open(&settings.store.path)?;
        scrub_stored_headers(&mut writer_conn, &catalog)?;
        let worker_conn = store::open(&settings.store.path)?;
        let ledger: Arc<dyn VendorLedger> = Arc::new(SqliteLedger::open(&settings.store.path)?);
        let health = Arc::new(StoreHealth::default());
        let queued = Arc::new(Notify::new());
        let (enqueuer, writer) = enqueue::start(
            writer_conn,
            WriterSettings {
                batch: settings.store.commit_batch,
                pending_limit: settings.store.pending_limit,
                dedup_window: settings.store.dedup_window,
            },
            Arc::clone(&queued),
            Arc::clone(&health),
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
                Arc::clone(&ledger),
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
            ledger,
            Arc::clone(&health),
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
                    health: Arc::clone(&health),
                })
            }
            _ => None,
        };
        let metrics_handle = crate::metrics::install();
        crate::metrics::zero(&catalog.load().sources.keys().cloned().collect::<Vec<_>>());
        let reader = Arc::new(std::sync::Mutex::new(store::open(&settings.store.path)?));
        enqueue::watch_store(
            &enqueuer,
            Arc::clone(&reader),
            enqueue::Bounds {
                max_queued: settings.store.max_queued,
                max_bytes: settings.store.max_bytes,
            },
            Arc::clone(&health),
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
            health,
        });
        let addr = settings.listen_addr()?;
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
        let port = listener.local_addr()?.port();
        let prefix = settings.server.path_prefix.clone();
        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let budget = connection_budget(&settings, workers);
        let body_timeout = receive::BodyTimeout(settings.server.body_timeout);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(body_timeout)
                // Outermost last: the access log sees the 408 of a stalled body.
                .wrap(from_fn(receive::body_deadline))
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
        .workers(workers)
        .max_connections(budget.per_worker)
        // Requests in progress at shutdown get as long as a send may take, so that the whole
        // process is gone within request_timeout + 1 s (the worker's grace).
        .shutdown_timeout(settings.delivery.request_timeout.as_secs().max(1))
        .disable_signals();
        let server = server.listen(listener)?.run();
        let stop_worker = Arc::new(tokio::sync::watch::channel(false).0);
        tracing::info!(%addr, port, store = %settings.store.path.display(), max_connections = budget.total, "fxhook listening");
        Ok(Application {
            port,
            server,
            worker,
            grace,
            stop_worker,
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

    /// Serves until SIGTERM, SIGINT or SIGQUIT (or [`Application::handle`]'s stop). On a
    /// signal the delivery worker stops at once (nothing new claimed or sent; sends in progress
    /// finish) while the HTTP server finishes the requests it has; then the store writer
    /// finishes its last commit. Exits within `delivery.request_timeout` + 1 s.
    ///
    /// # Errors
    /// The server failed.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let mut stop = self.stop_worker.subscribe();
        let worker = tokio::spawn(self.worker.run_until_stopped(
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
            self.grace,
        ));
        let server = self.server.handle();
        let stop_worker = Arc::clone(&self.stop_worker);
        let signals = tokio::spawn(async move {
            match shutdown_signal().await {
                Ok(name) => tracing::info!(signal = name, "shutting down"),
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "cannot listen for signals");
                    return;
                }
            }
            stop_worker.send_replace(true);
            server.stop(true).await;
        });
        let result = self.server.await;
        self.stop_worker.send_replace(true);
        signals.abort();
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

/// Waits for SIGTERM, SIGINT or SIGQUIT and names it.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = quit.recv() => "SIGQUIT",
    })
}

/// Raises the open-file limit to what the system allows and sizes the connection bound to it.
fn connection_budget(settings: &Settings, workers: usize) -> ConnectionBudget {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit; assuming 1024");
            1024
        }
    };
    let budget = settings.server.connection_budget(workers, limit);
    if let Some(asked) = budget.clamped_from {
        tracing::warn!(
            asked,
            allowed = budget.total,
            file_limit = limit,
            "server.max_connections is more than the open-file limit allows: raise the limit (LimitNOFILE=, docker run --ulimit nofile=…)"
        );
    }
    budget
}

/// Removes credentials from the headers stored by earlier versions (once per store).
fn scrub_stored_headers(conn: &mut rusqlite::Connection, catalog: &Catalog) -> anyhow::Result<()> {
    let sources = catalog.load();
    let changed = store::maintenance::scrub_headers_once(conn, |source, headers| {
        let verifier = sources.get(source).map(|s| &s.verifier);
        receive::scrub_stored_headers(headers, verifier)
    })
    .context("cannot scrub the stored headers")?;
    if changed > 0 {
        tracing::warn!(
            events = changed,
            "removed signature and token headers that an earlier version stored with events"
        );
    }
    Ok(())
}

fn log_sources(set: &source::SourceSet) {
    let names: Vec<&str> = set.sources.keys().map(String::as_str).collect();
    tracing::info!(sources = ?names, rejected = set.rejected.len(), "mappings loaded");
}
