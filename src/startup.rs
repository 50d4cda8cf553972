//! Wiring: builds every stage from the settings, binds the listener, and runs the HTTP server
//! and the delivery worker until a shutdown signal. Each handler group gets its own app data.
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
use crate::config::{ConnectionBudget, DeliveryMode, Settings};
use crate::deliver::fxiaoke::FxiaokeClient;
use crate::deliver::{Mode, Worker, WorkerParts};
use crate::enqueue;
use crate::health::{MetricsEndpoint, Readyz};
use crate::receive::{self, BodyTimeout, Limits, TrustedProxies};
use crate::reload::{self, Catalog};
use crate::route::Groups;
use crate::source::LoadOptions;
use crate::store::health::StoreHealth;
use crate::{pipeline, store};

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
    _store_lock: Box<dyn std::any::Any + Send + Sync>,
    writer: JoinHandle<()>,
}

impl Application {
    /// Builds every stage and binds `server.listen` (port 0 picks a free port).
    ///
    /// # Errors
    /// A store that cannot be opened, an unreadable mappings directory, a port in use.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let catalog = Arc::new(open_catalog(&settings)?);
        let watcher = match settings.mappings.watch {
            true => Some(reload::watch(Arc::clone(&catalog))?),
            false => None,
        };
        reload::reload_on_sighup(Arc::clone(&catalog));

        let mut stores = store::open(&settings.store).await?;
        stores.ingest = scrub_stored_headers(stores.ingest, Arc::clone(&catalog)).await?;
        let health = Arc::new(StoreHealth::default());
        let queued = Arc::new(Notify::new());
        let (enqueuer, writer) = enqueue::start(
            stores.ingest,
            (&settings.store).into(),
            Arc::clone(&queued),
            Arc::clone(&health),
        )?;
        let d = &settings.delivery;
        let client = match settings.fxiaoke.mode().map_err(anyhow::Error::msg)? {
            DeliveryMode::DryRun => {
                tracing::info!(
                    "dry run: messages are logged and marked delivered, nothing is sent to Fxiaoke"
                );
                None
            }
            DeliveryMode::Live(creds) => {
                tracing::info!(base_url = %settings.fxiaoke.base_url, "live delivery to the Fxiaoke OpenAPI");
                Some(Arc::new(FxiaokeClient::new(
                    &settings.fxiaoke.base_url,
                    creds,
                    d.connect_timeout,
                    d.request_timeout,
                    Arc::clone(&stores.ledger),
                )?))
            }
        };
        let worker = Worker::new(
            WorkerParts {
                queue: stores.queue,
                ledger: stores.ledger,
                health: Arc::clone(&health),
                queued: Arc::clone(&queued),
            },
            client.clone().map_or(Mode::DryRun, Mode::Live),
            crate::deliver::WorkerSettings::from(d)
                .with_cards(settings.mappings.timezone, settings.cards.clone()),
        );
        let admin = settings.admin.token.clone().and_then(|token| {
            let set = !secrecy::ExposeSecret::expose_secret(&token)
                .trim()
                .is_empty();
            set.then(|| {
                web::Data::new(Admin {
                    token,
                    store: Arc::clone(&stores.inspect),
                    health: Arc::clone(&health),
                    catalog: Arc::clone(&catalog),
                    queued: Arc::clone(&queued),
                })
            })
        });
        let metrics_handle = crate::metrics::install();
        crate::metrics::zero(&catalog.load().sources.keys().cloned().collect::<Vec<_>>());
        enqueue::watch_store(
            &enqueuer,
            Arc::clone(&stores.monitor),
            (&settings.store).into(),
            Arc::clone(&health),
        );
        let hour = web::Data::new(crate::metrics::LastHour::default());
        let console = admin.as_ref().map(|admin| {
            web::Data::new(admin::ui::Console {
                sessions: admin::ui::session::Sessions::new(
                    &admin.token,
                    settings.admin.session_ttl,
                    admin::ui::SIGN_IN_FAILURES_A_MINUTE,
                ),
                admin: admin.clone(),
                monitor: Arc::clone(&stores.monitor),
                role: worker.role(),
                storm: worker.storm(),
                client: client.clone(),
                prefix: settings.server.path_prefix.clone(),
                locale: settings.cards.locale,
                enqueuer: enqueuer.clone(),
                hour: hour.clone(),
                trusted_proxies: settings.server.trusted_proxies.clone(),
            })
        });
        let readyz = web::Data::new(Readyz {
            monitor: Arc::clone(&stores.monitor),
            health,
            enqueuer: enqueuer.clone(),
            delivery: client,
            role: worker.role(),
            storm: worker.storm(),
            max_bytes: settings.store.max_bytes,
        });
        let metrics = web::Data::new(MetricsEndpoint {
            handle: metrics_handle,
            token: settings.metrics.token.clone(),
            monitor: stores.monitor,
        });
        let catalog = web::Data::from(catalog);
        let enqueuer = web::Data::new(enqueuer);
        let limits = web::Data::new(Limits {
            max_body_bytes: settings.server.max_body_bytes,
        });
        let proxies = web::Data::new(TrustedProxies(settings.server.trusted_proxies.clone()));
        let body_timeout = BodyTimeout(settings.server.body_timeout);

