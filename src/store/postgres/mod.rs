//! The Postgres backend: the store companies already run, back up and fail over. Same
//! semantics as the SQLite store — a commit is durable before the 202 (`synchronous_commit`
//! on), migrations run forward at start-up under an advisory lock, a store from a newer build is
//! refused — behind the same traits.
//!
//! Crates: `tokio-postgres` (the maintained Postgres client of the Rust ecosystem, which the
//! sync `postgres` crate wraps) with `deadpool-postgres` (a bounded pool with wait, create and
//! recycle timeouts, dropping closed connections), TLS through `tokio-postgres-rustls` on the
//! rustls stack reqwest already brings (no OpenSSL). The store's traits are synchronous (the
//! group-commit writer is a thread; the other callers run them off the async threads), so the
//! backend owns a small runtime of its own and blocks on it: a call never runs on the runtime
//! of the HTTP server, and the pool's connections live on this one.
//!
//! Layout: this file connects (pool, TLS, runtime); [`schema`] migrates;
//! `ingest`, `queue`, `inspect`, `monitor`, `vendor` implement the traits.

mod ingest;
mod inspect;
mod monitor;
mod queue;
pub mod schema;
pub mod tls;
mod vendor;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use secrecy::{ExposeSecret, SecretString};

use super::Stores;
use crate::config::{StoreSettings, redact_url};

/// A runtime that may be dropped anywhere (a tokio runtime dropped on an async thread panics).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The Postgres store: a pool on a runtime of its own.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    rt: Arc<OwnRuntime>,
    handle: tokio::runtime::Handle,
}

impl Postgres {
    /// Runs `work` to completion on the store's runtime. Must not be called on an async thread
    /// (the store's callers run it on the writer thread or with `spawn_blocking`).
    pub(crate) fn run<T>(
        &self,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let _keep = &self.rt;
        self.handle.block_on(work)
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> anyhow::Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .context("no connection to the Postgres store")
    }
}

/// Opens the Postgres store at `url`, migrated, for every user. Several processes may share
/// it: each takes events; the delivery lease decides which one sends.
///
/// # Errors
/// The URL does not parse, the database cannot be reached, or its schema is from a newer
/// build.
pub async fn open_stores(url: &SecretString, settings: &StoreSettings) -> anyhow::Result<Stores> {
    let store = open_unlocked(url, settings).await?;
    tracing::info!(store = %redact_url(url.expose_secret()), "Postgres store open");
    let one = || Arc::new(store.clone());
    Ok(Stores {
        ingest: Box::new(store.clone()),
        queue: one(),
        inspect: one(),
        monitor: one(),
        ledger: one(),
        // Replicas share a Postgres store: nothing to hold.
        lock: Box::new(()),
    })
}

/// Opens the Postgres store at `url`, migrated.
///
/// # Errors
/// See [`open_stores`].
pub async fn open_unlocked(
    url: &SecretString,
    settings: &StoreSettings,
) -> anyhow::Result<Postgres> {
    let store = connect(url, settings)?;
    let s = store.clone();
    // Connecting and migrating block on the store's own runtime: off the async threads.
    tokio::task::spawn_blocking(move || {
        s.run(async {
            let mut client = s.client().await?;
            schema::migrate(&mut client).await
        })
    })
    .await
    .context("store task failed")??;
    Ok(store)
}

/// The store's pool, not yet connected (connections are made on first use).
///
/// # Errors
/// The URL does not parse, or its TLS settings cannot be honoured.
pub fn connect(url: &SecretString, settings: &StoreSettings) -> anyhow::Result<Postgres> {
    let (config, tls) = parse(url, settings.connect_timeout)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fxhook-postgres")
        .enable_all()
        .build()
        .context("cannot start the Postgres store's runtime")?;
    let handle = rt.handle().clone();
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let wait = Some(settings.connect_timeout);
    // The pool's timers run on the store's runtime.
    let pool = {
        let _enter = handle.enter();
        Pool::builder(manager)
            .max_size(settings.pool_size)
            .wait_timeout(wait)
            .create_timeout(wait)
            .recycle_timeout(wait)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .context("cannot build the Postgres pool")?
    };
    Ok(Postgres {
        pool,
        rt: Arc::new(OwnRuntime(Some(rt))),
        handle,
    })
}

/// The client configuration of `url`: TLS as its `sslmode` says, commits durable, dead peers
/// noticed in seconds.
fn parse(
    url: &SecretString,
    connect_timeout: Duration,
) -> anyhow::Result<(
    tokio_postgres::Config,
    tokio_postgres_rustls::MakeRustlsConnect,
)> {
    let (plain, wish) = tls::split_url(url.expose_secret())?;
    let mut config: tokio_postgres::Config = plain.parse().map_err(|e| {
        anyhow::anyhow!(
            "store.url {} is not a Postgres URL: {e}",
            redact_url(url.expose_secret())
        )
    })?;
    config
        .ssl_mode(wish.ssl_mode())
        .connect_timeout(connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(20))
        // A 202 means committed: never an asynchronous commit, whatever the server's default.
        .options("-c synchronous_commit=on");
    if config.get_application_name().is_none() {
        config.application_name("fxhook");
    }
    Ok((config, wish.connector()?))
}