        let addr = settings.server.listen;
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
        let port = listener.local_addr()?.port();
        let prefix = settings.server.path_prefix.clone();
        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let budget = connection_budget(&settings, workers);
        let server = HttpServer::new(move || {
            let mut app = App::new()
                .app_data(catalog.clone())
                .app_data(enqueuer.clone())
                .app_data(limits.clone())
                .app_data(proxies.clone())
                .app_data(readyz.clone())
                .app_data(metrics.clone())
                .app_data(hour.clone())
                .app_data(body_timeout);
            if let Some(admin) = &admin {
                app = app.app_data(admin.clone());
            }
            if let Some(console) = &console {
                app = app.app_data(console.clone());
            }
            // Outermost last: the access log sees the 408 of a stalled body.
            app.wrap(from_fn(receive::body_deadline))
                .wrap(from_fn(receive::request_context))
                .service(
                    web::scope(&prefix)
                        .configure(receive::routes)
                        .configure(crate::health::routes)
                        // Before `/admin`, whose bearer check does not apply to the console.
                        .configure(admin::ui::routes)
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
        .shutdown_timeout(d.request_timeout.as_secs().max(1))
        .disable_signals()
        .listen(listener)?
        .run();
        tracing::info!(%addr, port, store = %settings.store.describe(), max_connections = budget.total, "fxhook listening");
        Ok(Application {
            port,
            server,
            worker,
            grace: d.request_timeout + Duration::from_secs(1),
            stop_worker: Arc::new(tokio::sync::watch::channel(false).0),
            _watcher: watcher,
            _store_lock: stores.lock,
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
        // The server's app data (and so the last Enqueuer) is gone: the writer drains and ends.
        let writer = self.writer;
        let joined = tokio::task::spawn_blocking(move || writer.join());
        if tokio::time::timeout(Duration::from_secs(5), joined)
            .await
            .is_err()
        {
            tracing::warn!("the store writer did not stop within 5 s");
        }
        result.context("HTTP server failed")
    }
}

/// The groups and the mappings, compiled and logged.
fn open_catalog(settings: &Settings) -> anyhow::Result<Catalog> {
    let groups = Arc::new(Groups::new(&settings.groups).map_err(anyhow::Error::msg)?);
    let options = LoadOptions::from_settings(settings, crate::diagnostic::Severity::Warning);
    let catalog = Catalog::open(settings.mappings.dir.clone(), groups, options)?;
    let set = catalog.load();
    let names: Vec<&str> = set.sources.keys().map(String::as_str).collect();
    tracing::info!(sources = ?names, rejected = set.rejected.len(), "mappings loaded");
    Ok(catalog)
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

/// Removes credentials from the headers stored by earlier versions (once per store), off the
/// async threads; gives the writer's handle back.
///
/// # Errors
/// A store error.
pub async fn scrub_stored_headers(
    mut ingest: Box<dyn store::Ingest>,
    catalog: Arc<Catalog>,
) -> anyhow::Result<Box<dyn store::Ingest>> {
    let changed = tokio::task::spawn_blocking(move || {
        let sources = catalog.load();
        let changed = ingest.scrub_stored_headers(&mut |source, headers| {
            let verifier = sources.get(source).map(|s| &s.verifier);
            store::Scrubbed {
                cleaned: pipeline::scrub_stored_headers(headers, verifier),
                // Headers of nothing (a console test card) need no judge.
                fully_judged: verifier.is_some() || headers.trim() == "{}",
            }
        });
        changed.map(|n| (n, ingest))
    })
    .await
    .context("store task failed")?
    .context("cannot scrub the stored headers");
    let (changed, ingest) = changed?;
    if changed > 0 {
        tracing::warn!(
            events = changed,
            "removed signature and token headers that an earlier version stored with events"
        );
    }
    Ok(ingest)
}
